"""CRD mode against the real apiserver with kdoctor's real CRDs and a stand-in controller
that writes .status round by round and serves KdoctorReport through a real APIService."""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from kubectl_kdoctor.cli.build import build
from kubectl_kdoctor.crdmode import task_object
from tests.fixtures.cluster import LocalCluster
from tests.fixtures.kdoctor_controller import SourceMissing, StandIn, kdoctor_crds

pytestmark = pytest.mark.cluster

CLI = str(Path(__file__).resolve().parents[2] / ".venv" / "bin" / "kubectl-kdoctor")
BRIDGE_IP = "172.30.0.1"


@pytest.fixture(scope="session", autouse=True)
def kdoctor_source() -> None:
    """kdoctor's CRDs come from its source (KDOCTOR_SOURCE); without it these tests skip,
    before the cluster starts, with the reason naming the variable."""
    try:
        kdoctor_crds()
    except SourceMissing as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def standin(local_cluster: LocalCluster) -> Iterator[StandIn]:
    s = StandIn(local_cluster.kube(), local_cluster.nodes, BRIDGE_IP)
    s.start()
    yield s
    s.stop()


def kd(cluster: LocalCluster, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CLI, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=cluster.env(),
        check=False,
    )


def name() -> str:
    return f"t{uuid.uuid4().hex[:8]}"


FLAG_SETS = [
    (
        "NetReach",
        {
            "qps": "10",
            "duration": "10s",
            "timeout": "1500ms",
            "expect_mean_delay": "1500ms",
            "targets": "clusterip,pod,nodeport",
        },
    ),
    (
        "NetReach",
        {
            "targets": "pod,loadbalancer,ingress,multus",
            "ip_family": "dual",
            "rounds": "3",
            "interval": "2m",
            "host_network": True,
            "nodes": ("node-1", "node-2"),
        },
    ),
    (
        "AppHttpHealthy",
        {
            "url": "https://web.example.com:8443/x",
            "method": "PUT",
            "headers": ("Accept: text/plain",),  # crd mode refuses secret headers
            "http2": True,
            "expect_status": "204",
            "insecure": True,
        },
    ),
    ("Netdns", {"domain": "example.com", "server": "10.96.0.10:53", "protocol": "tls"}),
    ("Netdns", {"qtype": "AAAA", "expect_success_rate": "0.9", "node_selector": "pool=edge"}),
]


@pytest.mark.parametrize(("kind", "flags"), FLAG_SETS)
def test_every_task_the_plugin_builds_passes_the_real_crd_schema(
    local_cluster: LocalCluster, standin: StandIn, kind: str, flags: dict[str, object]
) -> None:
    inv = build(kind, {**flags, "mode": "crd"})
    obj = task_object(inv, name())
    plural = {"NetReach": "netreaches", "AppHttpHealthy": "apphttphealthies", "Netdns": "netdnses"}[
        kind
    ]
    created = local_cluster.kube().create(f"/apis/kdoctor.io/v1beta1/{plural}", obj, dryRun="All")
    spec = created["spec"]
    assert spec["schedule"]["roundTimeoutMinute"] <= int(spec["schedule"]["schedule"].split()[1])
    assert spec["request"]["perRequestTimeoutInMS"] >= 1 and "expect" in spec and "target" in spec
    assert "nodeSelector" not in spec.get("agentSpec", {})


def test_seed_example_flow(local_cluster: LocalCluster, standin: StandIn) -> None:
    n = name()
    proc = kd(
        local_cluster,
        "netreach",
        "--name",
        n,
        "--qps",
        "10",
        "--duration",
        "10s",
        "--timeout",
        "1500ms",
        "--expect-mean-delay",
        "1500ms",
        "--targets",
        "clusterip,pod,nodeport",
        "-o",
        "json",
    )
    assert proc.returncode == 0, proc.stderr
    assert "mode: crd" in proc.stderr
    doc = json.loads(proc.stdout)
    spec = doc["task"]["spec"]["netReach"]
    assert spec["expect"] == {"meanAccessDelayInMs": 1500, "successRate": 1}
    assert spec["request"] == {"durationInSecond": 10, "perRequestTimeoutInMS": 1500, "qps": 10}
    assert spec["schedule"] == {"roundNumber": 1, "roundTimeoutMinute": 1, "schedule": "0 1"}
    t = spec["target"]
    assert t["clusterIP"] and t["endpoint"] and t["nodePort"] and t["ipv4"] and not t["ipv6"]
    assert sorted(e["nodeName"] for e in doc["report"]["latestRoundReport"]) == sorted(
        local_cluster.nodes
    )
    gone = local_cluster.kube().get_or_none(f"/apis/kdoctor.io/v1beta1/netreaches/{n}")
    assert gone is None or gone["metadata"].get("deletionTimestamp")


