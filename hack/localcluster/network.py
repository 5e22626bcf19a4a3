"""The cluster's network: a bridge in the root netns, one netns per node, one per pod.

    root netns            kdbr0 172.30.0.1/24 (apiserver binds here)
      |-- kdn1 ==veth== eth0 172.30.0.11  netns kdc-node-1  (pods 10.244.1.0/24)
      |-- kdn2 ==veth== eth0 172.30.0.12  netns kdc-node-2  (pods 10.244.2.0/24)
    node netns kdc-node-1:
      kdv<uid12> ==veth== eth0 10.244.1.x/32  netns kdc-p-<uid12>     (routed, Calico style)

Pods are routed, not bridged: each pod's veth ends in its node's netns with a /32 route, the
pod's default route goes via the node (gateway address 10.244.i.1 on every pod veth of the
node), so pod traffic passes the node's routing and netfilter, where kube-proxy's rules and
the fault rules live. Every node has a direct route to every other node's pod CIDR over the
bridge; the root netns routes pod CIDRs to the nodes and the Service CIDR to node-1 (whose
kube-proxy translates it). The root netns does not forward (ip_forward stays as it is, 0 on
this machine), so nothing from the cluster leaves the machine.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
from pathlib import Path

from hack.localcluster import config
from hack.localcluster.util import log, run


def ip_batch(cmds: list[str], netns: str | None = None) -> None:
    if not cmds:
        return
    argv = ["ip", *(["-n", netns] if netns else []), "-batch", "-"]
    run(argv, input="\n".join(cmds) + "\n")


def sysctl(netns: str | None, settings: dict[str, str]) -> None:
    args = [f"{k}={v}" for k, v in settings.items()]
    run(["sysctl", "-q", "-w", *args], netns=netns)


def list_netns() -> list[str]:
    try:
        return sorted(p.name for p in Path("/run/netns").iterdir())
    except FileNotFoundError:
        return []


def link_exists(name: str, netns: str | None = None) -> bool:
    return (
        run(["ip", *(["-n", netns] if netns else []), "link", "show", name], check=False).returncode
        == 0
    )


def setup_root() -> None:
    prefix = config.BRIDGE_CIDR.prefixlen
    ip_batch(
        [
            f"link add {config.BRIDGE} type bridge",
            f"addr add {config.BRIDGE_IP}/{prefix} dev {config.BRIDGE}",
            f"link set {config.BRIDGE} up",
        ]
    )


def setup_node(node: config.NodeInfo, all_nodes: list[config.NodeInfo]) -> None:
    run(["ip", "netns", "add", node.netns])
    tmp = f"{node.root_veth}p"
    prefix = config.BRIDGE_CIDR.prefixlen
    ip_batch(
        [
            f"link add {node.root_veth} type veth peer name {tmp}",
            f"link set {tmp} netns {node.netns}",
            f"link set {node.root_veth} master {config.BRIDGE}",
            f"link set {node.root_veth} up",
        ]
    )
    cmds = [
        "link set lo up",
        f"link set {tmp} name eth0",
        *(f"addr add {ip}/{prefix} dev eth0" for ip in node.ips),
        "link set eth0 up",
        f"route add default via {config.BRIDGE_IP} dev eth0",
    ]
    for other in all_nodes:
        if other.name != node.name:
            cmds += [f"route add {c} via {other.ip} dev eth0" for c in other.pod_cidrs]
    ip_batch(cmds, netns=node.netns)
    sysctl(
        node.netns,
        {
            "net.ipv4.ip_forward": "1",
            "net.ipv4.conf.all.rp_filter": "0",
            "net.ipv4.conf.default.rp_filter": "0",
        },
    )
    # The root netns reaches this node's pods through it.
    ip_batch([f"route add {c} via {node.ip} dev {config.BRIDGE}" for c in node.pod_cidrs])


def setup_service_route(via: config.NodeInfo) -> None:
    """Root netns -> ClusterIPs: through one node, whose kube-proxy translates them."""
    ip_batch([f"route replace {config.SERVICE_CIDR} via {via.ip} dev {config.BRIDGE}"])


def teardown_all() -> list[str]:
    """Remove every netns, link and route the cluster made (whether or not state exists).
    Returns what was removed. Callers must have killed the processes first."""
    removed: list[str] = []
    for ns in list_netns():
        if ns.startswith(config.NETNS_PREFIX):
            run(["ip", "netns", "del", ns], check=False)
            removed.append(f"netns {ns}")
    out = run(["ip", "-j", "link", "show"], check=False).stdout or "[]"
    for link in json.loads(out):
        name = link.get("ifname", "")
        if name == config.BRIDGE or (
            name.startswith(config.NODE_VETH_PREFIX)
            and name[len(config.NODE_VETH_PREFIX) :].rstrip("p").isdigit()
        ):
            run(["ip", "link", "del", name], check=False)
            removed.append(f"link {name}")
    # Routes through the bridge vanish with it; a Service-CIDR route could survive only if
    # it pointed elsewhere, which we never do, but be thorough.
    routes = run(["ip", "-j", "route", "show"], check=False).stdout or "[]"
    owned = [config.POD_CIDR, config.SERVICE_CIDR]
    for r in json.loads(routes):
        dst = r.get("dst", "")
        with contextlib.suppress(ValueError):
            net = ipaddress.ip_network(dst)
            if r.get("dev") == config.BRIDGE or any(net.subnet_of(o) for o in owned):  # type: ignore[arg-type]
                run(["ip", "route", "del", dst], check=False)
                removed.append(f"route {dst}")
    if removed:
        log("removed " + ", ".join(removed))
    return removed


# --- pods (used by the node agent, which runs inside its node's netns) -------------------


def pod_netns_name(uid: str) -> str:
    return f"{config.NETNS_PREFIX}p-{uid.replace('-', '')[:12]}"


def pod_veth_name(uid: str) -> str:
    return f"{config.POD_VETH_PREFIX}{uid.replace('-', '')[:12]}"


def pod_gateway(pod_cidr: str) -> str:
    return str(next(ipaddress.ip_network(pod_cidr).hosts()))


def setup_pod(uid: str, ips: list[str], gateways: list[str]) -> str:
    """Create the pod netns with ``ips`` on its eth0, routed via the current (node) netns.
    Must run inside the node netns. Returns the netns name."""
    ns = pod_netns_name(uid)
    veth = pod_veth_name(uid)
    run(["ip", "netns", "del", ns], check=False)
    run(["ip", "link", "del", veth], check=False)
    run(["ip", "netns", "add", ns])
    node_cmds = [f"link add {veth} type veth peer name eth0 netns {ns}"]
    node_cmds += [f"addr add {gw}/32 dev {veth}" for gw in gateways]
    node_cmds += [f"link set {veth} up"]
    node_cmds += [f"route add {ip}/32 dev {veth}" for ip in ips]
    ip_batch(node_cmds)
    pod_cmds = ["link set lo up"]
    pod_cmds += [f"addr add {ip}/32 dev eth0" for ip in ips]
    pod_cmds += ["link set eth0 up"]
    for gw in gateways:
        pod_cmds += [f"route add {gw} dev eth0 scope link", f"route add default via {gw} dev eth0"]
    ip_batch(pod_cmds, netns=ns)
    # As containerd 2.x does for every pod: unprivileged ICMP sockets and low ports.
    sysctl(
        ns,
        {"net.ipv4.ping_group_range": "0 2147483647", "net.ipv4.ip_unprivileged_port_start": "0"},
    )
    return ns


def teardown_pod(uid: str) -> None:
    run(["ip", "netns", "del", pod_netns_name(uid)], check=False)
    run(["ip", "link", "del", pod_veth_name(uid)], check=False)
