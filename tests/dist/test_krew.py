"""The krew release, for real: ``hack/dist`` builds the archives and dist/plugin.yaml, krew's
own validator accepts the manifests, krew installs every platform from the local archives,
and kubectl discovers and runs the installed plugin (version, help, the load engine against a
loopback server, completion) with nothing but python3 on PATH."""

from __future__ import annotations

import hashlib
import http.server
import os
import re
import shutil
import tarfile
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from kubectl_kdoctor import __version__
from tests.dist.conftest import REPO, base_path, needs_dist, run

pytestmark = [needs_dist, pytest.mark.slow]

# os/arch -> the wheel platform tags that fit it (hack/dist: manylinux2014, macOS 11).
PLATFORMS = {
    ("linux", "amd64"): re.compile(r"manylinux\w*_x86_64"),
    ("linux", "arm64"): re.compile(r"manylinux\w*_aarch64"),
    ("darwin", "amd64"): re.compile(r"macosx_\d+_\d+_(x86_64|universal2)"),
    ("darwin", "arm64"): re.compile(r"macosx_\d+_\d+_(arm64|universal2)"),
}
PYTHONS = ("cp310", "cp311", "cp312", "cp313", "cp314", "cp315")


def archive(dist: Path, os_: str, arch: str) -> Path:
    return dist / f"kubectl-kdoctor_v{__version__}_{os_}_{arch}.tar.gz"


def krew_env(root: Path, krew_bin: Path, **extra: str) -> dict[str, str]:
    return {
        "HOME": str(root / "home"),
        "KREW_ROOT": str(root / "krew"),
        "KREW_NO_UPGRADE_CHECK": "1",
        "PATH": base_path(krew_bin, root / "krew" / "bin"),
        **extra,
    }


def test_committed_manifest_is_the_template_of_this_version() -> None:
    doc = yaml.safe_load((REPO / "plugin.yaml").read_text())
    assert doc["apiVersion"] == "krew.googlecontainertools.github.com/v1alpha2"
    assert doc["kind"] == "Plugin"
    assert doc["metadata"]["name"] == "kdoctor"
    assert doc["spec"]["version"] == f"v{__version__}"
    assert "python3 >= 3.10" in doc["spec"]["caveats"]
    seen = set()
    for p in doc["spec"]["platforms"]:
        labels = p["selector"]["matchLabels"]
        seen.add((labels["os"], labels["arch"]))
        assert p["bin"] == "kubectl-kdoctor"
        assert p["uri"].endswith(
            f"/v{__version__}/kubectl-kdoctor_v{__version__}_{labels['os']}_{labels['arch']}.tar.gz"
        )
    assert seen == set(PLATFORMS)


def test_archives_hold_one_executable_and_the_license(dist_dir: Path, tmp_path: Path) -> None:
    for (os_, arch), fits in PLATFORMS.items():
        path = archive(dist_dir, os_, arch)
        with tarfile.open(path) as tar:
            members = {m.name: m for m in tar.getmembers()}
            assert sorted(members) == ["LICENSE", "kubectl-kdoctor"]
            assert members["kubectl-kdoctor"].isfile()
            assert members["kubectl-kdoctor"].mode == 0o755
            assert tar.extractfile("LICENSE").read() == (REPO / "LICENSE").read_bytes()  # type: ignore[union-attr]
            tar.extract("kubectl-kdoctor", tmp_path / f"{os_}_{arch}", filter="data")
        exe = tmp_path / f"{os_}_{arch}" / "kubectl-kdoctor"
        assert exe.read_bytes()[:2] == b"#!"
        with zipfile.ZipFile(exe) as pex:
            wheels = {n.split("/")[1] for n in pex.namelist() if n.startswith(".deps/")}
        # The compiled dependencies, once per CPython 3.10..3.15, for this platform only.
        for py in PYTHONS:
            assert any(w.startswith("pydantic_core-") and f"-{py}-" in w for w in wheels), (
                py,
                sorted(wheels),
            )
        compiled = [w for w in wheels if w.endswith(".whl") and not w.endswith("-any.whl")]
        assert compiled
        assert all(fits.search(w) for w in compiled), (os_, arch, compiled)
        # Left out on purpose: the CLI needs none of them (see hack/dist).
        for absent in ("cryptography-", "uvloop-", "aiohttp-", "cffi-"):
            assert not any(w.startswith(absent) for w in wheels), absent


def test_dist_manifest_carries_each_archives_sha256(dist_dir: Path) -> None:
    template = (REPO / "plugin.yaml").read_text().splitlines()
    built = (dist_dir / "plugin.yaml").read_text().splitlines()
    assert len(built) == len(template)
    # Only the sha256 lines differ from the committed template.
    diff = [(a, b) for a, b in zip(template, built, strict=True) if a != b]
    assert len(diff) == len(PLATFORMS)
    assert all(b.strip().startswith("sha256: ") for _, b in diff)
    doc = yaml.safe_load("\n".join(built))
    for p in doc["spec"]["platforms"]:
        labels = p["selector"]["matchLabels"]
        data = archive(dist_dir, labels["os"], labels["arch"]).read_bytes()
        assert p["sha256"] == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("which", ["committed", "dist"])
