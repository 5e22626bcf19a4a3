"""kubectl kdoctor on a real node: the kubelet (v1.35, built from Go modules), Debian's
containerd 1.6 + runc + the CNI ptp plugin, and the agent image built from Debian packages
and this package (no registry, no Docker), joined to the local cluster as node ``real-1``.

Opt-in (slow): ``KDOCTOR_REALNODE=1``. See docs/real-node.md.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from hack.localcluster import config as cluster_config
from tests.e2e.kd import namespace
from tests.fixtures.cluster import LocalCluster
from tests.fixtures.realnode import ENV, SKIP_REASON, RealNode

pytestmark = [
    pytest.mark.realnode,
    pytest.mark.cluster,
    pytest.mark.slow,
    pytest.mark.timeout(3600),  # the first test pays for cold builds (kubelet, rootfs)
    # Before any fixture (not even the local cluster is started when it skips).
    pytest.mark.skipif(os.environ.get(ENV) != "1", reason=SKIP_REASON),
]

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = REPO / ".venv" / "bin"
KUBECTL = "kubectl"
LOAD = ["--qps", "10", "--duration", "2s", "--timeout", "1s"]


def kubectl(
    cluster: LocalCluster, *args: str, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """The real kubectl; ``kubectl kdoctor ...`` finds the plugin on PATH (.venv/bin)."""
    env = {**cluster.env(), "PATH": f"{VENV_BIN}:{os.environ.get('PATH', '')}"}
    return subprocess.run(
        [KUBECTL, *args], capture_output=True, text=True, timeout=timeout, env=env, check=False
    )


def show(proc: subprocess.CompletedProcess[str]) -> str:
    """The exit code, stderr, and for a JSON report its failures (else stdout's tail)."""
    out = proc.stdout[-4000:]
    with contextlib.suppress(ValueError, KeyError, TypeError):
        doc = json.loads(proc.stdout)
        lines = [f"status.hints: {doc.get('status', {}).get('hints')}"]
        for e in doc["report"]["latestRoundReport"]:
            task: dict[str, Any] = next((v for k, v in e.items() if k.startswith("task")), {})
            for d in task.get("roundTaskDetail") or []:
                if not d.get("requestSucceed"):
                    lines.append(
                        f"{e['nodeName']} -> {d.get('targetNode', '-')} [{d.get('path')}/"
                        f"{d.get('ipFamily', '')}] {d.get('name')}: {d.get('failureReasons')}"
                    )
        out = "\n".join(lines)
    return f"rc={proc.returncode}\nreport:\n{out}\nstderr:\n{proc.stderr[-4000:]}"


def report(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert proc.stdout.startswith("{"), show(proc)
    doc: dict[str, Any] = json.loads(proc.stdout)
    return doc


def by_node(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["nodeName"]: e for e in doc["report"]["latestRoundReport"]}


INGRESS = "ingress"  # stands for the ingress proxy in the sets of faulted "nodes"


def faulted_nodes() -> set[str]:
    """Simulated nodes some fault (of any test session) touches right now, plus INGRESS
    while the ingress proxy is stopped."""
    state = cluster_config.ClusterState.load()
    if state is None:
        return set()
    f = state.faults
    out = {n for cut in f.get("cuts", []) for n in cut}
    for key in ("loss", "delay"):
        out |= set(f.get(key) or {})
    for key in ("proxy_stopped", "not_ready", "no_heartbeat"):
        out |= set(f.get(key) or [])
    out &= set(state.node_names)
    if f.get("ingress_stopped"):
        out.add(INGRESS)
    return out


def quiet_sim_nodes(
    cluster: LocalCluster, want: int, timeout: float = 180, ingress: bool = False
) -> list[str]:
    """Simulated nodes no fault touches right now: other test sessions cut links, drop
    packets, stop kube-proxy (or the ingress proxy) or mark nodes NotReady on the shared
    cluster. ``ingress``: also wait for the ingress proxy to run."""
    deadline = time.monotonic() + timeout
    while True:
        faulted = faulted_nodes()
        quiet = [n for n in cluster.nodes if n not in faulted]
        if len(quiet) >= want and not (ingress and INGRESS in faulted):
            return quiet[:want]
        if time.monotonic() > deadline:
            pytest.skip(f"other sessions keep faults on {sorted(faulted)}; need {want} quiet nodes")
        time.sleep(2)


class FaultWatch:
    """Records which simulated nodes any fault touched while a run was going on."""

    def __init__(self) -> None:
        self.seen: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(Exception):
                self.seen |= faulted_nodes()
            self._stop.wait(0.2)

    def __enter__(self) -> FaultWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.seen |= faulted_nodes()


def run_unless_faulted(
    run: Callable[[], subprocess.CompletedProcess[str]], relevant: set[str] | None
) -> subprocess.CompletedProcess[str]:
    """``run()``; a failed run is repeated (3 tries in all) only when another session's fault
    touched a ``relevant`` simulated node (None: any) while it ran, after those are quiet
    again. A failure with no fault around is returned as is."""
    for _ in range(3):
        with FaultWatch() as watch:
            proc = run()
        hit = watch.seen if relevant is None else watch.seen & relevant
        if proc.returncode == 0 or not hit:
            return proc
        deadline = time.monotonic() + 180
        while faulted_nodes() & hit and time.monotonic() < deadline:
            time.sleep(2)
    return proc


@pytest.fixture
def ns(local_cluster: LocalCluster) -> Iterator[str]:
    """A namespace that enforces PodSecurity 'restricted'."""
    with namespace(local_cluster, "kdr") as name:
        yield name


RESTRICTED = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "readOnlyRootFilesystem": True,
    "runAsNonRoot": True,
    "seccompProfile": {"type": "RuntimeDefault"},
}


def test_real_node_joined(local_cluster: LocalCluster, real_node: RealNode) -> None:
    node = local_cluster.kube().get(f"/api/v1/nodes/{real_node.name}")
    conds = {c["type"]: c["status"] for c in node["status"]["conditions"]}
    assert conds["Ready"] == "True", node["status"]["conditions"]
    info = node["status"]["nodeInfo"]
    assert info["containerRuntimeVersion"].startswith("containerd://1.6"), info
    assert info["kubeletVersion"] == "v1.35.4", info
    internal = [a["address"] for a in node["status"]["addresses"] if a["type"] == "InternalIP"]
    assert internal == real_node.ips
    assert node["spec"]["podCIDRs"] == real_node.pod_cidrs
    # As dual-stack as the simulated nodes are.
    sim = local_cluster.kube().get(f"/api/v1/nodes/{local_cluster.nodes[0]}")
    assert len(sim["spec"]["podCIDRs"]) == len(real_node.pod_cidrs)
    assert {"key": real_node.taint_key, "value": "true", "effect": "NoSchedule"} in node["spec"][
        "taints"
    ]
    # The kubelet lists what containerd holds: the imported agent and pause images.
    names = {n for img in node["status"].get("images") or [] for n in img["names"]}
    assert real_node.agent_image in names, names


def test_agent_image_runs_restricted_with_logs_and_exec(
    local_cluster: LocalCluster, real_node: RealNode, ns: str
) -> None:
    """A pod from the agent image under PodSecurity 'restricted', in a real container:
    uid 65532, no capabilities, seccomp filter on, no_new_privs; kubectl logs and exec go
    apiserver -> kubelet :10250 (TLS verified with the cluster CA) -> containerd."""
    kube = local_cluster.kube()
    kube.create(
        f"/api/v1/namespaces/{ns}/pods",
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "probe"},
            "spec": {
                "nodeName": real_node.name,
                "tolerations": [real_node.toleration],
                "terminationGracePeriodSeconds": 1,
                "containers": [
                    {
                        "name": "main",
                        "image": real_node.agent_image,
                        "imagePullPolicy": "Never",
                        "command": ["sh", "-c", "echo probe-started; exec sleep 600"],
                        "securityContext": RESTRICTED,
                    }
                ],
            },
        },
    )
    pod = local_cluster.wait_pod(ns, "probe", timeout=120)
    assert pod["status"]["containerStatuses"][0]["containerID"].startswith("containerd://")
    pod_ips = [p["ip"] for p in pod["status"]["podIPs"]]
    assert [ipaddress.ip_address(ip) in ipaddress.ip_network(c)
            for ip, c in zip(pod_ips, real_node.pod_cidrs, strict=True)] == [True] * len(pod_ips)  # fmt: skip
    logs = kubectl(local_cluster, "logs", "-n", ns, "probe")
    assert logs.returncode == 0 and "probe-started" in logs.stdout, show(logs)
    st = kubectl(local_cluster, "exec", "-n", ns, "probe", "--", "cat", "/proc/self/status")
    assert st.returncode == 0, show(st)
    fields = dict(line.split(":", 1) for line in st.stdout.splitlines() if ":" in line)
    assert fields["Uid"].split()[:2] == ["65532", "65532"]
    assert fields["CapEff"].strip() == "0000000000000000"
    assert fields["NoNewPrivs"].strip() == "1"
    assert fields["Seccomp"].strip() == "2"  # filter mode: containerd's RuntimeDefault
    ro = kubectl(local_cluster, "exec", "-n", ns, "probe", "--", "touch", "/opt/x")
    assert ro.returncode != 0 and "Read-only file system" in ro.stderr, show(ro)
    entry = kubectl(local_cluster, "exec", "-n", ns, "probe", "--", "kubectl-kdoctor", "--help")
    assert entry.returncode == 0 and "netreach" in entry.stdout, show(entry)


