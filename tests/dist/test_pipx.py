"""pip and pipx installs, for real: ``pipx install <source tree>`` and ``pipx install
<wheel>`` (Debian's pipx, the system python3, PyPI) give a ``kubectl-kdoctor`` that kubectl
discovers, and a ``kubectl_complete-kdoctor`` that kubectl's plugin completion calls."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from kubectl_kdoctor import __version__
from tests.dist.conftest import base_path, needs_dist, run, source_snapshot

pytestmark = [needs_dist, pytest.mark.slow]


def _pipx() -> str:
    exe = shutil.which("pipx", path="/usr/local/bin:/usr/bin:/bin")
    if exe is None:
        pytest.skip("pipx is not installed (hack/setup installs Debian's)")
    return exe


def _wheel(src: Path, out: Path) -> Path:
    proc = run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(src)],
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (wheel,) = out.glob("kubectl_kdoctor-*.whl")
    return wheel


@pytest.mark.parametrize("source", ["tree", "wheel"])
def test_pipx_install_gives_a_working_kubectl_plugin(source: str, tmp_path: Path) -> None:
    pipx = _pipx()
    src = source_snapshot(tmp_path / "src")
    spec = src if source == "tree" else _wheel(src, tmp_path / "wheel")
    bin_dir = tmp_path / "bin"
    env = {
        "HOME": str(tmp_path / "home"),
        "PIPX_HOME": str(tmp_path / "pipx"),
        "PIPX_BIN_DIR": str(bin_dir),
        "PATH": base_path(bin_dir),
    }
    proc = run([pipx, "install", str(spec)], env=env, timeout=1200)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert (bin_dir / "kubectl-kdoctor").exists()
    assert (bin_dir / "kubectl_complete-kdoctor").exists()

    proc = run(["kubectl-kdoctor", "version", "--client"], env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"kubectl-kdoctor {__version__} (python 3.")

    # Through kubectl's plugin discovery.
    proc = run(["kubectl", "plugin", "list"], env=env)
    assert proc.returncode == 0, proc.stderr
    assert str(bin_dir / "kubectl-kdoctor") in proc.stdout
    assert "warning" not in (proc.stdout + proc.stderr).lower()
    proc = run(["kubectl", "kdoctor", "--help"], env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("Usage: kubectl kdoctor [OPTIONS]")
    for command in ("netreach", "http", "dns", "get", "report", "delete", "cleanup", "version"):
        assert f"  {command} " in proc.stdout

    # kubectl >= 1.26 calls kubectl_complete-kdoctor for `kubectl kdoctor <TAB>`.
    proc = run(["kubectl", "__complete", "kdoctor", "dns", "--protocol", ""], env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["udp", "tcp", "tls", ":4"]
