"""Bring the real node up on the running local cluster, and take it down again.

    root netns   kdbr0 172.30.0.1/24 --- kdr50 ==veth== eth0 172.30.0.50   netns kdr-real-1
    netns kdr-real-1 (+ a mount namespace of its own):
      containerd 1.6 (CRI) -> containerd-shim-runc-v2 -> runc    pods: CNI ptp, 10.244.50.0/24
      kubelet  :10250 on 172.30.0.50 (serving cert signed by the cluster CA)
      kube-proxy (iptables/nftables like the simulated nodes)

Routes: the root netns and every simulated node route 10.244.50.0/24 via 172.30.0.50; the
real node routes each simulated node's pod CIDR via that node's address (as the simulated
nodes do among themselves), and everything else via 172.30.0.1.

Isolation and cleanup: containerd, its shims, the kubelet and so the pods share one mount
namespace (persisted at <state>/ns/mnt) with private tmpfs mounts on /run/netns,
/run/containerd and /var/lib/cni; overlay snapshots, volume tmpfs mounts and pod netns bind
mounts live only there and vanish with it. Every process is in the freezer cgroup
/kdoctor-realnode (the daemons in .../daemons, the pods under the kubelet's cgroupRoot, the
same /kdoctor-realnode), so ``down`` freezes, kills and removes all of it race-free.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import ipaddress
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import yaml

from hack.localcluster import config as cc
from hack.localcluster import pki as cpki
from hack.localcluster.kube import ApiError, Kube
from hack.localcluster.util import (
    ClusterError,
    pid_alive,
    proc_start_time,
    pss_kib,
    run,
    tail,
    wait_for,
)
from hack.realnode import config, image
from hack.realnode.config import RealNode, State

SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
CNI_BIN_DIR = "/usr/lib/cni"  # Debian's containernetworking-plugins
CRB_NAME = "kdoctor-realnode:apiserver-kubelet-api"  # lets the apiserver use the kubelet API


def log(msg: str) -> None:
    image.log(msg)


@contextlib.contextmanager
def locked() -> Iterator[None]:
    config.LOCK_FILE.parent.mkdir(parents=True, exist_ok=True)
    with config.LOCK_FILE.open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def admin() -> Kube:
    return Kube(cc.kubeconfig_path(), context=cc.ADMIN_CONTEXT)


# --- processes -------------------------------------------------------------------------------


def freezer(group: str | None = None) -> Path:
    base = Path("/sys/fs/cgroup/freezer") / config.CGROUP_NAME
    return base / group if group else base


def cgroup_roots() -> list[Path]:
    """Every cgroup hierarchy mounted under /sys/fs/cgroup (v1 ones and the hybrid v2)."""
    out = []
    for d in sorted(Path("/sys/fs/cgroup").iterdir()):
        if (d / "cgroup.procs").exists() and not d.is_symlink():
            out.append(d)
    return out


def all_pids() -> list[int]:
    pids: list[int] = []
    root = freezer()
    if root.exists():
        for procs in root.rglob("cgroup.procs"):
            with contextlib.suppress(OSError):
                pids += [int(p) for p in procs.read_text().split()]
    return pids


def in_node(argv: Sequence[str], node: RealNode, mount: bool = True) -> list[str]:
    ns = ["nsenter", f"--net=/run/netns/{node.netns}"]
    if mount:
        ns.append(f"--mount={config.mount_ns_file()}")
    return [*ns, "--", *argv]


def spawn(name: str, argv: Sequence[str], node: RealNode, env: dict[str, str]) -> int:
    """Start a daemon in the node's netns and mount namespace, in the freezer cgroup, output
    in logs/<name>.log, pid recorded in pids/<name>."""
    config.path("logs").mkdir(parents=True, exist_ok=True)
    config.path("pids").mkdir(parents=True, exist_ok=True)
    cg = freezer("daemons")
    cg.mkdir(parents=True, exist_ok=True)
    full = ["sh", "-c", f'echo $$ > {cg}/cgroup.procs && exec "$@"', "sh", *in_node(argv, node)]
    with config.log_file(name).open("ab") as out:
        proc = subprocess.Popen(
            full,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
            close_fds=True,
        )
    start = None
    for _ in range(100):
        start = proc_start_time(proc.pid)
        if start is not None:
            break
        time.sleep(0.01)
    config.path("pids", name).write_text(f"{proc.pid} {start or 0}\n")
    return proc.pid


def recorded(name: str) -> tuple[int, int] | None:
    try:
        pid, start = config.path("pids", name).read_text().split()
    except (FileNotFoundError, ValueError):
        return None
    return int(pid), int(start)


def alive(name: str) -> bool:
    rec = recorded(name)
    return rec is not None and pid_alive(rec[0], rec[1] or None)


def _wait(name: str, what: str, probe: Any, timeout: float) -> None:
    def check() -> bool:
        if not alive(name):
            raise ClusterError(f"{name} exited\n{tail(config.log_file(name), 40)}")
        return bool(probe())

    wait_for(what, check, timeout, interval=0.5, on_timeout=lambda: tail(config.log_file(name), 40))


# --- PKI -------------------------------------------------------------------------------------


def _openssl(args: list[str]) -> None:
    run(["openssl", *args])


def make_certs(node: RealNode) -> dict[str, cpki.Cert]:
    """The kubelet's client cert (system:node:<name> in system:nodes) and serving cert (IP SAN
    = node IP), both signed by the cluster CA, so the apiserver (--kubelet-certificate-
    authority) verifies the kubelet and the Node authorizer knows it."""
    ca = cpki.ClusterPKI.paths().ca
    d = config.path("pki")
    d.mkdir(parents=True, exist_ok=True)
    out = {}
    for kind, server in (("client", False), ("serving", True)):
        cert = cpki.Cert(d / f"kubelet-{kind}.crt", d / f"kubelet-{kind}.key")
        _openssl(["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
                  "-out", str(cert.key)])  # fmt: skip
        cert.key.chmod(0o600)
        csr = d / f"kubelet-{kind}.csr"
        _openssl(["req", "-new", "-key", str(cert.key), "-out", str(csr),
                  "-subj", f"/O=system:nodes/CN=system:node:{node.name}"])  # fmt: skip
        ext = [
            "basicConstraints=critical,CA:FALSE",
            "keyUsage=critical,digitalSignature,keyEncipherment",
            f"extendedKeyUsage={'serverAuth' if server else 'clientAuth'}",
        ]
        if server:
            ext.append(
                f"subjectAltName={','.join([f'IP:{ip}' for ip in node.ips])},DNS:{node.name}"
            )
        extfile = d / f"kubelet-{kind}.ext"
        extfile.write_text("\n".join(ext) + "\n")
        _openssl(["x509", "-req", "-in", str(csr), "-CA", str(ca.crt), "-CAkey", str(ca.key),
                  "-CAserial", str(d / "ca.srl"), "-CAcreateserial", "-out", str(cert.crt),
                  "-days", "365", "-sha256", "-extfile", str(extfile)])  # fmt: skip
        csr.unlink()
        extfile.unlink()
        out[kind] = cert
    return out


# --- host settings --------------------------------------------------------------------------


def read_sysctls() -> dict[str, str]:
    return {k: Path("/proc/sys", k).read_text().strip() for k in config.KUBELET_SYSCTLS}


def restore_sysctls(saved: dict[str, str]) -> None:
    for k, v in saved.items():
        with contextlib.suppress(OSError):
            Path("/proc/sys", k).write_text(v)


def make_cgroups() -> None:
    """/kdoctor-realnode in every hierarchy: the kubelet's cgroupRoot must exist. cpuset
    children start empty in v1, so copy the root's cpus and mems."""
    for root in cgroup_roots():
        d = root / config.CGROUP_NAME
        d.mkdir(exist_ok=True)
        if root.name == "cpuset":
            for f in ("cpuset.cpus", "cpuset.mems"):
                (d / f).write_text((root / f).read_text())


