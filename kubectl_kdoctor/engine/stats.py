"""What one target's load produced: counts, error classes, codes, bytes and histograms.

A ``TargetStats`` is filled by an executor (``engine.http``, ``engine.dns``) while the pacer
drives it, serialised into the agent's report, and merged across rounds and agents exactly.

Times: ``latency`` is measured from each request's *intended* send time (open loop, no
coordinated omission), ``service`` from the moment it was actually written, and
``send_lag`` is the gap between the two for every send. Latency and service time are
recorded for requests that got an answer in time (success or not), so a slow server shows
as latency; requests that timed out or failed at the transport count in ``errors``.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable, Mapping
from typing import Any

from kubectl_kdoctor.engine.histogram import Histogram

# Error classes, shared by every executor and shown in reports.
TIMEOUT = "timeout"  # no complete answer within --timeout
REFUSED = "connection refused"  # RST on connect / ICMP port unreachable
RESET = "connection reset"  # the peer closed or reset an established connection mid-request
CONNECT = "connect error"  # other connect failures: no route, host unreachable, ...
TLS = "tls error"  # handshake or certificate verification failed
RESOLVE = "name resolution"  # the target's host name did not resolve
BAD_STATUS = "unexpected status"  # HTTP status not matching --expect-status
BAD_RCODE = "unexpected rcode"  # DNS rcode not matching --expect-rcode
PROTOCOL = "protocol error"  # malformed answer, id mismatch that never resolved, ...
TRUNCATED = "truncated (TC)"  # DNS: a UDP reply with TC=1 (too large, or RRL "slip")
OVERLOAD = "not sent (in-flight cap)"  # the generator skipped a send: too many in flight
BEHIND = "not sent (generator behind)"  # the generator fell further behind than it may catch up
OTHER = "other error"

ERROR_CLASSES = (
    TIMEOUT,
    REFUSED,
    RESET,
    CONNECT,
    TLS,
    RESOLVE,
    BAD_STATUS,
    BAD_RCODE,
    PROTOCOL,
    TRUNCATED,
    OVERLOAD,
    BEHIND,
    OTHER,
)

# A send more than this late (seconds after its intended time) counts as late.
LATE_THRESHOLD = 0.005


@dataclasses.dataclass(slots=True)
class TargetStats:
    """Results of one target (one URL, one DNS server+name, one netreach path)."""

    name: str
    kind: str = "http"  # http | dns
    url: str = ""  # http: URL; dns: server host:port
    method: str = "GET"  # http: method; dns: protocol (udp|tcp|tls)
    qps: int = 0
    planned: int = 0  # sends that were due during the run
    sent: int = 0  # sends actually made
    late: int = 0  # sends made more than LATE_THRESHOLD after their intended time
    skipped: int = 0  # due sends not made (in-flight cap reached, or run ended first)
    completed: int = 0  # sends that ended (answer, error or timeout)
    success: int = 0
    errors: dict[str, int] = dataclasses.field(default_factory=dict)
    error_samples: dict[str, str] = dataclasses.field(default_factory=dict)
    codes: dict[str, int] = dataclasses.field(default_factory=dict)  # "200" / "NOERROR" / "0"
    bytes_in: int = 0
    bytes_out: int = 0
    truncated: int = 0  # DNS: UDP replies with TC set (failures, or retried with tc_fallback)
    latency: Histogram = dataclasses.field(default_factory=Histogram)
    service: Histogram = dataclasses.field(default_factory=Histogram)
    send_lag: Histogram = dataclasses.field(default_factory=Histogram)
    start: float = 0.0  # wall clock (epoch seconds) of the first intended send
    end: float = 0.0  # wall clock when the last request ended
    attack: float = 0.0  # seconds over which sends were due
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)

    # --- recording (hot path: keep these small) ---------------------------------------

    def ok(self, code: str, latency_us: int, service_us: int, nbytes: int = 0) -> None:
        """An answer that met the expectation."""
        self.completed += 1
        self.success += 1
        self.codes[code] = self.codes.get(code, 0) + 1
        self.latency.record(latency_us)
        self.service.record(service_us)
        self.bytes_in += nbytes

    def answered_bad(
        self, cls: str, code: str, latency_us: int, service_us: int, nbytes: int = 0
    ) -> None:
        """An answer in time that did not meet the expectation (status / rcode)."""
        self.completed += 1
        self.codes[code] = self.codes.get(code, 0) + 1
        self.latency.record(latency_us)
        self.service.record(service_us)
        self.bytes_in += nbytes
        self.errors[cls] = self.errors.get(cls, 0) + 1
        if cls not in self.error_samples:
            self.error_samples[cls] = f"{cls}: {code}"

    def failed(self, cls: str, detail: str = "", code: str = "0") -> None:
        """A request that got no usable answer (timeout, transport error, ...)."""
        self.completed += 1
        self.codes[code] = self.codes.get(code, 0) + 1
        self.errors[cls] = self.errors.get(cls, 0) + 1
        if cls not in self.error_samples:
            self.error_samples[cls] = detail or cls

    def skip(self, n: int = 1, cls: str = OVERLOAD) -> None:
        """Due sends the generator could not make (counted, never silently dropped)."""
        self.skipped += n
        self.errors[cls] = self.errors.get(cls, 0) + n
        if cls not in self.error_samples:
            self.error_samples[cls] = cls

    def mark_sent(self, lag_s: float) -> None:
        self.sent += 1
        lag_us = int(lag_s * 1_000_000)
        self.send_lag.record(lag_us)
        if lag_s > LATE_THRESHOLD:
            self.late += 1

    # --- derived ----------------------------------------------------------------------

    @property
    def requests(self) -> int:
        """Requests counted for the success rate: every due send (sent or skipped)."""
        return self.completed + self.skipped

    @property
    def success_rate(self) -> float:
        return self.success / self.requests if self.requests else 0.0

    @property
    def failures(self) -> int:
        return self.requests - self.success

    @property
    def duration(self) -> float:
        return max(0.0, self.end - self.start)

    @property
    def tps(self) -> float:
        """Completed requests per second of wall time."""
        return self.completed / self.duration if self.duration > 0 else 0.0

    @property
    def delivered_ratio(self) -> float:
        """Sends made / sends due (1.0 = the target rate was delivered)."""
        return self.sent / self.planned if self.planned else 1.0

    def first_error(self) -> str:
        """The most frequent error class with a sample message ('' when none)."""
        if not self.errors:
            return ""
        cls = max(self.errors, key=lambda c: self.errors[c])
        return self.error_samples.get(cls, cls)

    def failure_summary(self, limit: int = 4) -> str:
        """Every failure class with its count and first message, most frequent first:
        ``"95 x no reply within 1s, 5 x connection refused: ICMP port unreachable"``."""
        parts = []
        ranked = sorted(self.errors.items(), key=lambda kv: (-kv[1], kv[0]))
        for cls, count in ranked[:limit]:
            sample = self.error_samples.get(cls, cls)
            text = sample if cls.lower() in sample.lower() or cls == TIMEOUT else f"{cls}: {sample}"
            parts.append(f"{count} x {text}")
        if len(ranked) > limit:
            parts.append(f"{sum(v for _, v in ranked[limit:])} x other")
        return ", ".join(parts)

    # --- merging and wire form -------------------------------------------------------

    def merge(self, other: TargetStats) -> TargetStats:
        """Add another run of the same target (another round or agent) into this one."""
        for f in (
            "planned",
            "sent",
            "late",
            "skipped",
            "completed",
            "success",
            "bytes_in",
            "bytes_out",
            "truncated",
        ):
            setattr(self, f, getattr(self, f) + getattr(other, f))
        _add_counts(self.errors, other.errors)
        _add_counts(self.codes, other.codes)
        for k, v in other.error_samples.items():
            self.error_samples.setdefault(k, v)
        self.latency.merge(other.latency)
        self.service.merge(other.service)
        self.send_lag.merge(other.send_lag)
        self.start = min(self.start, other.start) if self.start else other.start
        self.end = max(self.end, other.end)
        self.attack += other.attack
        self.qps = max(self.qps, other.qps)
        return self

    def copy(self) -> TargetStats:
        """An independent copy (histograms and counters), to merge others into."""
        return dataclasses.replace(
            self,
            errors=dict(self.errors),
            error_samples=dict(self.error_samples),
            codes=dict(self.codes),
            latency=Histogram().merge(self.latency),
            service=Histogram().merge(self.service),
            send_lag=Histogram().merge(self.send_lag),
            extra=dict(self.extra),
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            out[f.name] = v.to_dict() if isinstance(v, Histogram) else v
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TargetStats:
        kwargs: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            if f.name not in data:
                continue
            v = data[f.name]
            if f.name in ("latency", "service", "send_lag"):
                v = Histogram.from_dict(v)
            elif isinstance(v, dict):
                v = dict(v)
            kwargs[f.name] = v
        return cls(**kwargs)


def late_read(elapsed: float, timeout: float) -> str:
    """The detail of an answer read after its deadline: the generator itself was busy."""
    return (
        f"answer read {elapsed:.3f}s after its intended send, past the {timeout:g}s timeout "
        "(this process was busy: see the send lag)"
    )


def _add_counts(into: dict[str, int], other: Mapping[str, int]) -> None:
    for k, v in other.items():
        into[k] = into.get(k, 0) + v


def merge_all(stats: Iterable[TargetStats], name: str | None = None) -> TargetStats | None:
    """Merge several stats into a new one (None when there are none)."""
    out: TargetStats | None = None
    for s in stats:
        if out is None:
            out = s.copy()
            if name is not None:
                out.name = name
        else:
            out.merge(s)
    return out


def now() -> float:
    return time.time()
