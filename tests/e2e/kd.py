"""Helpers shared by the end-to-end tests: run the CLI against the local cluster, read its
JSON report, look for leftovers."""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.fixtures.cluster import LocalCluster

CLI = str(Path(__file__).resolve().parents[2] / ".venv" / "bin" / "kubectl-kdoctor")
MANAGED = "app.kubernetes.io/managed-by=kubectl-kdoctor"


def kdoctor(
    cluster: LocalCluster, *args: str, timeout: float = 300, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CLI, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**cluster.env(), **(env or {})},
        check=False,
    )


def leftovers(cluster: LocalCluster, ns: str) -> list[str]:
    kube = cluster.kube()
    out = []
    for path in (
        f"/apis/batch/v1/namespaces/{ns}/jobs",
        f"/api/v1/namespaces/{ns}/pods",
        f"/api/v1/namespaces/{ns}/services",
        f"/api/v1/namespaces/{ns}/configmaps",
        f"/api/v1/namespaces/{ns}/secrets",
        f"/api/v1/namespaces/{ns}/serviceaccounts",
        f"/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/roles",
        f"/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings",
    ):
        for item in kube.get(path, labelSelector=MANAGED).get("items", []):
            out.append(
                f"{item['kind'] if 'kind' in item else path.rsplit('/', 1)[-1]}/{item['metadata']['name']}"
            )
    return out


def wait_clean(cluster: LocalCluster, ns: str, timeout: float = 60) -> list[str]:
    deadline = time.monotonic() + timeout
    left = leftovers(cluster, ns)
    while left and time.monotonic() < deadline:
        time.sleep(1)
        left = leftovers(cluster, ns)
    return left


def report(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert proc.stdout.startswith("{"), proc.stderr[-3000:]
    data: dict[str, Any] = json.loads(proc.stdout)
    return data


def cells(doc: dict[str, Any]) -> dict[tuple[str, str, str], dict[str, Any]]:
    """(source node, path, destination node) -> detail."""
    out = {}
    for entry in doc["report"]["latestRoundReport"]:
        for d in entry["taskNetReach"]["roundTaskDetail"]:
            out[(entry["nodeName"], d["path"], d.get("targetNode", "-"))] = d
    return out


def wait_agents_running(
    cluster: LocalCluster, ns: str, timeout: float = 90
) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pods = cluster.kube().get(f"/api/v1/namespaces/{ns}/pods", labelSelector=MANAGED)["items"]
        running = [p for p in pods if p.get("status", {}).get("phase") == "Running"]
        if len(running) >= len(cluster.nodes):
            return running
        time.sleep(0.5)
    raise AssertionError("agents did not start")


@contextlib.contextmanager
def namespace(cluster: LocalCluster, prefix: str, enforce: str = "restricted") -> Iterator[str]:
    """A fresh namespace whose PodSecurity level is ``enforce``, deleted afterwards."""
    name = f"{prefix}-{uuid.uuid4().hex[:6]}"
    cluster.kube().create(
        "/api/v1/namespaces",
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {
                "name": name,
                "labels": {
                    "pod-security.kubernetes.io/enforce": enforce,
                    "pod-security.kubernetes.io/enforce-version": "latest",
                },
            },
        },
    )
    try:
        yield name
    finally:
        cluster.kube().delete(f"/api/v1/namespaces/{name}")
