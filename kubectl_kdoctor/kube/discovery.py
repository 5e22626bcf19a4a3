"""What an agent learns from the API: its peers (the run's agent pods, once Ready) and the
run's Services. Watches, not polling: a list, then a watch from its resourceVersion."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from typing import Any, TypeVar

from kubectl_kdoctor.kube.client import Kube
from kubectl_kdoctor.kube.errors import api_errors
from kubectl_kdoctor.kube.manifests import INDEX, NODE, ROLE, RUN
from kubectl_kdoctor.runconfig import SERVICE_PATHS, AgentConfig, Endpoints, Peer

T = TypeVar("T")

NETWORK_STATUS = ("k8s.v1.cni.cncf.io/network-status", "k8s.v1.cni.cncf.io/networks-status")


def _ready(pod: Any) -> bool:
    conds = (pod.status.conditions if pod.status else None) or []
    return any(c.type == "Ready" and c.status == "True" for c in conds)


def peer_of(pod: Any) -> Peer | None:
    labels = pod.metadata.labels or {}
    if INDEX not in labels or not pod.spec.node_name:
        return None
    ips = [p.ip for p in (pod.status.pod_ips or [])] if pod.status else []
    if not ips and pod.status and pod.status.pod_ip:
        ips = [pod.status.pod_ip]
    multus: list[tuple[str, str]] = []
    ann = pod.metadata.annotations or {}
    for key in NETWORK_STATUS:
        if key in ann:
            try:
                for net in json.loads(ann[key]):
                    if net.get("default") or net.get("interface") in (None, "eth0"):
                        continue
                    for ip in net.get("ips") or []:
                        multus.append((str(net.get("interface")), str(ip)))
            except (ValueError, TypeError, AttributeError):
                pass
            break
    return Peer(
        index=int(labels[INDEX]),
        node=pod.spec.node_name,
        pod=pod.metadata.name,
        ipv4=tuple(ip for ip in ips if ":" not in ip),
        ipv6=tuple(ip for ip in ips if ":" in ip),
        multus=tuple(multus),
    )


def patiently(fn: Callable[[], T], what: str, deadline: float) -> T:
    """``fn()`` retried with back-off until ``deadline`` while the API is slow or unreachable
    (a busy apiserver at the start of a large run); a refusal (403, 404) is not retried."""
    from kubectl_kdoctor.errors import ClusterError, Forbidden, NotFound

    pause = 0.5
    while True:
        try:
            with api_errors(what):
                return fn()
        except (Forbidden, NotFound):
            raise
        except ClusterError:
            if time.monotonic() + pause >= deadline:
                raise
            time.sleep(pause)
            pause = min(pause * 2, 8.0)


def _note(what: str, exc: BaseException) -> None:
    """A dropped watch is normal (it is listed again); say so in the agent's log."""
    sys.stderr.write(f"{time.strftime('%H:%M:%S')} agent: {what}: {type(exc).__name__}: {exc}\n")


def _counted(pod: Any, before: Peer | None) -> Peer | None:
    """The pod as a Ready peer, or None. Once Ready, a peer stays counted through a
    readiness flap (a busy node's probe timing out): it is serving, only slowly. Forgetting it
    made agents on a loaded 100-node cluster wait for a moment when all their peers were Ready
    at once, which never came."""
    peer = peer_of(pod)
    return peer if peer is not None and (_ready(pod) or before == peer) else None