def remove_cgroups() -> list[str]:
    left = []
    for root in cgroup_roots():
        top = root / config.CGROUP_NAME
        if not top.exists():
            continue
        dirs = sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts))
        for d in [*dirs, top]:
            for _ in range(50):
                try:
                    d.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.1)
            if d.exists():
                left.append(str(d))
    return left


# --- network ---------------------------------------------------------------------------------


def _ip(cmds: list[str], netns: str | None = None, check: bool = True) -> None:
    argv = ["ip", *(["-n", netns] if netns else []), "-batch", "-"]
    run(argv, input="\n".join(cmds) + "\n", check=check)


def _v6(addr: str) -> bool:
    return ":" in addr


def _fam(addr: str) -> str:
    return "-6" if _v6(addr) else "-4"


def _via(cidr: str, gateways: list[str]) -> str | None:
    """The address of ``cidr``'s family among ``gateways`` (None: that family is missing)."""
    return next((g for g in gateways if _v6(g) == _v6(cidr)), None)


def check_free(node: RealNode, kube: Kube) -> None:
    """Refuse addresses a Node, a route or a live host already has."""
    mine = [ipaddress.ip_network(c) for c in node.pod_cidrs]

    def overlaps(c: str) -> bool:
        net = ipaddress.ip_network(c)
        return any(net.version == m.version and net.overlaps(m) for m in mine)

    for n in kube.get("/api/v1/nodes")["items"]:
        if n["metadata"]["name"] == node.name:
            continue
        addrs = {a["address"] for a in (n.get("status", {}).get("addresses") or [])}
        cidrs = n.get("spec", {}).get("podCIDRs") or []
        if set(node.ips) & addrs or any(overlaps(c) for c in cidrs):
            raise ClusterError(
                f"node {n['metadata']['name']} already uses {node.ips} or {node.pod_cidrs}; "
                "set KDOCTOR_REALNODE_INDEX to a free host number"
            )
    whole = {ipaddress.ip_network(cc.POD_CIDR), ipaddress.ip_network(cc.POD_CIDR6)}
    for fam in ("-4", "-6"):
        for r in json.loads(run(["ip", fam, "-j", "route", "show"]).stdout or "[]"):
            dst = r.get("dst", "")
            with contextlib.suppress(ValueError):
                if (
                    dst
                    and dst != "default"
                    and ipaddress.ip_network(dst) not in whole
                    and overlaps(dst)
                ):
                    raise ClusterError(f"the root netns already routes {dst} (overlaps {mine})")
    for ip in node.ips:
        if run(["ping", "-c", "1", "-W", "1", ip], check=False).returncode == 0:
            raise ClusterError(f"{ip} answers ping: something on the bridge already has it")


