"""Which targets one agent probes (pure: tested without a cluster).

netreach, from the agent on node A, for every peer B it is asked to probe (all peers, or the
sampled plan) and every family:
- ``pod``: B's pod IP;
- ``clusterip``: the ClusterIP of Service ``<run>-<index of B>``, which selects only B;
- ``nodeport``: node B's address on the run's NodePort Service, whose
  ``externalTrafficPolicy: Local`` makes node B's own agent answer;
- ``multus``: every secondary-interface address of B (from its network-status annotation);
- ``loadbalancer`` and ``ingress``: one target each per family (no single node answers).
Names follow kdoctor's (``AgentPodV4IP_<pod>_<ip>``, ...), so reports read alike. Every
probe carries the run's token (``X-Kdoctor-Token``): the responders answer no one else.
"""

from __future__ import annotations

import dataclasses

from kubectl_kdoctor.engine.runner import Target
from kubectl_kdoctor.engine.spec import HttpSpec, Load
from kubectl_kdoctor.kube.manifests import HTTP_PORT
from kubectl_kdoctor.runconfig import TOKEN_HEADER, Endpoints, Peer


@dataclasses.dataclass(frozen=True)
class PlannedTarget:
    target: Target
    path: str
    family: str
    target_node: str | None


def _host(ip: str) -> str:
    return f"[{ip}]" if ":" in ip else ip


def _v(family: str) -> str:
    return "V6" if family == "ipv6" else "V4"


def _first(addresses: tuple[str, ...]) -> str | None:
    return addresses[0] if addresses else None


def netreach_targets(
    *,
    me: str,
    peers: list[Peer],
    endpoints: Endpoints,
    paths: tuple[str, ...],
    families: tuple[str, ...],
    load: Load,
    plan: list[str] | None = None,
    token: str = "",
) -> list[PlannedTarget]:
    chosen = [p for p in peers if plan is None or p.node in plan or p.node == me]
    out: list[PlannedTarget] = []
    headers = ((TOKEN_HEADER, token),) if token else ()

    def add(
        name: str, url: str, path: str, family: str, node: str | None, host: str | None = None
    ) -> None:
        spec = HttpSpec(url=url, method="GET", headers=headers, host_header=host)
        out.append(PlannedTarget(Target(name, spec, load), path, family, node))

    for fam in families:
        v = _v(fam)
        for p in sorted(chosen, key=lambda x: x.node):
            ips = p.ipv6 if fam == "ipv6" else p.ipv4
            if "pod" in paths and (ip := _first(ips)):
                add(
                    f"AgentPod{v}IP_{p.pod}_{ip}",
                    f"http://{_host(ip)}:{HTTP_PORT}/",
                    "pod",
                    fam,
                    p.node,
                )
            if "clusterip" in paths and (cip := endpoints.cluster_ips.get(p.index, {}).get(fam)):
                add(
                    f"AgentCluster{v}IP_{_host(cip)}:80",
                    f"http://{_host(cip)}:80/",
                    "clusterip",
                    fam,
                    p.node,
                )
            if "nodeport" in paths and (port := endpoints.node_ports.get(p.index, {}).get(fam)):
                addr = endpoints.node_addresses.get(p.node, {}).get(fam)
                if addr:
                    add(
                        f"AgentNodePort{v}IP_{addr}_{port}",
                        f"http://{_host(addr)}:{port}/",
                        "nodeport",
                        fam,
                        p.node,
                    )
            if "multus" in paths:
                for iface, mip in p.multus:
                    if (":" in mip) == (fam == "ipv6"):
                        add(
                            f"AgentPod{v}IP_{p.pod}_{iface}_{mip}",
                            f"http://{_host(mip)}:{HTTP_PORT}/",
                            "multus",
                            fam,
                            p.node,
                        )
        if "loadbalancer" in paths and (lb := endpoints.lb.get(fam)):
            add(
                f"AgentLoadbalancer{v}IP_{_host(lb)}:80",
                f"http://{_host(lb)}:80/",
                "loadbalancer",
                fam,
                None,
            )
        if "ingress" in paths and (iurl := endpoints.ingress_urls.get(fam)):
            add(f"AgentIngress_{fam[2:]}_{iurl}", iurl, "ingress", fam, None)
    return out


def missing_paths(
    paths: tuple[str, ...], families: tuple[str, ...], endpoints: Endpoints
) -> list[str]:
    """Paths that were asked for but cannot be probed (their address never appeared)."""
    out = []
    for fam in families:
        if "nodeport" in paths and not any(fam in v for v in endpoints.node_ports.values()):
            out.append(f"no {fam} NodePort on the run's Services")
        if "loadbalancer" in paths and not endpoints.lb.get(fam):
            out.append(f"no {fam} LoadBalancer address (is a load-balancer controller installed?)")
    if "ingress" in paths and not endpoints.ingress_urls:
        out.append("no Ingress address (is an ingress controller serving that class?)")
    return out
