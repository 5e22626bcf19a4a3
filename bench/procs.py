"""Processes and ports for the servers of the benchmarks and tests: free loopback ports,
readiness, a server process ended by its pid, and the small Python upstream."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def ipv6_loopback() -> bool:
    """Whether ::1 can be bound here."""
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def free_port(udp_too: bool = False) -> int:
    """A port free on 127.0.0.1 for TCP (and UDP when asked), and on ::1 when it exists."""
    v6 = ipv6_loopback()
    for _ in range(200):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        try:
            checks = [(socket.AF_INET, socket.SOCK_STREAM, "127.0.0.1")]
            if udp_too:
                checks.append((socket.AF_INET, socket.SOCK_DGRAM, "127.0.0.1"))
            if v6:
                checks.append((socket.AF_INET6, socket.SOCK_STREAM, "::1"))
                if udp_too:
                    checks.append((socket.AF_INET6, socket.SOCK_DGRAM, "::1"))
            for fam, typ, host in checks:
                with socket.socket(fam, typ) as s:
                    s.bind((host, port))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port found")


def wait_tcp(
    host: str, port: int, timeout: float = 10.0, proc: subprocess.Popen[bytes] | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"server exited with {proc.returncode}") from None
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


PRIORITY = -10  # nice value for servers and generators: ahead of neighbours on a shared box


def pinned(argv: Sequence[str], cpus: str | None) -> list[str]:
    """``argv`` pinned to ``cpus`` with taskset, at ``PRIORITY`` (when allowed: ``nice``
    runs the command anyway, at the usual priority, when it may not raise it)."""
    cmd = list(argv)
    if shutil.which("nice"):
        cmd = ["nice", "-n", str(PRIORITY), *cmd]
    if cpus is not None and shutil.which("taskset"):
        cmd = ["taskset", "-c", cpus, *cmd]
    return cmd


class Process:
    """A server process we started; ``stop()`` ends it (and only it) by pid."""

    def __init__(
        self, argv: Sequence[str], cpus: str | None, log: Path, cwd: Path | None = None
    ) -> None:
        cmd = pinned(argv, cpus)
        self.log = log
        self._logf = open(log, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=self._logf,
            stderr=subprocess.STDOUT,
            cwd=str(cwd) if cwd else None,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 5.0) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)
        self._logf.close()

    def tail(self, n: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


class Upstream:
    """``bench.upstream`` in a subprocess: the slow, chunked, EOF, reset and garbage cases."""

    def __init__(self, prefix: Path, cpus: str | None = None) -> None:
        prefix.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = Process(
            [sys.executable, "-m", "bench.upstream", str(self.port)],
            cpus,
            prefix / "upstream.log",
            ROOT,
        )
        wait_tcp("127.0.0.1", self.port, proc=self.process.proc)

    def stop(self) -> None:
        self.process.stop()