def _sim_routes(node: RealNode, sims: list[cc.NodeInfo]) -> list[tuple[str, str]]:
    """(pod CIDR, via) to each simulated node's pods, for the families the real node has."""
    out = []
    for s in sims:
        for c in s.pod_cidrs:
            via = _via(c, s.ips)
            if via and _via(c, node.ips):
                out.append((c, via))
    return out


V6_SYSCTLS = [
    "net.ipv6.conf.all.disable_ipv6=0",
    "net.ipv6.conf.default.disable_ipv6=0",
    "net.ipv6.conf.all.accept_dad=0",
    "net.ipv6.conf.default.accept_dad=0",
    "net.ipv6.conf.all.accept_ra=0",
    "net.ipv6.conf.default.accept_ra=0",
    "net.ipv6.conf.all.forwarding=1",
]


def setup_network(node: RealNode, sims: list[cc.NodeInfo]) -> None:
    """The node's netns on kdbr0 (as hack/localcluster's nodes), and the routes to and from
    its pod CIDRs. IPv6 (dual-stack clusters) without duplicate address detection."""
    tmp = f"{node.root_veth}p"
    run(["ip", "netns", "add", node.netns])
    settings = ["net.ipv4.ip_forward=1", "net.ipv4.conf.all.rp_filter=0",
                "net.ipv4.conf.default.rp_filter=0"]  # fmt: skip
    if node.dual:
        settings += V6_SYSCTLS  # before any link is up
    run(["sysctl", "-q", "-w", *settings], netns=node.netns)
    _ip([
        f"link add {node.root_veth} type veth peer name {tmp}",
        f"link set {tmp} netns {node.netns}",
        f"link set {node.root_veth} master {cc.BRIDGE}",
        f"link set {node.root_veth} up",
    ])  # fmt: skip
    cmds = ["link set lo up", f"link set {tmp} name eth0"]
    for ip in node.ips:
        if _v6(ip):
            cmds.append(f"addr add {ip}/{cc.BRIDGE_CIDR6.prefixlen} nodad dev eth0")
        else:
            cmds.append(f"addr add {ip}/{cc.BRIDGE_CIDR.prefixlen} dev eth0")
    cmds += ["link set eth0 up", f"route add default via {cc.BRIDGE_IP} dev eth0"]
    if node.dual:
        cmds.append(f"route add default via {cc.BRIDGE_IP6} dev eth0")
    cmds += [f"route add {c} via {via} dev eth0" for c, via in _sim_routes(node, sims)]
    _ip(cmds, netns=node.netns)
    _ip([f"route replace {c} via {_via(c, node.ips)} dev {cc.BRIDGE}" for c in node.pod_cidrs])
    # Every simulated node, and the ingress proxy's netns (nginx proxies to pod IPs), reach
    # our pods directly over the bridge, as they reach each other's.
    forget_neighbours(node, route_netns(sims))
    for ns in route_netns(sims):
        fams = _global_families(ns)
        cmds = [f"route replace {c} via {_via(c, node.ips)} dev eth0" for c in node.pod_cidrs
                if ("inet6" if _v6(c) else "inet") in fams]  # fmt: skip
        _ip(cmds, netns=ns)


def forget_neighbours(node: RealNode, netns: list[str]) -> None:
    """Drop the ARP/NDP entries for the node's addresses (root netns and ``netns``): a real
    node brought up again on a reused cluster has a new MAC, and an entry left FAILED for its
    old one kept the ingress proxy's replies to it from going out (IPv6: every other run)."""
    for ip in node.ips:
        run(["ip", "neigh", "flush", "to", ip, "dev", cc.BRIDGE], check=False)
        for ns in netns:
            run(["ip", "-n", ns, "neigh", "flush", "to", ip, "dev", "eth0"], check=False)


def _global_families(netns: str) -> set[str]:
    """Families ("inet", "inet6") with a global address on ``netns``'s eth0."""
    out = run(["ip", "-n", netns, "-j", "addr", "show", "dev", "eth0"], check=False).stdout
    return {
        a["family"]
        for link in json.loads(out or "[]")
        for a in link.get("addr_info", [])
        if a.get("scope") == "global"
    }


def route_netns(sims: list[cc.NodeInfo]) -> list[str]:
    out = [s.netns for s in sims]
    ingress = getattr(cc, "INGRESS_NETNS", None)
    if ingress and Path("/run/netns", ingress).exists():
        out.append(ingress)
    return out


