"""Benchmarks of the load engine against real servers on loopback.

    python -m bench http|dns|rss|overload|all [--duration S] [--repeat R]
                                              [--server-cpu N] [--client-cpu N]

Each command starts nginx / unbound itself (pinned to the server core with taskset), runs the
engine in a child process pinned to the generator core and the reference tool (wrk, dnsperf)
the same way, and prints figures measured in this one run with their ratio and the goal.

Noise: on a shared VM the generator core is sometimes slowed down by neighbours. Every figure
is measured ``--repeat`` times, engine and reference interleaved; a closed-loop maximum is the
best of its repeats (for the engine and the reference alike), an open-loop figure is the
median run (by send lag p99), and every repeat is shown.

Closed-loop maximum of the engine uses ``Load(concurrency=N)``: N requests kept in flight,
the next sent as soon as one ends (wrk's and dnsperf's model), for the same duration.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from bench.servers import Nginx, Pki, Unbound, Upstream
from bench.tools import EngineResult, ToolResult, run_dnsperf, run_engine, run_wrk
from kubectl_kdoctor.engine.spec import DnsSpec, HttpSpec, Load
from kubectl_kdoctor.engine.stats import TargetStats


@dataclasses.dataclass
class Row:
    measure: str
    ours: str
    reference: str = ""
    ratio: str = ""
    goal: str = ""
    met: str = ""


@dataclasses.dataclass
class Ctx:
    base: Path
    duration: float
    repeat: int
    server_cpu: int
    client_cpu: int
    rows: list[Row] = dataclasses.field(default_factory=list)
    rss: dict[str, float] = dataclasses.field(default_factory=dict)
    _pki: Pki | None = None

    @property
    def pki(self) -> Pki:
        if self._pki is None:
            self._pki = Pki.make(self.base / "pki")
        return self._pki

    def add(self, row: Row) -> None:
        self.rows.append(row)
        parts = [f"  {row.measure}: {row.ours}"]
        if row.reference:
            parts.append(f"ref {row.reference}")
        if row.ratio:
            parts.append(row.ratio)
        if row.goal:
            parts.append(f"goal {row.goal}: {row.met}")
        print(" | ".join(parts), file=sys.stderr, flush=True)

    def engine(self, spec: HttpSpec | DnsSpec, load: Load) -> EngineResult:
        return run_engine(spec, load, self.client_cpu)


def yes(ok: bool) -> str:
    return "yes" if ok else "NO"


def ms(us: float) -> str:
    return f"{us / 1000:.2f} ms"


def errors(s: TargetStats) -> str:
    return ", ".join(f"{k}: {v:,}" for k, v in s.errors.items()) or "no errors"


def describe_open(r: EngineResult) -> str:
    s = r.stats
    return (
        f"{s.sent:,}/{s.planned:,} sent, {s.success:,} ok, send lag p50 "
        f"{ms(s.send_lag.percentile(0.5))} p99 {ms(s.send_lag.percentile(0.99))}, "
        f"late {s.late:,}, skipped {s.skipped:,} ({errors(s)}), latency p50 {ms(s.latency.percentile(0.5))} "
        f"p99 {ms(s.latency.percentile(0.99))}, CPU {r.cpu:.0%}, RSS {r.maxrss_mb:.0f} MB, "
        f"preempted {r.preempted:,} times"
    )


# --- measuring ------------------------------------------------------------------------------


def open_loop(
    c: Ctx, label: str, spec: HttpSpec | DnsSpec, qps: int, lag_goal_ms: float | None
) -> None:
    """Open loop at ``qps``: delivered ratio, send lag p99 (median run of the repeats)."""
    runs = [
        c.engine(spec, Load(qps=qps, duration=c.duration, timeout=1.0)) for _ in range(c.repeat)
    ]
    runs.sort(key=lambda r: r.stats.send_lag.percentile(0.99))
    med = runs[len(runs) // 2]
    s = med.stats
    c.rss[f"{label} open loop {qps:,}/s"] = max(r.maxrss_mb for r in runs)
    delivered = s.success / s.planned if s.planned else 0.0
    name = f"{label} open loop {qps:,}/s"
    c.add(
        Row(
            f"{name}: delivered (ok/planned)",
            f"{delivered:.4f}",
            goal=">= 0.99",
            met=yes(delivered >= 0.99),
        )
    )
    lag = s.send_lag.percentile(0.99)
    all_lags = ", ".join(
        f"{ms(r.stats.send_lag.percentile(0.99))} [{r.preempted:,} preemptions]" for r in runs
    )
    c.add(
        Row(
            f"{name}: send lag p99 (median of {len(runs)})",
            f"{ms(lag)} (runs: {all_lags})",
            goal=f"< {lag_goal_ms:g} ms" if lag_goal_ms else "",
            met=yes(lag < lag_goal_ms * 1000) if lag_goal_ms else "",
        )
    )
    c.add(Row(f"{name}: median run", describe_open(med)))


def closed_loop(
    c: Ctx,
    label: str,
    ours: Callable[[], EngineResult],
    ref_label: str,
    ref: Callable[[], ToolResult],
    goal: float,
) -> None:
    """Best of ``repeat`` interleaved runs of the engine and of the reference tool."""
    mine: list[EngineResult] = []
    theirs: list[ToolResult] = []
    for _ in range(c.repeat):
        mine.append(ours())
        theirs.append(ref())
    a = max(mine, key=lambda r: r.rate)
    b = max(theirs, key=lambda r: r.rate)
    ratio = a.rate / b.rate if b.rate else 0.0
    c.add(
        Row(
            label,
            f"{a.rate:,.0f}/s, CPU {a.cpu:.0%} (runs: {', '.join(f'{r.rate:,.0f}' for r in mine)})",
            f"{ref_label}: {b.rate:,.0f}/s, CPU {b.cpu:.0%} (runs: {', '.join(f'{r.rate:,.0f}' for r in theirs)})",
            f"{ratio:.2f}x",
            f">= {goal:g}x",
            yes(ratio >= goal),
        )
    )


# --- scenarios ------------------------------------------------------------------------------


def bench_http(c: Ctx) -> None:
    print(f"http: nginx on core {c.server_cpu}, generator on core {c.client_cpu}", file=sys.stderr)
    up = Upstream(c.base / "upstream", str(c.server_cpu))
    ng = Nginx.start(c.base / "nginx-http", c.pki, up.port, str(c.server_cpu), access_log=False)
    try:
        open_loop(c, "HTTP/1.1", HttpSpec(ng.http_url), 10_000, 5.0)
        conns = 50
        closed_loop(
            c,
            f"HTTP/1.1 closed-loop max, {conns} connections",
            lambda: c.engine(
                HttpSpec(ng.http_url), Load(duration=c.duration, timeout=2.0, concurrency=conns)
            ),
            f"wrk -t1 -c{conns}",
            lambda: run_wrk(ng.http_url, conns, c.duration, c.client_cpu),
            0.8,
        )
    finally:
        ng.stop()
        up.stop()


def bench_dns(c: Ctx) -> None:
    print(f"dns: unbound on core {c.server_cpu}, generator on core {c.client_cpu}", file=sys.stderr)
    ub = Unbound.start(c.base / "unbound-dns", c.pki, str(c.server_cpu))
    try:
        spec = DnsSpec(ub.host, ub.a_name, port=ub.port)
        open_loop(c, "DNS UDP", spec, 40_000, None)
        one = dataclasses.replace(spec, sockets=1)  # like dnsperf's default single client socket
        closed_loop(
            c,
            "DNS UDP closed-loop max, 100 outstanding, 1 socket",
            lambda: c.engine(one, Load(duration=c.duration, timeout=2.0, concurrency=100)),
            "dnsperf -c1 -q100",
            lambda: run_dnsperf(ub.host, ub.port, ub.a_name, "A", c.duration, c.client_cpu, c.base),
            0.6,
        )
        tcp = dataclasses.replace(spec, protocol="tcp")
        closed_loop(
            c,
            "DNS TCP closed-loop max, 100 outstanding, 1 pipelined connection",
            lambda: c.engine(tcp, Load(duration=c.duration, timeout=2.0, concurrency=100)),
            "dnsperf -m tcp -c10 -q100",
            lambda: run_dnsperf(
                ub.host,
                ub.port,
                ub.a_name,
                "A",
                c.duration,
                c.client_cpu,
                c.base,
                tcp=True,
                clients=10,
            ),
            1.0,
        )
    finally:
        ub.stop()


def bench_rss(c: Ctx) -> None:
    if not c.rss:
        bench_http(c)
        bench_dns(c)
    worst = max(c.rss.values())
    c.add(
        Row(
            "agent peak RSS at those rates",
            ", ".join(f"{k}: {v:.0f} MB" for k, v in c.rss.items()),
            goal="< 60 MB",
            met=yes(worst < 60),
        )
    )


def bench_overload(c: Ctx) -> None:
    print("overload: beyond the generator, then beyond the server", file=sys.stderr)
    ub = Unbound.start(c.base / "unbound-over", c.pki, str(c.server_cpu))
    up = Upstream(c.base / "upstream-over", str(c.server_cpu))
    ng = Nginx.start(c.base / "nginx-over", c.pki, up.port, str(c.server_cpu), access_log=False)
    try:
        qps = 250_000
        r = c.engine(
            DnsSpec(ub.host, ub.a_name, port=ub.port),
            Load(qps=qps, duration=min(c.duration, 5.0), timeout=0.5),
        )
        s = r.stats
        c.add(
            Row(
                f"overload: DNS UDP asked {qps:,}/s (beyond the generator)",
                f"delivered {s.delivered_ratio:.2f}, {s.success:,} ok of {s.planned:,} due, late {s.late:,}, "
                f"skipped {s.skipped:,} ({errors(s)}), send lag p99 {ms(s.send_lag.percentile(0.99))}",
                goal="late/skipped shown",
                met=yes(s.late + s.skipped > 0),
            )
        )
        r = c.engine(
            HttpSpec(ng.slow_url + "?ms=200"),
            Load(qps=1000, duration=min(c.duration, 3.0), timeout=1.0, max_inflight=50),
        )
        s = r.stats
        c.add(
            Row(
                "overload: HTTP 1,000/s to a 200 ms server, in-flight cap 50 (beyond the server)",
                f"sent {s.sent:,} of {s.planned:,} due, skipped {s.skipped:,} ({errors(s)}), "
                f"latency p50 {ms(s.latency.percentile(0.5))}",
                goal="skipped shown",
                met=yes(s.skipped > 0),
            )
        )
    finally:
        ng.stop()
        up.stop()
        ub.stop()


def print_table(rows: list[Row]) -> None:
    cols = [f.name for f in dataclasses.fields(Row)]
    table = [Row("measure", "ours", "reference", "ratio", "goal", "met"), *rows]
    widths = {k: max(len(getattr(r, k)) for r in table) for k in cols}
    for i, r in enumerate(table):
        print("| " + " | ".join(getattr(r, k).ljust(widths[k]) for k in cols) + " |")
        if i == 0:
            print("|" + "|".join("-" * (widths[k] + 2) for k in cols) + "|")


COMMANDS: dict[str, list[Callable[[Ctx], None]]] = {
    "http": [bench_http],
    "dns": [bench_dns],
    "rss": [bench_rss],
    "overload": [bench_overload],
    "all": [bench_http, bench_dns, bench_rss, bench_overload],
}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bench", description="Benchmarks of the load engine."
    )
    p.add_argument("command", choices=sorted(COMMANDS))
    p.add_argument("--duration", type=float, default=10.0, help="seconds per figure (default 10)")
    p.add_argument("--repeat", type=int, default=3, help="runs per figure (default 3)")
    p.add_argument("--server-cpu", type=int, default=0)
    p.add_argument("--client-cpu", type=int, default=1 if (os.cpu_count() or 1) > 1 else 0)
    a = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="kdoctor-bench-") as d:
        c = Ctx(Path(d), a.duration, max(1, a.repeat), a.server_cpu, a.client_cpu)
        for fn in COMMANDS[a.command]:
            fn(c)
    print_table(c.rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
