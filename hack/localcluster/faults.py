"""Fault injection. Network faults are nft rules in a table of our own (``inet kdfault``) in
each node's netns, regenerated from the fault state in state.json on every change:

* cut A->B: A's postrouting drops packets to B's node IPs and pod CIDRs (after NAT, so
  ClusterIP/NodePort/LoadBalancer traffic that lands on B is cut too), both IP families or
  only one (``family="ipv6"``: IPv6 between A and B is dropped while IPv4 works). Both ways =
  A->B and B->A.
* loss on a node: N% of packets entering and leaving its eth0 are dropped (nft numgen), both
  families. A data-plane fault: the node's API traffic (node agent, kube-proxy and pods to
  the apiserver at 172.30.0.1:6443, the apiserver to the agent's :10250) is exempt, so the
  node keeps running its pods and stays Ready (a cut or ``set_node_ready`` does the rest).
* delay: needs tc netem (sch_netem); this kernel has none, so it is refused with a reason.

Add-on faults: ``stop_ingress_proxy`` stops nginx (Ingress traffic fails: connection
refused on 172.30.0.5:80), ``start_ingress_proxy`` starts it again; ``set_pod_interface``
takes a pod's interface (e.g. its multus ``net1``) down or up in the pod netns.

Service faults: ``proxy_stop`` kills the node's kube-proxy AND removes its rules
(``kube-proxy --cleanup``), so ClusterIP/NodePort through that node fail. Node faults:
``node_not_ready`` makes the agent post Ready=False (it keeps its lease);
``stop_heartbeat`` makes it stop lease renewals and status updates (the node lifecycle
controller marks it Unknown after its grace period, 50 s by default).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from hack.localcluster import config, nodes
from hack.localcluster.cluster import locked
from hack.localcluster.util import ClusterError, run


@contextmanager
def _state() -> Iterator[config.ClusterState]:
    with locked():
        state = config.ClusterState.load()
        if state is None:
            raise ClusterError("no cluster is running (hack/cluster up)")
        state.faults.setdefault("cuts", [])
        state.faults.setdefault("loss", {})
        state.faults.setdefault("delay", {})
        state.faults.setdefault("proxy_stopped", [])
        state.faults.setdefault("not_ready", [])
        state.faults.setdefault("no_heartbeat", [])
        state.faults.setdefault("ingress_stopped", False)
        state.faults.setdefault("iface_down", [])
        yield state
        state.save()


FAMILIES = ("all", "ipv4", "ipv6")


def _cuts(state: config.ClusterState) -> list[tuple[str, str, str]]:
    """Cuts as (from, to, family); entries of states older than families are both-family."""
    return [(c[0], c[1], c[2] if len(c) > 2 else "all") for c in state.faults.get("cuts", [])]


def _render(state: config.ClusterState, node: config.NodeInfo) -> str:
    drops: dict[str, list[str]] = {"ip": [], "ip6": []}
    for a, b, fam in _cuts(state):
        if a == node.name:
            other = state.node(b)
            for addr in [*other.ips, *other.pod_cidrs]:
                v6 = ":" in addr
                if fam in ("all", "ipv6" if v6 else "ipv4"):
                    drops["ip6" if v6 else "ip"].append(addr)
    loss = int(state.faults.get("loss", {}).get(node.name, 0))
    t = config.FAULT_TABLE
    lines = [f"table inet {t} {{}}", f"delete table inet {t}", f"table inet {t} {{"]
    lines.append("  chain post { type filter hook postrouting priority 300; policy accept;")
    for proto, addrs in drops.items():
        if addrs:
            lines.append(f"    {proto} daddr {{ {', '.join(sorted(set(addrs)))} }} counter drop")
    rand = "" if loss >= 100 else f"numgen random mod 100 < {loss} "
    cp, api, kubelet = config.BRIDGE_IP, config.API_PORT, config.KUBELET_PORT
    if loss:  # the data plane only: the node's API traffic stays (see the module doc)
        lines.append(f'    oifname "eth0" ip daddr {cp} tcp dport {api} accept')
        lines.append(f'    oifname "eth0" ip daddr {cp} tcp sport {kubelet} accept')
        lines.append(f'    oifname "eth0" {rand}counter drop')
    lines.append("  }")
    lines.append("  chain pre { type filter hook prerouting priority -300; policy accept;")
    if loss:
        lines.append(f'    iifname "eth0" ip saddr {cp} tcp sport {api} accept')
        lines.append(f'    iifname "eth0" ip saddr {cp} tcp dport {kubelet} accept')
        lines.append(f'    iifname "eth0" {rand}counter drop')
    lines.append("  }")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _apply(state: config.ClusterState) -> None:
    for node in state.nodes:
        run(["nft", "-f", "-"], netns=node.netns, input=_render(state, node))


def _check(state: config.ClusterState, *names: str) -> None:
    for n in names:
        state.node(n)  # raises KeyError with the known names


def cut_link(a: str, b: str, one_way: bool = False, family: str | None = None) -> None:
    """Drop traffic from node a (and its pods) to node b (and its pods); both ways unless
    ``one_way``; both IP families unless ``family`` is "ipv4" or "ipv6"."""
    if a == b:
        raise ClusterError("cut needs two different nodes")
    fam = family or "all"
    if fam not in FAMILIES:
        raise ClusterError(f"family must be ipv4 or ipv6, not {family!r}")
    with _state() as state:
        _check(state, a, b)
        if fam == "ipv6" and not state.dual:
            raise ClusterError("this cluster is IPv4 only (hack/cluster up --ip-family dual)")
        cuts = set(_cuts(state))
        cuts.add((a, b, fam))
        if not one_way:
            cuts.add((b, a, fam))
        state.faults["cuts"] = sorted(list(c) for c in cuts)
        _apply(state)


def heal_link(a: str | None = None, b: str | None = None) -> None:
    """Restore a<->b (both directions), or every cut if no nodes are given."""
    with _state() as state:
        if a is None:
            state.faults["cuts"] = []
        else:
            _check(state, a, *([b] if b else []))
            state.faults["cuts"] = [
                list(c)
                for c in _cuts(state)
                if not ({c[0], c[1]} == {a, b} or (b is None and a in c[:2]))
            ]
        _apply(state)


def set_loss(node: str, percent: int) -> None:
    """Drop ``percent``% of the node's packets in each direction (0 clears)."""
    if not 0 <= percent <= 100:
        raise ClusterError("loss must be between 0 and 100 percent")
    with _state() as state:
        _check(state, node)
        if percent:
            state.faults["loss"][node] = percent
        else:
            state.faults["loss"].pop(node, None)
        _apply(state)