def teardown_network(state: State | None, node: RealNode) -> None:
    sims = state.route_netns if state else []
    existing = set(os.listdir("/run/netns")) if Path("/run/netns").is_dir() else set()
    for ns in sims:
        if ns in existing:
            for c in node.pod_cidrs:
                run(["ip", _fam(c), "-n", ns, "route", "del", c], check=False)
    for c in node.pod_cidrs:
        routes = json.loads(
            run(["ip", _fam(c), "-j", "route", "show", c], check=False).stdout or "[]"
        )
        if routes:
            run(["ip", _fam(c), "route", "del", c], check=False)
    if node.netns in existing:
        run(["ip", "netns", "del", node.netns], check=False)
    run(["ip", "link", "del", node.root_veth], check=False)
    forget_neighbours(node, [ns for ns in sims if ns in existing])


# --- mount namespace ------------------------------------------------------------------------


def make_mount_ns(state: State) -> None:
    nsdir = config.path("ns")
    nsdir.mkdir(parents=True, exist_ok=True)
    # The file that keeps the namespace must sit on a private mount.
    run(["mount", "--bind", str(nsdir), str(nsdir)])
    run(["mount", "--make-private", str(nsdir)])
    config.mount_ns_file().touch()
    for d in config.PRIVATE_TMPFS:
        if not Path(d).exists():
            Path(d).mkdir(parents=True)
            state.created_dirs.append(d)
    state.save()
    script = "set -e\n" + "\n".join(
        f"mount -t tmpfs -o mode=0755,size=64m kdoctor-realnode {d}" for d in config.PRIVATE_TMPFS
    )
    # cadvisor (inside the kubelet) looks for containerd at its default socket only.
    script += f"\nln -s {config.containerd_socket()} /run/containerd/containerd.sock"
    run(["unshare", f"--mount={config.mount_ns_file()}", "--propagation", "slave",
         "sh", "-c", script])  # fmt: skip


def remove_mount_ns() -> None:
    nsdir = config.path("ns")
    f = config.mount_ns_file()
    for p in (f, nsdir):
        for _ in range(3):
            if run(["umount", str(p)], check=False).returncode != 0:
                break
    with contextlib.suppress(OSError):
        f.unlink()


def our_mounts() -> list[str]:
    """Mounts in the root mount namespace under the state dir (should be none after down)."""
    out = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        mp = line.split()[4]
        if mp.startswith(str(config.STATE_DIR)):
            out.append(mp)
    return out


# --- containerd -------------------------------------------------------------------------------


def containerd_config(node: RealNode) -> Path:
    d = config.path("containerd")
    cri = 'plugins."io.containerd.grpc.v1.cri"'
    toml = f"""\
version = 2
root = "{d / "root"}"
state = "{d / "state"}"
oom_score = 0
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs",
  "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = "{config.containerd_socket()}"

[ttrpc]
  address = "{config.containerd_socket()}.ttrpc"

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "{d / "opt"}"

[{cri}]
  sandbox_image = "{config.PAUSE_IMAGE}"
  # no CAP_SYS_RESOURCE on this machine: negative oom_score_adj (pause -998, Guaranteed
  # pods -997) would make runc fail; clamp to our own score instead
  restrict_oom_score_adj = true
  disable_apparmor = true
  enable_selinux = false
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_unprivileged_ports = true
  enable_unprivileged_icmp = true

[{cri}.containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"

[{cri}.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

[{cri}.containerd.runtimes.runc.options]
  SystemdCgroup = false
  BinaryName = "/usr/sbin/runc"
  Root = "{d / "runc"}"

[{cri}.cni]
  bin_dir = "{CNI_BIN_DIR}"
  conf_dir = "{config.path("cni", "net.d")}"
  max_conf_num = 1
"""
    d.mkdir(parents=True, exist_ok=True)
    path = d / "config.toml"
    path.write_text(toml)
    return path


