"""Against a real NSD on loopback: response rate limiting (with and without "slip"), and an
answer too large for a 512-byte UDP reply. A truncated reply (TC=1) counts under its own
class, ``truncated (TC)``, unless ``tc_fallback`` asks again over TCP as a resolver does; a
server that answers a steady fraction at normal latency and never the rest gets a hint that
names rate limiting. The hints and reasons show in every output format."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from bench.procs import Process, free_port, wait_tcp
from kubectl_kdoctor.engine.spec import DnsSpec
from kubectl_kdoctor.engine.stats import TIMEOUT, TRUNCATED, TargetStats
from kubectl_kdoctor.report.model import NodeResult, RunResult, TargetResult
from kubectl_kdoctor.report.render import render
from kubectl_kdoctor.report.verdict import judge
from kubectl_kdoctor.task import DNS
from tests.engine._util import check_accounting, run_one

BIG_RECORDS = 12  # 12 x ~63-byte TXT strings: more than 512 bytes
RATE = 50  # answers per second NSD gives one source (/24) before limiting


class Nsd:
    """NSD serving ``perf.test.`` on 127.0.0.1:``port`` (UDP and TCP), in the foreground."""

    def __init__(self, prefix: Path, ratelimit: int, slip: int) -> None:
        self.port = free_port(udp_too=True)
        big = "\n".join(f'big IN TXT "{"x" * 60}-{i:02d}"' for i in range(BIG_RECORDS))
        (prefix / "perf.test.zone").write_text(
            "$ORIGIN perf.test.\n$TTL 300\n"
            "@ IN SOA ns.perf.test. admin.perf.test. 1 3600 600 86400 300\n"
            "@ IN NS ns.perf.test.\nns IN A 127.0.0.1\nh1 IN A 10.0.0.1\n" + big + "\n"
        )
        (prefix / "nsd.conf").write_text(
            f"""server:
  ip-address: 127.0.0.1@{self.port}
  port: {self.port}
  username: ""
  chroot: ""
  database: ""
  zonelistfile: "{prefix}/zone.list"
  xfrdfile: "{prefix}/xfrd.state"
  xfrdir: "{prefix}"
  pidfile: "{prefix}/nsd.pid"
  logfile: "{prefix}/nsd.log"
  server-count: 1
  verbosity: 1
  rrl-ratelimit: {ratelimit}
  rrl-slip: {slip}
  rrl-whitelist-ratelimit: {ratelimit}
remote-control:
  control-enable: no
zone:
  name: perf.test
  zonefile: "{prefix}/perf.test.zone"