def netem_available() -> bool:
    return Path("/sys/module/sch_netem").exists()


def set_delay(node: str, ms: int) -> None:
    """Delay the node's outgoing packets by ``ms`` (tc netem; refused if the kernel lacks it)."""
    with _state() as state:
        _check(state, node)
        n = state.node(node)
        if ms <= 0:
            run(["tc", "qdisc", "del", "dev", "eth0", "root"], netns=n.netns, check=False)
            state.faults["delay"].pop(node, None)
            return
        r = run(
            ["tc", "qdisc", "replace", "dev", "eth0", "root", "netem", "delay", f"{ms}ms"],
            netns=n.netns,
            check=False,
        )
        if r.returncode != 0:
            raise ClusterError(
                "cannot add delay: tc netem is not available in this kernel "
                f"({r.stderr.strip()}); packet loss (hack/cluster net loss) works"
            )
        state.faults["delay"][node] = ms


def clear_node_net(node: str) -> None:
    set_loss(node, 0)
    with _state() as state:
        if node in state.faults["delay"]:
            n = state.node(node)
            run(["tc", "qdisc", "del", "dev", "eth0", "root"], netns=n.netns, check=False)
            state.faults["delay"].pop(node, None)


def stop_kube_proxy(node: str) -> None:
    with _state() as state:
        n = state.node(node)
        nodes.stop_proxy(n, Path(state.bin_dir))
        if node not in state.faults["proxy_stopped"]:
            state.faults["proxy_stopped"].append(node)


def start_kube_proxy(node: str) -> None:
    with _state() as state:
        n = state.node(node)
        if node in state.faults["proxy_stopped"] or not _proxy_alive(n):
            nodes.stop_proxy(n, Path(state.bin_dir))
            nodes.start_proxy(n, Path(state.bin_dir))
        state.faults["proxy_stopped"] = [x for x in state.faults["proxy_stopped"] if x != node]


