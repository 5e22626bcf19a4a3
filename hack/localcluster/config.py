"""Addresses, ports, paths and the persisted state of the local cluster.

Everything the other modules need to agree on lives here. IPv4 only for now, but every
address-bearing field is a list (``ips``, ``pod_cidrs``) so a dual-stack change adds the IPv6
entries instead of new fields.
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
NODE_VETH_PREFIX = "kdn"  # root side of a node's link: kdn1, kdn2, ...
POD_VETH_PREFIX = "kdv"  # node side of a pod's link: kdv<uid12>
CGROUP_NAME = "kdoctor-cluster"  # in the freezer hierarchy (cgroup v1)
FAULT_TABLE = "kdfault"  # nft table (inet) in each node netns

BRIDGE_CIDR = ipaddress.ip_network("172.30.0.0/24")
BRIDGE_IP = "172.30.0.1"  # root netns address; the apiserver binds and advertises it
NODE_IP_OFFSET = 10  # node i = 172.30.0.(10+i)
POD_CIDR = ipaddress.ip_network("10.244.0.0/16")  # node i = 10.244.i.0/24
SERVICE_CIDR = ipaddress.ip_network("10.96.0.0/16")
KUBERNETES_SERVICE_IP = "10.96.0.1"
DNS_SERVICE_IP = "10.96.0.10"
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

    @classmethod
    def make(cls, index: int) -> NodeInfo:
        bridge_hosts = list(BRIDGE_CIDR.hosts())
        ip = str(bridge_hosts[NODE_IP_OFFSET + index - 1])
        subnets = list(POD_CIDR.subnets(new_prefix=24))
        return cls(
            name=node_name(index),
            index=index,
            netns=f"{NETNS_PREFIX}{node_name(index)}",
            ips=[ip],
            pod_cidrs=[str(subnets[index])],
            root_veth=f"{NODE_VETH_PREFIX}{index}",
        )


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
        return cls(**data)


def kubeconfig_path() -> Path:
    return STATE_DIR / "kubeconfig"
