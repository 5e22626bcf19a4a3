"""The public API: several targets at once, each at its own rate; identity fields; progress;
the event loop; error classification."""

from __future__ import annotations

import asyncio
import errno
import os
import socket
import ssl
import subprocess
import sys

import anyio

from bench.servers import ROOT, Nginx, Unbound
from kubectl_kdoctor.engine.neterrors import classify, describe
from kubectl_kdoctor.engine.runner import Target, run_sync, run_targets
from kubectl_kdoctor.engine.spec import DnsSpec, HttpSpec, Load
from kubectl_kdoctor.engine.stats import (
    CONNECT,
    OTHER,
    REFUSED,
    RESET,
    RESOLVE,
    TIMEOUT,
    TLS,
    TargetStats,
)


def test_targets_run_concurrently_each_at_its_rate(nginx: Nginx, dns_server: Unbound) -> None:
    targets = [
        Target("web", HttpSpec(nginx.http_url, method="get"), Load(qps=100, duration=1.0)),
        Target("slow", HttpSpec(nginx.slow_url + "?ms=200"), Load(qps=20, duration=1.0)),
        Target(
            "dns",
            DnsSpec(dns_server.host, dns_server.a_name, port=dns_server.port, protocol="tcp"),
            Load(qps=300, duration=1.0),
        ),
    ]
    seen: dict[str, int] = {}
    loops: set[str] = set()

    def progress(name: str, stats: TargetStats) -> None:
        seen[name] = seen.get(name, 0) + 1
        loops.add(type(asyncio.get_running_loop()).__module__)

    web, slow, dns = run_sync(targets, progress)
    assert (web.name, web.kind, web.url, web.method, web.qps) == (
        "web",
        "http",
        nginx.http_url,
        "GET",
        100,
    )
    assert (dns.name, dns.kind, dns.method) == ("dns", "dns", "tcp")
    assert dns.url == f"{dns_server.host}:{dns_server.port}"
    assert dns.extra["domain"] == dns_server.a_name and dns.extra["qtype"] == "A"
    assert (web.success, slow.success, dns.success) == (100, 20, 300)
    # They overlapped in time rather than ran one after the other.
    assert max(s.start for s in (web, slow, dns)) < min(s.end for s in (web, slow, dns))
    assert set(seen) == {"web", "slow", "dns"} and all(n >= 1 for n in seen.values())
    assert loops == {"uvloop"}


def test_run_targets_inside_a_running_loop(nginx: Nginx) -> None:
    async def main() -> list[TargetStats]:
        return await run_targets(
            [Target("a", HttpSpec(nginx.http_url), Load(qps=20, duration=0.5))]
        )

    [s] = anyio.run(main)
    assert s.success == 10


def test_classification_of_transport_errors() -> None:
    assert classify(ConnectionRefusedError(errno.ECONNREFUSED, "refused")) == REFUSED
    assert classify(ConnectionResetError(errno.ECONNRESET, "reset")) == RESET
    assert classify(OSError(errno.EHOSTUNREACH, "no route to host")) == CONNECT
    assert classify(OSError(errno.ENETUNREACH, "network unreachable")) == CONNECT
    assert classify(socket.gaierror(socket.EAI_NONAME, "unknown")) == RESOLVE
    assert classify(ssl.SSLCertVerificationError("bad cert")) == TLS
    assert classify(TimeoutError()) == TIMEOUT
    assert classify(RuntimeError("?")) == OTHER
    try:
        try:
            raise ConnectionRefusedError(errno.ECONNREFUSED, "refused")
        except OSError as inner:
            raise RuntimeError("wrapped") from inner
    except RuntimeError as outer:
        assert classify(outer) == REFUSED
        assert "RuntimeError: wrapped" in describe(outer)


def test_closed_stdin_does_not_crash(dns_server: Unbound) -> None:
    # With fd 0 closed, the loop's own descriptors and sockets would take 0-2, which libuv
    # refuses to close (abort). run_sync puts /dev/null there first.
    code = (
        "from kubectl_kdoctor.engine.runner import Target, run_sync\n"
        "from kubectl_kdoctor.engine.spec import DnsSpec, Load\n"
        f"[s] = run_sync([Target('d', DnsSpec('127.0.0.1', 'a.kdoctor.test.', port={dns_server.port}),"
        " Load(qps=20, duration=0.3))])\n"
        "assert s.success == 6, s.errors\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=str(ROOT),
        preexec_fn=lambda: os.close(0),
    )
    assert proc.returncode == 0, proc.stderr
