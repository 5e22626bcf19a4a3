"""The real node's images, built without a registry or Docker:

* the **agent image** ``ghcr.io/kubectl-kdoctor/agent:v<version>``, laid out like the
  repo's Dockerfile: a Debian bookworm root filesystem (``debootstrap --variant=minbase``
  with python3, from the Debian mirror apt already uses) as the base layer, and this
  package installed into a venv at /opt/kdoctor as the second layer; user 65532,
  entrypoint ``kubectl-kdoctor agent``, no pip or setuptools in the image;
* the **pause image** (containerd's sandbox_image): a static Go binary (hack/realnode/pause)
  in an otherwise empty layer.

Both are OCI image layout archives (hack/realnode/oci.py) for ``ctr images import``, cached
under ~/.cache/kubectl-kdoctor/realnode keyed by what goes into them: the base rootfs by its
recipe, the agent layer by the package's files, so a rerun with unchanged inputs takes no time
and a code change rebuilds only the agent layer.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hack.localcluster import config as cluster_config
from hack.realnode import config, oci

SUITE = "bookworm"
VARIANT = "minbase"
# python3: the interpreter (3.11, as the Dockerfile's python:3.11-slim-bookworm);
# ca-certificates and netbase: what the slim image has for TLS and /etc/services.
INCLUDE = ("python3", "ca-certificates", "netbase")
AGENT_UID = 65532
PAUSE_UID = 65535
IMAGE_PATH = "/opt/kdoctor/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Trimmed from the base like the slim images do (dpkg keeps its database, so it stays a
# consistent Debian system).
TRIM = ("var/cache/apt", "var/lib/apt/lists", "usr/share/doc", "usr/share/man",
        "usr/share/info", "usr/share/locale", "var/log", "var/cache/debconf")  # fmt: skip
PACKAGE_FILES = ("setup.cfg", "pyproject.toml", "README.md", "LICENSE")
KEEP_AGENT_IMAGES = 3  # cached agent images kept (one per package content)
BASE_RECIPE = 1  # bump when _build_base changes what goes into the base layer


def log(msg: str) -> None:
    print(f"[realnode] {msg}", file=sys.stderr, flush=True)


def _run(argv: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, **kw)  # type: ignore[call-overload]
    if proc.returncode != 0:
        raise RuntimeError(
            f"command failed ({proc.returncode}): {shlex.join(argv)}\n"
            f"{(proc.stderr or '')[-3000:]}{(proc.stdout or '')[-1500:]}"
        )
    return proc  # type: ignore[no-any-return]


@contextlib.contextmanager
def cache_lock() -> Iterator[None]:
    """One builder at a time (two test sessions may ask for the same image)."""
    config.CACHE_DIR.mkdir(parents=True, exist_ok=True)
    with (config.CACHE_DIR / ".lock").open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        # Builds happen only under this lock: a temp dir seen now is from a killed build.
        for stale in config.CACHE_DIR.glob("*-tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _sha(*chunks: bytes) -> str:
    h = hashlib.sha256()
    for c in chunks:
        h.update(hashlib.sha256(c).digest())
    return h.hexdigest()[:16]


def _dir_size(p: Path) -> int:
    return sum(f.lstat().st_size for f in p.rglob("*") if f.is_file() and not f.is_symlink())


# --- the Debian mirror apt uses ----------------------------------------------------------------


def debian_mirror() -> str:
    """The first http(s) URI of the system's apt sources that serves ``SUITE`` (deb822
    ``*.sources`` or one-line ``*.list``); KDOCTOR_REALNODE_MIRROR overrides it."""
    if os.environ.get("KDOCTOR_REALNODE_MIRROR"):
        return os.environ["KDOCTOR_REALNODE_MIRROR"]
    files = [Path("/etc/apt/sources.list")]
    d = Path("/etc/apt/sources.list.d")
    if d.is_dir():
        files += sorted(d.iterdir())
    for f in files:
        try:
            text = f.read_text()
        except OSError:
            continue
        if f.suffix == ".sources":
            for block in re.split(r"\n\s*\n", text):
                fields: dict[str, str] = {}
                for line in block.splitlines():
                    if ":" in line and not line.startswith(("#", " ")):
                        k, v = line.split(":", 1)
                        fields[k.strip().lower()] = v.strip()
                if SUITE in fields.get("suites", "").split() and fields.get("types") == "deb":
                    return fields.get("uris", "").split()[0]
        else:
            for line in text.splitlines():
                parts = re.sub(r"\[[^]]*\]", "", line).split()
                if len(parts) >= 3 and parts[0] == "deb" and parts[2] == SUITE:
                    return parts[1]
    return "http://deb.debian.org/debian"


# --- base root filesystem ----------------------------------------------------------------------


@dataclass(frozen=True)
class Base:
    dir: Path

    @property
    def rootfs(self) -> Path:
        return self.dir / "rootfs"

    @property
    def layer(self) -> oci.Layer:
        d = json.loads((self.dir / "layer.json").read_text())
        d["path"] = str(self.dir / "layer.tar.gz")  # built in a temp dir, then renamed
        return oci.Layer.from_json(d)


def _base_key(mirror: str) -> str:
    recipe = json.dumps([BASE_RECIPE, SUITE, VARIANT, INCLUDE, mirror, TRIM, AGENT_UID])
    return _sha(recipe.encode(), Path(oci.__file__).read_bytes())


def base(rebuild: bool = False) -> Base:
    mirror = debian_mirror()
    out = config.CACHE_DIR / f"base-{_base_key(mirror)}"
    if (out / ".complete").exists() and not rebuild:
        return Base(out)
    with cache_lock():
        if (out / ".complete").exists() and not rebuild:
            return Base(out)
        shutil.rmtree(out, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(prefix="base-tmp-", dir=config.CACHE_DIR))
        try:
            _build_base(tmp, mirror)
            tmp.rename(out)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return Base(out)


def _build_base(tmp: Path, mirror: str) -> None:
    if not shutil.which("debootstrap"):
        raise RuntimeError("debootstrap is not installed (hack/setup installs it)")
    rootfs = tmp / "rootfs"
    t0 = time.monotonic()
    log(f"debootstrap {SUITE} ({VARIANT}, +{','.join(INCLUDE)}) from {mirror}")
    _run(["debootstrap", f"--variant={VARIANT}", f"--include={','.join(INCLUDE)}", SUITE,
          str(rootfs), mirror], timeout=1800)  # fmt: skip
    t_boot = time.monotonic() - t0
    _run(["chroot", str(rootfs), "groupadd", "--gid", str(AGENT_UID), "kdoctor"])
    _run(["chroot", str(rootfs), "useradd", "--uid", str(AGENT_UID), "--gid", str(AGENT_UID),
          "--no-create-home", "--home-dir", "/tmp", "--shell", "/usr/sbin/nologin", "kdoctor"])  # fmt: skip
    for rel in TRIM:
        d = rootfs / rel
        if d.is_dir():
            for child in d.iterdir():
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child)
                else:
                    child.unlink()
    # Host-specific files debootstrap copied in; the runtime bind-mounts its own.
    for rel in ("etc/resolv.conf", "etc/hostname", "etc/machine-id"):
        f = rootfs / rel
        f.unlink(missing_ok=True)
        f.write_text("")
    layer = oci.layer_from_dir(rootfs, tmp / "layer.tar.gz",
                               exclude_contents=("dev", "proc", "sys", "run", "tmp"))  # fmt: skip
    (tmp / "layer.json").write_text(json.dumps(layer.to_json()))
    meta = {"debootstrap_s": round(t_boot, 1), "total_s": round(time.monotonic() - t0, 1),
            "rootfs_bytes": _dir_size(rootfs), "layer_bytes": layer.size, "mirror": mirror}  # fmt: skip
    (tmp / "meta.json").write_text(json.dumps(meta, indent=2))
    (tmp / ".complete").touch()
    log(f"base rootfs built in {meta['total_s']}s (debootstrap {meta['debootstrap_s']}s), "
        f"layer {layer.size / 1e6:.1f} MB")  # fmt: skip


# --- agent image ------------------------------------------------------------------------------


def package_version() -> str:
    text = (config.REPO / "kubectl_kdoctor" / "__init__.py").read_text()
    m = re.search(r'__version__\s*=\s*"([^"]+)"', text)
    if not m:
        raise RuntimeError("no __version__ in kubectl_kdoctor/__init__.py")
    return m.group(1)


def default_agent_ref() -> str:
    return f"{config.AGENT_REPOSITORY}:v{package_version()}"


def package_sources() -> list[Path]:
    files = [config.REPO / f for f in PACKAGE_FILES]
    files += sorted(
        p
        for p in (config.REPO / "kubectl_kdoctor").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    )
    return files


def _package_key() -> str:
    h = hashlib.sha256()
    for f in package_sources():
        h.update(str(f.relative_to(config.REPO)).encode() + b"\0")
        h.update(hashlib.sha256(f.read_bytes()).digest())
    return h.hexdigest()


@dataclass(frozen=True)
class Image:
    ref: str
    archive: Path
    meta: dict[str, object]


def agent_image(rebuild: bool = False) -> Image:
    b = base()
    ref = default_agent_ref()
    key = _sha(
        b.dir.name.encode(),
        _package_key().encode(),
        ref.encode(),
        Path(__file__).read_bytes(),
        Path(oci.__file__).read_bytes(),
    )
    out = config.CACHE_DIR / f"agent-{key}"
    if not (out / ".complete").exists() or rebuild:
        with cache_lock():
            if not (out / ".complete").exists() or rebuild:
                shutil.rmtree(out, ignore_errors=True)
                tmp = Path(tempfile.mkdtemp(prefix="agent-tmp-", dir=config.CACHE_DIR))
                try:
                    _build_agent(tmp, b, ref)
                    tmp.rename(out)
                except BaseException:
                    shutil.rmtree(tmp, ignore_errors=True)
                    raise
                _prune("agent-", keep=KEEP_AGENT_IMAGES)
    return Image(ref, out / "image.tar", json.loads((out / "meta.json").read_text()))


def _prune(prefix: str, keep: int) -> None:
    """Drop all but the ``keep`` newest complete cache entries named ``prefix``*."""
    entries = sorted(
        (d for d in config.CACHE_DIR.glob(f"{prefix}*") if (d / ".complete").exists()),
        key=lambda d: d.stat().st_mtime,
        reverse=True,
    )
    for d in entries[keep:]:
        shutil.rmtree(d, ignore_errors=True)


def _host_pip_dir() -> Path:
    out = _run([str(cluster_config.PYTHON), "-c",
                "import os, pip; print(os.path.dirname(pip.__file__))"]).stdout  # fmt: skip
    return Path(out.strip())


def agent_config(version: str) -> dict[str, Any]:
    """The agent image's config, as the Dockerfile sets it (entrypoint, user, env, ports)."""
    return {
        "entrypoint": ["kubectl-kdoctor", "agent"],
        "env": [
            f"PATH={IMAGE_PATH}",
            "PYTHONDONTWRITEBYTECODE=1",
            "PYTHONUNBUFFERED=1",
            "HOME=/tmp",
            "LANG=C.UTF-8",
        ],
        "user": f"{AGENT_UID}:{AGENT_UID}",
        "workdir": "/",
        "exposed_ports": ["8080/tcp", "8443/tcp"],
        "labels": {
            "org.opencontainers.image.title": "kubectl-kdoctor agent",
            "org.opencontainers.image.version": version,
            "org.opencontainers.image.base.name": f"debian:{SUITE} ({VARIANT}, debootstrap)",
        },
        "history": [
            f"debootstrap --variant={VARIANT} --include={','.join(INCLUDE)} {SUITE}",
            "python3 -m venv /opt/kdoctor && pip install kubectl-kdoctor (pip not kept)",
        ],
    }