def test_http_from_real_node(local_cluster: LocalCluster, real_node: RealNode, ns: str) -> None:
    """``kubectl kdoctor http`` with the agent on the real node, to a Service whose backend
    runs on a simulated node; the agent's log is read with kubectl logs."""
    (server_node,) = quiet_sim_nodes(local_cluster, 1)
    kube = local_cluster.kube()
    kube.create(
        f"/api/v1/namespaces/{ns}/pods",
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "web", "labels": {"app": "web"}},
            "spec": {
                "nodeName": server_node,
                "securityContext": {"runAsUser": 1000},
                "containers": [
                    {
                        "name": "web",
                        "image": local_cluster.images["python"],
                        "command": ["python3", "-m", "http.server", "8080"],
                        "ports": [{"containerPort": 8080}],
                        "readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1},
                        "securityContext": {**RESTRICTED, "readOnlyRootFilesystem": False},
                    }
                ],
            },
        },
    )
    svc = kube.create(
        f"/api/v1/namespaces/{ns}/services",
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web"},
            "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]},
        },
    )
    local_cluster.wait_pod(ns, "web")
    url = f"http://{svc['spec']['clusterIP']}/"
    names: list[str] = []  # one run name per attempt (--keep leaves each run's objects)

    def attempt() -> subprocess.CompletedProcess[str]:
        names.append(f"rn-http-{uuid.uuid4().hex[:5]}")
        return kubectl(local_cluster, "kdoctor", "http", url, "-n", ns, "--mode", "job",
                       "--name", names[-1], "--node", real_node.name, *real_node.kdoctor_args,
                       *LOAD, "--keep", "-o", "json")  # fmt: skip

    proc = run_unless_faulted(attempt, {server_node})
    name = names[-1]
    assert proc.returncode == 0, show(proc)
    entry = by_node(report(proc))[real_node.name]
    detail = entry["taskAppHealthy"]["roundTaskDetail"][0]
    assert (
        detail["requestSucceedRate"] == 1.0 and detail["requestTargetMetrics"]["successCounts"] > 0
    )
    # The agent pod really ran on the real node, and its log comes through the kubelet.
    pods = kube.get(
        f"/api/v1/namespaces/{ns}/pods",
        labelSelector="app.kubernetes.io/managed-by=kubectl-kdoctor",
    )["items"]
    agents = [
        p
        for p in pods
        if p["metadata"]["name"].startswith(f"{name}-")
        and p["spec"].get("nodeName") == real_node.name
    ]
    assert agents, [p["metadata"]["name"] for p in pods]
    agent = agents[0]
    assert agent["status"]["containerStatuses"][0]["containerID"].startswith("containerd://")
    logs = kubectl(local_cluster, "logs", "-n", ns, agent["metadata"]["name"])
    assert logs.returncode == 0, show(logs)
    assert f"on {real_node.name}" in logs.stdout, logs.stdout[-2000:]
    delete = kubectl(local_cluster, "kdoctor", "delete", name, "-n", ns)
    assert delete.returncode == 0, show(delete)