def cni_config(node: RealNode) -> None:
    """CNI ptp: each pod a veth to the node netns with a /32 route there, routed like the
    simulated nodes' pods (no bridge, no masquerade: pod IPs are seen as they are)."""
    d = config.path("cni", "net.d")
    d.mkdir(parents=True, exist_ok=True)
    conf = {
        "cniVersion": "0.4.0",
        "name": "kdoctor-realnode",
        "plugins": [
            {
                "type": "ptp",
                "ipMasq": False,
                "mtu": 1500,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": c, "gateway": node.gateway(c)}] for c in node.pod_cidrs],
                    "routes": [{"dst": "::/0" if _v6(c) else "0.0.0.0/0"} for c in node.pod_cidrs],
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }
    (d / "10-kdoctor-realnode.conflist").write_text(json.dumps(conf, indent=2))


def ctr(node: RealNode, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return run(
        in_node(["ctr", f"--address={config.containerd_socket()}", "-n", "k8s.io", *args], node),
        timeout=timeout,
    )


def start_containerd(node: RealNode) -> None:
    cfg = containerd_config(node)
    cni_config(node)
    spawn("containerd", ["containerd", f"--config={cfg}"], node, {"PATH": SYSTEM_PATH})

    def ready() -> bool:
        return ctr(node, "version", timeout=5).returncode == 0

    _wait("containerd", "containerd to answer", ready, 60)


def import_images(node: RealNode, images: list[image.Image]) -> None:
    for img in images:
        ctr(node, "images", "import", "--no-unpack=false", str(img.archive), timeout=600)
        listed = ctr(node, "images", "ls", "-q").stdout.split()
        if img.ref not in listed:
            raise ClusterError(f"{img.ref} not in containerd after import: {listed}")


# --- kubelet -----------------------------------------------------------------------------------


def build_kubelet() -> Path:
    proc = subprocess.run([str(config.HERE / "build")], capture_output=True, text=True,
                          check=False, timeout=3600)  # fmt: skip
    if proc.returncode != 0:
        raise ClusterError(f"hack/realnode/build failed:\n{proc.stderr[-3000:]}")
    return Path(proc.stdout.strip().splitlines()[-1]) / "kubelet"


def kubelet_config(node: RealNode, certs: dict[str, cpki.Cert]) -> Path:
    ca = cpki.ClusterPKI.paths().ca
    sock = f"unix://{config.containerd_socket()}"
    cfg = {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": node.ip,
        "port": config.KUBELET_PORT,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": config.KUBELET_HEALTHZ_PORT,
        "tlsCertFile": str(certs["serving"].crt),
        "tlsPrivateKeyFile": str(certs["serving"].key),
        "serverTLSBootstrap": False,
        "rotateCertificates": False,
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(ca.crt)},
        },
        "authorization": {"mode": "Webhook"},
        "containerRuntimeEndpoint": sock,
        "imageServiceEndpoint": sock,
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": f"/{config.CGROUP_NAME}",
        "cgroupsPerQOS": True,
        "failCgroupV1": False,  # this VM is on cgroup v1 (kubelet >= 1.35 refuses by default)
        "failSwapOn": False,
        "oomScoreAdj": 0,  # no CAP_SYS_RESOURCE: -999 cannot be set
        "clusterDNS": [cc.DNS_SERVICE_IP],
        "clusterDomain": cc.CLUSTER_DOMAIN,
        "resolvConf": "/etc/resolv.conf",
        "podLogsDir": str(config.path("pod-logs")),
        "registerNode": True,
        "registerWithTaints": [{"key": config.TAINT_KEY, "value": "true", "effect": "NoSchedule"}],
        "maxPods": 30,
        "evictionHard": {
            "memory.available": "100Mi",
            "nodefs.available": "1%",
            "imagefs.available": "1%",
            "nodefs.inodesFree": "1%",
        },
        "imageGCHighThresholdPercent": 100,  # never garbage-collect the imported images
        "imageGCLowThresholdPercent": 99,
        "serializeImagePulls": False,
        "shutdownGracePeriod": "0s",
        "protectKernelDefaults": False,
        "localStorageCapacityIsolation": True,
    }
    path = config.path("kubelet", "config.yaml")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def start_kubelet(node: RealNode, kubelet: Path, certs: dict[str, cpki.Cert]) -> None:
    ca = cpki.ClusterPKI.paths().ca
    kc = config.path("kubelet", "kubeconfig")
    kc.parent.mkdir(parents=True, exist_ok=True)
    cpki.write_kubeconfig(kc, f"https://{cc.BRIDGE_IP}:{cc.API_PORT}", ca.crt,
                          [(node.name, certs["client"], None)], node.name, embed=False)  # fmt: skip
    cfg = kubelet_config(node, certs)
    config.path("pod-logs").mkdir(parents=True, exist_ok=True)
    spawn(
        "kubelet",
        [
            str(kubelet),
            f"--config={cfg}",
            f"--kubeconfig={kc}",
            f"--root-dir={config.path('kubelet', 'root')}",
            f"--hostname-override={node.name}",
            f"--node-ip={','.join(node.ips)}",
            # ...and out of the add-ons' LoadBalancer announcements (MetalLB's label).
            f"--node-labels={config.LABEL_KEY}=true,"
            "node.kubernetes.io/exclude-from-external-load-balancers=true",
            "--v=1",
        ],
        node,
        {"PATH": SYSTEM_PATH},
    )


def wait_node(node: RealNode, kube: Kube, timeout: float) -> None:
    def registered() -> bool:
        return kube.get_or_none(f"/api/v1/nodes/{node.name}") is not None

    _wait("kubelet", f"Node {node.name} registered", registered, timeout)
    n = kube.get(f"/api/v1/nodes/{node.name}")
    if not n.get("spec", {}).get("podCIDR"):
        # kcm does not allocate (--allocate-node-cidrs=false) and a kubelet may not set it:
        # the admin sets it, as the simulated nodes register with theirs.
        kube.patch(
            f"/api/v1/nodes/{node.name}",
            {"spec": {"podCIDR": node.pod_cidr, "podCIDRs": node.pod_cidrs}},
        )

    def ready() -> bool:
        n = kube.get(f"/api/v1/nodes/{node.name}")
        ok = any(
            c["type"] == "Ready" and c["status"] == "True"
            for c in n.get("status", {}).get("conditions") or []
        )
        # The node lifecycle controller lifts node.kubernetes.io/not-ready a few seconds
        # after Ready; until then nothing lands here.
        others = [t for t in n.get("spec", {}).get("taints") or [] if t["key"] != config.TAINT_KEY]
        return ok and not others

    _wait("kubelet", f"Node {node.name} Ready and without not-ready taints", ready, timeout)


def grant_apiserver(kube: Kube) -> None:
    """The apiserver calls the kubelet as kube-apiserver-kubelet-client; the kubelet asks the
    apiserver (Webhook authz) whether that user may: bind it to system:kubelet-api-admin."""
    body = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": CRB_NAME, "labels": {config.LABEL_KEY: "true"}},
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": "system:kubelet-api-admin",
        },
        "subjects": [
            {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "User",
                "name": "kube-apiserver-kubelet-client",
            }
        ],
    }
    path = "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings"
    if kube.get_or_none(f"{path}/{CRB_NAME}") is None:
        kube.create(path, body)


