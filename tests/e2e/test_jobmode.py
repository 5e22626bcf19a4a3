"""Job mode end to end on the local cluster: agents really run (as processes in pod network
namespaces), probe each other over pod IP, ClusterIP and NodePort, and report into the API."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.e2e.kd import CLI, cells, kdoctor, leftovers, report, wait_agents_running, wait_clean
from tests.fixtures.cluster import LocalCluster

pytestmark = pytest.mark.cluster

NETREACH = [
    "netreach",
    "--mode",
    "job",
    "--qps",
    "5",
    "--duration",
    "3s",
    "--timeout",
    "500ms",
    "-o",
    "json",
]


def test_netreach_full_mesh_passes_and_leaves_nothing(local_cluster: LocalCluster, ns: str) -> None:
    proc = kdoctor(local_cluster, *NETREACH, "-n", ns)
    doc = report(proc)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert doc["status"]["verdict"] == "pass"
    got = cells(doc)
    nodes = local_cluster.nodes
    expected = {(a, p, b) for a in nodes for b in nodes for p in ("pod", "clusterip", "nodeport")}
    assert set(got) == expected
    for d in got.values():
        m = d["requestTargetMetrics"]
        assert d["requestSucceed"] and m["successCounts"] == m["requestCounts"] == 15
        assert m["statusCodes"] == {"200": 15}
        lat = m["latencies"]
        assert 0 < lat["minInMs"] <= lat["p50InMs"] <= lat["p99InMs"] <= lat["maxInMs"]
    assert wait_clean(local_cluster, ns) == []


def test_sampled_netreach_probes_exactly_the_sampled_pairs(
    local_cluster: LocalCluster, ns: str
) -> None:
    """--peers 1 on 3 nodes: each agent probes itself and one peer (and waits only for that
    one), every node is probed, and the report says which pairs were sampled."""
    proc = kdoctor(local_cluster, *NETREACH, "-n", ns, "--peers", "1")
    doc = report(proc)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "sampling: each node probes 1 of 2 peers" in proc.stderr
    sampled = doc["status"]["sampledPeers"]
    nodes = local_cluster.nodes
    assert set(sampled) == set(nodes) and all(len(v) == 1 for v in sampled.values())
    assert {v[0] for v in sampled.values()} == set(nodes)  # every node is probed
    pairs = {(a, b) for a, bs in sampled.items() for b in [a, *bs]}
    assert {(a, b) for a, _, b in cells(doc)} == pairs
    assert wait_clean(local_cluster, ns) == []


def test_cut_link_names_exactly_those_pairs(local_cluster: LocalCluster, ns: str) -> None:
    a, b, c = local_cluster.nodes[:3]
    with local_cluster.link_cut(a, b):
        proc = kdoctor(local_cluster, *NETREACH, "-n", ns)
    doc = report(proc)
    assert proc.returncode == 1, proc.stderr[-2000:]
    got = cells(doc)
    failing = {k for k, d in got.items() if not d["requestSucceed"]}
    assert failing == {
        (x, p, y) for x, y in ((a, b), (b, a)) for p in ("pod", "clusterip", "nodeport")
    }
    for key in failing:
        assert got[key]["requestTargetMetrics"]["errorClasses"].get("timeout", 0) > 0
    assert all(
        got[(c, p, x)]["requestSucceed"]
        for p in ("pod", "clusterip", "nodeport")
        for x in (a, b, c)
    )
    table = kdoctor(local_cluster, "report", "--help")  # the CLI stays usable
    assert table.returncode == 0


def test_loss_on_one_node_shows_in_its_success_rate(local_cluster: LocalCluster, ns: str) -> None:
    c = local_cluster.nodes[2]
    proc = subprocess.Popen(
        [CLI, *NETREACH, "-n", ns, "--qps", "10", "--duration", "10s", "--timeout", "300ms"],
        env=local_cluster.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_agents_running(local_cluster, ns)
    local_cluster.set_loss(c, 30)  # once the agents run: the node must still start its pod
    try:
        out, err = proc.communicate(timeout=300)
    finally:
        local_cluster.clear_node_net(c)
    assert proc.returncode == 1, err
    got = cells(json.loads(out))
    lossy = [
        d["requestSucceedRate"]
        for (x, p, y), d in got.items()
        if p == "pod" and c in (x, y) and x != y
    ]
    assert min(lossy) < 1.0
    clean = [
        d["requestSucceedRate"] for (x, p, y), d in got.items() if p == "pod" and c not in (x, y)
    ]
    assert clean and all(r == 1.0 for r in clean)


def test_unpullable_image_exits_3_naming_node_and_reason(
    local_cluster: LocalCluster, ns: str
) -> None:
    start = time.monotonic()
    proc = kdoctor(
        local_cluster,
        *NETREACH,
        "-n",
        ns,
        "--image",
        "registry.invalid/nope/agent:1",
        "--start-timeout",
        "5m",
    )
    took = time.monotonic() - start
    assert proc.returncode == 3, proc.stderr
    err = proc.stderr.strip().splitlines()[-1]
    assert "ErrImagePull" in err or "ImagePullBackOff" in err
    assert any(n in err for n in local_cluster.nodes)
    assert took < 150  # far below --start-timeout: the pull error ended the run
    assert wait_clean(local_cluster, ns) == []


def test_restricted_user_is_told_what_it_lacks(local_cluster: LocalCluster) -> None:
    proc = kdoctor(
        local_cluster,
        *NETREACH,
        "-n",
        local_cluster.rbac_namespace,
        "--context",
        local_cluster.restricted_context,
    )
    assert proc.returncode == 3
    err = proc.stderr.strip().splitlines()[-1]
    assert "may not" in err and "create jobs.batch" in err and "nothing was created" in err
    assert leftovers(local_cluster, local_cluster.rbac_namespace) == []


def test_ctrl_c_removes_the_run(local_cluster: LocalCluster, ns: str) -> None:
    proc = subprocess.Popen(
        [CLI, *NETREACH, "-n", ns, "--duration", "60s"],
        env=local_cluster.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_agents_running(local_cluster, ns)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "deleted" in err
    assert wait_clean(local_cluster, ns) == []


def test_killed_cli_leaves_nothing_after_the_ttl(local_cluster: LocalCluster, ns: str) -> None:
    proc = subprocess.Popen(
        [CLI, *NETREACH, "-n", ns],
        env={**local_cluster.env(), "KUBECTL_KDOCTOR_TTL_SECONDS": "3"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_agents_running(local_cluster, ns)
    proc.kill()
    proc.wait()
    assert leftovers(local_cluster, ns)  # still there: the agents finish their run
    assert wait_clean(local_cluster, ns, timeout=180) == []


def _agent_pid(node: str, run_marker: str) -> int:
    deadline = time.monotonic() + 20  # the pod may be Running a moment before its exec
    while time.monotonic() < deadline:
        pid = _find_agent(node, run_marker)
        if pid:
            return pid
        time.sleep(0.2)
    raise AssertionError(f"no agent process for {node}")


def _find_agent(node: str, run_marker: str) -> int | None:
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            cmd = (d / "cmdline").read_bytes().split(b"\0")
            env = (d / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if (
            b"agent" in cmd
            and f"NODE_NAME={node}".encode() in env
            and run_marker.encode() in b" ".join(cmd)
        ):
            return int(d.name)
    raise AssertionError(f"no agent process for {node}")


def test_crashing_agent_is_named_and_cleaned_up(local_cluster: LocalCluster, ns: str) -> None:
    victim = local_cluster.nodes[1]
    proc = subprocess.Popen(
        [CLI, *NETREACH, "-n", ns, "--name", "crash", "--duration", "8s"],
        env=local_cluster.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_agents_running(local_cluster, ns)
    os.kill(_agent_pid(victim, "crash"), signal.SIGKILL)
    out, err = proc.communicate(timeout=240)
    assert proc.returncode == 1, err
    doc = json.loads(out)
    assert doc["status"]["notReportedNodes"] == {"1": [victim]}
    assert any(
        victim in n and "failed before reporting" in n for n in doc["status"].get("notes", [])
    )
    assert wait_clean(local_cluster, ns) == []


def test_http_against_a_server_in_the_cluster(local_cluster: LocalCluster, ns: str) -> None:
    kube = local_cluster.kube()
    kube.create(
        f"/api/v1/namespaces/{ns}/pods",
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "web", "labels": {"app": "web"}},
            "spec": {
                "securityContext": {
                    "runAsNonRoot": True,
                    "runAsUser": 1000,
                    "seccompProfile": {"type": "RuntimeDefault"},
                },
                "containers": [
                    {
                        "name": "web",
                        "image": local_cluster.images["python"],
                        "command": ["python3", "-m", "http.server", "8080"],
                        "ports": [{"containerPort": 8080}],
                        "readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1},
                        "securityContext": {
                            "allowPrivilegeEscalation": False,
                            "capabilities": {"drop": ["ALL"]},
                        },
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
    proc = kdoctor(
        local_cluster,
        "http",
        url,
        "-n",
        ns,
        "--mode",
        "job",
        "--qps",
        "20",
        "--duration",
        "2s",
        "-o",
        "json",
    )
    doc = report(proc)
    assert proc.returncode == 0, proc.stderr[-2000:]
    entries = doc["report"]["latestRoundReport"]
    assert sorted(e["nodeName"] for e in entries) == sorted(local_cluster.nodes)
    for e in entries:
        d = e["taskAppHealthy"]["roundTaskDetail"][0]
        assert d["url"] == url and d["requestTargetMetrics"]["statusCodes"] == {"200": 40}
    bad = kdoctor(
        local_cluster,
        "http",
        url + "missing",
        "-n",
        ns,
        "--mode",
        "job",
        "--qps",
        "5",
        "--duration",
        "1s",
    )
    assert bad.returncode == 1 and "unexpected status: 404" in bad.stdout


def test_dns_against_the_cluster_dns(local_cluster: LocalCluster, ns: str) -> None:
    proc = kdoctor(
        local_cluster,
        "dns",
        "-n",
        ns,
        "--mode",
        "job",
        "--qps",
        "50",
        "--duration",
        "2s",
        "-o",
        "json",
    )
    doc = report(proc)
    assert proc.returncode == 0, proc.stderr[-2000:]
    for e in doc["report"]["latestRoundReport"]:
        d = e["taskNetDns"]["roundTaskDetail"][0]
        assert d["requestServer"].startswith(local_cluster.dns_ip)
        assert d["requestTargetMetrics"]["replyCode"] == {"NOERROR": 100}
    nx = kdoctor(
        local_cluster,
        "dns",
        "nope.invalid.svc.cluster.local",
        "-n",
        ns,
        "--mode",
        "job",
        "--qps",
        "5",
        "--duration",
        "1s",
    )
    assert nx.returncode == 1 and "NXDOMAIN" in nx.stdout


def test_no_wait_then_get_report_delete_and_cleanup(local_cluster: LocalCluster, ns: str) -> None:
    created = kdoctor(local_cluster, *NETREACH[:-2], "-n", ns, "--name", "nowait", "--no-wait")
    assert created.returncode == 0, created.stderr
    assert "run nowait created" in created.stdout
    listed = kdoctor(local_cluster, "get", "run", "-n", ns)
    assert "nowait" in listed.stdout and "run/netreach" in listed.stdout
    deadline = time.monotonic() + 120
    while True:
        rep = kdoctor(local_cluster, "report", "nowait", "-n", ns, "-o", "json")
        doc = json.loads(rep.stdout) if rep.stdout.startswith("{") else {}
        if (doc and doc["status"]["status"] == "Finished") or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert rep.returncode == 0, rep.stderr
    assert len(doc["report"]["latestRoundReport"]) == len(local_cluster.nodes)
    gone = kdoctor(local_cluster, "delete", "nowait", "-n", ns)
    assert gone.returncode == 0 and f"deleted run {ns}/nowait" in gone.stdout
    assert wait_clean(local_cluster, ns) == []
    again = kdoctor(local_cluster, "delete", "nowait", "-n", ns)
    assert again.returncode == 3 and "no run or kdoctor task named nowait" in again.stderr
    kept = kdoctor(local_cluster, *NETREACH, "-n", ns, "--name", "kept", "--keep")
    assert kept.returncode == 0 and leftovers(local_cluster, ns)
    # Right after the run every agent has reported, though its pods may still be exiting.
    row = next(
        line
        for line in kdoctor(local_cluster, "get", "run", "-n", ns).stdout.splitlines()
        if " kept " in f" {line} "
    )
    n = len(local_cluster.nodes)
    assert "Complete" in row and f"{n}/{n} agents reported" in row, row
    swept = kdoctor(local_cluster, "cleanup", "-n", ns)
    assert swept.returncode == 0 and f"deleted run {ns}/kept (Complete)" in swept.stdout
    assert wait_clean(local_cluster, ns) == []


def test_dry_run_prints_every_object_and_creates_nothing(
    local_cluster: LocalCluster, ns: str
) -> None:
    proc = kdoctor(
        local_cluster, "netreach", "-n", ns, "--mode", "job", "--dry-run=client", "-o", "yaml"
    )
    assert proc.returncode == 0, proc.stderr
    import yaml

    kinds = [d["kind"] for d in yaml.safe_load_all(proc.stdout)]
    assert kinds[:5] == ["Job", "ServiceAccount", "Role", "RoleBinding", "ConfigMap"]
    assert kinds.count("Service") == len(local_cluster.nodes)
    assert leftovers(local_cluster, ns) == []