def test_dns_from_real_and_simulated_node(
    local_cluster: LocalCluster, real_node: RealNode, ns: str
) -> None:
    """``kubectl kdoctor dns`` (cluster DNS: the kube-dns ClusterIP, CoreDNS on simulated
    nodes) from the real node and a simulated one."""
    (sim,) = quiet_sim_nodes(local_cluster, 1)
    proc = run_unless_faulted(  # CoreDNS runs on any simulated node: every fault counts
        lambda: kubectl(local_cluster, "kdoctor", "dns", "-n", ns, "--mode", "job",
                        "--node", real_node.name, "--node", sim, *real_node.kdoctor_args,
                        *LOAD, "-o", "json"),
        None,
    )  # fmt: skip
    assert proc.returncode == 0, show(proc)
    nodes = by_node(report(proc))
    assert set(nodes) == {real_node.name, sim}
    for entry in nodes.values():
        d = entry["taskNetDns"]["roundTaskDetail"][0]
        assert d["requestSucceed"] and d["requestSucceedRate"] == 1.0, d
        assert d["requestServer"] == f"{local_cluster.dns_ip}:53"


def netreach_matrix(
    cluster: LocalCluster, real_node: RealNode, ns: str, paths: list[str], ingress: bool
) -> tuple[list[str], list[tuple[str, dict[str, Any]]]]:
    """Run netreach over ``paths`` on the real node and two quiet simulated nodes; assert
    exit 0 and that every cell passed; return (nodes, [(source node, detail)])."""
    sims = quiet_sim_nodes(cluster, 2, ingress=ingress)
    nodes = [real_node.name, *sims]
    args = [a for n in nodes for a in ("--node", n)]
    proc = run_unless_faulted(
        lambda: kubectl(cluster, "kdoctor", "netreach", "-n", ns, "--mode", "job", *args,
                        *real_node.kdoctor_args, "--targets", ",".join(paths), "--qps", "5",
                        "--duration", "3s", "--timeout", "1s", "-o", "json"),
        {*sims, INGRESS} if ingress else set(sims),
    )  # fmt: skip
    assert proc.returncode == 0, show(proc)
    details = [
        (e["nodeName"], d)
        for e in report(proc)["report"]["latestRoundReport"]
        for d in e["taskNetReach"]["roundTaskDetail"]
    ]
    for src, d in details:
        assert d["requestSucceed"] and d["requestSucceedRate"] == 1.0, (src, d)
    return nodes, details


