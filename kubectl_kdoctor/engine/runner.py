"""The public door of the engine: run targets concurrently, each at its own rate.

::

    stats = run_sync([Target("web", HttpSpec("http://10.0.0.1/"), Load(qps=100, duration=10))])

All targets share one event loop (uvloop when importable); each has its own executor and
pacer and fills its own ``TargetStats``. Network failures never raise: they are counted.
"""

from __future__ import annotations

import dataclasses
import gc
import os
from collections.abc import Callable, Sequence

import anyio

from kubectl_kdoctor.engine.dns import DnsExecutor
from kubectl_kdoctor.engine.http import make_http_executor
from kubectl_kdoctor.engine.pacing import Executor, drive
from kubectl_kdoctor.engine.spec import DnsSpec, HttpSpec, Load, split_userinfo
from kubectl_kdoctor.engine.stats import TargetStats

Progress = Callable[[str, TargetStats], None]


@dataclasses.dataclass(frozen=True)
class Target:
    """One thing to load: a name (for the report), what to send, and the rate plan."""

    name: str
    spec: HttpSpec | DnsSpec
    load: Load


def new_stats(target: Target) -> TargetStats:
    """Empty stats carrying the target's identity (name, kind, url, method, qps)."""
    spec = target.spec
    if isinstance(spec, DnsSpec):
        return TargetStats(
            name=target.name,
            kind="dns",
            url=spec.server_address,
            method=spec.protocol.lower(),
            qps=target.load.qps,
            extra={"domain": spec.domain, "qtype": spec.qtype.upper()},
        )
    return TargetStats(
        name=target.name,
        kind="http",
        url=split_userinfo(spec.url)[0],  # never the password
        method=spec.method.upper(),
        qps=target.load.qps,
    )


def make_executor(target: Target, stats: TargetStats) -> Executor:
    if isinstance(target.spec, DnsSpec):
        return DnsExecutor(target.spec, stats, target.load)
    return make_http_executor(target.spec, stats, target.load)


async def run_target(target: Target, progress: Progress | None = None) -> TargetStats:
    """Run one target to the end (schedule, then in-flight requests) and return its stats."""
    stats = new_stats(target)
    executor = make_executor(target, stats)
    await executor.open()
    tick: Callable[[], None] | None = None
    if progress is not None:
        cb = progress

        def report() -> None:
            cb(target.name, stats)

        tick = report
    await drive(executor, stats, target.load, tick)
    if progress is not None:
        progress(target.name, stats)
    return stats


async def run_targets(
    targets: Sequence[Target], progress: Progress | None = None
) -> list[TargetStats]:
    """Run every target concurrently; stats in the order of ``targets``."""
    results: list[TargetStats | None] = [None] * len(targets)

    async def one(i: int) -> None:
        results[i] = await run_target(targets[i], progress)

    raise_open_files_limit(sum(t.load.concurrency or t.load.inflight_cap() for t in targets) + 256)
    ensure_std_fds()
    # Objects alive now (imports, the caller's state) are not garbage: keep the collector
    # from walking them again and again while the load runs (fewer, shorter pauses).
    gc.freeze()
    try:
        async with anyio.create_task_group() as tg:
            for i in range(len(targets)):
                tg.start_soon(one, i)
    finally:
        gc.unfreeze()
    return [r for r in results if r is not None]


def ensure_std_fds() -> None:
    """Put /dev/null on a closed stdin/stdout/stderr, so that no socket gets fd 0-2 (libuv,
    under uvloop, aborts the process when it closes such a descriptor)."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            opened = os.open(os.devnull, os.O_RDWR)
            if opened != fd:  # another thread took it first
                os.close(opened)


def raise_open_files_limit(wanted: int) -> None:
    """Raise the soft RLIMIT_NOFILE towards ``wanted`` (never above the hard limit)."""
    try:
        import resource
    except ImportError:  # not on POSIX
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            pass


def run_sync(targets: Sequence[Target], progress: Progress | None = None) -> list[TargetStats]:
    """``run_targets`` in a new event loop: uvloop when importable, else plain asyncio."""
    ensure_std_fds()  # before the loop exists: its own descriptors must not be 0-2 either
    options: dict[str, bool] = {}
    try:
        import uvloop  # noqa: F401

        options["use_uvloop"] = True
    except ImportError:
        pass
    return anyio.run(run_targets, targets, progress, backend="asyncio", backend_options=options)
