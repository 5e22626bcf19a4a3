"""Write OCI images without a registry or Docker: layer tarballs from directories, and an
OCI image layout archive (``oci-layout``, ``index.json``, ``blobs/sha256/...``) that
``ctr images import`` accepts.

Layers are reproducible: entries sorted, owners numeric (names dropped), mtimes clamped,
gzip header without a timestamp; so the same tree gives the same digest.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import platform
import stat
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
EPOCH = 0  # every mtime in a layer, and the image's "created"
# This machine's architecture in OCI terms: debootstrap builds the base for it.
_ARCHES = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}
HOST_ARCH = _ARCHES.get(platform.machine().lower(), platform.machine().lower())


@dataclass(frozen=True)
class Layer:
    """A gzipped layer blob on disk with its digests."""

    path: Path
    digest: str  # sha256:... of the gzipped blob
    diff_id: str  # sha256:... of the uncompressed tar
    size: int

    def to_json(self) -> dict[str, Any]:
        return {"path": str(self.path), "digest": self.digest, "diff_id": self.diff_id,
                "size": self.size}  # fmt: skip

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Layer:
        return cls(Path(d["path"]), d["digest"], d["diff_id"], int(d["size"]))


class _HashingWriter(io.RawIOBase):
    """Counts and hashes what passes through to ``out``."""

    def __init__(self, out: Any) -> None:
        self.out = out
        self.sha = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        mv = memoryview(b)
        self.sha.update(mv)
        self.size += len(mv)
        self.out.write(mv)
        return len(mv)


def _walk(root: Path, prefixes: list[str] | None, exclude_contents: set[str]) -> list[str]:
    """Relative paths under ``root`` in sorted order (parents first). ``prefixes`` keeps only
    those paths (and their parent directories); ``exclude_contents`` keeps a directory but
    none of what is in it (e.g. ``dev``, ``proc``)."""
    out: list[str] = []

    def visit(rel: str) -> None:
        full = root / rel if rel else root
        if rel:
            out.append(rel)
        if rel in exclude_contents:
            return
        if full.is_dir() and not full.is_symlink():
            for name in sorted(os.listdir(full)):
                child = f"{rel}/{name}" if rel else name
                if prefixes is not None and not any(
                    child == p or child.startswith(p + "/") or p.startswith(child + "/")
                    for p in prefixes
                ):
                    continue
                visit(child)

    visit("")
    return out


def layer_from_dir(
    root: Path,
    out: Path,
    *,
    only: list[str] | None = None,
    exclude_contents: tuple[str, ...] = (),
    level: int = 6,
) -> Layer:
    """Tar ``root`` (or only the paths in ``only``, relative, with their parents) into a
    gzipped layer at ``out``. Ownership and modes are kept; device nodes are skipped."""
    tmp = out.with_suffix(out.suffix + ".tmp")
    with tmp.open("wb") as raw:
        blob = _HashingWriter(raw)
        with gzip.GzipFile(fileobj=blob, mode="wb", compresslevel=level, mtime=0) as gz:
            plain = _HashingWriter(gz)
            with tarfile.open(fileobj=plain, mode="w|", format=tarfile.PAX_FORMAT) as tar:
                for rel in _walk(root, only, set(exclude_contents)):
                    full = root / rel
                    st = full.lstat()
                    if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                        continue  # the runtime provides /dev
                    if stat.S_ISSOCK(st.st_mode):
                        continue
                    info = tar.gettarinfo(str(full), arcname=rel)
                    info.uname = info.gname = ""
                    info.mtime = EPOCH
                    info.pax_headers = {}
                    if info.isfile():
                        with full.open("rb") as f:
                            tar.addfile(info, f)
                    else:
                        tar.addfile(info)
    tmp.replace(out)
    return Layer(out, f"sha256:{blob.sha.hexdigest()}", f"sha256:{plain.sha.hexdigest()}",
                 blob.size)  # fmt: skip


def _blob(data: bytes) -> tuple[str, bytes]:
    return f"sha256:{hashlib.sha256(data).hexdigest()}", data


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    info.mtime = 0
    tar.addfile(info, io.BytesIO(data))


def write_archive(
    out: Path,
    ref: str,
    layers: list[Layer],
    *,
    entrypoint: list[str] | None = None,
    cmd: list[str] | None = None,
    env: list[str] | None = None,
    user: str = "",
    workdir: str = "/",
    exposed_ports: list[str] | None = None,
    labels: dict[str, str] | None = None,
    history: list[str] | None = None,
    arch: str = HOST_ARCH,
) -> str:
    """Write an OCI image layout archive for one linux/``arch`` image named ``ref``; returns
    the manifest digest. ``ctr images import`` names the image from the
    ``io.containerd.image.name`` annotation."""
    cfg: dict[str, Any] = {"Env": env or [], "WorkingDir": workdir}
    if entrypoint is not None:
        cfg["Entrypoint"] = entrypoint
    if cmd is not None:
        cfg["Cmd"] = cmd
    if user:
        cfg["User"] = user
    if exposed_ports:
        cfg["ExposedPorts"] = {p: {} for p in exposed_ports}
    if labels:
        cfg["Labels"] = labels
    config = {
        "created": "1970-01-01T00:00:00Z",
        "architecture": arch,
        "os": "linux",
        "config": cfg,
        "rootfs": {"type": "layers", "diff_ids": [la.diff_id for la in layers]},
        "history": [{"created": "1970-01-01T00:00:00Z", "created_by": h} for h in history or []],
    }
    cfg_digest, cfg_bytes = _blob(json.dumps(config, sort_keys=True).encode())
    manifest = {
        "schemaVersion": 2,
        "mediaType": MEDIA_MANIFEST,
        "config": {"mediaType": MEDIA_CONFIG, "digest": cfg_digest, "size": len(cfg_bytes)},
        "layers": [
            {"mediaType": MEDIA_LAYER, "digest": la.digest, "size": la.size} for la in layers
        ],
    }
    man_digest, man_bytes = _blob(json.dumps(manifest, sort_keys=True).encode())
    tag = ref.rsplit(":", 1)[1] if ":" in ref.rsplit("/", 1)[-1] else "latest"
    index = {
        "schemaVersion": 2,
        "mediaType": MEDIA_INDEX,
        "manifests": [
            {
                "mediaType": MEDIA_MANIFEST,
                "digest": man_digest,
                "size": len(man_bytes),
                "platform": {"architecture": arch, "os": "linux"},
                "annotations": {
                    "io.containerd.image.name": ref,
                    "org.opencontainers.image.ref.name": tag,
                },
            }
        ],
    }
    tmp = out.with_suffix(out.suffix + ".tmp")
    with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
        _add_bytes(tar, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        _add_bytes(tar, "index.json", json.dumps(index, sort_keys=True).encode())
        for d, data in ((cfg_digest, cfg_bytes), (man_digest, man_bytes)):
            _add_bytes(tar, f"blobs/sha256/{d.split(':', 1)[1]}", data)
        seen: set[str] = set()
        for la in layers:
            if la.digest in seen:
                continue
            seen.add(la.digest)
            info = tarfile.TarInfo(f"blobs/sha256/{la.digest.split(':', 1)[1]}")
            info.size = la.size
            info.mode = 0o644
            with la.path.open("rb") as f:
                tar.addfile(info, f)
    tmp.replace(out)
    return man_digest


class ArchiveError(Exception):
    """An OCI image layout archive that is not valid."""


def _sha256(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


def inspect_archive(path: Path) -> dict[str, Any]:
    """Check an OCI image layout archive (one image, as :func:`write_archive` writes it, or
    any single-manifest layout): ``oci-layout`` version, index, manifest, config and every
    layer blob are present with the digests and sizes that reference them, and each layer's
    uncompressed digest is its config ``diff_id``. Returns ``ref``, ``digest`` (manifest),
    ``platform``, ``config`` (the image config's ``config``), ``layers`` and ``bytes``; raises
    :class:`ArchiveError` naming the first fault."""
    with tarfile.open(path) as tar:
        members = {m.name.removeprefix("./"): m for m in tar.getmembers() if m.isfile()}

        def read(name: str) -> bytes:
            m = members.get(name)
            f = tar.extractfile(m) if m is not None else None
            if f is None:
                raise ArchiveError(f"{path}: no {name}")
            return f.read()

        def blob(desc: dict[str, Any], what: str) -> bytes:
            digest = str(desc.get("digest", ""))
            algo, _, hexd = digest.partition(":")
            if algo != "sha256" or len(hexd) != 64:
                raise ArchiveError(f"{path}: {what} has no sha256 digest ({digest!r})")
            data = read(f"blobs/sha256/{hexd}")
            if _sha256(data) != digest:
                raise ArchiveError(f"{path}: {what} blob does not match its digest {digest}")
            if len(data) != desc.get("size"):
                raise ArchiveError(f"{path}: {what} is {len(data)} bytes, not {desc.get('size')}")
            return data

        layout = json.loads(read("oci-layout"))
        if layout.get("imageLayoutVersion") != "1.0.0":
            raise ArchiveError(f"{path}: oci-layout version {layout.get('imageLayoutVersion')!r}")
        index = json.loads(read("index.json"))
        if index.get("schemaVersion") != 2 or len(index.get("manifests") or []) != 1:
            raise ArchiveError(f"{path}: index.json must list exactly one manifest")
        mdesc = index["manifests"][0]
        if mdesc.get("mediaType") != MEDIA_MANIFEST:
            raise ArchiveError(f"{path}: index entry is {mdesc.get('mediaType')}, not a manifest")
        manifest = json.loads(blob(mdesc, "manifest"))
        if manifest.get("schemaVersion") != 2 or manifest.get("mediaType") != MEDIA_MANIFEST:
            raise ArchiveError(f"{path}: the manifest is not an OCI image manifest")
        cdesc = manifest["config"]
        if cdesc.get("mediaType") != MEDIA_CONFIG:
            raise ArchiveError(f"{path}: config media type {cdesc.get('mediaType')}")
        config = json.loads(blob(cdesc, "config"))
        diff_ids = config.get("rootfs", {}).get("diff_ids") or []
        layers = manifest.get("layers") or []
        if not layers or len(layers) != len(diff_ids):
            raise ArchiveError(f"{path}: {len(layers)} layers but {len(diff_ids)} diff_ids")
        total = 0
        for i, (ldesc, diff_id) in enumerate(zip(layers, diff_ids, strict=True)):
            if ldesc.get("mediaType") != MEDIA_LAYER:
                raise ArchiveError(f"{path}: layer {i} media type {ldesc.get('mediaType')}")
            data = blob(ldesc, f"layer {i}")
            total += len(data)
            if _sha256(gzip.decompress(data)) != diff_id:
                raise ArchiveError(f"{path}: layer {i} does not match diff_id {diff_id}")
        plat = mdesc.get("platform") or {}
        if (plat.get("os"), plat.get("architecture")) != (
            config.get("os"),
            config.get("architecture"),
        ):
            raise ArchiveError(f"{path}: index platform {plat} differs from the config's")
        return {
            "ref": (mdesc.get("annotations") or {}).get("io.containerd.image.name", ""),
            "digest": mdesc["digest"],
            "platform": f"{config.get('os')}/{config.get('architecture')}",
            "config": config.get("config", {}),
            "layers": len(layers),
            "bytes": total,
        }