def test_netreach_between_real_and_simulated_nodes(
    local_cluster: LocalCluster, real_node: RealNode, ns: str
) -> None:
    """``kubectl kdoctor netreach --mode job``: pod IP, ClusterIP and NodePort from the real
    node to simulated nodes and back, over every IP family; every cell of the matrix
    passes."""
    paths = ["pod", "clusterip", "nodeport"]
    nodes, details = netreach_matrix(local_cluster, real_node, ns, paths, ingress=False)
    have = {(src, d["path"], d.get("ipFamily"), d.get("targetNode")) for src, d in details}
    # Both families on a dual-stack cluster: the real node is dual-stack too.
    want = {
        (src, path, fam, dst)
        for src in nodes
        for dst in nodes
        for path in paths
        for fam in real_node.families
    }
    assert want <= have, sorted(want - have)


def test_netreach_loadbalancer_and_ingress_from_real_node(
    local_cluster: LocalCluster, real_node: RealNode, ns: str
) -> None:
    """The add-ons' paths with the real node in the matrix: a LoadBalancer address (kube-proxy
    on the real node serves it locally) and the Ingress (nginx in its own netns proxies to
    the agents' pod IPs, the real node's included)."""
    from hack.localcluster import ingress

    state = cluster_config.ClusterState.load()
    if state is None or not state.addons:
        pytest.skip("the cluster runs without its add-ons (LoadBalancer, Ingress)")
    if ingress.nginx_pid() is None:
        pytest.skip("the cluster's ingress nginx is not running (hack/cluster status: add-ons)")
    paths = ["loadbalancer", "ingress"]
    nodes, details = netreach_matrix(local_cluster, real_node, ns, paths, ingress=True)
    for path in paths:  # one Service (one Ingress) per run: targets without a node
        got = {(src, d.get("ipFamily")) for src, d in details if d["path"] == path}
        assert got == {(src, fam) for src in nodes for fam in real_node.families}, (path, got)
