"""Start one container process: enter the pod's netns, make a private mount (and UTS)
namespace with the pod's volumes, resolv.conf and hosts bind-mounted where the container
expects them, switch user, and exec the container's command.

Run as ``python launch.py SPEC.json`` (stdlib only, no package imports, so it starts fast).
SPEC: {"netns": path|null, "hostname": str|null, "masks": [{"dir", "keep": []}],
"mounts": [{"src","dst","ro"}], "image_paths": [path], "env": {},
"argv": [], "cwd": str, "uid": int, "gid": int, "groups": [int], "created_log": path,
"error_file": path|null}. On failure before exec it writes the reason to error_file and
exits 128 (the node agent reports the container as terminated with reason StartError).

``image_paths`` are the image's own files (the Python installation, the repository with its
``.venv``): a volume mounted over one of their parents (an emptyDir on /tmp with the checkout
under /tmp) must not hide them, as a volume never hides a real image's other directories, so
each is bound back in after the volumes that cover it.
"""

from __future__ import annotations

import ctypes
import json
import os
import stat
import sys
from typing import Any

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWNET = 0x40000000
MS_RDONLY = 1
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18

libc = ctypes.CDLL(None, use_errno=True)


class StartError(Exception):
    pass


def _check(ret: int, what: str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise StartError(f"{what}: {os.strerror(err)}")


def _record(created_log: str, path: str) -> None:
    if created_log:
        with open(created_log, "a") as f:
            f.write(path + "\n")


def _ensure(path: str, is_dir: bool, created_log: str) -> None:
    if os.path.lexists(path):
        return
    parent = os.path.dirname(path.rstrip("/")) or "/"
    _ensure(parent, True, created_log)
    if is_dir:
        os.mkdir(path, 0o755)
    else:
        with open(path, "a"):
            pass
    _record(created_log, path)


def _mount(src: str, dst: str, ro: bool, created_log: str, is_dir: bool) -> None:
    _ensure(dst, is_dir, created_log)
    _check(libc.mount(src.encode(), dst.encode(), None, MS_BIND | MS_REC, None), f"bind {dst}")
    if ro:
        flags = MS_BIND | MS_REMOUNT | MS_RDONLY
        _check(libc.mount(None, dst.encode(), None, flags, None), f"remount {dst} read-only")


def _mask(directory: str, keep: list[str]) -> None:
    """Hide ``directory`` behind an empty tmpfs, except the ``keep`` paths inside it (e.g. the
    Python installation under /root, which non-root containers must be able to execute)."""
    fds = [os.open(k, os.O_PATH) for k in keep]
    _check(libc.mount(b"tmpfs", directory.encode(), b"tmpfs", 0, b"mode=0755"), f"mask {directory}")
    for k, fd in zip(keep, fds, strict=True):
        os.makedirs(k, exist_ok=True)
        src = f"/proc/self/fd/{fd}".encode()
        _check(libc.mount(src, k.encode(), None, MS_BIND | MS_REC, None), f"bind {k}")
        os.close(fd)


def _image_binds(image_paths: list[str], volume_dsts: list[str]) -> list[dict[str, Any]]:
    """A bind of each image path that lies strictly inside a volume's mount point."""
    out = []
    for path in image_paths:
        p = os.path.normpath(path)
        for dst in volume_dsts:
            d = os.path.normpath(dst)
            if p != d and os.path.commonpath([p, d]) == d:
                out.append({"src": p, "dst": p, "ro": False, "image": True})
                break
    return out


def setup(spec: dict[str, Any]) -> None:
    if spec.get("netns"):
        fd = os.open(spec["netns"], os.O_RDONLY)
        _check(libc.setns(fd, CLONE_NEWNET), f"setns {spec['netns']}")
        os.close(fd)
    flags = CLONE_NEWNS | (CLONE_NEWUTS if spec.get("hostname") else 0)
    _check(libc.unshare(flags), "unshare")
    _check(libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None), "make / private")
    volumes = spec.get("mounts", [])
    mounts = sorted(
        volumes + _image_binds(spec.get("image_paths", []), [m["dst"] for m in volumes]),
        key=lambda m: m["dst"].count("/"),
    )
    # Open every source before the first mount: a volume mounted over a directory (an
    # emptyDir on /tmp, say) or a mask must not hide the sources of the mounts that follow.
    fds = [os.open(m["src"], os.O_PATH | os.O_CLOEXEC) for m in mounts]
    for mask in spec.get("masks", []):
        _mask(mask["dir"], mask["keep"])
    for m, fd in zip(mounts, fds, strict=True):
        _mount(
            f"/proc/self/fd/{fd}",
            m["dst"],
            bool(m.get("ro")),
            # an image path's mount point is made inside the volume over it, not on the host
            "" if m.get("image") else spec.get("created_log", ""),
            # the opened source's type, not its path's now: a mount point made as a file
            # for a directory would break every later container that mounts there
            stat.S_ISDIR(os.fstat(fd).st_mode),
        )
    for fd in fds:
        os.close(fd)
    if spec.get("hostname"):
        name = spec["hostname"].encode()
        _check(libc.sethostname(name, len(name)), "sethostname")
    try:
        os.chdir(spec.get("cwd") or "/")
    except OSError as exc:
        raise StartError(f"chdir to cwd ({spec.get('cwd')!r}) failed: {exc}") from exc
    uid, gid = int(spec.get("uid", 0)), int(spec.get("gid", 0))
    os.setgroups([int(g) for g in spec.get("groups", [])])
    os.setgid(gid)
    os.setuid(uid)


def main() -> None:
    with open(sys.argv[1]) as f:
        spec = json.load(f)
    argv = spec["argv"]
    # Opened before dropping privileges; close-on-exec, so a started container never sees it.
    err_fd = (
        os.open(spec["error_file"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        if spec.get("error_file")
        else -1
    )
    try:
        setup(spec)
        if not argv:
            raise StartError("no command specified")
        os.execvpe(argv[0], argv, spec["env"])
    except (StartError, OSError) as exc:
        if isinstance(exc, FileNotFoundError) and argv:
            msg = f'exec: "{argv[0]}": executable file not found in $PATH'
        elif isinstance(exc, PermissionError) and argv:
            msg = f'exec: "{argv[0]}": permission denied'
        else:
            msg = str(exc)
        msg = f"failed to create containerd task: failed to start container process: {msg}"
        if err_fd >= 0:
            os.write(err_fd, msg.encode())
        print(msg, file=sys.stderr)
        os._exit(128)


if __name__ == "__main__":
    main()