def _build_agent(tmp: Path, b: Base, ref: str) -> None:
    t0 = time.monotonic()
    src = tmp / "src"
    for f in package_sources():
        dst = src / f.relative_to(config.REPO)
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(f, dst)
    wheels = tmp / "wheels"
    log("pip wheel: the package and its dependencies (host pip, PyPI)")
    _run([str(cluster_config.PYTHON), "-m", "pip", "wheel", "-q", "--wheel-dir",
          str(wheels), str(src)], timeout=1800)  # fmt: skip
    t_wheels = time.monotonic() - t0
    upper, work, merged = tmp / "upper", tmp / "work", tmp / "merged"
    for d in (upper, work, merged):
        d.mkdir()
    pip_dir = _host_pip_dir()
    inner = (
        "set -e; python3 -m venv --without-pip /opt/kdoctor; "
        "PYTHONPATH=/tmp/.pip /opt/kdoctor/bin/python -m pip install -q --no-index "
        "--find-links /tmp/.wheels --no-compile --no-cache-dir --disable-pip-version-check "
        "--root-user-action=ignore kubectl-kdoctor; "
        "find /opt/kdoctor -name __pycache__ -prune -exec rm -rf {} +; "
        "/opt/kdoctor/bin/kubectl-kdoctor --help >/dev/null"
    )
    m = shlex.quote(str(merged))
    script = "\n".join(
        [
            "set -e",
            f"mount -t overlay overlay -o lowerdir={shlex.quote(str(b.rootfs))},"
            f"upperdir={shlex.quote(str(upper))},workdir={shlex.quote(str(work))} {m}",
            f"mount -t proc proc {m}/proc",
            f"mount --bind /dev {m}/dev",
            f"mkdir -p {m}/tmp/.wheels {m}/tmp/.pip/pip",
            f"mount --bind {shlex.quote(str(wheels))} {m}/tmp/.wheels",
            f"mount --bind {shlex.quote(str(pip_dir))} {m}/tmp/.pip/pip",
            f"exec chroot {m} /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/tmp "
            f"PYTHONDONTWRITEBYTECODE=1 LANG=C.UTF-8 /bin/sh -c {shlex.quote(inner)}",
        ]
    )
    log("installing the package into /opt/kdoctor (chroot on an overlay of the base)")
    # A private mount namespace: every mount above vanishes when the shell exits.
    _run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script], timeout=900)
    t_install = time.monotonic() - t0 - t_wheels
    layer = oci.layer_from_dir(upper, tmp / "agent-layer.tar.gz", only=["opt/kdoctor"])
    venv_bytes = _dir_size(upper / "opt" / "kdoctor")
    version = package_version()
    digest = oci.write_archive(tmp / "image.tar", ref, [b.layer, layer], **agent_config(version))
    shutil.rmtree(src)
    shutil.rmtree(wheels)
    for d in (upper, work, merged):
        shutil.rmtree(d, ignore_errors=True)
    base_meta = json.loads((b.dir / "meta.json").read_text())
    meta = {
        "ref": ref,
        "manifest_digest": digest,
        "wheels_s": round(t_wheels, 1),
        "install_s": round(t_install, 1),
        "total_s": round(time.monotonic() - t0, 1),
        "venv_bytes": venv_bytes,
        "agent_layer_bytes": layer.size,
        "base_layer_bytes": b.layer.size,
        "base_rootfs_bytes": base_meta["rootfs_bytes"],
        "unpacked_bytes": base_meta["rootfs_bytes"] + venv_bytes,
        "compressed_bytes": layer.size + b.layer.size,
        "archive_bytes": (tmp / "image.tar").stat().st_size,
        "base_build_s": base_meta["total_s"],
        "debootstrap_s": base_meta["debootstrap_s"],
    }
    (tmp / "meta.json").write_text(json.dumps(meta, indent=2))
    (tmp / "agent-layer.tar.gz").unlink()  # inside image.tar now
    (tmp / ".complete").touch()
    log(f"agent image {ref} built in {meta['total_s']}s (wheels {meta['wheels_s']}s, "
        f"install {meta['install_s']}s): {meta['compressed_bytes'] / 1e6:.1f} MB compressed, "
        f"{meta['unpacked_bytes'] / 1e6:.1f} MB unpacked")  # fmt: skip


