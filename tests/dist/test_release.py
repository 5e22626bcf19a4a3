"""The release pipeline as code (.github/workflows/release.yml) and the scripts it calls.

* the workflows pass actionlint (built from tools/actionlint-bin by hack/build-actionlint;
  skipped only without Go), every action is pinned by a full commit SHA, and every ``run:``
  step calls a script of this repo;
* ``hack/release --dry-run`` builds the wheel, sdist, krew archive, plugin.yaml and
  SHA256SUMS, with the agent image digest pinned in every package, and leaves the work tree
  as it was (KDOCTOR_DIST_TESTS=1: it resolves from PyPI);
* ``hack/image``'s OCI writer and checker, on a small image with the agent's config (fast),
  and ``make image`` itself (KDOCTOR_DIST_TESTS=1, root and debootstrap: the real-node
  suite's cached base makes it quick).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import tarfile
import zipfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from hack.realnode import image, oci
from tests.dist.conftest import BUILD_TIMEOUT, REPO, needs_dist, run

WORKFLOWS = REPO / ".github" / "workflows"
SHA_PIN = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40}$")
DIGEST = "sha256:" + hashlib.sha256(b"kdoctor test digest").hexdigest()


def workflows() -> list[Path]:
    found = sorted([*WORKFLOWS.glob("*.yml"), *WORKFLOWS.glob("*.yaml")])
    assert found, "no workflow in .github/workflows"
    return found


def steps(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for job in doc["jobs"].values() for s in job.get("steps", [])]


# --- the workflow ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def actionlint() -> Path:
    if shutil.which("go") is None:
        pytest.skip("no Go toolchain to build actionlint (tools/actionlint-bin)")
    proc = run([str(REPO / "hack" / "build-actionlint")], timeout=BUILD_TIMEOUT)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return Path(proc.stdout.strip().splitlines()[-1]) / "actionlint"


def lint(actionlint: Path, *files: Path) -> subprocess.CompletedProcess[str]:
    # shellcheck/pyflakes off: their presence differs between machines; the run: steps are
    # one-line script calls (checked below).
    argv = [str(actionlint), "-shellcheck=", "-pyflakes=", "-no-color", "-oneline"]
    return run([*argv, *map(str, files)], cwd=REPO)


def test_workflows_pass_actionlint(actionlint: Path, tmp_path: Path) -> None:
    proc = lint(actionlint, *workflows())
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # ... and actionlint does find faults: an unknown job dependency and a bad expression.
    broken = (WORKFLOWS / "release.yml").read_text().replace("needs: image", "needs: imagez", 1)
    broken = broken.replace("${{ github.ref_name }}", "${{ github.ref_nam }}", 1)
    bad = tmp_path / ".github" / "workflows" / "release.yml"
    bad.parent.mkdir(parents=True)
    bad.write_text(broken)
    proc = lint(actionlint, bad)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "imagez" in proc.stdout and "ref_nam" in proc.stdout, proc.stdout


def test_every_action_is_pinned_by_commit() -> None:
    for wf in workflows():
        doc = yaml.safe_load(wf.read_text())
        uses = [s["uses"] for s in steps(doc) if "uses" in s]
        uses += [j["uses"] for j in doc["jobs"].values() if "uses" in j]
        assert uses
        for u in uses:
            assert SHA_PIN.match(u), f"{wf.name}: {u} is not pinned by a full commit SHA"
        # Each pin says which release it is (a comment after the SHA).
        for line in wf.read_text().splitlines():
            if "uses:" in line:
                assert re.search(r"@[0-9a-f]{40} # v\d", line), line


def test_workflow_runs_only_repo_scripts() -> None:
    allowed_inline = {"apt-get"}  # installing git into the bare Debian container, before checkout
    for wf in workflows():
        for s in steps(yaml.safe_load(wf.read_text())):
            if "run" not in s:
                continue
            cmd = s["run"].strip()
            assert "\n" not in cmd, f"{wf.name}: multi-line run step {cmd!r}: put it in a script"
            words = cmd.split()
            prog = words[1] if words[0] == "bash" else words[0]
            if prog in allowed_inline:
                continue
            script = REPO / prog
            assert script.is_file() and os.access(script, os.X_OK), f"{wf.name}: {cmd}"
            assert "${{" not in cmd, f"{wf.name}: expression in a run line (use env): {cmd}"


def test_release_workflow_publishes_what_hack_release_builds() -> None:
    text = (WORKFLOWS / "release.yml").read_text()
    doc = yaml.safe_load(text)
    jobs = doc["jobs"]
    assert list(doc[True]["push"]) == ["tags"]  # YAML 1.1 reads `on` as True
    assert jobs["pypi"]["permissions"] == {"id-token": "write"}  # trusted publishing
    assert doc["permissions"] == {}
    build = next(s for s in steps({"jobs": {"i": jobs["image"]}}) if s.get("id") == "build")
    assert build["with"]["platforms"] == "linux/amd64,linux/arm64"
    assert "hack/release --digest" in text and "needs.image.outputs.digest" in text
    assert "krew_template_file: dist/release/krew/plugin.yaml" in text


# --- hack/release ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (["--digest", "sha256:abc"], "--digest"),
        (["--tag", "v0.0.0-not-this", "--digest", DIGEST], "--tag"),
        ([], "--digest is required"),
        (["--digest", DIGEST], "--tag is required"),
        (["--bogus"], "--bogus"),
    ],
)
def test_hack_release_refuses_bad_arguments_before_building(
    args: list[str], flag: str, tmp_path: Path
) -> None:
    proc = run([str(REPO / "hack" / "release"), *args, "--out", str(tmp_path / "o")], cwd=REPO)
    assert proc.returncode == 2, proc.stderr
    assert flag in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert not (tmp_path / "o").exists()


def _pin_in_pex(archive: Path) -> str:
    with tarfile.open(archive) as tar:
        f = tar.extractfile("kubectl-kdoctor")
        assert f is not None
        pex = zipfile.ZipFile(io.BytesIO(f.read()))
    for name in pex.namelist():
        if name.endswith("kubectl_kdoctor/_image_digest.py"):
            return pex.read(name).decode()
    for name in pex.namelist():  # a zipped wheel inside the PEX
        if name.endswith(".whl") and "kubectl_kdoctor" in name:
            whl = zipfile.ZipFile(io.BytesIO(pex.read(name)))
            return whl.read("kubectl_kdoctor/_image_digest.py").decode()
    raise AssertionError("no kubectl_kdoctor/_image_digest.py in the PEX")


@needs_dist
@pytest.mark.timeout(BUILD_TIMEOUT)
def test_hack_release_dry_run_builds_everything_pins_the_digest_pushes_nothing(
    tmp_path: Path,
) -> None:
    pin = REPO / "kubectl_kdoctor" / "_image_digest.py"
    before = pin.read_bytes()
    out = tmp_path / "release"
    proc = run(
        [str(REPO / "hack" / "release"), "--dry-run", "--digest", DIGEST,
         "--platform", "linux/amd64", "--out", str(out)],
        cwd=REPO, timeout=BUILD_TIMEOUT,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert pin.read_bytes() == before  # the work tree's pin is put back
    assert "nothing published" in proc.stderr
    version = image.package_version()
    wheel = out / "pypi" / f"kubectl_kdoctor-{version}-py3-none-any.whl"
    sdist = out / "pypi" / f"kubectl_kdoctor-{version}.tar.gz"
    archive = out / "krew" / f"kubectl-kdoctor_v{version}_linux_amd64.tar.gz"
    line = f'DIGEST = "{DIGEST}"'
    assert line in zipfile.ZipFile(wheel).read("kubectl_kdoctor/_image_digest.py").decode()
    with tarfile.open(sdist) as tar:
        f = tar.extractfile(f"kubectl_kdoctor-{version}/kubectl_kdoctor/_image_digest.py")
        assert f is not None and line in f.read().decode()
    assert line in _pin_in_pex(archive)
    # The installed package runs the pinned image by default.
    venv = tmp_path / "venv"
    assert run(["python3", "-m", "venv", str(venv)]).returncode == 0
    assert (
        run([str(venv / "bin" / "pip"), "install", "-q", "--no-deps", str(wheel)]).returncode == 0
    )
    env = {k: v for k, v in os.environ.items() if k != "KUBECTL_KDOCTOR_IMAGE"}
    code = "from kubectl_kdoctor.images import default_image; print(default_image())"
    proc = run([str(venv / "bin" / "python"), "-c", code], env=env, cwd=tmp_path)
    assert proc.stdout.strip() == f"ghcr.io/kubectl-kdoctor/agent:v{version}@{DIGEST}", proc
    manifest = yaml.safe_load((out / "krew" / "plugin.yaml").read_text())
    arch_sha = hashlib.sha256(archive.read_bytes()).hexdigest()
    assert any(p["sha256"] == arch_sha for p in manifest["spec"]["platforms"])
    # SHA256SUMS covers every file and is right.
    sums = dict(reversed(ln.split("  ", 1)) for ln in (out / "SHA256SUMS").read_text().splitlines())
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert sorted(sums) == [f for f in files if f != "SHA256SUMS"]
    for name, digest in sums.items():
        assert hashlib.sha256((out / name).read_bytes()).hexdigest() == digest, name


# --- hack/image --------------------------------------------------------------------------------


def test_oci_archive_with_the_agent_config_is_valid(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "opt" / "kdoctor" / "bin").mkdir(parents=True)
    exe = root / "opt" / "kdoctor" / "bin" / "kubectl-kdoctor"
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    layer = oci.layer_from_dir(root, tmp_path / "layer.tar.gz")
    ref = image.default_agent_ref()
    out = tmp_path / "image.tar"
    digest = oci.write_archive(out, ref, [layer], **image.agent_config("9.9.9"))
    info = oci.inspect_archive(out)
    assert info["digest"] == digest and info["ref"] == ref and info["layers"] == 1
    assert info["platform"] == f"linux/{oci.HOST_ARCH}"
    assert info["config"]["Entrypoint"] == ["kubectl-kdoctor", "agent"]
    assert info["config"]["User"] == "65532:65532"
    # The same tree gives the same bytes (reproducible layers and archive).
    again = oci.layer_from_dir(root, tmp_path / "layer2.tar.gz")
    assert again.digest == layer.digest
    # The checker catches a corrupted layer blob.
    bad = tmp_path / "bad.tar"
    with tarfile.open(out) as src, tarfile.open(bad, "w") as dst:
        for m in src.getmembers():
            data = src.extractfile(m).read()  # type: ignore[union-attr]
            if m.name.endswith(layer.digest.split(":")[1]):
                data = gzip.compress(b"not the layer", mtime=0)
                m.size = len(data)
            dst.addfile(m, io.BytesIO(data))
    with pytest.raises(oci.ArchiveError, match="layer 0"):
        oci.inspect_archive(bad)


@needs_dist
@pytest.mark.timeout(BUILD_TIMEOUT)
def test_make_image_writes_a_valid_agent_archive(tmp_path: Path) -> None:
    if os.geteuid() != 0 or shutil.which("debootstrap") is None:
        pytest.skip("make image needs root and debootstrap (hack/setup --target full)")
    proc = run(["make", "-s", "image", f"IMAGE_OUT={tmp_path}"], cwd=REPO, timeout=BUILD_TIMEOUT)
    assert proc.returncode == 0, proc.stderr[-4000:]
    archive = tmp_path / image.archive_name()
    info = oci.inspect_archive(archive)
    assert info["ref"] == image.default_agent_ref()
    assert info["config"]["Entrypoint"] == ["kubectl-kdoctor", "agent"]
    assert info["config"]["User"] == "65532:65532"
    assert info["layers"] == 2
    assert json.loads(proc.stdout)["digest"] == info["digest"]
