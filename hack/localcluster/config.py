"""Addresses, ports, paths and the persisted state of the local cluster.

Everything the other modules need to agree on lives here. Dual stack (IPv4 first) unless
``hack/cluster up --ip-family ipv4``: every address-bearing field is a list (``ips``,
``pod_cidrs``) holding the IPv4 entry and then, on a dual-stack cluster, the IPv6 one.
"""

from __future__ import annotations

import ipaddress
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = REPO / ".venv" / "bin"
PYTHON = VENV_BIN / "python"

STATE_DIR = Path(os.environ.get("KDOCTOR_CLUSTER_DIR", "/tmp/kdoctor-cluster"))
LOCK_FILE = Path(str(STATE_DIR) + ".lock")

# Names of everything the cluster creates on the machine (down removes all with these).
NETNS_PREFIX = "kdc-"  # node netns: kdc-node-1; pod netns: kdc-p-<uid12>
BRIDGE = "kdbr0"
NODE_VETH_PREFIX = "kdn"  # root side of a node's link: kdn1, kdn2, ...; kdn0 = ingress
SECONDARY_BRIDGE = "kdbr1"  # the multus secondary network (L2 only, no address in the root)
SECONDARY_VETH_PREFIX = "kdm"  # root side of a node's secondary uplink: kdm1, kdm2, ...
POD_VETH_PREFIX = "kdv"  # node side of a pod's link: kdv<uid12>
# In the freezer hierarchy (cgroup v1); override to run a second cluster in other namespaces.
CGROUP_NAME = os.environ.get("KDOCTOR_CLUSTER_CGROUP", "kdoctor-cluster")
FAULT_TABLE = "kdfault"  # nft table (inet) in each node netns

BRIDGE_CIDR = ipaddress.ip_network("172.30.0.0/24")
BRIDGE_IP = "172.30.0.1"  # root netns address; the apiserver binds and advertises it
NODE_IP_OFFSET = 10  # node i = 172.30.0.(10+i)
POD_CIDR = ipaddress.ip_network("10.244.0.0/16")  # node i = 10.244.i.0/24
SERVICE_CIDR = ipaddress.ip_network("10.96.0.0/16")
KUBERNETES_SERVICE_IP = "10.96.0.1"
DNS_SERVICE_IP = "10.96.0.10"
# IPv6 (dual-stack clusters). Node i's addresses read like their IPv4 twins:
# 172.30.0.11 ~ fd00:172:30::11, 10.244.1.0/24 ~ fd00:10:244:1::/64.
BRIDGE_CIDR6 = ipaddress.ip_network("fd00:172:30::/64")
BRIDGE_IP6 = "fd00:172:30::1"
POD_CIDR6 = ipaddress.ip_network("fd00:10:244::/48")  # node i = fd00:10:244:i::/64
SERVICE_CIDR6 = ipaddress.ip_network("fd00:10:96::/112")
DNS_SERVICE_IP6 = "fd00:10:96::a"
IP_FAMILIES = ("ipv4", "dual")
DEFAULT_IP_FAMILY = "dual"
# LoadBalancer Services get addresses from these pools (the addons' LB controller); the root
# netns reaches each address through one node (a /32 or /128 route, MetalLB L2 style).
LB_POOL = ipaddress.ip_network("172.30.1.0/24")
LB_POOL6 = ipaddress.ip_network("fd00:172:30:1::/112")
LB_CLASS = "kdoctor.io/test-lb"  # also serves Services without spec.loadBalancerClass
# Ingress: nginx in its own netns on the bridge, configured by the addons' controller.
INGRESS_NETNS = f"{NETNS_PREFIX}ingress"
INGRESS_IP = "172.30.0.5"
INGRESS_IP6 = "fd00:172:30::5"
INGRESS_CLASS = "kdoctor-nginx"
INGRESS_CONTROLLER = "kdoctor.io/test-ingress-nginx"
# Multus: the NetworkAttachmentDefinition CRD, and a secondary L2 network spanning the nodes.
MULTUS_DEFAULT_NETWORK = "kdoctor-sim"  # name of the eth0 entry in network-status
SECONDARY_POOL = ipaddress.ip_network("192.168.50.0/24")  # when a NAD gives no IPAM range
DEFAULT_NAD = "kdoctor-secondary"  # in namespace default; whereabouts over SECONDARY_POOL
ADDONS_USER = "kdoctor:cluster-addons"  # LB and ingress controllers, health checks
CLUSTER_DOMAIN = "cluster.local"
NODE_PORT_RANGE = "30000-32767"