# --- kube-proxy ---------------------------------------------------------------------------------


def start_kube_proxy(node: RealNode, bin_dir: Path) -> None:
    p = cpki.ClusterPKI.paths()
    kc = config.path("kube-proxy", "kubeconfig")
    kc.parent.mkdir(parents=True, exist_ok=True)
    cpki.write_kubeconfig(kc, f"https://{cc.BRIDGE_IP}:{cc.API_PORT}", p.ca.crt,
                          [("kube-proxy", p.kube_proxy, None)], "kube-proxy", embed=False)  # fmt: skip
    cfg = {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": str(kc)},
        "hostnameOverride": node.name,
        "bindAddress": "0.0.0.0",
        "healthzBindAddress": f"0.0.0.0:{config.KUBE_PROXY_HEALTHZ_PORT}",
        "metricsBindAddress": "127.0.0.1:10249",
        "mode": cc.PROXY_MODE,
        "clusterCIDR": ",".join(
            str(c) for c in [cc.POD_CIDR, *([cc.POD_CIDR6] if node.dual else [])]
        ),
        "nodePortAddresses": ["primary"],
        "oomScoreAdj": 0,
        "conntrack": {
            "maxPerCore": 0,
            "min": 0,
            "tcpEstablishedTimeout": "0s",
            "tcpCloseWaitTimeout": "0s",
        },
    }
    path = config.path("kube-proxy", "config.yaml")
    path.write_text(yaml.safe_dump(cfg))
    spawn("kube-proxy", [str(bin_dir / "kube-proxy"), f"--config={path}", "--v=1"], node,
          {"PATH": SYSTEM_PATH})  # fmt: skip

    def healthy() -> bool:
        r = run(["curl", "-sf", "-m", "2", f"http://{node.ip}:{config.KUBE_PROXY_HEALTHZ_PORT}/healthz"],
                check=False)  # fmt: skip
        return r.returncode == 0

    _wait("kube-proxy", "kube-proxy healthz", healthy, 60)


# --- up / down ------------------------------------------------------------------------------------


def ca_sha() -> str:
    try:
        return hashlib.sha256(cpki.ClusterPKI.paths().ca.crt.read_bytes()).hexdigest()
    except OSError:
        return ""


def _cluster() -> cc.ClusterState:
    st = cc.ClusterState.load()
    if st is None:
        raise ClusterError("no local cluster is running (hack/cluster up)")
    return st


def is_up(state: State | None = None) -> bool:
    state = state or State.load()
    if state is None:
        return False
    if not all(alive(n) for n in ("containerd", "kubelet", "kube-proxy")):
        return False
    if state.ca_sha != ca_sha():
        return False  # the cluster was recreated under the node
    link = run(["ip", "-j", "link", "show", state.node.root_veth], check=False).stdout
    if not link or json.loads(link)[0].get("master") != cc.BRIDGE:
        return False
    try:
        n = admin().get(f"/api/v1/nodes/{state.node.name}")
    except (ApiError, OSError):
        return False
    return any(
        c["type"] == "Ready" and c["status"] == "True"
        for c in n.get("status", {}).get("conditions") or []
    )


def up() -> State:
    with locked():
        state = State.load()
        if state is not None and is_up(state):
            log(f"real node {state.node.name} already up")
            return state
        if state is not None or config.STATE_DIR.exists():
            log("removing what an earlier real node left")
        _down(quiet=True)
        try:
            return _up()
        except BaseException:
            log(f"up failed; logs are in {config.path('logs')} (kept until down)")
            raise


