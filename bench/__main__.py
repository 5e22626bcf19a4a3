"""Benchmarks of the load engine against real servers on loopback.

    python -m bench http|dns|rss|overload|all [--duration S] [--server-cpu N] [--client-cpu N]

Each command starts nginx / unbound itself (pinned to the server core), runs the engine in a
child process pinned to the generator core, runs the reference tool (wrk, dnsperf) the same
way, and prints figures measured in this one run with their ratio and the goal. Absolute
numbers drift between machines (and with neighbours on a VM): read the ratios.

Closed-loop maximum of the engine uses ``Load(concurrency=N)``: N requests kept in flight,
the next sent as soon as one ends (wrk's model), for the same duration as the reference.
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
from bench.tools import EngineResult, run_dnsperf, run_engine, run_wrk
from kubectl_kdoctor.engine.spec import DnsSpec, HttpSpec, Load


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
    server_cpu: int
    client_cpu: int
    rows: list[Row] = dataclasses.field(default_factory=list)
    rss: list[tuple[str, float]] = dataclasses.field(default_factory=list)
    _pki: Pki | None = None

    @property
    def pki(self) -> Pki:
        if self._pki is None:
            self._pki = Pki.make(self.base / "pki")
        return self._pki

    def add(self, row: Row) -> None:
        self.rows.append(row)
        print(
            f"  {row.measure}: {row.ours}"
            + (f" | ref {row.reference}" if row.reference else "")
            + (f" | {row.ratio}" if row.ratio else "")
            + (f" | goal {row.goal}: {row.met}" if row.goal else ""),
            file=sys.stderr,
            flush=True,
        )


def yes(ok: bool) -> str:
    return "yes" if ok else "NO"


def ms(us: float) -> str:
    return f"{us / 1000:.2f} ms"


def describe_open(r: EngineResult) -> str:
    s = r.stats
    return (
        f"{s.sent}/{s.planned} sent, {s.success} ok, lag p50 {ms(s.send_lag.percentile(0.5))} "
        f"p99 {ms(s.send_lag.percentile(0.99))}, late {s.late}, skipped {s.skipped}, "
        f"latency p50 {ms(s.latency.percentile(0.5))} p99 {ms(s.latency.percentile(0.99))}, "
        f"CPU {r.cpu:.0%}, RSS {r.maxrss_mb:.0f} MB"
    )


# --- scenarios ----------------------------------------------------------------------------


def bench_http(c: Ctx) -> None:
    print("http: nginx on core", c.server_cpu, file=sys.stderr)
    up = Upstream(c.base / "upstream", str(c.server_cpu))
    ng = Nginx.start(c.base / "nginx-http", c.pki, up.port, str(c.server_cpu), access_log=False)
    try:
        qps = 10_000
        r = run_engine(
            HttpSpec(ng.http_url), Load(qps=qps, duration=c.duration, timeout=1.0), c.client_cpu
        )
        s = r.stats
        c.rss.append((f"HTTP/1.1 open loop {qps}/s", r.maxrss_mb))
        delivered = s.success / s.planned if s.planned else 0.0
        c.add(
            Row(
                f"HTTP/1.1 open loop {qps:,}/s: delivered (ok/planned)",
                f"{delivered:.4f}",
                goal=">= 0.99",
                met=yes(delivered >= 0.99),
            )
        )
        lag = s.send_lag.percentile(0.99)
        c.add(
            Row(
                f"HTTP/1.1 open loop {qps:,}/s: send lag p99",
                ms(lag),
                goal="< 5 ms",
                met=yes(lag < 5000),
            )
        )
        c.add(Row(f"HTTP/1.1 open loop {qps:,}/s: detail", describe_open(r)))
        conns = 50
        ours = run_engine(
            HttpSpec(ng.http_url),
            Load(duration=c.duration, timeout=2.0, concurrency=conns),
            c.client_cpu,
        )
        ref = run_wrk(ng.http_url, conns, c.duration, c.client_cpu)
        ratio = ours.rate / ref.rate if ref.rate else 0.0
        c.add(
            Row(
                f"HTTP/1.1 closed-loop max, {conns} connections (req/s)",
                f"{ours.rate:,.0f} (CPU {ours.cpu:.0%})",
                f"wrk -t1 -c{conns}: {ref.rate:,.0f} (CPU {ref.cpu:.0%})",
                f"{ratio:.2f}x",
                ">= 0.8x",
                yes(ratio >= 0.8),
            )
        )
    finally:
        ng.stop()
        up.stop()


def bench_dns(c: Ctx) -> None:
    print("dns: unbound on core", c.server_cpu, file=sys.stderr)
    ub = Unbound.start(c.base / "unbound-dns", c.pki, str(c.server_cpu))
    try:
        qps = 40_000
        spec = DnsSpec(ub.host, ub.a_name, port=ub.port)
        r = run_engine(spec, Load(qps=qps, duration=c.duration, timeout=1.0), c.client_cpu)
        s = r.stats
        c.rss.append((f"DNS UDP open loop {qps}/s", r.maxrss_mb))
        delivered = s.success / s.planned if s.planned else 0.0
        c.add(
            Row(
                f"DNS UDP open loop {qps:,}/s: delivered (ok/planned)",
                f"{delivered:.4f}",
                goal=">= 0.99",
                met=yes(delivered >= 0.99),
            )
        )
        c.add(Row(f"DNS UDP open loop {qps:,}/s: send lag p99", ms(s.send_lag.percentile(0.99))))
        c.add(Row(f"DNS UDP open loop {qps:,}/s: detail", describe_open(r)))
        ours = run_engine(
            spec, Load(duration=c.duration, timeout=2.0, concurrency=100), c.client_cpu
        )
        ref = run_dnsperf(ub.host, ub.port, ub.a_name, "A", c.duration, c.client_cpu, c.base)
        ratio = ours.rate / ref.rate if ref.rate else 0.0
        c.add(
            Row(
                "DNS UDP closed-loop max, 100 outstanding (q/s)",
                f"{ours.rate:,.0f} (CPU {ours.cpu:.0%})",
                f"dnsperf -q100: {ref.rate:,.0f} (CPU {ref.cpu:.0%})",
                f"{ratio:.2f}x",
                ">= 0.6x",
                yes(ratio >= 0.6),
            )
        )
        tspec = dataclasses.replace(spec, protocol="tcp")
        ours = run_engine(
            tspec, Load(duration=c.duration, timeout=2.0, concurrency=100), c.client_cpu
        )
        ref = run_dnsperf(
            ub.host, ub.port, ub.a_name, "A", c.duration, c.client_cpu, c.base, tcp=True, clients=10
        )
        ratio = ours.rate / ref.rate if ref.rate else 0.0
        c.add(
            Row(
                "DNS TCP closed-loop max (q/s)",
                f"{ours.rate:,.0f}, 1 pipelined conn (CPU {ours.cpu:.0%})",
                f"dnsperf -m tcp -c10 -q100: {ref.rate:,.0f} (CPU {ref.cpu:.0%})",
                f"{ratio:.2f}x",
                ">= 1.0x",
                yes(ratio >= 1.0),
            )
        )
    finally:
        ub.stop()


def bench_rss(c: Ctx) -> None:
    if not c.rss:
        bench_http(c)
        bench_dns(c)
    worst = max(v for _, v in c.rss)
    c.add(
        Row(
            "agent peak RSS at those rates",
            ", ".join(f"{k}: {v:.0f} MB" for k, v in c.rss),
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
        r = run_engine(
            DnsSpec(ub.host, ub.a_name, port=ub.port),
            Load(qps=qps, duration=min(c.duration, 5.0), timeout=0.5),
            c.client_cpu,
        )
        s = r.stats
        c.add(
            Row(
                f"overload: DNS UDP asked {qps:,}/s (beyond the generator)",
                f"delivered {s.delivered_ratio:.2f}, late {s.late:,}, skipped {s.skipped:,} "
                f"({', '.join(f'{k}: {v:,}' for k, v in s.errors.items())}), lag p99 {ms(s.send_lag.percentile(0.99))}",
                goal="late/skipped shown",
                met=yes(s.late + s.skipped > 0),
            )
        )
        r = run_engine(
            HttpSpec(ng.slow_url + "?ms=200"),
            Load(qps=1000, duration=min(c.duration, 3.0), timeout=1.0, max_inflight=50),
            c.client_cpu,
        )
        s = r.stats
        c.add(
            Row(
                "overload: HTTP 1,000/s to a 200 ms server, in-flight cap 50 (beyond the server)",
                f"sent {s.sent:,}/{s.planned:,}, skipped {s.skipped:,} ({', '.join(f'{k}: {v:,}' for k, v in s.errors.items())}), "
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
    head = Row("measure", "ours", "reference", "ratio", "goal", "met")
    cols = [f.name for f in dataclasses.fields(Row)]
    table = [head, *rows]
    widths = {k: min(70, max(len(getattr(r, k)) for r in table)) for k in cols}
    for i, r in enumerate(table):
        print(" | ".join(getattr(r, k).ljust(widths[k]) for k in cols).rstrip())
        if i == 0:
            print("-+-".join("-" * widths[k] for k in cols))


COMMANDS: dict[str, list[Callable[[Ctx], None]]] = {
    "http": [bench_http],
    "dns": [bench_dns],
    "rss": [bench_rss],
    "overload": [bench_overload],
    "all": [bench_http, bench_dns, bench_rss, bench_overload],
}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    p.add_argument("command", choices=sorted(COMMANDS))
    p.add_argument("--duration", type=float, default=10.0, help="seconds per figure (default 10)")
    p.add_argument("--server-cpu", type=int, default=0)
    p.add_argument("--client-cpu", type=int, default=1 if (os.cpu_count() or 1) > 1 else 0)
    a = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="kdoctor-bench-") as d:
        c = Ctx(Path(d), a.duration, a.server_cpu, a.client_cpu)
        for fn in COMMANDS[a.command]:
            fn(c)
    print_table(c.rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
