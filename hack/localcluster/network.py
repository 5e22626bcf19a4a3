"""The cluster's network: a bridge in the root netns, one netns per node, one per pod.

    root netns            kdbr0 172.30.0.1/24 fd00:172:30::1/64 (apiserver binds the v4)
      |-- kdn0 ==veth== eth0 172.30.0.5   fd00:172:30::5   netns kdc-ingress (nginx)
      |-- kdn1 ==veth== eth0 172.30.0.11  fd00:172:30::11  netns kdc-node-1
      |-- kdn2 ==veth== eth0 172.30.0.12  fd00:172:30::12  netns kdc-node-2
                          kdbr1 (no address): the multus secondary network
      |-- kdm1 ==veth== eth1 (in bridge sec0)  netns kdc-node-1
    node netns kdc-node-1 (pods 10.244.1.0/24, fd00:10:244:1::/64):
      kdv<uid12> ==veth== eth0 10.244.1.x/32 fd00:10:244:1::x/128  netns kdc-p-<uid12>
      kdm<uid10><k> (in sec0) ==veth== net<k> 192.168.50.y/24     (multus networks)

Pods are routed, not bridged: each pod's veth ends in its node's netns with a /32 (and /128)
route, the pod's default routes go via the node (gateway addresses 10.244.i.1 and
fd00:10:244:i::1 on every pod veth of the node), so pod traffic passes the node's routing and
netfilter, where kube-proxy's rules and the fault rules live. Every node (and the ingress
netns) has a direct route to every other node's pod CIDRs over the bridge; the root netns
routes pod CIDRs to the nodes and the Service CIDRs to node-1 (whose kube-proxy translates
them), and each LoadBalancer address to one node (routes the addons' LB controller keeps).
The root netns does not forward (ip_forward stays as it is, 0 on this machine), so nothing
from the cluster leaves the machine. IPv6 addresses are added with ``nodad`` (no tentative
phase) and forwarding is on in the node netns.
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


def sysctl(netns: str | None, settings: dict[str, str], check: bool = True) -> None:
    args = [f"{k}={v}" for k, v in settings.items()]
    run(["sysctl", "-q", "-w", *args], netns=netns, check=check)


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


def is_v6(addr: str) -> bool:
    return ":" in addr


def _addr(ip: str, prefix: int) -> str:
    """``addr add`` arguments; IPv6 without duplicate address detection (no tentative state)."""
    return f"{ip}/{prefix}" + (" nodad" if is_v6(ip) else "")


def _via(cidr: str, gateways: list[str]) -> str:
    """The gateway of the family of ``cidr`` out of ``gateways``."""
    return next(g for g in gateways if is_v6(g) == is_v6(cidr))


V6_SYSCTLS = {
    "net.ipv6.conf.all.disable_ipv6": "0",
    "net.ipv6.conf.default.disable_ipv6": "0",
    "net.ipv6.conf.all.accept_dad": "0",
    "net.ipv6.conf.default.accept_dad": "0",
    "net.ipv6.conf.all.accept_ra": "0",
    "net.ipv6.conf.default.accept_ra": "0",
}


def root_ips(dual: bool) -> list[str]:
    return [config.BRIDGE_IP, *([config.BRIDGE_IP6] if dual else [])]


NEIGH_SAVED = config.STATE_DIR / "neigh-sysctls.json"


def size_neighbour_tables(nodes: int) -> None:
    """Neighbour (ARP/NDP) tables are one per family for the whole kernel, shared by every
    netns, with a hard limit (gc_thresh3, 1024 by default). Each node netns holds an entry per
    node it talks to, so a mesh of N nodes needs about N^2: at 100 nodes the default overflows
    ("neighbor table overflow!") and random node pairs stop reaching each other. Raise the
    limits for the cluster's size; ``teardown_all`` restores the machine's values."""
    need = 2 * nodes * nodes + 4096
    limits = {
        f"net.{fam}.neigh.default.gc_thresh{i}": value
        for fam in ("ipv4", "ipv6")
        for i, value in ((1, need // 8), (2, need // 2), (3, need))
    }
    current = {k: int(read_sysctl(k)) for k in limits}
    if not NEIGH_SAVED.exists():
        NEIGH_SAVED.write_text(json.dumps(current))
    raised = {k: str(v) for k, v in limits.items() if current[k] < v}
    if raised:
        sysctl(None, raised)


def restore_neighbour_tables() -> None:
    if NEIGH_SAVED.exists():
        saved = json.loads(NEIGH_SAVED.read_text())
        sysctl(None, {k: str(v) for k, v in saved.items()}, check=False)
        NEIGH_SAVED.unlink()


def read_sysctl(key: str) -> str:
    return Path("/proc/sys", *key.split(".")).read_text().strip()


def setup_root(dual: bool) -> None:
    """The bridges: kdbr0 (node and ingress links; the root netns' own addresses) and kdbr1
    (the secondary network, L2 only). Unassigned LoadBalancer pool addresses are unreachable
    (fail fast instead of following the machine's default route)."""
    br, sec = config.BRIDGE, config.SECONDARY_BRIDGE
    ip_batch([f"link add {br} type bridge", f"link add {sec} type bridge"])
    # The secondary bridge carries pod frames only: no IPv6 link-local chatter of its own.
    v6 = {f"net.ipv6.conf.{sec}.disable_ipv6": "1"}
    if dual:  # before the link is up, so the bridge never runs DAD
        v6 |= {f"net.ipv6.conf.{br}.disable_ipv6": "0", f"net.ipv6.conf.{br}.accept_dad": "0"}
    sysctl(None, v6)
    cmds = [
        f"addr add {_addr(config.BRIDGE_IP, config.BRIDGE_CIDR.prefixlen)} dev {br}",
        f"link set {br} up",
        f"link set {sec} up",
        f"route add unreachable {config.LB_POOL}",
    ]
    if dual:
        cmds += [
            f"addr add {_addr(config.BRIDGE_IP6, config.BRIDGE_CIDR6.prefixlen)} dev {br}",
            f"route add unreachable {config.LB_POOL6}",
        ]
    ip_batch(cmds)


def _attach(netns: str, root_veth: str, inner: str, bridge: str) -> None:
    """A veth from ``bridge`` in the root netns to ``inner`` in ``netns``."""
    tmp = f"{root_veth}p"
    ip_batch(
        [
            f"link add {root_veth} type veth peer name {tmp}",
            f"link set {tmp} netns {netns}",
            f"link set {root_veth} master {bridge}",
            f"link set {root_veth} up",
        ]
    )
    ip_batch([f"link set {tmp} name {inner}"], netns=netns)


def _bridge_member(
    netns: str, ips: list[str], routes_to: list[config.NodeInfo], root_veth: str
) -> None:
    """A netns on kdbr0 as eth0 with ``ips``, default routes to the root netns and direct routes
    to the pod CIDRs of ``routes_to``."""
    run(["ip", "netns", "add", netns])
    dual = any(is_v6(ip) for ip in ips)
    sysctl(netns, {"net.ipv4.conf.all.rp_filter": "0", "net.ipv4.conf.default.rp_filter": "0"})
    if dual:
        sysctl(netns, V6_SYSCTLS)
    _attach(netns, root_veth, "eth0", config.BRIDGE)
    prefix = {False: config.BRIDGE_CIDR.prefixlen, True: config.BRIDGE_CIDR6.prefixlen}
    cmds = [
        "link set lo up",
        *(f"addr add {_addr(ip, prefix[is_v6(ip)])} dev eth0" for ip in ips),
        "link set eth0 up",
        f"route add default via {config.BRIDGE_IP} dev eth0",
    ]
    if dual:
        cmds.append(f"route add default via {config.BRIDGE_IP6} dev eth0")
    for other in routes_to:
        cmds += [f"route add {c} via {_via(c, other.ips)} dev eth0" for c in other.pod_cidrs]
    ip_batch(cmds, netns=netns)


def setup_node(node: config.NodeInfo, all_nodes: list[config.NodeInfo]) -> None:
    others = [o for o in all_nodes if o.name != node.name]
    _bridge_member(node.netns, node.ips, others, node.root_veth)
    settings = {"net.ipv4.ip_forward": "1"}
    if node.dual:
        settings["net.ipv6.conf.all.forwarding"] = "1"
    sysctl(node.netns, settings)
    # The secondary network's uplink: eth1 in a node bridge sec0, where pods' net<k> join.
    _attach(node.netns, secondary_uplink(node), "eth1", config.SECONDARY_BRIDGE)
    sec = [
        "link add sec0 type bridge",
        "link set eth1 master sec0",
        "link set eth1 up",
        "link set sec0 up",
    ]
    ip_batch(sec, netns=node.netns)
    sysctl(node.netns, {"net.ipv6.conf.sec0.disable_ipv6": "1"}, check=False)
    # The root netns reaches this node's pods through it.
    ip_batch([f"route add {c} via {_via(c, node.ips)} dev {config.BRIDGE}" for c in node.pod_cidrs])


def secondary_uplink(node: config.NodeInfo) -> str:
    return f"{config.SECONDARY_VETH_PREFIX}{node.index}"


def setup_ingress(all_nodes: list[config.NodeInfo], dual: bool) -> None:
    """The ingress proxy's own netns, on the bridge like a node (no kube-proxy: nginx proxies
    to EndpointSlice pod IPs, as ingress-nginx does)."""
    ips = [config.INGRESS_IP, *([config.INGRESS_IP6] if dual else [])]
    _bridge_member(config.INGRESS_NETNS, ips, all_nodes, f"{config.NODE_VETH_PREFIX}0")


def setup_service_route(via: config.NodeInfo) -> None:
    """Root netns -> ClusterIPs: through one node, whose kube-proxy translates them."""
    cmds = [f"route replace {config.SERVICE_CIDR} via {via.ip} dev {config.BRIDGE}"]
    if via.dual:
        cmds.append(f"route replace {config.SERVICE_CIDR6} via {via.ip_of(6)} dev {config.BRIDGE}")
    ip_batch(cmds)


def _ours(name: str) -> bool:
    """Links the cluster makes in the root netns: kdbr0, kdbr1, kdn<i>[p], kdm<i>[p]."""
    if name in (config.BRIDGE, config.SECONDARY_BRIDGE):
        return True
    for prefix in (config.NODE_VETH_PREFIX, config.SECONDARY_VETH_PREFIX):
        if name.startswith(prefix) and name[len(prefix) :].rstrip("p").isdigit():
            return True
    return False


OWNED_NETS = [
    config.POD_CIDR,
    config.SERVICE_CIDR,
    config.LB_POOL,
    config.POD_CIDR6,
    config.SERVICE_CIDR6,
    config.LB_POOL6,
]


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
        if _ours(name):
            run(["ip", "link", "del", name], check=False)
            removed.append(f"link {name}")
    # Routes through the bridge vanish with it; the unreachable LB pool routes (and anything
    # else in our ranges) do not.
    for fam in ("-4", "-6"):
        routes = run(["ip", fam, "-j", "route", "show"], check=False).stdout or "[]"
        for r in json.loads(routes):
            dst = r.get("dst", "")
            with contextlib.suppress(ValueError, TypeError):
                net = ipaddress.ip_network(dst)
                mine = [o for o in OWNED_NETS if o.version == net.version]
                if r.get("dev") == config.BRIDGE or any(net.subnet_of(o) for o in mine):  # type: ignore[arg-type]
                    kind = [r["type"]] if r.get("type") not in (None, "unicast") else []
                    run(["ip", fam, "route", "del", *kind, dst], check=False)
                    removed.append(f"route {dst}")
    restore_neighbour_tables()
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


def _host_prefix(ip: str) -> int:
    return 128 if is_v6(ip) else 32


def setup_pod(uid: str, ips: list[str], gateways: list[str]) -> str:
    """Create the pod netns with ``ips`` on its eth0, routed via the current (node) netns.
    Must run inside the node netns. Returns the netns name."""
    ns = pod_netns_name(uid)
    veth = pod_veth_name(uid)
    run(["ip", "netns", "del", ns], check=False)
    run(["ip", "link", "del", veth], check=False)
    run(["ip", "netns", "add", ns])
    settings = {
        # As containerd 2.x does for every pod: unprivileged ICMP sockets and low ports.
        "net.ipv4.ping_group_range": "0 2147483647",
        "net.ipv4.ip_unprivileged_port_start": "0",
    }
    if any(is_v6(ip) for ip in ips):
        settings.update(V6_SYSCTLS)
    sysctl(ns, settings)
    node_cmds = [f"link add {veth} type veth peer name eth0 netns {ns}"]
    node_cmds += [f"addr add {_addr(gw, _host_prefix(gw))} dev {veth}" for gw in gateways]
    node_cmds += [f"link set {veth} up"]
    node_cmds += [f"route add {ip}/{_host_prefix(ip)} dev {veth}" for ip in ips]
    ip_batch(node_cmds)
    pod_cmds = ["link set lo up"]
    pod_cmds += [f"addr add {_addr(ip, _host_prefix(ip))} dev eth0" for ip in ips]
    pod_cmds += ["link set eth0 up"]
    for gw in gateways:
        pod_cmds += [f"route add {gw} dev eth0 scope link", f"route add default via {gw} dev eth0"]
    ip_batch(pod_cmds, netns=ns)
    return ns


def pod_mac(netns: str, ifname: str) -> str:
    out = run(["ip", "-n", netns, "-j", "link", "show", ifname]).stdout
    return str(json.loads(out)[0].get("address", ""))


def setup_secondary(
    uid: str, netns: str, index: int, ifname: str, cidrs: list[str], mac: str | None,
    routes: list[tuple[str, str | None]],
) -> str:  # fmt: skip
    """A multus-style secondary interface ``ifname`` in the pod netns with ``cidrs``
    (address/prefix), its node end in the node's secondary bridge sec0. Must run inside the
    node netns. ``routes`` = (destination, gateway or None). Returns the interface's MAC."""
    node_end = f"{config.SECONDARY_VETH_PREFIX}{uid.replace('-', '')[:10]}{index}"
    run(["ip", "link", "del", node_end], check=False)
    ip_batch(
        [
            f"link add {node_end} type veth peer name {ifname} netns {netns}",
            f"link set {node_end} master sec0",
            f"link set {node_end} up",
        ]
    )
    cmds = [f"link set {ifname} address {mac}"] if mac else []
    for cidr in cidrs:
        ip, prefix = cidr.split("/")
        cmds.append(f"addr add {_addr(ip, int(prefix))} dev {ifname}")
    cmds.append(f"link set {ifname} up")
    for dst, gw in routes:
        cmds.append(f"route add {dst}" + (f" via {gw}" if gw else "") + f" dev {ifname}")
    ip_batch(cmds, netns=netns)
    return pod_mac(netns, ifname)


def teardown_pod(uid: str) -> None:
    run(["ip", "netns", "del", pod_netns_name(uid)], check=False)
    run(["ip", "link", "del", pod_veth_name(uid)], check=False)
