"""Fixtures for the distribution tests: the release archives (hack/dist), krew (hack/build-krew)
and a snapshot of the source tree.

The tests that build (krew archives, pipx installs) take minutes and download from PyPI and
the Go module proxy, so they run only with ``KDOCTOR_DIST_TESTS=1`` (CI sets it); the fast
ones (completion, docs) always run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
ENABLE = "KDOCTOR_DIST_TESTS"

needs_dist = pytest.mark.skipif(
    os.environ.get(ENABLE) != "1",
    reason=f"builds release archives and installs with krew/pipx: set {ENABLE}=1",
)


def base_path(*dirs: Path) -> str:
    """A PATH of the given directories, then the system's (kubectl, python3), never the venv's."""
    system = ["/usr/local/bin", "/usr/bin", "/bin"]
    return os.pathsep.join(dict.fromkeys([*(str(d) for d in dirs), *system]))


def run(
    argv: list[str], env: dict[str, str] | None = None, timeout: float = 600, **kw: object
) -> subprocess.CompletedProcess[str]:
    """Run with stdin closed; output captured as text; never raises on a non-zero exit."""
    return subprocess.run(
        argv,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        **kw,  # type: ignore[arg-type]
    )


def source_snapshot(dest: Path) -> Path:
    """The work tree's tracked and untracked, not-ignored files, copied to ``dest`` (what a
    clone would hold, without build/ or egg-info from an editable install)."""
    files = subprocess.run(
        ["git", "ls-files", "-z", "-co", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for name in files:
        if not name:
            continue
        src = REPO / os.fsdecode(name)
        if src.is_file():
            target = dest / os.fsdecode(name)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, target)
    return dest


#: pytest-timeout for a test whose fixtures build (hack/dist; krew when not yet cached): a
#: cold build takes longer than the suite's 600 s. ``make test`` builds krew in its setup.
BUILD_TIMEOUT = 2400


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    krew_cached: bool | None = None
    for item in items:
        names = getattr(item, "fixturenames", ())
        builds = "dist_dir" in names
        if "krew_bin" in names and not builds:
            if krew_cached is None:
                krew_cached = run([str(REPO / "hack" / "build-krew"), "--cached"]).returncode == 0
            builds = not krew_cached
        if builds and not item.get_closest_marker("timeout"):
            item.add_marker(pytest.mark.timeout(BUILD_TIMEOUT))


@pytest.fixture(scope="session")
def dist_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """``hack/dist`` run into a temporary directory: four archives and plugin.yaml."""
    out = tmp_path_factory.mktemp("dist")
    proc = run([str(REPO / "hack" / "dist"), "--out", str(out)], timeout=3000, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-4000:]
    yield out


@pytest.fixture(scope="session")
def krew_bin() -> Path:
    """krew, kubectl-krew and validate-krew-manifest, built from tools/krew-bin."""
    if shutil.which("go") is None:
        pytest.skip("no Go toolchain to build krew")
    proc = run([str(REPO / "hack" / "build-krew")], timeout=BUILD_TIMEOUT)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return Path(proc.stdout.strip().splitlines()[-1])
