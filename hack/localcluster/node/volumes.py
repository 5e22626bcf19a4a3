"""Pod volumes on the simulated node: configMap, secret, emptyDir, projected (incl. the
service-account token the ServiceAccount admission plugin injects), downwardAPI, hostPath.

Content volumes are written the way the kubelet's AtomicWriter does (files under a
timestamped dir, a ``..data`` symlink swapped atomically, user-visible names symlinked
through it), so updates are atomic for readers and visible through the bind mounts.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hack.localcluster.kube import JSON, ApiError, Kube

DEFAULT_MODE = 0o644
TOKEN_DEFAULT_EXPIRY = 3607


class VolumeError(Exception):
    """A volume cannot be set up (the pod stays ContainerCreating; event FailedMount)."""


def atomic_write(target: Path, files: dict[str, tuple[bytes, int]]) -> bool:
    """Make ``target`` show exactly ``files`` (relative path -> (content, mode)).
    Returns True if anything changed."""
    target.mkdir(parents=True, exist_ok=True)
    data_link = target / "..data"
    if data_link.is_symlink():
        current = target / os.readlink(data_link)
        if _same(current, files):
            return False
    stamp = target / f"..{time.strftime('%Y_%m_%d_%H_%M_%S')}.{time.monotonic_ns() % 10**9}"
    stamp.mkdir()
    for rel, (content, mode) in files.items():
        p = stamp / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(content)
        p.chmod(mode)
    stamp.chmod(0o755)
    tmp_link = target / "..data_tmp"
    with contextlib.suppress(FileNotFoundError):
        tmp_link.unlink()
    tmp_link.symlink_to(stamp.name)
    old = os.readlink(data_link) if data_link.is_symlink() else None
    tmp_link.replace(data_link)
    tops = {rel.split("/", 1)[0] for rel in files}
    for top in tops:
        link = target / top
        if not link.is_symlink():
            link.symlink_to(f"..data/{top}")
    for entry in target.iterdir():
        if entry.name.startswith(".."):
            continue
        if entry.name not in tops:
            entry.unlink()
    if old and old != stamp.name:
        shutil.rmtree(target / old, ignore_errors=True)
    return True


def _same(current: Path, files: dict[str, tuple[bytes, int]]) -> bool:
    existing = {str(p.relative_to(current)) for p in current.rglob("*") if p.is_file()}
    if existing != set(files):
        return False
    for rel, (content, mode) in files.items():
        p = current / rel
        if p.read_bytes() != content or (p.stat().st_mode & 0o777) != mode:
            return False
    return True


def parse_quantity(q: str) -> float:
    suffixes = {
        "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60,
        "n": 1e-9, "u": 1e-6, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15,
        "E": 1e18,
    }  # fmt: skip
    q = str(q).strip()
    for s in sorted(suffixes, key=len, reverse=True):
        if q.endswith(s):
            return float(q[: -len(s)]) * suffixes[s]
    return float(q)


class PodContext:
    """What field and resource references of one pod resolve against."""

    def __init__(self, pod: JSON, host_ips: list[str], pod_ips: list[str], node_alloc: JSON):
        self.pod = pod
        self.host_ips = host_ips
        self.pod_ips = pod_ips
        self.node_alloc = node_alloc

    def field(self, path: str) -> str:
        md = self.pod["metadata"]
        spec = self.pod["spec"]
        if path.startswith(("metadata.labels['", "metadata.annotations['")):
            which = "labels" if "labels" in path else "annotations"
            key = path.split("['", 1)[1].rstrip("]").rstrip("'")
            return str((md.get(which) or {}).get(key, ""))
        simple: dict[str, Callable[[], str]] = {
            "metadata.name": lambda: md["name"],
            "metadata.namespace": lambda: md["namespace"],
            "metadata.uid": lambda: md["uid"],
            "metadata.labels": lambda: _kv_lines(md.get("labels") or {}),
            "metadata.annotations": lambda: _kv_lines(md.get("annotations") or {}),
            "spec.nodeName": lambda: spec.get("nodeName", ""),
            "spec.serviceAccountName": lambda: spec.get("serviceAccountName", ""),
            "status.hostIP": lambda: self.host_ips[0] if self.host_ips else "",
            "status.hostIPs": lambda: ",".join(self.host_ips),
            "status.podIP": lambda: self.pod_ips[0] if self.pod_ips else "",
            "status.podIPs": lambda: ",".join(self.pod_ips),
        }
        if path not in simple:
            raise VolumeError(f"unsupported fieldRef {path!r}")
        return simple[path]()

    def resource(self, ref: JSON, default_container: str | None) -> str:
        cname = ref.get("containerName") or default_container
        res = ref["resource"]
        container: JSON = next(
            (c for c in self.pod["spec"].get("containers", []) if c["name"] == cname), {}
        )
        kind, name = res.split(".", 1)
        value = (container.get("resources", {}).get(kind) or {}).get(name)
        if value is None:  # unset limits default to the node's allocatable
            value = self.node_alloc.get(name, "0") if kind == "limits" else "0"
        divisor = parse_quantity(ref.get("divisor") or "1")
        amount = parse_quantity(value) / divisor
        return str(int(-(-amount // 1)))  # ceil, as the kubelet does


def _kv_lines(d: dict[str, str]) -> str:
    return "\n".join(f'{k}="{v}"' for k, v in sorted(d.items()))


class VolumeManager:
    """Materializes one pod's volumes under ``root`` and answers mount requests."""

    def __init__(self, kube: Kube, pod: JSON, root: Path, ctx: PodContext) -> None:
        self.kube = kube
        self.pod = pod
        self.root = root
        self.ctx = ctx
        self.ns = pod["metadata"]["namespace"]
        self.paths: dict[str, Path] = {}
        self.token_due: float = float("inf")
        self._tokens: dict[str, tuple[str, float]] = {}  # key -> (token, refresh_at)

    # -- sources ------------------------------------------------------------------------------
    def _get(self, kind: str, name: str, optional: bool) -> JSON | None:
        try:
            return self.kube.get(f"/api/v1/namespaces/{self.ns}/{kind}/{name}")
        except ApiError as exc:
            if exc.status == 404 and optional:
                return None
            if exc.status == 404:
                singular = kind[:-1]
                raise VolumeError(f'{singular} "{name}" not found') from exc
            raise VolumeError(f"{kind}/{name}: {exc.message}") from exc

    def _keyed_files(self, src: JSON, kind: str, default_mode: int) -> dict[str, tuple[bytes, int]]:
        name = src.get("name") or src.get("secretName", "")
        obj = self._get(kind, name, bool(src.get("optional")))
        if obj is None:
            return {}
        data: dict[str, bytes] = {}
        if kind == "secrets":
            data = {k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()}
        else:
            data = {k: v.encode() for k, v in (obj.get("data") or {}).items()}
            data.update({k: base64.b64decode(v) for k, v in (obj.get("binaryData") or {}).items()})
        items = src.get("items")
        if not items:
            return {k: (v, default_mode) for k, v in data.items()}
        out = {}
        for it in items:
            if it["key"] not in data:
                if src.get("optional"):
                    continue
                raise VolumeError(f"configmap references non-existent config key: {it['key']}")
            out[it["path"]] = (data[it["key"]], int(it.get("mode", default_mode)))
        return out

    def _downward_files(self, items: list[JSON], default_mode: int) -> dict[str, tuple[bytes, int]]:
        out = {}
        for it in items:
            if "fieldRef" in it:
                value = self.ctx.field(it["fieldRef"]["fieldPath"])
            else:
                value = self.ctx.resource(it["resourceFieldRef"], None)
            out[it["path"]] = (value.encode(), int(it.get("mode", default_mode)))
        return out

    def token(self, audience: str | None, expiry: int) -> str:
        key = f"{audience}|{expiry}"
        cached = self._tokens.get(key)
        if cached and cached[1] > time.time():
            return cached[0]
        md = self.pod["metadata"]
        sa = self.pod["spec"].get("serviceAccountName") or "default"
        body = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {
                "audiences": [audience] if audience else None,
                "expirationSeconds": expiry,
                "boundObjectRef": {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "name": md["name"],
                    "uid": md["uid"],
                },
            },
        }
        try:
            tr = self.kube.create(f"/api/v1/namespaces/{self.ns}/serviceaccounts/{sa}/token", body)
        except ApiError as exc:
            raise VolumeError(f"failed to fetch token: {exc.message}") from exc
        tok: str = tr["status"]["token"]
        refresh = time.time() + 0.8 * expiry  # the kubelet refreshes at 80% of the TTL
        self._tokens[key] = (tok, refresh)
        self.token_due = min(self.token_due, refresh)
        return tok

    def _projected_files(self, vol: JSON) -> dict[str, tuple[bytes, int]]:
        default_mode = int(vol.get("defaultMode", DEFAULT_MODE))
        out: dict[str, tuple[bytes, int]] = {}
        for src in vol.get("sources") or []:
            if "serviceAccountToken" in src:
                t = src["serviceAccountToken"]
                expiry = int(t.get("expirationSeconds") or TOKEN_DEFAULT_EXPIRY)
                tok = self.token(t.get("audience"), expiry)
                out[t["path"]] = (tok.encode(), default_mode)
            elif "configMap" in src:
                out.update(self._keyed_files(src["configMap"], "configmaps", default_mode))
            elif "secret" in src:
                out.update(self._keyed_files(src["secret"], "secrets", default_mode))
            elif "downwardAPI" in src:
                out.update(self._downward_files(src["downwardAPI"].get("items", []), default_mode))
            else:
                raise VolumeError(f"unsupported projected source {sorted(src)}")
        return out

    # -- lifecycle ----------------------------------------------------------------------------
    def setup(self) -> bool:
        """Create or refresh every volume; returns True if any content changed."""
        changed = False
        self.token_due = float("inf")
        for vol in self.pod["spec"].get("volumes") or []:
            name = vol["name"]
            path = self.root / name
            if "emptyDir" in vol:
                if not path.exists():
                    path.mkdir(parents=True)
                    path.chmod(0o777)
            elif "hostPath" in vol:
                hp = vol["hostPath"]
                path = Path(hp["path"])
                if hp.get("type") == "DirectoryOrCreate":
                    path.mkdir(parents=True, exist_ok=True)
                elif not path.exists():
                    raise VolumeError(f"hostPath type check failed: {path} does not exist")
            elif "configMap" in vol:
                mode = int(vol["configMap"].get("defaultMode", DEFAULT_MODE))
                files = self._keyed_files(vol["configMap"], "configmaps", mode)
                changed |= atomic_write(path, files)
            elif "secret" in vol:
                mode = int(vol["secret"].get("defaultMode", DEFAULT_MODE))
                files = self._keyed_files(vol["secret"], "secrets", mode)
                changed |= atomic_write(path, files)
            elif "projected" in vol:
                changed |= atomic_write(path, self._projected_files(vol["projected"]))
            elif "downwardAPI" in vol:
                d = vol["downwardAPI"]
                mode = int(d.get("defaultMode", DEFAULT_MODE))
                changed |= atomic_write(path, self._downward_files(d.get("items", []), mode))
            else:
                kinds = sorted(k for k in vol if k != "name")
                raise VolumeError(
                    f"volume {name!r}: type {kinds} is not supported by the local test cluster"
                )
            self.paths[name] = path
        return changed

    def mounts(self, container: JSON) -> list[dict[str, Any]]:
        out = []
        for vm in container.get("volumeMounts") or []:
            src = self.paths.get(vm["name"])
            if src is None:
                raise VolumeError(f"volumeMount {vm['name']!r} has no volume")
            if vm.get("subPath"):
                src = src / vm["subPath"]
                if not src.exists():
                    src.mkdir(parents=True)
            out.append({"src": str(src), "dst": vm["mountPath"], "ro": bool(vm.get("readOnly"))})
        return out

    def update_pod(self, pod: JSON) -> None:
        self.pod = pod
        self.ctx.pod = pod


def dump(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True)
