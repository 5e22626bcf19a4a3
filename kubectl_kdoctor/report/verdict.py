"""Verdicts, stricter than kdoctor on purpose (SPEC: Verdicts).

A target passes when its success rate reaches the expected rate and every latency bound
given holds. Latency bounds are judged on latency from the *intended* send time. When the
generator itself fell behind (send lag p99 above ``MAX_SEND_LAG``), its latency figures
would include its own delay, so the measurement is flagged invalid and a latency bound
cannot pass on it.
"""

from __future__ import annotations

import dataclasses

from kubectl_kdoctor.engine.stats import TargetStats
from kubectl_kdoctor.task import Expect

MAX_SEND_LAG = 0.010  # seconds: send lag p99 above this makes latency figures invalid


@dataclasses.dataclass(frozen=True, slots=True)
class Verdict:
    passed: bool
    reasons: tuple[str, ...] = ()
    invalid: bool = False  # generator lag too high for latency figures to be trusted


def ms(us: float) -> str:
    return f"{us / 1000:.2f}ms"


def judge(stats: TargetStats, expect: Expect) -> Verdict:
    reasons: list[str] = []
    lag_p99 = stats.send_lag.percentile(0.99)
    invalid = stats.send_lag.n > 0 and lag_p99 > MAX_SEND_LAG * 1e6
    if stats.requests == 0:
        reasons.append("no request was made")
    elif stats.success_rate < expect.success_rate:
        detail = stats.failure_summary()
        reasons.append(
            f"success rate {stats.success_rate:.4f} < expected {expect.success_rate:g}"
            + (f" ({stats.failures} of {stats.requests} failed: {detail})" if detail else "")
        )
    if expect.mean_delay is not None and stats.latency.n:
        mean = stats.latency.mean
        if mean > expect.mean_delay * 1e6:
            reasons.append(f"mean latency {ms(mean)} > expected {ms(expect.mean_delay * 1e6)}")
    if expect.p99 is not None and stats.latency.n:
        p99 = stats.latency.percentile(0.99)
        if p99 > expect.p99 * 1e6:
            reasons.append(f"p99 latency {ms(p99)} > expected {ms(expect.p99 * 1e6)}")
    latency_bounded = expect.mean_delay is not None or expect.p99 is not None
    if (expect.mean_delay is not None or expect.p99 is not None) and not stats.latency.n:
        reasons.append("no successful answer to measure latency on")
    if invalid and latency_bounded:
        reasons.append(
            f"measurement invalid: the generator's send lag p99 was {ms(lag_p99)} "
            f"(> {ms(MAX_SEND_LAG * 1e6)}); lower --qps or give the agent more CPU"
        )
    return Verdict(not reasons, tuple(reasons), invalid)
