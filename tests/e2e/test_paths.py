"""Every netreach path for real: dual stack, LoadBalancer, Ingress and multus on the local
cluster, then one fault per path type, each pinpointed by the report and its hint."""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
from typing import Any

import pytest

from tests.e2e.kd import CLI, kdoctor, report, wait_agents_running
from tests.fixtures.cluster import LocalCluster

pytestmark = pytest.mark.cluster

ALL = [
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


def full(cluster: LocalCluster) -> list[str]:
    return [
        *ALL,
        "--targets",
        "pod,clusterip,nodeport,loadbalancer,ingress,multus",
        "--ip-family",
        "dual",
        "--ingress-class",
        cluster.ingress_class,
        "--multus-networks",
        cluster.default_nad,
    ]


@pytest.fixture(autouse=True)
def _dual(local_cluster: LocalCluster) -> None:
    if not local_cluster.dual_stack:
        pytest.skip("the local cluster was started IPv4-only (hack/cluster up --ip-family ipv4)")


def failing(doc: dict[str, Any]) -> set[tuple[str, str, str, str]]:
    out = set()
    for entry in doc["report"]["latestRoundReport"]:
        for d in entry["taskNetReach"]["roundTaskDetail"]:
            if not d["requestSucceed"]:
                out.add((entry["nodeName"], d["path"], d["ipFamily"], d.get("targetNode", "*")))
    return out


def test_every_path_both_families_passes(local_cluster: LocalCluster, ns: str) -> None:
    proc = kdoctor(local_cluster, *full(local_cluster), "-n", ns)
    doc = report(proc)
    assert proc.returncode == 0, json.dumps(doc["status"])[:3000] + proc.stderr[-2000:]
    paths = {
        (d["path"], d["ipFamily"])
        for e in doc["report"]["latestRoundReport"]
        for d in e["taskNetReach"]["roundTaskDetail"]
    }
    for fam in ("ipv4", "ipv6"):
        for p in ("pod", "clusterip", "nodeport", "loadbalancer", "ingress"):
            assert (p, fam) in paths, (p, fam)
    assert ("multus", "ipv4") in paths  # the secondary network is IPv4 only
    n = len(local_cluster.nodes)
    per_node = [
        len(e["taskNetReach"]["roundTaskDetail"]) for e in doc["report"]["latestRoundReport"]
    ]
    # per peer: pod, clusterip, nodeport x 2 families + multus v4; plus LB and Ingress x 2
    assert per_node == [7 * n + 4] * n


def test_stopped_kube_proxy_is_pinned_on_its_node(local_cluster: LocalCluster, ns: str) -> None:
    victim = local_cluster.nodes[1]
    local_cluster.stop_kube_proxy(victim)
    try:
        proc = kdoctor(local_cluster, *ALL, "-n", ns, "--ip-family", "ipv4")
    finally:
        local_cluster.start_kube_proxy(victim)
    doc = report(proc)
    assert proc.returncode == 1
    bad = failing(doc)
    assert all(p != "pod" for _, p, _, _ in bad)
    assert {(s, p) for s, p, _, _ in bad if p == "clusterip"} == {(victim, "clusterip")}
    assert {d for _, p, _, d in bad if p == "nodeport"} == {victim}
    assert any(
        h.startswith(f"{victim}: pod IPs work but ClusterIP from it and its NodePort fail")
        for h in doc["status"]["hints"]
    )


def test_ipv6_dropped_between_two_nodes(local_cluster: LocalCluster, ns: str) -> None:
    a, _, c = local_cluster.nodes[:3]
    with local_cluster.link_cut(a, c, family="ipv6"):
        proc = kdoctor(local_cluster, *ALL, "-n", ns, "--ip-family", "dual")
    doc = report(proc)
    assert proc.returncode == 1
    bad = failing(doc)
    assert bad and all(f == "ipv6" and {s, d} == {a, c} for s, _, f, d in bad)
    assert any(f"only IPv6 fails, between {a} <-> {c}" in h for h in doc["status"]["hints"])


def test_stopped_ingress_proxy(local_cluster: LocalCluster, ns: str) -> None:
    with local_cluster.ingress_proxy_stopped():
        proc = kdoctor(
            local_cluster, *ALL, "-n", ns, "--ip-family", "ipv4", "--targets", "pod,ingress"
        )
    doc = report(proc)
    assert proc.returncode == 1
    bad = failing(doc)
    assert bad and all(p == "ingress" for _, p, _, _ in bad)
    assert len(bad) == len(local_cluster.nodes)
    assert any("only the ingress path fails" in h for h in doc["status"]["hints"])


def test_secondary_interface_down(local_cluster: LocalCluster, ns: str) -> None:
    victim = local_cluster.nodes[2]
    args = [
        *ALL,
        "-n",
        ns,
        "--ip-family",
        "ipv4",
        "--targets",
        "pod,multus",
        "--multus-networks",
        local_cluster.default_nad,
        "--duration",
        "6s",
    ]
    proc = subprocess.Popen(
        [CLI, *args],
        env=local_cluster.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    pods = wait_agents_running(local_cluster, ns)
    pod = next(p["metadata"]["name"] for p in pods if p["spec"]["nodeName"] == victim)
    deadline = time.monotonic() + 30  # the secondary interface exists once the sandbox is made
    while "net1" not in json.dumps(
        local_cluster.network_status(
            local_cluster.kube().get(f"/api/v1/namespaces/{ns}/pods/{pod}")
        )
    ):
        assert time.monotonic() < deadline, "no net1 on the agent pod"
        time.sleep(0.5)
    local_cluster.set_pod_interface(ns, pod, "net1", up=False)
    try:
        out, err = proc.communicate(timeout=300)
    finally:
        with contextlib.suppress(Exception):  # the run deletes the pod (and its netns) itself
            local_cluster.set_pod_interface(ns, pod, "net1", up=True)
    assert proc.returncode == 1, err
    doc = json.loads(out)
    bad = failing(doc)
    assert bad and all(p == "multus" and victim in (s, d) for s, p, _, d in bad)
    assert any(
        f"{victim}: its pod IP answers but its secondary interface does not" in h
        for h in doc["status"]["hints"]
    )