"""
        )
        self.process = Process(
            ["nsd", "-d", "-c", str(prefix / "nsd.conf")], None, prefix / "stdout.log"
        )
        wait_tcp("127.0.0.1", self.port, proc=self.process.proc)

    def spec(self, name: str, **kw: object) -> DnsSpec:
        return DnsSpec("127.0.0.1", name, port=self.port, **kw)  # type: ignore[arg-type]

    def stop(self) -> None:
        self.process.stop()


def _nsd(tmp_path_factory: pytest.TempPathFactory, ratelimit: int, slip: int) -> Iterator[Nsd]:
    if shutil.which("nsd") is None:
        pytest.skip("NSD is not installed (Debian package nsd; hack/setup installs it)")
    server = Nsd(tmp_path_factory.mktemp("nsd"), ratelimit, slip)
    try:
        yield server
    finally:
        server.stop()


# Function scope: NSD's rate limiter remembers a source across runs (a second run right
# after the first is limited from its first query), so each test gets its own server.
@pytest.fixture
def nsd_drop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nsd]:
    """Rate limiting without slip: over the limit, queries are dropped."""
    yield from _nsd(tmp_path_factory, RATE, 0)


@pytest.fixture
def nsd_slip(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nsd]:
    """Rate limiting with slip 1: over the limit, every query gets a TC=1 reply."""
    yield from _nsd(tmp_path_factory, RATE, 1)


@pytest.fixture(scope="module")
def nsd_open(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nsd]:
    """No rate limiting."""
    yield from _nsd(tmp_path_factory, 0, 0)


def as_run(s: TargetStats, timeout: float) -> RunResult:
    run = RunResult(
        kind=DNS,
        name="rrl",
        created=1.0,
        spec={"request": {"perRequestTimeoutInMS": int(timeout * 1000)}},
    )
    node = NodeResult(node="local", start=s.start, end=s.end)
    node.targets.append(TargetResult(s, judge(s, run.expect)))
    run.nodes.append(node)
    return run


def every_format(run: RunResult) -> dict[str, str]:
    out = {o: render(run, o) for o in ("table", "wide", "json", "junit", "html")}
    out["yaml"] = json.dumps(yaml.safe_load(render(run, "yaml")))
    out["html"] = out["html"].replace("&#x27;", "'")
    return out


def test_rate_limiting_without_slip_is_named(nsd_drop: Nsd) -> None:
    s = run_one(nsd_drop.spec("h1.perf.test"), qps=400, duration=2.0, timeout=0.5)
    check_accounting(s)
    sent = s.sent
    # a fraction answered (about RATE a second), the rest never answered
    assert 0 < s.success < sent * 0.6, (s.success, s.errors, s.latency.percentile(0.99))
    assert set(s.errors) <= {TIMEOUT, "not sent (in-flight cap)", "not sent (generator behind)"}
    assert s.truncated == 0
    run = as_run(s, 0.5)
    for output, text in every_format(run).items():
        assert "the server likely rate-limits" in text, output
        assert "no reply within 0.5s" in text, output


def test_rate_limiting_with_slip_counts_truncated_replies(nsd_slip: Nsd) -> None:
    s = run_one(nsd_slip.spec("h1.perf.test"), qps=400, duration=2.0, timeout=0.5)
    check_accounting(s)
    assert s.errors.get(TRUNCATED, 0) > 0 and s.truncated == s.errors[TRUNCATED]
    assert 0 < s.success < s.sent * 0.6, (s.success, s.errors, s.latency.percentile(0.99))
    assert s.codes.get("TC") == s.truncated
    run = as_run(s, 0.5)
    for output, text in every_format(run).items():
        assert "truncated (TC)" in text, output
        assert "the server likely rate-limits" in text, (output, s.latency.percentile(0.99))
        assert "RRL 'slip'" in text and "--tc-fallback" in text, output


def test_rate_limiting_with_slip_and_tc_fallback_counts_the_tcp_answer(nsd_slip: Nsd) -> None:
    # NSD limits UDP only: a resolver's retry over TCP is answered, and so is ours.
    s = run_one(nsd_slip.spec("h1.perf.test", tc_fallback=True), qps=400, duration=2.0, timeout=0.5)
    check_accounting(s)
    assert s.truncated > 0 and TRUNCATED not in s.errors
    answered_over_udp = s.sent - s.truncated
    assert s.success > answered_over_udp * 0.5 and s.success >= s.truncated * 0.9, (
        s.success,
        s.truncated,
        s.errors,
    )


def test_an_answer_too_large_for_udp_is_truncated_by_default(nsd_open: Nsd) -> None:
    s = run_one(nsd_open.spec("big.perf.test", qtype="TXT"), qps=20, duration=0.5, timeout=1.0)
    check_accounting(s)
    assert s.errors == {TRUNCATED: 10} and s.success == 0 and s.truncated == 10
    assert s.latency.n == 0  # a truncated reply is not the answer: no latency
    run = as_run(s, 1.0)
    for output, text in every_format(run).items():
        assert "every UDP reply came truncated (TC=1)" in text, output
        assert "10 x truncated (TC) reply over UDP" in text, output


def test_an_answer_too_large_for_udp_with_tc_fallback(nsd_open: Nsd) -> None:
    s = run_one(
        nsd_open.spec("big.perf.test", qtype="TXT", tc_fallback=True),
        qps=20,
        duration=0.5,
        timeout=1.0,
    )
    check_accounting(s)
    assert s.success == 10 and s.truncated == 10 and not s.errors
    assert s.bytes_in > 10 * 512  # the full answer, over TCP
    assert len(s.extra["answer_sample"]) == 8


def test_no_rate_limit_no_hint(nsd_open: Nsd) -> None:
    s = run_one(nsd_open.spec("h1.perf.test"), qps=400, duration=1.0, timeout=0.5)
    assert s.success == s.sent, s.errors
    assert "Likely culprits" not in render(as_run(s, 0.5), "table")