@pytest.mark.parametrize("layout", ["A", "B", "C"])
def test_reads_every_report_layout(
    local_cluster: LocalCluster, standin: StandIn, tmp_path: Path, layout: str
) -> None:
    n = name()
    f = tmp_path / "dns.yaml"
    f.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kdoctor.io/v1beta1",
                "kind": "Netdns",
                "metadata": {
                    "name": n,
                    "annotations": {
                        "test.kdoctor.io/layout": layout,
                        "test.kdoctor.io/fail-node": "node-2",
                    },
                },
                "spec": {
                    "schedule": {"schedule": "0 1", "roundNumber": 1, "roundTimeoutMinute": 1},
                    "request": {
                        "durationInSecond": 2,
                        "qps": 5,
                        "perRequestTimeoutInMS": 500,
                        "domain": "kubernetes.default.svc.cluster.local",
                        "protocol": "udp",
                    },
                    "expect": {"successRate": 1, "meanAccessDelayInMs": 1000},
                    "target": {"targetDns": {"testIPv4": True}},
                },
            }
        )
    )
    proc = kd(local_cluster, "dns", "-f", str(f), "--mode", "crd", "--name", n)
    assert proc.returncode == 1, proc.stderr
    assert "node-2" in proc.stdout.split("Failures:")[1]
    assert "FAIL" in proc.stdout.splitlines()[0]


def test_silent_node_and_rounds(
    local_cluster: LocalCluster, standin: StandIn, tmp_path: Path
) -> None:
    n = name()
    f = tmp_path / "nr.yaml"
    f.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kdoctor.io/v1beta1",
                "kind": "NetReach",
                "metadata": {"name": n, "annotations": {"test.kdoctor.io/silent-node": "node-3"}},
                "spec": {
                    "schedule": {"schedule": "0 1", "roundNumber": 2, "roundTimeoutMinute": 1},
                    "request": {"durationInSecond": 1, "qps": 5, "perRequestTimeoutInMS": 500},
                },
            }
        )
    )
    proc = kd(local_cluster, "netreach", "-f", str(f), "--mode", "crd", "-o", "json")
    assert proc.returncode == 1, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["status"]["roundFinishedNumber"] == 2
    assert "node-3" in json.dumps(doc["status"]["notReportedNodes"])


def test_status_fallback_when_reports_are_not_served(
    local_cluster: LocalCluster, standin: StandIn
) -> None:
    standin.serve_reports = False
    try:
        proc = kd(local_cluster, "netreach", "--mode", "crd", "--qps", "5", "--duration", "1s")
    finally:
        standin.serve_reports = True
    assert proc.returncode == 0, proc.stderr
    assert "not served" in proc.stderr
    assert all(n in proc.stdout for n in local_cluster.nodes)


def test_get_report_delete_on_tasks(local_cluster: LocalCluster, standin: StandIn) -> None:
    n = name()
    created = kd(
        local_cluster,
        "http",
        "http://web.example.com/",
        "--mode",
        "crd",
        "--name",
        n,
        "--no-wait",
        "--qps",
        "5",
        "--duration",
        "1s",
    )
    assert created.returncode == 0, created.stderr
    listed = kd(local_cluster, "get", "ahh")
    assert n in listed.stdout and "AppHttpHealthy" in listed.stdout
    import time

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        rep = kd(local_cluster, "report", f"ahh/{n}")
        if rep.returncode == 0:
            break
        time.sleep(1)
    assert rep.returncode == 0, rep.stderr
    assert all(node in rep.stdout for node in local_cluster.nodes)
    deleted = kd(local_cluster, "delete", n)
    assert deleted.returncode == 0 and f"AppHttpHealthy {n}" in deleted.stdout


def test_version_finds_the_controller(local_cluster: LocalCluster, standin: StandIn) -> None:
    proc = kd(local_cluster, "version")
    assert proc.returncode == 0
    assert "kdoctor controller: found" in proc.stdout