# --- pause image ------------------------------------------------------------------------------


def pause_image(rebuild: bool = False) -> Image:
    src = config.HERE / "pause"
    key = _sha((src / "go.mod").read_bytes(), (src / "main.go").read_bytes(),
               config.PAUSE_IMAGE.encode(), Path(oci.__file__).read_bytes())  # fmt: skip
    out = config.CACHE_DIR / f"pause-{key}"
    if not (out / ".complete").exists() or rebuild:
        with cache_lock():
            shutil.rmtree(out, ignore_errors=True)
            tmp = Path(tempfile.mkdtemp(prefix="pause-tmp-", dir=config.CACHE_DIR))
            try:
                t0 = time.monotonic()
                root = tmp / "root"
                root.mkdir()
                env = {**os.environ, "CGO_ENABLED": "0", "GOWORK": "off",
                       "GOTOOLCHAIN": "local", "GOFLAGS": "-mod=mod"}  # fmt: skip
                _run(["go", "build", "-trimpath", "-buildvcs=false", "-ldflags", "-s -w",
                      "-o", str(root / "pause"), "."], cwd=src, env=env, timeout=600)  # fmt: skip
                layer = oci.layer_from_dir(root, tmp / "layer.tar.gz")
                oci.write_archive(
                    tmp / "image.tar",
                    config.PAUSE_IMAGE,
                    [layer],
                    entrypoint=["/pause"],
                    user=f"{PAUSE_UID}:{PAUSE_UID}",
                    history=["go build hack/realnode/pause"],
                )
                (tmp / "layer.tar.gz").unlink()
                meta = {"ref": config.PAUSE_IMAGE, "total_s": round(time.monotonic() - t0, 1),
                        "compressed_bytes": layer.size}  # fmt: skip
                (tmp / "meta.json").write_text(json.dumps(meta))
                shutil.rmtree(root)
                (tmp / ".complete").touch()
                tmp.rename(out)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
    return Image(config.PAUSE_IMAGE, out / "image.tar", json.loads((out / "meta.json").read_text()))