def wait_for_peers(kube: Kube, cfg: AgentConfig, wanted: set[str], deadline: float) -> list[Peer]:
    """Block until the agents on every ``wanted`` node are Ready (or the deadline); return all
    the Ready ones. With sampling an agent waits only for the peers it probes: at 100 nodes,
    waiting for everyone made every agent as late as the slowest one."""
    from kubernetes import watch

    selector = f"{RUN}={cfg.run},{ROLE}=agent"
    ready: dict[str, Peer] = {}

    def listing() -> str:
        lst = patiently(
            lambda: kube.core.list_namespaced_pod(
                cfg.namespace, label_selector=selector, **kube.kw()
            ),
            "list the run's agents",
            deadline,
        )
        before = dict(ready)
        ready.clear()
        for pod in lst.items:
            peer = _counted(pod, before.get(pod.metadata.name))
            if peer is not None:
                ready[pod.metadata.name] = peer
        return str(lst.metadata.resource_version)

    def done() -> bool:
        return wanted <= {p.node for p in ready.values()}

    rv = listing()
    while not done() and time.monotonic() < deadline:
        w = watch.Watch()
        timeout = max(1, min(30, int(deadline - time.monotonic())))
        try:
            with api_errors("watch the run's agents"):
                for ev in w.stream(
                    kube.core.list_namespaced_pod,
                    cfg.namespace,
                    label_selector=selector,
                    resource_version=rv,
                    timeout_seconds=timeout,
                ):
                    pod = ev["object"]
                    rv = pod.metadata.resource_version
                    name = pod.metadata.name
                    peer = _counted(pod, ready.get(name)) if ev["type"] != "DELETED" else None
                    if peer is not None:
                        ready[name] = peer
                    else:
                        ready.pop(name, None)
                    if done():
                        w.stop()
                        break
        except Exception as exc:  # a 410 Gone or a dropped stream: list again
            _note("watch the run's agents", exc)
            rv = listing()
    return sorted(ready.values(), key=lambda p: p.index)


def endpoints(kube: Kube, cfg: AgentConfig, patience: float = 60.0) -> Endpoints:
    nr = cfg.task.netreach
    services: list[Any] = []
    if nr is not None and set(nr.paths) & set(SERVICE_PATHS):  # else the Role grants no list
        services = patiently(
            lambda: (
                kube.core.list_namespaced_service(
                    cfg.namespace, label_selector=f"{RUN}={cfg.run}", **kube.kw()
                ).items
            ),
            "list the run's Services",
            time.monotonic() + patience,
        )
    cluster_ips: dict[int, dict[str, str]] = {}
    node_ports: dict[int, dict[str, int]] = {}
    lb: dict[str, str] = {}
    for svc in services:
        name = svc.metadata.name
        fams = [("ipv6" if f == "IPv6" else "ipv4") for f in (svc.spec.ip_families or ["IPv4"])]
        ips = svc.spec.cluster_ips or ([svc.spec.cluster_ip] if svc.spec.cluster_ip else [])
        suffix = name[len(cfg.run) + 1 :]
        if suffix.isdigit():
            index = int(suffix)
            cluster_ips[index] = {
                ("ipv6" if ":" in ip else "ipv4"): ip for ip in ips if ip != "None"
            }
            port = next((p.node_port for p in svc.spec.ports or [] if p.name == "http"), None)
            if port:
                node_ports[index] = dict.fromkeys(fams, int(port))
        elif suffix == "lb":
            status = svc.status.load_balancer if svc.status else None
            for ing in (status.ingress if status else None) or []:
                if ing.ip:
                    lb.setdefault("ipv6" if ":" in ing.ip else "ipv4", ing.ip)
    addresses = {
        n.name: {
            k: v
            for k, v in (
                ("ipv4", n.ipv4[0] if n.ipv4 else ""),
                ("ipv6", n.ipv6[0] if n.ipv6 else ""),
            )
            if v
        }
        for n in cfg.nodes
    }
    ingress_urls: dict[str, str] = {}
    if nr is not None and "ingress" in nr.paths:
        ingress_urls = ingress_addresses(kube, cfg.namespace, cfg.run)
    return Endpoints(cluster_ips, node_ports, addresses, lb, ingress_urls)


def ingress_addresses(kube: Kube, namespace: str, run: str) -> dict[str, str]:
    """family -> URL of the run's Ingress path on each address its controller published."""
    from kubectl_kdoctor.errors import NotFound

    try:
        with api_errors(f"read Ingress {run}"):
            ing = kube.networking.read_namespaced_ingress(run, namespace, **kube.kw())
    except NotFound:
        return {}
    out: dict[str, str] = {}
    status = ing.status.load_balancer if ing.status else None
    for entry in (status.ingress if status else None) or []:
        if entry.ip:
            fam = "ipv6" if ":" in entry.ip else "ipv4"
            host = f"[{entry.ip}]" if fam == "ipv6" else entry.ip
            out.setdefault(fam, f"http://{host}/kdoctor/{run}")
    return out


