"""Names, addresses and paths of the real node, kept apart from the local cluster's own.

The real node is one more node of the local cluster (hack/localcluster): a network namespace
on the cluster's bridge, like the simulated nodes, but running the real kubelet, containerd
(Debian's 1.6), runc and the CNI ptp plugin instead of the Python node agent.

Everything it makes on the machine has a name of its own, so the cluster's ``down`` never
confuses it with its nodes and ``hack/realnode/node down`` finds all of it again:

| what                       | name / path                                                  |
|----------------------------|--------------------------------------------------------------|
| node network namespace     | /run/netns/kdr-<node>                                        |
| root side of its veth      | kdr<index> (on the cluster bridge kdbr0)                     |
| mount namespace            | <state>/ns/mnt (containerd, shims, kubelet and the pods)     |
| cgroups (every v1 hierarchy)| /kdoctor-realnode (kubelet's cgroupRoot; daemons in freezer) |
| state (certs, configs, containerd root, kubelet root, logs) | /tmp/kdoctor-realnode     |
| build cache (kubelet, rootfs, images) | ~/.cache/kubectl-kdoctor/{bin,realnode}            |
"""

from __future__ import annotations

import ipaddress
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hack.localcluster import config as cluster_config

REPO = cluster_config.REPO
HERE = Path(__file__).resolve().parent

STATE_DIR = Path(os.environ.get("KDOCTOR_REALNODE_DIR", "/tmp/kdoctor-realnode"))
LOCK_FILE = Path(str(STATE_DIR) + ".lock")
USERS_DIR = Path(str(STATE_DIR) + ".users")  # one file per test session (pid) using the node
CACHE_DIR = Path(
    os.environ.get(
        "KDOCTOR_REALNODE_CACHE", Path.home() / ".cache" / "kubectl-kdoctor" / "realnode"
    )
)

NODE_NAME = os.environ.get("KDOCTOR_REALNODE_NAME", "real-1")
# 172.30.0.50 and 10.244.50.0/24 belong to simulated node 40 (node i = 172.30.0.(10+i),
# pods 10.244.i.0/24): free unless the cluster runs 40+ nodes, which ``up`` refuses to
# collide with (it checks every Node's addresses and pod CIDRs first).
NODE_INDEX = int(os.environ.get("KDOCTOR_REALNODE_INDEX", "50"))

NETNS_PREFIX = "kdr-"
ROOT_VETH_PREFIX = "kdr"
CGROUP_NAME = "kdoctor-realnode"
TAINT_KEY = "kdoctor.io/real-node"  # NoSchedule: only pods that tolerate it land here
LABEL_KEY = "kdoctor.io/real-node"

PAUSE_IMAGE = "localhost/kdoctor-realnode/pause:1"
AGENT_REPOSITORY = "ghcr.io/kubectl-kdoctor/agent"  # == kubectl_kdoctor.images

KUBELET_PORT = 10250
KUBELET_HEALTHZ_PORT = 10248  # on 127.0.0.1 in the node netns
KUBE_PROXY_HEALTHZ_PORT = 10256

# Host sysctls the kubelet insists on (container_manager_linux.go setupKernelTunables);
# `up` records the old values and `down` puts them back.
KUBELET_SYSCTLS = {
    "vm/overcommit_memory": "1",
    "vm/panic_on_oom": "0",
    "kernel/panic": "10",
    "kernel/panic_on_oops": "1",
    "kernel/keys/root_maxkeys": "1000000",
    "kernel/keys/root_maxbytes": "25000000",
}

# Paths the daemons insist on (hard-coded in containerd 1.6, libcni and the kubelet: pod
# netns bind mounts, shim sockets, CNI result cache, device-plugin socket, the
# /var/log/containers symlinks): each gets a tmpfs of its own inside the node's mount
# namespace, so nothing lands on the host's file systems.
PRIVATE_TMPFS = (
    "/run/netns",
    "/run/containerd",
    "/var/lib/cni",
    "/var/lib/kubelet",
    "/var/log/containers",
)


@dataclass
class RealNode:
    name: str
    index: int
    ips: list[str]
    pod_cidrs: list[str]

    @property
    def ip(self) -> str:
        return self.ips[0]

    @property
    def pod_cidr(self) -> str:
        return self.pod_cidrs[0]

    @property
    def netns(self) -> str:
        return f"{NETNS_PREFIX}{self.name}"

    @property
    def root_veth(self) -> str:
        return f"{ROOT_VETH_PREFIX}{self.index}"

    @property
    def dual(self) -> bool:
        return len(self.ips) > 1

    @staticmethod
    def gateway(cidr: str) -> str:
        """The pods' gateway in ``cidr``: its first address (the node side of each pod veth)."""
        return str(ipaddress.ip_network(cidr).network_address + 1)

    @classmethod
    def make(cls, name: str = NODE_NAME, index: int = NODE_INDEX, dual: bool = False) -> RealNode:
        """Addresses like a simulated node's with host number ``index`` (172.30.0.<index>,
        10.244.<index>.0/24 and, dual stack, fd00:172:30::<index>, fd00:10:244:<index>::/64:
        the IPv6 groups read like the IPv4 numbers, as hack/localcluster does)."""
        cc = cluster_config
        ips = [str(cc.BRIDGE_CIDR.network_address + index)]
        cidrs = [f"{cc.POD_CIDR.network_address + (index << 8)}/24"]
        if dual:
            hexlike = int(str(index), 16)
            ips.append(str(cc.BRIDGE_CIDR6.network_address + hexlike))
            cidrs.append(
                str(ipaddress.ip_network((int(cc.POD_CIDR6.network_address) + (hexlike << 64), 64)))
            )
        return cls(name=name, index=index, ips=ips, pod_cidrs=cidrs)


# --- paths under the state dir ----------------------------------------------------------------


def path(*parts: str) -> Path:
    return STATE_DIR.joinpath(*parts)


def mount_ns_file() -> Path:
    return path("ns", "mnt")


def containerd_socket() -> Path:
    return path("containerd", "containerd.sock")


def log_file(name: str) -> Path:
    return path("logs", f"{name}.log")


@dataclass
class State:
    """What ``up`` made, persisted so ``down`` (in any process) can undo exactly that."""

    node: RealNode
    route_netns: list[str]  # netns (simulated nodes, ingress) that got routes to our pods
    sysctls: dict[str, str] = field(default_factory=dict)  # original host values
    created_dirs: list[str] = field(default_factory=list)  # host dirs made for tmpfs mounts
    agent_image: str = ""
    timings: dict[str, float] = field(default_factory=dict)
    ca_sha: str = ""  # the cluster CA the node's certs are signed with (a new cluster = a new CA)
    started_by: str = "cli"  # "tests": the last test session using it takes it down

    def save(self) -> None:
        STATE_DIR.mkdir(parents=True, exist_ok=True)
        p = path("state.json")
        tmp = p.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2))
        tmp.replace(p)

    @classmethod
    def load(cls) -> State | None:
        try:
            data: dict[str, Any] = json.loads(path("state.json").read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None
        data["node"] = RealNode(**data["node"])
        data.setdefault("route_netns", data.pop("cluster_nodes", []))  # older states
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})
