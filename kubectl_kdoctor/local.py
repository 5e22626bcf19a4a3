"""``--local``: the same engine in this process, no cluster. Rounds run one after the other
(``--interval`` apart); the result is a ``RunResult`` with one node, this machine."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable

from kubectl_kdoctor.engine.runner import Target, run_sync
from kubectl_kdoctor.engine.spec import DnsSpec, HttpSpec
from kubectl_kdoctor.report.model import NodeResult, RunResult, TargetResult
from kubectl_kdoctor.report.verdict import judge
from kubectl_kdoctor.spec_kdoctor import kdoctor_spec
from kubectl_kdoctor.task import DNS, Task, guard_load

Progress = Callable[[str], None]


def target_name(task: Task) -> str:
    if task.kind == DNS:
        assert task.dns is not None
        d: DnsSpec = task.dns
        return f"type{d.qtype}_{d.server_address}_{d.domain}"
    return "HttpAppHealthy target"


def run_local(
    task: Task, name: str, progress: Progress | None = None, force: bool = False
) -> RunResult:
    """Run ``task`` here. The load guard of job mode applies (one agent, one target): above
    MAX_TOTAL_QPS requests/s needs ``force``, so a typo cannot spin this machine."""
    spec: HttpSpec | DnsSpec | None = task.http if task.http else task.dns
    assert spec is not None
    guard_load(task.load.qps, 1, 1, task.load.duration, force)
    node = socket.gethostname() or "local"
    run = RunResult(
        kind=task.kind,
        name=name,
        created=time.time(),
        spec=kdoctor_spec(task),
        expect=task.expect,
        rounds_expected=task.rounds,
        mode="local",
        expected_nodes=[node],
    )
    t0 = time.monotonic()
    for r in range(1, task.rounds + 1):
        start_at = t0 + (r - 1) * task.interval
        delay = start_at - time.monotonic()
        if delay > 0:
            if progress:
                progress(f"round {r}/{task.rounds} starts in {delay:.1f}s")
            time.sleep(delay)
        if progress:
            progress(
                f"round {r}/{task.rounds}: {task.load.qps} qps for {task.load.duration:g}s "
                f"to {getattr(spec, 'url', None) or getattr(spec, 'server_address', '')}"
            )
        begin = time.time()
        stats = run_sync([Target(target_name(task), spec, task.load)])
        nr = NodeResult(node=node, pod=f"pid-{os.getpid()}", round=r, start=begin, end=time.time())
        nr.targets = [TargetResult(s, judge(s, task.expect)) for s in stats]
        run.nodes.append(nr)
    return run