def _up() -> State:
    t0 = time.monotonic()
    cluster = _cluster()
    kube = admin()
    node = RealNode.make(dual=cluster.dual)
    check_free(node, kube)
    state = State(node=node, route_netns=route_netns(cluster.nodes))
    state.save()
    timings: dict[str, float] = {}

    def mark(what: str, since: float) -> float:
        now = time.monotonic()
        timings[what] = round(now - since, 1)
        return now

    t = time.monotonic()
    kubelet = build_kubelet()
    t = mark("kubelet_build", t)
    pause = image.pause_image()
    agent = image.agent_image()
    state.agent_image = agent.ref
    t = mark("images_build", t)
    tn = time.monotonic()  # node start: everything after the builds
    certs = make_certs(node)
    state.ca_sha = ca_sha()
    state.sysctls = read_sysctls()
    state.save()
    make_cgroups()
    setup_network(node, cluster.nodes)
    make_mount_ns(state)
    start_containerd(node)
    t = mark("containerd_start", t)
    import_images(node, [pause, agent])
    t = mark("images_import", t)
    grant_apiserver(kube)
    start_kubelet(node, kubelet, certs)
    wait_node(node, kube, timeout=180)
    t = mark("kubelet_ready", t)
    start_kube_proxy(node, Path(cluster.bin_dir))
    t = mark("kube_proxy_ready", t)
    timings["node_start"] = round(time.monotonic() - tn, 1)
    timings["total"] = round(time.monotonic() - t0, 1)
    state.timings = timings
    state.save()
    log(f"real node {node.name} ({', '.join(node.ips)}; pods {', '.join(node.pod_cidrs)}) "
        f"ready: {timings}")  # fmt: skip
    return state


def down(save_logs: Path | None = None) -> None:
    with locked():
        _down(quiet=False, save_logs=save_logs)
        config.LOCK_FILE.unlink(missing_ok=True)


def kill_all() -> int:
    """Freeze the whole /kdoctor-realnode freezer tree, SIGKILL everything in it, thaw."""
    killed = 0
    for _ in range(20):
        root = freezer()
        if not root.exists():
            break
        groups = [root, *[d for d in root.rglob("*") if d.is_dir()]]
        for g in groups:
            with contextlib.suppress(OSError):
                (g / "freezer.state").write_text("FROZEN")
        pids = all_pids()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        killed += len(pids)
        for g in groups:
            with contextlib.suppress(OSError):
                (g / "freezer.state").write_text("THAWED")
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and all_pids():
            time.sleep(0.05)
        if not all_pids():
            break
    # Recorded pids outside the tree (e.g. the cgroup could not be joined).
    pid_dir = config.path("pids")
    if pid_dir.exists():
        for f in pid_dir.iterdir():
            rec = recorded(f.name)
            if rec and pid_alive(rec[0], rec[1] or None):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(rec[0], signal.SIGKILL)
                killed += 1
    return killed


def _stop_gracefully() -> None:
    """SIGTERM the kubelet first (it stops posting status), then the rest is killed."""
    rec = recorded("kubelet")
    if rec and pid_alive(rec[0], rec[1] or None):
        with contextlib.suppress(ProcessLookupError):
            os.kill(rec[0], signal.SIGTERM)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and pid_alive(rec[0], rec[1] or None):
            time.sleep(0.1)


def _api_cleanup(node_name: str) -> None:
    with contextlib.suppress(Exception):
        kube = admin()
        kube.get("/version")
        pods = kube.get("/api/v1/pods", fieldSelector=f"spec.nodeName={node_name}")["items"]
        for p in pods:
            with contextlib.suppress(ApiError):
                kube.delete(
                    f"/api/v1/namespaces/{p['metadata']['namespace']}/pods/{p['metadata']['name']}",
                    gracePeriodSeconds=0,
                )
        with contextlib.suppress(ApiError):
            kube.delete(f"/api/v1/nodes/{node_name}")
        with contextlib.suppress(ApiError):
            kube.delete(f"/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/{CRB_NAME}")


def _down(quiet: bool, save_logs: Path | None = None) -> None:
    state = State.load()
    node = state.node if state else RealNode.make(dual=True)  # sweep both families
    _stop_gracefully()
    killed = kill_all()
    if killed and not quiet:
        log(f"killed {killed} process(es)")
    _api_cleanup(node.name)
    remove_mount_ns()
    teardown_network(state, node)
    left = remove_cgroups()
    if left:
        log(f"cgroups still busy: {', '.join(left)}")
    if state is not None:
        restore_sysctls(state.sysctls)
        for d in sorted(state.created_dirs, key=lambda p: -p.count("/")):
            with contextlib.suppress(OSError):
                Path(d).rmdir()
    if save_logs and config.path("logs").exists():
        save_logs.mkdir(parents=True, exist_ok=True)
        shutil.copytree(config.path("logs"), save_logs / "realnode", dirs_exist_ok=True)
        if config.path("pod-logs").exists():
            shutil.copytree(config.path("pod-logs"), save_logs / "realnode" / "pods",
                            dirs_exist_ok=True)  # fmt: skip
    stuck = our_mounts()
    if stuck:
        for mp in sorted(stuck, key=lambda p: -p.count("/")):
            run(["umount", "-l", mp], check=False)
    if config.STATE_DIR.exists():
        shutil.rmtree(config.STATE_DIR, ignore_errors=True)
    if not quiet:
        log("real node removed")


# --- shared use by test sessions -------------------------------------------------------------------