def test_krews_validator_accepts_the_manifest(
    which: str, dist_dir: Path, krew_bin: Path, tmp_path: Path
) -> None:
    # The validator takes the plugin name from the file name, as krew-index lays it out.
    src = REPO / "plugin.yaml" if which == "committed" else dist_dir / "plugin.yaml"
    manifest = tmp_path / "kdoctor.yaml"
    shutil.copy(src, manifest)
    proc = run(
        [str(krew_bin / "validate-krew-manifest"), "-manifest", str(manifest), "-skip-install"],
        env={"PATH": base_path(krew_bin), "HOME": str(tmp_path)},
    )
    assert proc.returncode == 0, proc.stderr
    assert "structural validation OK" in proc.stderr
    assert "no overlapping spec.platform[].selector" in proc.stderr
    # A manifest krew must refuse, to show the validator is not a rubber stamp.
    broken = tmp_path / "bad" / "kdoctor.yaml"
    broken.parent.mkdir()
    broken.write_text(re.sub(r"sha256: .*", "sha256: NOT-A-SHA", src.read_text(), count=1))
    proc = run(
        [str(krew_bin / "validate-krew-manifest"), "-manifest", str(broken), "-skip-install"],
        env={"PATH": base_path(krew_bin), "HOME": str(tmp_path)},
    )
    assert proc.returncode != 0
    assert "sha256" in proc.stderr


@pytest.mark.parametrize(("os_", "arch"), sorted(PLATFORMS))
def test_krew_installs_each_platform_from_the_archive(
    os_: str, arch: str, dist_dir: Path, krew_bin: Path, tmp_path: Path
) -> None:
    # What validate-krew-manifest does for each platform, with the local archive for the URL.
    env = krew_env(tmp_path, krew_bin, KREW_OS=os_, KREW_ARCH=arch)
    proc = run(
        [
            "kubectl",
            "krew",
            "install",
            f"--manifest={dist_dir / 'plugin.yaml'}",
            f"--archive={archive(dist_dir, os_, arch)}",
        ],
        env=env,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Installed plugin: kdoctor" in proc.stderr
    assert "python3 >= 3.10" in proc.stderr  # the caveats are shown
    store = tmp_path / "krew" / "store" / "kdoctor" / f"v{__version__}"
    assert sorted(p.name for p in store.iterdir()) == ["LICENSE", "kubectl-kdoctor"]
    link = tmp_path / "krew" / "bin" / "kubectl-kdoctor"
    assert link.resolve() == (store / "kubectl-kdoctor").resolve()
    assert os.access(link, os.X_OK)
    # A tampered archive is refused by its sha256.
    bad = tmp_path / "tampered.tar.gz"
    bad.write_bytes(archive(dist_dir, os_, arch).read_bytes() + b"\0")
    env2 = krew_env(tmp_path / "again", krew_bin, KREW_OS=os_, KREW_ARCH=arch)
    proc = run(
        [
            "kubectl",
            "krew",
            "install",
            f"--manifest={dist_dir / 'plugin.yaml'}",
            f"--archive={bad}",
        ],
        env=env2,
    )
    assert proc.returncode != 0
    assert "checksum" in (proc.stdout + proc.stderr).lower()


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def loopback_http(tmp_path: Path) -> Iterator[str]:
    (tmp_path / "www").mkdir()
    (tmp_path / "www" / "index.html").write_text("ok\n")

    def handler(*a: object, **kw: object) -> _Quiet:
        return _Quiet(*a, directory=str(tmp_path / "www"), **kw)  # type: ignore[arg-type]

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_kubectl_runs_the_krew_installed_plugin(
    dist_dir: Path, krew_bin: Path, tmp_path: Path, loopback_http: str
) -> None:
    env = krew_env(tmp_path, krew_bin, PEX_ROOT=str(tmp_path / "pex"))
    proc = run(
        [
            "kubectl",
            "krew",
            "install",
            f"--manifest={dist_dir / 'plugin.yaml'}",
            f"--archive={archive(dist_dir, 'linux', 'amd64')}",
        ],
        env=env,
    )
    assert proc.returncode == 0, proc.stderr

    # Plugin discovery: no warning about our executable.
    proc = run(["kubectl", "plugin", "list"], env=env)
    assert proc.returncode == 0, proc.stderr
    listed = [line for line in proc.stdout.splitlines() if line.startswith("/")]
    assert str(tmp_path / "krew" / "bin" / "kubectl-kdoctor") in listed
    assert "warning" not in (proc.stdout + proc.stderr).lower()

    # The first run lays out its venv under PEX_ROOT; the same answer every time after.
    for _ in range(2):
        proc = run(["kubectl", "kdoctor", "version", "--client"], env=env)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.startswith(f"kubectl-kdoctor {__version__} (python 3.")
    assert (tmp_path / "pex" / "venvs").is_dir()

    proc = run(["kubectl", "kdoctor", "--help"], env=env)
    assert proc.returncode == 0
    assert (
        "Usage: kubectl kdoctor [OPTIONS] COMMAND" in proc.stdout
        or "Usage: kubectl kdoctor" in proc.stdout
    )

    # Bad input: exit 2 and one line naming the flag, from the zipapp too.
    proc = run(["kubectl", "kdoctor", "netreach", "--qps", "0"], env=env)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "Error: --qps: must be an integer > 0 (got '0')"

    # The load engine, in-process, without uvloop: a real HTTP load against loopback.
    proc = run(
        ["kubectl", "kdoctor", "http", "--local", loopback_http, "--qps", "20", "--duration", "1s"],
        env=env,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "PASS" in proc.stdout

    # kubectl's plugin completion through a completer that calls the single-file install.
    completer = tmp_path / "krew" / "bin" / "kubectl_complete-kdoctor"
    completer.write_text('#!/bin/sh\nexec kubectl-kdoctor __complete "$@"\n')
    completer.chmod(0o755)
    proc = run(["kubectl", "__complete", "kdoctor", "net"], env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0].split("\t")[0] == "netreach"
    assert proc.stdout.splitlines()[-1] == ":4"
