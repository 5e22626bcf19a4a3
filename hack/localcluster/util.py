"""Small helpers: running commands, waiting, process bookkeeping and memory accounting."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TypeVar

from hack.localcluster import config

T = TypeVar("T")


class ClusterError(RuntimeError):
    """Something about the local cluster failed; the message says what and where to look."""


def log(msg: str) -> None:
    print(f"[cluster] {msg}", file=sys.stderr, flush=True)


def run(
    argv: Sequence[str],
    *,
    check: bool = True,
    netns: str | None = None,
    input: str | None = None,
    timeout: float = 60,
) -> subprocess.CompletedProcess[str]:
    """Run a command (in a netns if given, via nsenter so /sys is not remounted)."""
    full = [*netns_prefix(netns), *argv] if netns else list(argv)
    proc = subprocess.run(
        full, input=input, capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and proc.returncode != 0:
        raise ClusterError(
            f"command failed ({proc.returncode}): {' '.join(full)}\n{proc.stderr.strip()}"
        )
    return proc


def netns_prefix(netns: str) -> list[str]:
    return ["nsenter", f"--net=/run/netns/{netns}", "--"]


def wait_for(
    what: str,
    probe: Callable[[], T | None],
    timeout: float,
    interval: float = 0.25,
    on_timeout: Callable[[], str] | None = None,
) -> T:
    """Call ``probe`` until it returns something truthy; raise ClusterError after ``timeout``.
    Exceptions from ``probe`` count as "not yet", except ClusterError, which is fatal."""
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while True:
        try:
            result = probe()
            if result:
                return result
        except ClusterError:
            raise
        except Exception as exc:
            last_exc = exc
        if time.monotonic() > deadline:
            detail = f" (last error: {last_exc})" if last_exc else ""
            extra = f"\n{on_timeout()}" if on_timeout else ""
            raise ClusterError(f"timed out after {timeout:.0f}s waiting for {what}{detail}{extra}")
        time.sleep(interval)


def tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return f"({path} does not exist)"
    return f"--- last {lines} lines of {path} ---\n" + "\n".join(text[-lines:])


# --- processes ---------------------------------------------------------------------------


def proc_start_time(pid: int) -> int | None:
    """Start time (clock ticks since boot) of ``pid``; None if it is gone. Guards PID reuse."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] == "Z":
        return None
    return int(fields[19])


def pid_alive(pid: int, start_time: int | None = None) -> bool:
    st = proc_start_time(pid)
    return st is not None and (start_time is None or st == start_time)


def cgroup_dir(group: str | None = None) -> Path:
    base = Path("/sys/fs/cgroup/freezer") / config.CGROUP_NAME
    return base / group if group else base


def cgroup_available() -> bool:
    return Path("/sys/fs/cgroup/freezer/cgroup.procs").exists()


def cgroup_pids(group: str | None = None) -> list[int]:
    """All processes in the cluster's freezer cgroup (or one of its sub-groups)."""
    root = cgroup_dir(group)
    pids: list[int] = []
    if not root.exists():
        return pids
    for procs in root.rglob("cgroup.procs"):
        with contextlib.suppress(OSError):
            pids.extend(int(p) for p in procs.read_text().split())
    return pids


def spawn(
    name: str,
    argv: Sequence[str],
    *,
    group: str,
    netns: str | None = None,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> int:
    """Start a long-running component detached from the caller (own session), with its output
    in ``logs/<name>.log``, inside the cluster's freezer cgroup ``group`` (so ``down`` finds it
    and everything it starts), and record its pid in ``pids/<name>``."""
    logs = config.STATE_DIR / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    pids = config.STATE_DIR / "pids"
    pids.mkdir(parents=True, exist_ok=True)
    full = [*netns_prefix(netns), *argv] if netns else list(argv)
    if cgroup_available():
        cg = cgroup_dir(group)
        cg.mkdir(parents=True, exist_ok=True)
        # Join the cgroup before exec, so nothing the component forks can escape it.
        full = ["sh", "-c", f'echo $$ > {cg}/cgroup.procs && exec "$@"', "sh", *full]
    with (logs / f"{name}.log").open("ab") as out:
        proc = subprocess.Popen(
            full,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
            cwd=cwd,
            close_fds=True,
        )
    start = None
    for _ in range(100):
        start = proc_start_time(proc.pid)
        if start is not None:
            break
        time.sleep(0.01)
    (pids / name).write_text(f"{proc.pid} {start or 0}\n")
    return proc.pid


def recorded_pid(name: str) -> tuple[int, int] | None:
    try:
        pid, start = (config.STATE_DIR / "pids" / name).read_text().split()
    except (FileNotFoundError, ValueError):
        return None
    return int(pid), int(start)


def component_alive(name: str) -> bool:
    rec = recorded_pid(name)
    return rec is not None and pid_alive(rec[0], rec[1] or None)


def stop_component(name: str, timeout: float = 10) -> None:
    """SIGTERM a recorded component, SIGKILL after ``timeout``; forget its pid."""
    rec = recorded_pid(name)
    if rec and pid_alive(rec[0], rec[1] or None):
        kill_and_wait([rec[0]], timeout)
    (config.STATE_DIR / "pids" / name).unlink(missing_ok=True)


def kill_and_wait(pids: Iterable[int], timeout: float = 10) -> None:
    pids = list(pids)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(pid_alive(p) for p in pids):
            return
        time.sleep(0.1)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(pid_alive(p) for p in pids):
        time.sleep(0.05)


def pss_kib(pid: int) -> int:
    """Proportional set size of one process in KiB (shared pages split between sharers)."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        pass
    return 0


def process_name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "?"
