"""``--timeout`` bounds a request's total time, measured as latency is: from the intended
send time. No success is ever slower than the timeout, whether the server is slow, the
generator fell behind, or the connect needed a SYN retransmission.

Real servers: the test upstream (slow HTTP answers), a small UDP DNS responder that answers
late, and a real HTTP server inside a network namespace this test creates, where nftables
drops the first SYN of every connection (the kernel retransmits it after about 1 s).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.servers import Upstream
from kubectl_kdoctor.engine.runner import Target, run_targets
from kubectl_kdoctor.engine.spec import DnsSpec, HttpSpec, Load
from kubectl_kdoctor.engine.stats import TIMEOUT, TargetStats
from tests.engine._util import check_accounting, run_one

REPO = Path(__file__).resolve().parents[2]


def bounded(s: TargetStats, timeout: float) -> None:
    """Every answer counted in time was read within the timeout of its intended send."""
    assert s.latency.n == 0 or s.latency.max <= timeout * 1e6, (s.latency.max, timeout)


def test_http_answer_after_one_and_a_half_timeouts_is_a_timeout(upstream: Upstream) -> None:
    s = run_one(HttpSpec(upstream.url + "/slow?ms=450"), qps=20, duration=0.5, timeout=0.3)
    assert s.errors == {TIMEOUT: 10} and s.success == 0 and s.latency.n == 0
    assert "0.3s" in s.error_samples[TIMEOUT]
    check_accounting(s)


def test_http2_total_time_is_bounded(upstream: Upstream) -> None:
    # httpx bounds each phase; the executor bounds the whole request.
    s = run_one(
        HttpSpec(upstream.url + "/slow?ms=450", http2=True), qps=10, duration=0.5, timeout=0.3
    )
    assert s.errors == {TIMEOUT: 5} and s.latency.n == 0
    check_accounting(s)


async def _with_stalls(target: Target, stall: float, every: float) -> TargetStats:
    """Run ``target`` while the event loop is blocked for ``stall`` s every ``every`` s: the
    pacer sends late, answers are read late (what a busy node does to an agent)."""
    done = False

    async def staller() -> None:
        while not done:
            await asyncio.sleep(every)
            time.sleep(stall)  # block the loop, on purpose

    task = asyncio.get_running_loop().create_task(staller())
    try:
        [stats] = await run_targets([target])
    finally:
        done = True
        await task
    return stats


def test_a_stalled_generator_never_reports_a_success_slower_than_the_timeout(
    upstream: Upstream,
) -> None:
    # The server answers in 120 ms, the timeout is 300 ms, the loop stalls 250 ms at a
    # time: sends go out up to 250 ms late. Before, those became successes with 370 ms of
    # latency; now they are timeouts, and every success is within 300 ms.
    target = Target(
        "t", HttpSpec(upstream.url + "/slow?ms=120"), Load(qps=20, duration=2.0, timeout=0.3)
    )
    s = asyncio.run(_with_stalls(target, stall=0.25, every=0.4))
    bounded(s, 0.3)
    assert s.success + s.errors.get(TIMEOUT, 0) + s.skipped == s.planned, s.errors
    check_accounting(s)


class SlowDns:
    """A UDP DNS responder that answers every query (NOERROR, empty) after ``delay`` s."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.stop = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        self.sock.settimeout(0.1)
        while not self.stop:
            try:
                data, peer = self.sock.recvfrom(512)
            except TimeoutError:
                continue
            except OSError:
                return
            reply = data[:2] + bytes([0x81, 0x80]) + data[4:6] + b"\0\0\0\0\0\0" + data[12:]
            threading.Timer(self.delay, self._reply, (reply, peer)).start()

    def _reply(self, reply: bytes, peer: tuple[str, int]) -> None:
        try:
            self.sock.sendto(reply, peer)
        except OSError:
            pass

    def close(self) -> None:
        self.stop = True
        self.thread.join()
        self.sock.close()


@pytest.fixture
def slow_dns() -> Iterator[SlowDns]:
    server = SlowDns(0.45)
    try:
        yield server
    finally:
        server.close()