API_PORT = int(os.environ.get("KDOCTOR_CLUSTER_API_PORT", "6443"))
ETCD_CLIENT_PORT = int(os.environ.get("KDOCTOR_CLUSTER_ETCD_PORT", "23790"))
ETCD_PEER_PORT = ETCD_CLIENT_PORT + 10
KCM_PORT = 10257
SCHEDULER_PORT = 10259
KUBELET_PORT = 10250  # the node agent, in each node netns, on the node IP
KUBE_PROXY_HEALTHZ_PORT = 10256  # in each node netns
PROXY_MODE = os.environ.get("KDOCTOR_CLUSTER_PROXY_MODE", "iptables")  # or nftables

ADMIN_CONTEXT = "kdoctor-admin"
RESTRICTED_CONTEXT = "kdoctor-restricted"
RESTRICTED_USER = "kdoctor-restricted"
ADMIN_USER = "kubernetes-admin"
CLI_CONTEXT = "kdoctor-cli"  # a second admin (system:masters) whose requests stand apart
CLI_USER = "kdoctor-cli"
RBAC_NAMESPACE = "kdoctor-rbac"
TEST_NAMESPACE = "kdoctor-test"

COREDNS_VERSION = "v1.15.0"  # tools/coredns-bin/go.mod; the image tag the Deployment names


def node_name(index: int) -> str:
    return f"node-{index}"


@dataclass
class NodeInfo:
    """One simulated node: its netns, link and addresses."""

    name: str
    index: int
    netns: str
    ips: list[str]
    pod_cidrs: list[str]
    root_veth: str

    @property
    def ip(self) -> str:
        return self.ips[0]

    @property
    def pod_cidr(self) -> str:
        return self.pod_cidrs[0]

    @property
    def dir(self) -> Path:
        return STATE_DIR / "nodes" / self.name

    @property
    def dual(self) -> bool:
        return len(self.ips) > 1

    def ip_of(self, family: int) -> str | None:
        """The node's address of IP version ``family`` (4 or 6), if it has one."""
        return next((ip for ip in self.ips if ipaddress.ip_address(ip).version == family), None)

    @classmethod
    def make(cls, index: int, dual: bool = False) -> NodeInfo:
        ip = str(BRIDGE_CIDR.network_address + NODE_IP_OFFSET + index)
        pod_cidr = str(POD_CIDR.network_address + (index << 8)) + "/24"
        ips, cidrs = [ip], [pod_cidr]
        if dual:
            ips.append(node_ip6(index))
            cidrs.append(pod_cidr6(index))
        return cls(
            name=node_name(index),
            index=index,
            netns=f"{NETNS_PREFIX}{node_name(index)}",
            ips=ips,
            pod_cidrs=cidrs,
            root_veth=f"{NODE_VETH_PREFIX}{index}",
        )


def _hexlike(n: int) -> int:
    """12 -> 0x12: IPv6 groups that read like the IPv4 twin's decimal number."""
    return int(str(n), 16)


def node_ip6(index: int) -> str:
    return str(BRIDGE_CIDR6.network_address + _hexlike(NODE_IP_OFFSET + index))


def pod_cidr6(index: int) -> str:
    return str(ipaddress.ip_network((int(POD_CIDR6.network_address) + (_hexlike(index) << 64), 64)))


@dataclass
class ClusterState:
    """What `up` made; persisted as state.json so `down`, `status` and the faults find it."""

    bin_dir: str
    nodes: list[NodeInfo]
    kubeconfig: str
    api_server: str
    started_at: float
    ready_at: float = 0.0
    faults: dict[str, Any] = field(default_factory=dict)
    ip_family: str = "ipv4"  # "dual" on dual-stack clusters (states older than it: ipv4)
    addons: bool = False  # LB + ingress controllers, nginx, multus (states older: none)

    @property
    def dual(self) -> bool:
        return self.ip_family == "dual"

    @property
    def node_names(self) -> list[str]:
        return [n.name for n in self.nodes]

    def node(self, name: str) -> NodeInfo:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(f"no node {name!r} in this cluster (nodes: {', '.join(self.node_names)})")

    def save(self) -> None:
        path = STATE_DIR / "state.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2))
        tmp.replace(path)

    @classmethod
    def load(cls) -> ClusterState | None:
        path = STATE_DIR / "state.json"
        try:
            data = json.loads(path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None
        data["nodes"] = [NodeInfo(**n) for n in data["nodes"]]
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})


def kubeconfig_path() -> Path:
    return STATE_DIR / "kubeconfig"