# --- hack/image: the supported, registry-free path ---------------------------------------------


def archive_name() -> str:
    return f"kubectl-kdoctor-agent_v{package_version()}_linux_{oci.HOST_ARCH}.oci.tar"


def build_archive(out_dir: Path, rebuild: bool = False) -> tuple[Path, dict[str, object]]:
    """The agent image (:func:`agent_image`, the one the real node imports) copied to
    ``out_dir``; returns the archive and what :func:`oci.inspect_archive` reads in it."""
    img = agent_image(rebuild)
    out_dir.mkdir(parents=True, exist_ok=True)
    dest = out_dir / archive_name()
    tmp = dest.with_suffix(".tmp")
    shutil.copyfile(img.archive, tmp)
    tmp.replace(dest)
    return dest, oci.inspect_archive(dest)


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(
        prog="hack/image",
        description="The agent image as an OCI archive, built without Docker or a registry.",
    )
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="build (or take from the cache) the agent image archive")
    b.add_argument("--out", default="dist", help="directory for the archive (default dist)")
    b.add_argument("--rebuild", action="store_true", help="ignore the cache")
    b.add_argument("--dry-run", action="store_true", help="say what would be built; build nothing")
    i = sub.add_parser("inspect", help="check an OCI archive; print its ref, digest and config")
    i.add_argument("archive")
    args = ap.parse_args(argv)
    try:
        if args.cmd == "inspect":
            print(json.dumps(oci.inspect_archive(Path(args.archive)), indent=2))
            return 0
        out = Path(args.out)
        if args.dry_run:
            cached = (
                config.CACHE_DIR / f"base-{_base_key(debian_mirror())}" / ".complete"
            ).exists()
            print(f"would build {default_agent_ref()} (linux/{oci.HOST_ARCH}) into "
                  f"{out / archive_name()}; base rootfs "
                  f"{'cached' if cached else 'via debootstrap from ' + debian_mirror()}")  # fmt: skip
            return 0
        if os.geteuid() != 0:
            print("hack/image: building needs root (debootstrap, chroot, mounts)", file=sys.stderr)
            return 3
        dest, info = build_archive(out, args.rebuild)
        print(json.dumps({"archive": str(dest), **info}, indent=2))
    except (oci.ArchiveError, RuntimeError, OSError) as exc:
        print(f"hack/image: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 3 if not isinstance(exc, oci.ArchiveError) else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
