"""The pacer: open-loop constant rate, latency from the intended send time, the in-flight
cap, falling behind, closed loop. Driven against real nginx, and against an in-memory
executor where the pacer alone is under test."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import anyio
import pytest

from bench.servers import Nginx, Unbound
from kubectl_kdoctor.engine.pacing import drive
from kubectl_kdoctor.engine.runner import Target, make_executor, new_stats
from kubectl_kdoctor.engine.spec import DnsSpec, HttpSpec, Load
from kubectl_kdoctor.engine.stats import BEHIND, OVERLOAD, TIMEOUT, TargetStats
from tests.engine._util import check_accounting, run_one

PERCENTILES = (0.5, 0.9, 0.95, 0.99)


class MemoryExecutor:
    """Answers every request ``delay`` seconds after it is sent (no network: the pacer's
    own behaviour under test). ``block`` seconds of busy-wait on the first send simulate a
    generator that stalls."""

    def __init__(self, stats: TargetStats, delay: float = 0.0, block: float = 0.0) -> None:
        self.stats = stats
        self.delay = delay
        self.block = block
        self.inflight = 0
        self.max_inflight = 0
        self.on_complete: Callable[[], None] | None = None
        self.sends: list[tuple[float, float]] = []

    async def open(self) -> None:
        pass

    def send(self, intended: float, sent: float) -> None:
        if self.block and not self.sends:
            time.sleep(self.block)
        self.sends.append((intended, sent))
        self.inflight += 1
        self.max_inflight = max(self.max_inflight, self.inflight)
        asyncio.get_running_loop().call_later(self.delay, self._done, intended, sent)

    def _done(self, intended: float, sent: float) -> None:
        if self.inflight == 0:
            return
        self.inflight -= 1
        now = time.perf_counter()
        self.stats.ok("200", int((now - intended) * 1e6), int((now - sent) * 1e6))
        if self.on_complete is not None:
            self.on_complete()

    def flush(self) -> None:
        pass

    def expire(self, now: float) -> None:
        pass

    def abort(self, cls: str, detail: str) -> None:
        for _ in range(self.inflight):
            self.stats.failed(cls, detail)
        self.inflight = 0

    async def close(self) -> None:
        pass


def drive_memory(
    load: Load, delay: float = 0.0, block: float = 0.0
) -> tuple[TargetStats, MemoryExecutor]:
    stats = TargetStats("mem")
    ex = MemoryExecutor(stats, delay, block)
    asyncio.run(drive(ex, stats, load))
    return stats, ex


@pytest.mark.parametrize(("qps", "duration"), [(20, 1.0), (1000, 1.0), (5000, 0.6)])
def test_schedule_is_exact_in_memory(qps: int, duration: float) -> None:
    stats, ex = drive_memory(Load(qps=qps, duration=duration, timeout=1.0))
    expected = qps * duration
    assert abs(stats.sent - expected) <= expected * 0.01 + 1
    assert stats.planned == round(expected)
    check_accounting(stats)
    # Request i is intended at t0 + i/qps, whatever happened before.
    t0 = ex.sends[0][0]
    for i, (intended, sent) in enumerate(ex.sends):
        assert intended == pytest.approx(t0 + i / qps, abs=1e-9)
        assert sent >= intended
    assert stats.attack == pytest.approx(duration, rel=0.05, abs=0.02)


def test_rate_against_nginx(nginx: Nginx) -> None:
    qps, duration = 400, 1.5
    s = run_one(HttpSpec(nginx.http_url), qps=qps, duration=duration)
    assert abs(s.sent - qps * duration) <= qps * duration * 0.01 + 1
    assert s.success == s.sent == s.planned
    check_accounting(s)
    assert s.attack == pytest.approx(duration, rel=0.05, abs=0.02)
    # The achieved rate is the asked rate (completed per second of the sending period).
    assert s.completed / s.attack == pytest.approx(qps, rel=0.03)
    assert s.start > 0 and s.end >= s.start + s.attack


def test_latency_percentiles_are_ordered(nginx: Nginx) -> None:
    s = run_one(HttpSpec(nginx.http_url), qps=300, duration=1.0)
    for h in (s.latency, s.service, s.send_lag):
        values = [h.min, *h.percentiles(PERCENTILES), h.max]
        assert values == sorted(values), values
    assert 0 < s.latency.min <= s.latency.mean <= s.latency.max
    # Latency counts from the intended send time, service time from the actual send.
    assert s.latency.total >= s.service.total


def test_slow_server_shows_as_latency_not_as_a_lower_rate(nginx: Nginx) -> None:
    qps, duration, delay_ms = 40, 1.5, 300
    s = run_one(HttpSpec(nginx.slow_url + f"?ms={delay_ms}"), qps=qps, duration=duration)
    assert s.sent == s.planned == round(qps * duration)
    assert s.success == s.sent
    assert s.latency.percentile(0.5) >= delay_ms * 1000
    assert s.latency.min >= delay_ms * 1000 * 0.95
    assert s.attack == pytest.approx(duration, rel=0.05, abs=0.02)  # sending did not wait


def test_inflight_cap_skips_and_counts(nginx: Nginx) -> None:
    s = run_one(HttpSpec(nginx.slow_url + "?ms=400"), qps=100, duration=1.0, max_inflight=5)
    assert s.skipped > 0
    assert s.errors[OVERLOAD] == s.skipped
    assert s.sent + s.skipped == s.planned == 100
    assert s.success == s.sent  # everything sent was answered
    check_accounting(s)
    assert s.success_rate < 1.0  # skipped sends count against the success rate


def test_inflight_cap_in_memory() -> None:
    stats, ex = drive_memory(Load(qps=1000, duration=0.5, timeout=1.0, max_inflight=10), delay=0.1)
    assert ex.max_inflight <= 10
    assert stats.skipped > 0 and stats.errors[OVERLOAD] == stats.skipped
    check_accounting(stats)


def test_generator_behind_is_late_then_skipped() -> None:
    # The first send stalls the loop for 0.6 s: sends due in that time go out late, and
    # those more than max(timeout, 0.2 s) late are skipped as BEHIND, never dropped.
    stats, _ = drive_memory(Load(qps=500, duration=1.0, timeout=0.2), block=0.6)
    assert stats.skipped > 100
    assert stats.errors[BEHIND] == stats.skipped
    assert stats.late > 0
    assert stats.send_lag.max >= 100_000
    check_accounting(stats)


def test_inflight_requests_are_awaited_then_timed_out() -> None:
    # Answers arrive 0.3 s after sending, after the schedule ended: the pacer waits.
    stats, _ = drive_memory(Load(qps=100, duration=0.3, timeout=1.0), delay=0.3)
    assert stats.success == stats.sent == 30
    # Answers that would come after the timeout are ended as timeouts by the drain.
    stats, _ = drive_memory(Load(qps=100, duration=0.2, timeout=0.1), delay=5.0)
    assert stats.errors.get(TIMEOUT) == stats.sent == 20
    check_accounting(stats)


def test_closed_loop_keeps_concurrency(nginx: Nginx) -> None:
    s = run_one(HttpSpec(nginx.http_url), duration=0.5, concurrency=4)
    assert s.sent > 100
    assert s.success == s.sent == s.planned
    assert s.send_lag.n == s.sent and s.send_lag.max == 0
    check_accounting(s)
    stats, ex = drive_memory(Load(duration=0.3, concurrency=7), delay=0.002)
    assert ex.max_inflight == 7
    assert stats.success == stats.sent > 7


@pytest.mark.parametrize("kind", ["http", "dns"])
def test_stalled_generator_counts_late_reads_as_timeouts_and_says_why(
    nginx: Nginx, dns_server: Unbound, kind: str
) -> None:
    # The loop is blocked for 0.5 s, longer than the 0.3 s timeout, while answers to the
    # requests just sent arrive. The timeout is measured as latency is (from the intended
    # send to the answer read, issue 22): answers read after their deadline are timeouts,
    # never successes slower than the timeout, and their reason says this process was busy.
    spec: HttpSpec | DnsSpec = (
        HttpSpec(nginx.http_url)
        if kind == "http"
        else DnsSpec(dns_server.host, dns_server.a_name, port=dns_server.port)
    )
    load = Load(qps=200, duration=1.0, timeout=0.3)

    async def main() -> TargetStats:
        stats = new_stats(Target("t", spec, load))
        ex = make_executor(Target("t", spec, load), stats)
        await ex.open()

        async def stall() -> None:
            await asyncio.sleep(0.3)
            time.sleep(0.5)

        task = asyncio.get_running_loop().create_task(stall())
        await drive(ex, stats, load)
        await task
        return stats

    s = anyio.run(main, backend="asyncio", backend_options={"use_uvloop": True})
    assert s.success > 0 and s.latency.max <= 300_000
    assert set(s.errors) <= {TIMEOUT, BEHIND}, s.errors
    if TIMEOUT in s.errors:  # answers queued during the stall, read after their deadline
        assert "this process was busy" in s.error_samples[TIMEOUT], s.error_samples
    assert s.errors.get(BEHIND, 0) == s.skipped > 0
    assert s.send_lag.max >= 200_000  # the stall shows as send lag
    check_accounting(s)