def test_dns_answer_after_one_and_a_half_timeouts_is_a_timeout(slow_dns: SlowDns) -> None:
    spec = DnsSpec("127.0.0.1", "a.kdoctor.test", port=slow_dns.port)
    s = run_one(spec, qps=20, duration=0.5, timeout=0.3)
    assert s.errors == {TIMEOUT: 10} and s.success == 0 and s.latency.n == 0
    assert s.error_samples[TIMEOUT] == "no reply within 0.3s"
    check_accounting(s)


def test_dns_within_the_timeout_succeeds(slow_dns: SlowDns) -> None:
    spec = DnsSpec("127.0.0.1", "a.kdoctor.test", port=slow_dns.port)
    s = run_one(spec, qps=20, duration=0.5, timeout=1.5)
    assert s.success == 10 and s.latency.min >= 450_000
    bounded(s, 1.5)


# --- a connect that needs a SYN retransmission ------------------------------------------

NFT = """
table inet kd22 {
  set seen { type ipv4_addr . inet_service; flags dynamic, timeout; timeout 1m; }
  chain input {
    type filter hook input priority 0; policy accept;
    tcp dport 8080 tcp flags & (syn|ack) == syn ip saddr . tcp sport @seen accept
    tcp dport 8080 tcp flags & (syn|ack) == syn add @seen { ip saddr . tcp sport } drop
  }
}
"""

# Run inside the namespace: a real HTTP server on 127.0.0.1:8080, then the engine.
CLIENT = """
import http.server, json, sys, threading
from kubectl_kdoctor.engine.runner import Target, run_sync
from kubectl_kdoctor.engine.spec import HttpSpec, Load

class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        self.send_response(200); self.send_header("Content-Length", "3"); self.end_headers()
        self.wfile.write(b"ok\\n")
    def log_message(self, *a):
        pass

srv = http.server.ThreadingHTTPServer(("127.0.0.1", 8080), H)
threading.Thread(target=srv.serve_forever, daemon=True).start()
timeout = float(sys.argv[1])
load = Load(qps=10, duration=2.0, timeout=timeout)
[s] = run_sync([Target("t", HttpSpec("http://127.0.0.1:8080/"), load)])
print(json.dumps(s.to_dict()))
"""


@pytest.fixture
def syn_drop_ns() -> Iterator[str]:
    if os.geteuid() != 0 or not shutil.which("nft") or not shutil.which("ip"):
        pytest.skip("needs root, ip and nft to make a network namespace")
    ns = f"kd22-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True)
        subprocess.run(
            ["ip", "netns", "exec", ns, "nft", "-f", "-"], input=NFT.encode(), check=True
        )
        yield ns
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)


def run_in_ns(ns: str, timeout: float) -> TargetStats:
    out = subprocess.run(
        ["ip", "netns", "exec", ns, sys.executable, "-c", CLIENT, str(timeout)],
        check=False,
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    return TargetStats.from_dict(json.loads(out.stdout))


def test_a_connect_needing_a_syn_retransmission_is_bounded(syn_drop_ns: str) -> None:
    # Every connection's first SYN is dropped: a connect takes about 1 s (the initial
    # RTO). With a 0.4 s timeout every request ends as a timeout at 0.4 s (the connect is
    # given up then too, so no later request finds a connection up): none is a success
    # slower than the timeout.
    s = run_in_ns(syn_drop_ns, 0.4)
    assert s.errors == {TIMEOUT: 20} and s.success == 0 and s.latency.n == 0
    assert s.error_samples[TIMEOUT] in (
        "connect: no answer within 0.4s",
        "no complete response within 0.4s",
    )
    check_accounting(s)


def test_a_syn_retransmission_within_the_timeout_is_a_success(syn_drop_ns: str) -> None:
    # With a 2.5 s timeout the first request waits out the retransmission and succeeds,
    # its latency (about 1 s) counted from its intended send time.
    s = run_in_ns(syn_drop_ns, 2.5)
    assert s.success == s.planned == 20, s.errors
    assert s.latency.max >= 900_000
    bounded(s, 2.5)
