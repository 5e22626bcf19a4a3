"""Hostile input against the real API server: refused inputs send no request at all, and
where the cluster is the cause (a namespace that does not exist, an identity without rights)
the run ends in one line, exit 3, having created nothing.

The CLI runs as its own admin identity (context ``kdoctor-cli``), so the audit log tells its
requests apart from the test's.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml

from tests.e2e.kd import kdoctor, leftovers
from tests.fixtures.cluster import LocalCluster
from tests.unit.test_hostile import GOOD_HTTP, GOOD_NR, TASK_FILES

pytestmark = [pytest.mark.cluster]

WRITES = ("create", "update", "patch", "delete", "deletecollection")

REFUSED: list[tuple[list[str], str]] = [
    (["netreach", "--targets", ""], "--targets"),
    (["netreach", "--expect-p99", ""], "--expect-p99"),
    (["netreach", "--duration", "9" * 400], "--duration"),
    (["netreach", "--duration", "1ms"], "sends no request"),
    (["netreach", "--qps", "100000000000"], "--qps"),
    (["netreach", "-n", "Bad_Namespace"], "--namespace"),
    (["netreach", "--name", "Bad_Name"], "--name"),
    (["netreach", "--node", "node-1\n"], "--node"),
    (["netreach", "--as", "admin\r\nX-Evil: 1"], "--as"),
    (["http", "http://a b/"], "URL"),
    (["http", "ftp://example.com/"], "URL"),
    (["http", "http://example.com/", "-H", "X-A: a\r\nX-Evil: 1"], "--header"),
    (["http", "http://example.com/", "-H", "X-A: \u20ac"], "--header"),
    (["http", "http://example.com/", "--data-file", "/dev/zero"], "--data-file"),
    (["dns", "--server", "::1:53"], "--server"),
    (["dns", "--server", "300.1.1.1"], "--server"),
    (["dns", ""], "DOMAIN"),
    (["report", "Bad_Name"], "NAME"),
    (["delete", "x y"], "NAME"),
    (["cleanup", "-n", "x_y"], "--namespace"),
    (["get", "-n", ""], "--namespace"),
    (["get", "--cluster", "no-such-cluster"], "--cluster"),
    (["get", "--user", "no-such-user"], "--user"),
]
REFUSED_FILES = [
    "t-bomb.yaml",
    "t-nan.yaml",
    "t-latin1.yaml",
    "t-utf16.yaml",
    "t-unknown.yaml",
    "t-deep.yaml",
    "t-header-crlf.yaml",
    "t-host-ftp.yaml",
]


def _cli_requests(lc: LocalCluster, since: float) -> dict[tuple[str, str], int]:
    time.sleep(1.5)  # the audit log is written in batches
    return lc.api_request_counts(since=since, users=lc.cli_user)


def test_refused_input_sends_no_request(local_cluster: LocalCluster, tmp_path: Path) -> None:
    lc = local_cluster
    for name in REFUSED_FILES:
        (tmp_path / name).write_bytes(TASK_FILES[name])
    cases = [*REFUSED, *[(["http", "-f", str(tmp_path / n)], n) for n in REFUSED_FILES]]
    cases.append(
        (["netreach", "--mode", "job"], "KUBECTL_KDOCTOR_TTL_SECONDS")
    )  # with the env var below
    since = time.time()
    for argv, needle in cases:
        env = {"KUBECTL_KDOCTOR_TTL_SECONDS": "abc"} if needle.startswith("KUBECTL_") else None
        proc = kdoctor(lc, "--context", lc.cli_context, *argv, timeout=60, env=env)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2, (argv, proc.stderr)
        assert len(lines) == 1 and lines[0].startswith("Error: ") and needle in lines[0], (
            argv,
            proc.stderr,
        )
        assert "Traceback" not in proc.stderr and proc.stdout == ""
    assert _cli_requests(lc, since) == {}, "a refused input reached the API server"


def _one_line_exit_3(proc_stderr: str, returncode: int, needle: str) -> None:
    lines = [x for x in proc_stderr.strip().splitlines() if x.startswith("Error: ")]
    assert returncode == 3, proc_stderr
    assert "Traceback" not in proc_stderr, proc_stderr
    assert len(lines) == 1 and needle in lines[0], proc_stderr


def test_cluster_causes_are_one_line_and_create_nothing(
    local_cluster: LocalCluster, tmp_path: Path
) -> None:
    lc = local_cluster
    f = tmp_path / "nr.yaml"
    f.write_text(yaml.safe_dump(GOOD_NR))
    h = tmp_path / "http.yaml"
    h.write_text(yaml.safe_dump(GOOD_HTTP))
    config = yaml.safe_load(lc.kubeconfig.read_text())
    config["contexts"].append(
        {"name": "broken", "context": {"cluster": "no-such-cluster", "user": "no-such-user"}}
    )
    broken = tmp_path / "kubeconfig"
    broken.write_text(yaml.safe_dump(config))
    before = leftovers(lc, "default")
    since = time.time()
    cases: list[tuple[list[str], str]] = [
        # a namespace that does not exist
        (
            ["netreach", "--mode", "job", "-n", "no-such-ns-kdh", "--duration", "1s"],
            "no-such-ns-kdh",
        ),
        # an identity with no rights at all: the permission check names what is missing
        (["netreach", "--mode", "job", "--as", "nobody-kdh", "--duration", "1s"], "nobody-kdh"),
        # a context whose cluster is not in the kubeconfig
        (["--kubeconfig", str(broken), "get", "--context", "broken"], "kubeconfig"),
        # what does not exist
        (["report", "no-such-run-kdh"], "no-such-run-kdh"),
    ]
    for argv, needle in cases:
        proc = kdoctor(lc, "--context", lc.cli_context, *argv, timeout=120)
        _one_line_exit_3(proc.stderr, proc.returncode, needle)
    time.sleep(1.5)  # the audit log is written in batches
    created = [
        f"{e['verb']} {e['objectRef'].get('resource')} -> {e['responseStatus']['code']}"
        for e in lc.audit_events(since=since, user=lc.cli_user)
        if e.get("verb") in WRITES
        and e.get("objectRef", {}).get("apiGroup") != "authorization.k8s.io"  # access reviews
        and int(e.get("responseStatus", {}).get("code", 500)) < 300
    ]
    assert created == [], f"the CLI changed the cluster: {created}"
    assert leftovers(lc, "default") == before