def load_balancer_addresses(kube: Kube, namespace: str, run: str) -> dict[str, str]:
    """family -> the first LoadBalancer address of Service ``<run>-lb``."""
    from kubectl_kdoctor.errors import NotFound

    try:
        with api_errors(f"read Service {run}-lb"):
            svc = kube.core.read_namespaced_service(f"{run}-lb", namespace, **kube.kw())
    except NotFound:
        return {}
    out: dict[str, str] = {}
    status = svc.status.load_balancer if svc.status else None
    for entry in (status.ingress if status else None) or []:
        if entry.ip:
            out.setdefault("ipv6" if ":" in entry.ip else "ipv4", entry.ip)
    return out


def wait_for_reports(kube: Kube, cfg: AgentConfig, wanted: set[str], deadline: float) -> int:
    """Block until the agents on every ``wanted`` node have written their report (or the
    deadline); return how many of them did."""
    from kubernetes import watch

    selector = f"{RUN}={cfg.run},{ROLE}=report"

    def listing() -> tuple[set[str], str]:
        lst = patiently(
            lambda: kube.core.list_namespaced_config_map(
                cfg.namespace, label_selector=selector, **kube.kw()
            ),
            "list reports",
            deadline,
        )
        nodes = {(cm.metadata.labels or {}).get(NODE, "") for cm in lst.items}
        return nodes, str(lst.metadata.resource_version)

    seen, rv = listing()
    while not wanted <= seen and time.monotonic() < deadline:
        w = watch.Watch()
        try:
            with api_errors("watch reports"):
                for ev in w.stream(
                    kube.core.list_namespaced_config_map,
                    cfg.namespace,
                    label_selector=selector,
                    resource_version=rv,
                    timeout_seconds=max(1, min(30, int(deadline - time.monotonic()))),
                ):
                    obj = ev["object"]
                    rv = obj.metadata.resource_version
                    if ev["type"] == "ADDED":
                        seen.add((obj.metadata.labels or {}).get(NODE, ""))
                    if wanted <= seen:
                        w.stop()
                        break
        except Exception as exc:
            _note("watch reports", exc)
            seen, rv = listing()
    return len(wanted & seen)


def api_endpoints(kube: Kube) -> list[str]:
    """host:port of the apiserver's own endpoints (the ``kubernetes`` Service's EndpointSlices),
    for agents whose node cannot translate the Service; [] when they cannot be read."""
    from kubectl_kdoctor.errors import ClusterError

    try:
        with api_errors("list EndpointSlices of default/kubernetes"):
            slices = kube.discovery.list_namespaced_endpoint_slice(
                "default", label_selector="kubernetes.io/service-name=kubernetes", **kube.kw()
            ).items
    except ClusterError:
        return []
    out = []
    for sl in slices:
        port = next((p.port for p in sl.ports or [] if p.name == "https"), None) or 443
        for ep in sl.endpoints or []:
            for addr in ep.addresses or []:
                out.append(f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}")
    return out


def ready_endpoints(kube: Kube, namespace: str, service: str) -> tuple[int, int] | None:
    """(ready, total) endpoints of a Service, from its EndpointSlices; None when they cannot
    be read (no permission, API error): a hint, never a reason to fail."""
    from kubectl_kdoctor.errors import ClusterError

    try:
        with api_errors(f"list the EndpointSlices of Service {namespace}/{service}"):
            slices = kube.discovery.list_namespaced_endpoint_slice(
                namespace, label_selector=f"kubernetes.io/service-name={service}", **kube.kw()
            ).items
    except ClusterError:
        return None
    total = ready = 0
    for sl in slices:
        for ep in sl.endpoints or []:
            total += 1
            cond = ep.conditions
            if cond is None or cond.ready is None or cond.ready:  # unset means ready
                ready += 1
    return ready, total