def _proxy_alive(n: config.NodeInfo) -> bool:
    from hack.localcluster.util import component_alive

    return component_alive(nodes.proxy_name(n))


def set_node_ready(node: str, ready: bool) -> None:
    """ready=False: the node's agent reports Ready=False (KubeletNotReady) right away."""
    with _state() as state:
        n = state.node(node)
        nodes.signal_agent(n, {"ready": ready})
        lst = [x for x in state.faults["not_ready"] if x != node]
        state.faults["not_ready"] = lst if ready else [*lst, node]


def set_heartbeat(node: str, on: bool) -> None:
    """on=False: the agent stops renewing its Lease and posting status (node goes Unknown)."""
    with _state() as state:
        n = state.node(node)
        nodes.signal_agent(n, {"heartbeat": on})
        lst = [x for x in state.faults["no_heartbeat"] if x != node]
        state.faults["no_heartbeat"] = lst if on else [*lst, node]


def stop_ingress_proxy() -> None:
    """Stop nginx (the ingress proxy): Ingress traffic fails until start_ingress_proxy."""
    from hack.localcluster import ingress
    from hack.localcluster.util import stop_component

    with _state() as state:
        if not state.addons:
            raise ClusterError("this cluster has no ingress proxy (started before add-ons)")
        stop_component(ingress.COMPONENT)
        pid = ingress.nginx_pid()  # a master that outlived its recorded pid
        if pid is not None:
            from hack.localcluster.util import kill_and_wait

            kill_and_wait([pid], timeout=5)
        state.faults["ingress_stopped"] = True


def start_ingress_proxy() -> None:
    from hack.localcluster import cluster, ingress
    from hack.localcluster.util import wait_for

    with _state() as state:
        if not state.addons:
            raise ClusterError("this cluster has no ingress proxy (started before add-ons)")
        if ingress.nginx_pid() is None:
            cluster.start_ingress_proxy()
            wait_for("nginx to start", ingress.nginx_pid, 20)
        state.faults["ingress_stopped"] = False


def set_pod_interface(namespace: str, pod: str, iface: str = "net1", up: bool = True) -> None:
    """Take interface ``iface`` of a pod down (or up) inside its netns, as ``ip link set
    IFACE down`` in the pod would."""
    from hack.localcluster import cluster, network

    with _state() as state:
        obj = cluster.admin().get(f"/api/v1/namespaces/{namespace}/pods/{pod}")
        if obj["spec"].get("hostNetwork"):
            raise ClusterError(f"pod {namespace}/{pod} uses the node's network")
        uid = obj["metadata"]["uid"]
        netns = network.pod_netns_name(uid)
        r = run(["ip", "-n", netns, "link", "set", iface, "up" if up else "down"], check=False)
        if r.returncode != 0:
            raise ClusterError(f"pod {namespace}/{pod}: {iface}: {r.stderr.strip()}")
        entry = [namespace, pod, uid, iface]
        rest = [e for e in state.faults["iface_down"] if e != entry]
        state.faults["iface_down"] = rest if up else [*rest, entry]


def heal_all() -> None:
    state = config.ClusterState.load()
    if state is None:
        raise ClusterError("no cluster is running (hack/cluster up)")
    heal_link()
    for n in state.node_names:
        clear_node_net(n)
    for n in list(state.faults.get("proxy_stopped", [])):
        start_kube_proxy(n)
    for n in list(state.faults.get("not_ready", [])):
        set_node_ready(n, True)
    for n in list(state.faults.get("no_heartbeat", [])):
        set_heartbeat(n, True)
    if state.faults.get("ingress_stopped"):
        start_ingress_proxy()
    from hack.localcluster import network

    with _state() as st:  # interfaces of pods that still exist (same uid) come back up
        for _ns, _pod, uid, iface in st.faults["iface_down"]:
            netns = network.pod_netns_name(uid)
            if netns in network.list_netns():
                run(["ip", "-n", netns, "link", "set", iface, "up"], check=False)
        st.faults["iface_down"] = []
