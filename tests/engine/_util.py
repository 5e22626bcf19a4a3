"""Helpers shared by the engine tests."""

from __future__ import annotations

import time
from typing import Any

from bench.servers import Nginx
from kubectl_kdoctor.engine.runner import Target, run_sync
from kubectl_kdoctor.engine.spec import DnsSpec, HttpSpec, Load
from kubectl_kdoctor.engine.stats import TargetStats


def run_one(spec: HttpSpec | DnsSpec, **load: Any) -> TargetStats:
    """Run one target with ``Load(**load)`` (short defaults) and return its stats."""
    load.setdefault("qps", 50)
    load.setdefault("duration", 0.5)
    load.setdefault("timeout", 2.0)
    [stats] = run_sync([Target("t", spec, Load(**load))])
    return stats


def log_lines_with(nginx: Nginx, marker: str, expect: int = 0) -> list[str]:
    """Access-log lines that contain ``marker`` (a unique query string or header value).

    nginx logs a request after answering it: wait (up to 2 s) for ``expect`` lines."""
    deadline = time.monotonic() + 2.0
    while True:
        lines = [line for line in nginx.log_lines() if marker in line]
        if len(lines) >= expect or time.monotonic() > deadline:
            return lines
        time.sleep(0.02)


def check_accounting(s: TargetStats) -> None:
    """Every due send is accounted for, once."""
    assert s.sent + s.skipped == s.planned
    assert s.completed == s.sent
    assert s.success + sum(s.errors.values()) - s.skipped == s.completed
    assert sum(s.codes.values()) == s.completed
    assert s.send_lag.n == s.sent
