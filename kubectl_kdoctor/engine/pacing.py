"""The pacer: when each request is sent, whatever the responses do.

Open loop (the default): request ``i`` is due at ``t0 + i / qps`` on a monotonic clock. The
pacer sleeps in ticks of about a millisecond and, on each wake-up, sends every request that
has fallen due since (a small burst), so the achieved rate does not drift with sleep
jitter or slow responses. Each send records its lag (actual minus intended send time); an
executor measures *latency* from the intended time (so a slow server shows up as latency, not
as a lower rate: no coordinated omission) and *service time* from the actual send.

Sends are never silently dropped. A due send is skipped and counted (``stats.skip``) when
the in-flight cap is reached (``OVERLOAD``) or when the generator is so far behind that the
send would be more than ``max(timeout, MIN_MAX_LAG)`` late (``BEHIND``). After the last due
send the pacer keeps ticking, expiring timed-out requests, until nothing is in flight.

Timeouts are judged against the time of the previous wake-up, not the current one: the loop
has polled the sockets since then, so an answer waiting in a socket is read before its
request is declared timed out. The deadline is ``intended + timeout``, as latency is measured:
an answer read after it (this process was stalled or descheduled) is a timeout whose reason
says that this process was busy, never a success slower than the timeout.

Closed loop (``Load.concurrency > 0``, for benchmarks): keep that many requests in flight
and send the next as soon as one ends, for ``duration`` seconds; intended = actual send time.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from typing import Protocol

from kubectl_kdoctor.engine.histogram import Histogram
from kubectl_kdoctor.engine.spec import Load
from kubectl_kdoctor.engine.stats import BEHIND, TIMEOUT, TargetStats

TICK = 0.001  # seconds between wake-ups when sends are due more often than that
MIN_MAX_LAG = 0.2  # a send may be this late (or the timeout, if longer) before it is skipped
DRAIN_SLACK = 0.25  # extra wait for in-flight requests beyond their timeout
PROGRESS_EVERY = 1.0  # seconds between progress callbacks

clock = time.perf_counter  # the one clock of the engine: monotonic, sub-microsecond


class Executor(Protocol):
    """What the pacer drives: one target's transport (HTTP, HTTP/2, DNS)."""

    inflight: int  # requests sent (or queued for a connection) and not yet ended
    on_complete: Callable[[], None] | None  # called after each ended request, if set

    async def open(self) -> None:
        """Prepare (resolve names, build templates, open sockets); never raises for a
        network failure: those are recorded per request."""

    def send(self, intended: float, sent: float) -> None:
        """Start one request due at ``intended`` and handed over at ``sent`` (clock())."""

    def flush(self) -> None:
        """Write what ``send`` buffered (called after each burst)."""

    def expire(self, now: float) -> None:
        """End requests whose timeout has passed as TIMEOUT."""

    def abort(self, cls: str, detail: str) -> None:
        """End every request still in flight with ``cls``."""

    async def close(self) -> None:
        """Close every connection and socket."""


async def drive(
    executor: Executor,
    stats: TargetStats,
    load: Load,
    progress: Callable[[], None] | None = None,
) -> TargetStats:
    """Run one target's load through ``executor`` into ``stats`` and return ``stats``."""
    stats.qps = load.qps
    try:
        if load.concurrency > 0:
            await _closed_loop(executor, stats, load, progress)
        else:
            await _open_loop(executor, stats, load, progress)
        await _drain(executor, stats, load)
    finally:
        executor.on_complete = None
        await executor.close()
    stats.end = time.time()
    return stats


async def _open_loop(
    ex: Executor, stats: TargetStats, load: Load, progress: Callable[[], None] | None
) -> None:
    qps = float(load.qps)
    planned = load.planned
    stats.planned = planned
    cap = load.inflight_cap()
    max_lag = max(load.timeout, MIN_MAX_LAG)
    send, mark, flush, expire = ex.send, stats.mark_sent, ex.flush, ex.expire
    sleep = asyncio.sleep
    t0 = clock()
    stats.start = time.time()
    next_progress = t0 + PROGRESS_EVERY
    polled = t0  # the loop polled the sockets after this time (see _sleep)
    i = 0
    while i < planned:
        now = clock()
        expire(polled)
        due = int((now - t0) * qps) + 1
        due = min(due, planned)
        if i < due:
            # Sends more than max_lag late are skipped in one go (the generator is behind).
            too_late = math.ceil((now - max_lag - t0) * qps)
            if too_late > i:
                n = min(too_late, due) - i
                stats.skip(n, BEHIND)
                i += n
            while i < due:
                if ex.inflight >= cap:
                    stats.skip()
                    i += 1
                    continue
                intended = t0 + i / qps
                i += 1
                sent = clock()
                send(intended, sent)
                mark(sent - intended)
            flush()
        if progress is not None and now >= next_progress:
            next_progress = now + PROGRESS_EVERY
            progress()
        if i >= planned:
            break
        polled = clock()
        delay = t0 + i / qps - polled
        await sleep(delay if delay > TICK else TICK)
    stats.attack = clock() - t0


async def _closed_loop(
    ex: Executor, stats: TargetStats, load: Load, progress: Callable[[], None] | None
) -> None:
    conc = load.concurrency
    loop = asyncio.get_running_loop()
    send, flush = ex.send, ex.flush
    t0 = clock()
    t_end = t0 + load.duration
    stats.start = time.time()
    scheduled = False  # a flush + refill is queued for the end of this loop iteration
    busy = False  # inside a send made from on_complete (a synchronous failure recurses)
    count = 0  # sends not yet added to stats.sent / stats.planned

    def refill() -> None:
        # Intended = actual send time here, so every lag is 0: counted in bulk below.
        nonlocal scheduled, count
        scheduled = False
        n = conc - ex.inflight
        if n > 0:
            s = clock()
            if s < t_end:
                for _ in range(n):
                    send(s, s)
                count += n
        flush()

    def on_complete() -> None:
        # Send the next request at once (UDP goes out now; streams write on flush, once
        # per loop iteration), unless called back from inside such a send.
        nonlocal scheduled, busy, count
        if not busy and ex.inflight < conc:
            s = clock()
            if s < t_end:
                busy = True
                try:
                    send(s, s)
                finally:
                    busy = False
                count += 1
        if not scheduled:
            scheduled = True
            loop.call_soon(refill)

    ex.on_complete = on_complete
    next_progress = t0 + PROGRESS_EVERY
    polled = t0
    while True:
        now = clock()
        if now >= t_end:
            break
        ex.expire(polled)
        refill()
        if progress is not None and now >= next_progress:
            next_progress = now + PROGRESS_EVERY
            stats.sent += count
            stats.planned += count
            count = 0
            progress()
        polled = clock()
        await asyncio.sleep(TICK)
    ex.on_complete = None
    stats.sent += count
    stats.planned += count
    stats.attack = clock() - t0
    if stats.sent:
        n = stats.sent - stats.send_lag.n
        zeros = {"count": n, "sum": 0, "min": 0, "max": 0, "buckets": f"0:{n}"}
        stats.send_lag.merge(Histogram.from_dict(zeros))


async def _drain(ex: Executor, stats: TargetStats, load: Load) -> None:
    """Wait for in-flight requests, expiring them at their timeout."""
    polled = clock()
    deadline = polled + load.timeout + DRAIN_SLACK
    while ex.inflight > 0:
        if clock() >= deadline:
            ex.abort(TIMEOUT, "no answer before the end of the run")
            break
        ex.expire(polled)
        polled = clock()
        await asyncio.sleep(TICK)
