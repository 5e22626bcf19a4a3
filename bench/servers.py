"""Real servers on loopback for the benchmarks and the tests: nginx, unbound, a small
Python upstream, and a throw-away PKI made with the openssl CLI.

Each server runs from a temporary prefix on free ports, optionally pinned to CPUs with
taskset, in its own session; ``stop()`` ends exactly the process it started (by pid).
Used by ``bench`` and by ``tests/fixtures/servers.py``; this module gathers the names.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from bench.nginx import BIG_SIZE, INDEX_BODY, Nginx
from bench.pki import Pki
from bench.procs import ROOT, Process, Upstream, free_port, ipv6_loopback, wait_tcp
from bench.unbound import TXT_BIG_RECORDS, Unbound

__all__ = [
    "BIG_SIZE",
    "INDEX_BODY",
    "ROOT",
    "TXT_BIG_RECORDS",
    "Nginx",
    "Pki",
    "Process",
    "Unbound",
    "Upstream",
    "free_port",
    "ipv6_loopback",
    "servers",
    "wait_tcp",
]


@contextlib.contextmanager
def servers(
    base: Path, server_cpus: str | None = None, access_log: bool = False
) -> Iterator[tuple[Nginx, Unbound, Upstream]]:
    """nginx + unbound + upstream for the duration of the block (all stopped after)."""
    pki = Pki.make(base / "pki")
    up = Upstream(base / "upstream", server_cpus)
    started: list[Upstream | Nginx | Unbound] = [up]
    try:
        ng = Nginx.start(base / "nginx", pki, up.port, server_cpus, access_log)
        started.append(ng)
        ub = Unbound.start(base / "unbound", pki, server_cpus)
        started.append(ub)
        yield ng, ub, up
    finally:
        for s in reversed(started):
            s.stop()