def _live_users() -> list[int]:
    out = []
    for f in config.USERS_DIR.glob("[0-9]*"):
        pid = int(f.name)
        if pid_alive(pid):
            out.append(pid)
        else:
            f.unlink(missing_ok=True)
    return out


def acquire(user: int) -> State:
    """Register test session ``user`` (a pid) and make sure the node is up. A node someone
    started by hand (``hack/realnode/node up``) is used and left up."""
    with locked():
        config.USERS_DIR.mkdir(parents=True, exist_ok=True)
        state = State.load()
        if state is None or not is_up(state):
            if state is not None or config.STATE_DIR.exists():
                log("removing what an earlier real node left")
            _down(quiet=True)
            try:
                state = _up()
            except BaseException:
                log(f"up failed:\n{diagnose()}")
                _down(quiet=True)
                if not _live_users():
                    with contextlib.suppress(OSError):
                        config.USERS_DIR.rmdir()
                    config.LOCK_FILE.unlink(missing_ok=True)
                raise
            state.started_by = "tests"
            state.save()
        (config.USERS_DIR / str(user)).touch()
        return state


def release(user: int, save_logs: Path | None = None) -> list[str]:
    """Unregister ``user``; the last session out removes a node the tests started. Returns
    what is left on the machine afterwards (empty when all went)."""
    with locked():
        (config.USERS_DIR / str(user)).unlink(missing_ok=True)
        if _live_users():
            return []
        with contextlib.suppress(OSError):
            config.USERS_DIR.rmdir()
        state = State.load()
        if state is None or state.started_by != "tests":
            return []
        _down(quiet=True, save_logs=save_logs)
        config.LOCK_FILE.unlink(missing_ok=True)  # still held: a waiter just proceeds
        return leftovers(state)


def diagnose() -> str:
    return "\n".join(tail(config.log_file(n), 25) for n in ("containerd", "kubelet", "kube-proxy"))


def leftovers(state: State) -> list[str]:
    """Everything of the node still on the machine (after ``down`` this should be empty)."""
    node = state.node
    out: list[str] = []
    pids = all_pids()
    if pids:
        out.append(f"processes in the freezer cgroup: {pids}")
    for d in Path("/proc").iterdir():
        if d.name.isdigit() and int(d.name) != os.getpid():
            with contextlib.suppress(OSError):
                if str(config.STATE_DIR).encode() in (d / "cmdline").read_bytes():
                    out.append(f"process {d.name} mentions {config.STATE_DIR}")
    if Path("/run/netns", node.netns).exists():
        out.append(f"netns {node.netns}")
    if run(["ip", "link", "show", node.root_veth], check=False).returncode == 0:
        out.append(f"link {node.root_veth}")
    for c in node.pod_cidrs:
        if run(["ip", _fam(c), "route", "show", c], check=False).stdout.strip():
            out.append(f"route {c} in the root netns")
        for ns in state.route_netns:
            if Path("/run/netns", ns).exists():
                r = run(["ip", _fam(c), "-n", ns, "route", "show", c], check=False).stdout.strip()
                if r:
                    out.append(f"route {c} in {ns}")
    out += [f"cgroup {root / config.CGROUP_NAME}" for root in cgroup_roots()
            if (root / config.CGROUP_NAME).exists()]  # fmt: skip
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        if str(config.STATE_DIR) in line or "kdoctor-realnode" in line:
            out.append(f"mount {line.split()[4]}")
    if config.STATE_DIR.exists():
        out.append(f"state dir {config.STATE_DIR}")
    out += [f"dir {d}" for d in state.created_dirs if Path(d).exists()]
    now = read_sysctls()
    out += [f"sysctl {k}={now[k]} (was {v})" for k, v in state.sysctls.items() if now.get(k) != v]
    with contextlib.suppress(Exception):
        kube = admin()
        if kube.get_or_none(f"/api/v1/nodes/{node.name}") is not None:
            out.append(f"Node {node.name}")
        crb = f"/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/{CRB_NAME}"
        if kube.get_or_none(crb) is not None:
            out.append(f"ClusterRoleBinding {CRB_NAME}")
    return out


# --- status -------------------------------------------------------------------------------------


def status() -> dict[str, Any]:
    state = State.load()
    if state is None:
        return {"up": False, "state_dir": str(config.STATE_DIR)}
    procs: dict[str, int] = {}
    for pid in all_pids():
        try:
            name = Path(f"/proc/{pid}/comm").read_text().strip()
        except OSError:
            continue
        procs[name] = procs.get(name, 0) + pss_kib(pid)
    return {
        "up": is_up(state),
        "node": state.node.name,
        "ips": state.node.ips,
        "pod_cidrs": state.node.pod_cidrs,
        "netns": state.node.netns,
        "agent_image": state.agent_image,
        "daemons": {n: alive(n) for n in ("containerd", "kubelet", "kube-proxy")},
        "timings_s": state.timings,
        "memory_pss_mib": {
            "total": round(sum(procs.values()) / 1024, 1),
            **{k: round(v / 1024, 1) for k, v in sorted(procs.items())},
        },
        "state_dir": str(config.STATE_DIR),
    }
