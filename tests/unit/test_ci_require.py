"""No silent skips in CI (tests/conftest.py): under CI=true a test that skips is an error with
the skip's reason, and CI fails, rather than skips, when the cluster binaries cannot be built.

Each case runs pytest on a few of the suite's own tests in a subprocess whose environment
makes them skip; none of them reaches a cluster, a Go build or the network."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CRD_TEST = "tests/e2e/test_crdmode.py::test_version_finds_the_controller"
PIPX_TEST = "tests/dist/test_pipx.py"


def pytest_run(
    args: list[str], env: dict[str, str], timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in ("CI", "KDOCTOR_REQUIRE")}
    base.pop("KDOCTOR_DIST_TESTS", None)
    base.pop("PYTEST_ADDOPTS", None)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rs", *args],
        cwd=REPO,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_without_ci_a_missing_kdoctor_source_skips_and_names_the_variable() -> None:
    proc = pytest_run([CRD_TEST], {"KDOCTOR_SOURCE": "/nonexistent/kdoctor.tar.gz"})
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "1 skipped" in proc.stdout
    assert "KDOCTOR_SOURCE=/nonexistent/kdoctor.tar.gz does not exist" in proc.stdout


@pytest.mark.parametrize("env", [{"CI": "true"}, {"KDOCTOR_REQUIRE": "all"}])
def test_under_ci_a_skip_is_an_error_with_its_reason(env: dict[str, str]) -> None:
    proc = pytest_run([CRD_TEST], {"KDOCTOR_SOURCE": "/nonexistent/kdoctor.tar.gz", **env})
    assert proc.returncode == 1, proc.stdout[-3000:]
    assert "1 error" in proc.stdout and "skipped" not in proc.stdout.splitlines()[-1]
    assert "requires this cluster, kdoctor-source test to run, but it was skipped" in proc.stdout
    assert "KDOCTOR_SOURCE=/nonexistent/kdoctor.tar.gz does not exist" in proc.stdout


def test_an_opt_in_suite_left_off_fails_under_ci_and_skips_otherwise() -> None:
    off = pytest_run([PIPX_TEST], {})
    assert off.returncode == 0 and "skipped" in off.stdout, off.stdout[-3000:]
    ci = pytest_run([PIPX_TEST], {"CI": "true"})
    assert ci.returncode == 1, ci.stdout[-3000:]
    assert "requires this dist test to run" in ci.stdout and "KDOCTOR_DIST_TESTS=1" in ci.stdout


def test_require_lists_kinds_and_none_turns_it_off() -> None:
    missing = {"KDOCTOR_SOURCE": "/nonexistent/kdoctor.tar.gz"}
    only_dist = pytest_run([CRD_TEST], {**missing, "CI": "true", "KDOCTOR_REQUIRE": "dist"})
    assert only_dist.returncode == 0 and "1 skipped" in only_dist.stdout, only_dist.stdout[-3000:]
    source = pytest_run([CRD_TEST], {**missing, "KDOCTOR_REQUIRE": "kdoctor-source"})
    assert source.returncode == 1, source.stdout[-3000:]
    off = pytest_run([CRD_TEST], {**missing, "CI": "true", "KDOCTOR_REQUIRE": "none"})
    assert off.returncode == 0 and "1 skipped" in off.stdout, off.stdout[-3000:]
    bad = pytest_run([CRD_TEST], {"KDOCTOR_REQUIRE": "clustr"})
    assert bad.returncode == 4 and "KDOCTOR_REQUIRE: unknown kind(s) clustr" in bad.stderr


def test_ci_fails_when_the_cluster_binaries_cannot_be_built(tmp_path: Path) -> None:
    """A cluster test with no binaries in the cache and no way to build them (empty module
    cache, GOPROXY=off): under CI=true it is an error naming hack/build-bins' failure. The
    cache, module cache and cluster state dir are empty temporary ones: a running cluster
    and the shared caches are left alone."""
    for d in ("bins", "gomod", "gocache", "cluster"):
        (tmp_path / d).mkdir()
    env = {
        "CI": "true",
        "KDOCTOR_BIN_CACHE": str(tmp_path / "bins"),
        "GOMODCACHE": str(tmp_path / "gomod"),
        "GOCACHE": str(tmp_path / "gocache"),
        "GOPROXY": "off",
        "GOFLAGS": "",
        "KDOCTOR_CLUSTER_DIR": str(tmp_path / "cluster" / "state"),
    }
    proc = pytest_run(["tests/e2e/test_jobmode.py", "-x"], env, timeout=600)
    assert proc.returncode == 1, proc.stdout[-3000:]
    out = proc.stdout
    assert "requires this cluster test to run, but it was skipped" in out, out[-3000:]
    assert "local cluster binaries cannot be built (hack/build-bins failed" in out
    assert "GOPROXY=off" in out  # Go's own error: module lookup disabled by GOPROXY=off
    assert not list((tmp_path / "cluster").iterdir())  # no cluster was started
