"""The HTTP executors against real nginx (and a small real upstream for odd answers)."""

from __future__ import annotations

import uuid

import pytest

from bench.servers import BIG_SIZE, INDEX_BODY, Nginx, Upstream
from bench.upstream import CHUNKED_BODY, EOF_BODY
from kubectl_kdoctor.engine.http import ParsedUrl, build_request
from kubectl_kdoctor.engine.spec import HttpSpec, StatusExpectation
from kubectl_kdoctor.engine.stats import (
    BAD_STATUS,
    CONNECT,
    PROTOCOL,
    REFUSED,
    RESET,
    RESOLVE,
    TIMEOUT,
    TLS,
)
from tests.engine._util import check_accounting, log_lines_with, run_one

N = 20  # requests per check: qps 40 for 0.5 s


def ok_run(spec: HttpSpec, **load: float) -> None:
    s = run_one(spec, qps=40, duration=0.5, **load)
    assert s.success == s.sent == N, (s.errors, s.error_samples)
    check_accounting(s)


def marker() -> str:
    return uuid.uuid4().hex[:12]


@pytest.mark.parametrize("method", ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
def test_methods_reach_the_server(nginx: Nginx, method: str) -> None:
    m = marker()
    s = run_one(HttpSpec(nginx.url(f"/echo?m={m}"), method=method), qps=40, duration=0.5)
    assert s.success == N and s.codes == {"200": N}
    lines = log_lines_with(nginx, m, N)
    assert len(lines) == N
    assert all(f" {method} " in line for line in lines)
    if method == "HEAD":
        assert s.bytes_in == 0


def test_headers_and_host_override_reach_the_server(nginx: Nginx) -> None:
    m = marker()
    spec = HttpSpec(
        nginx.url(f"/echo?m={m}"), headers=(("X-Foo", f"bar-{m}"),), host_header="kdoctor.test"
    )
    ok_run(spec)
    lines = log_lines_with(nginx, m, N)
    assert len(lines) == N
    assert all(f'x_foo="bar-{m}"' in line and "host=kdoctor.test" in line for line in lines)
    assert all('ua="kubectl-kdoctor/' in line for line in lines)


def test_body_is_sent_and_bytes_are_counted(nginx: Nginx) -> None:
    m = marker()
    body = f"hello-{m}".encode()
    spec = HttpSpec(nginx.url(f"/body?m={m}"), method="POST", body=body)
    s = run_one(spec, qps=40, duration=0.5)
    assert s.success == N
    lines = log_lines_with(nginx, m, N)
    assert len(lines) == N and all(
        f'body="hello-{m}"' in line and f"len={len(body)}" in line for line in lines
    )
    target = ParsedUrl(spec.url)
    assert s.bytes_out == N * len(build_request(spec, target))


@pytest.mark.parametrize(
    ("path", "size"),
    [("/index.html", len(INDEX_BODY)), ("/big.bin", BIG_SIZE), ("/chunked", len(CHUNKED_BODY))],
)
def test_bytes_in_count_body_bytes(nginx: Nginx, path: str, size: int) -> None:
    s = run_one(HttpSpec(nginx.url(path)), qps=40, duration=0.5)
    assert s.success == N, s.error_samples
    assert s.bytes_in == N * size


def test_body_delimited_by_close(upstream: Upstream) -> None:
    s = run_one(HttpSpec(upstream.url + "/eof"), qps=40, duration=0.5)
    assert s.success == N, s.error_samples
    assert s.bytes_in == N * len(EOF_BODY)


def test_keep_alive_reuses_connections(nginx: Nginx) -> None:
    m = marker()
    ok_run(HttpSpec(nginx.url(f"/echo?m={m}")))
    lines = log_lines_with(nginx, m, N)
    assert len(lines) == N
    conns = {line.split(" conn=")[1].split()[0] for line in lines}
    assert len(conns) <= 2  # one connection at 40/s, maybe a second at the start


def test_server_closing_idle_connections(upstream: Upstream) -> None:
    # The server closes each connection 50 ms after answering, without saying so: requests
    # sent every 50 ms race with the close; a request lost to the race is retried once.
    s = run_one(HttpSpec(upstream.url + "/drop"), qps=20, duration=1.0)
    assert s.success == 20, s.error_samples


def test_connection_close_is_honoured(nginx: Nginx) -> None:
    ok_run(HttpSpec(nginx.url("/close")))


def test_ipv6_literal_url(nginx: Nginx) -> None:
    if not nginx.ipv6:
        pytest.skip("no IPv6 loopback on this machine")
    ok_run(HttpSpec(nginx.http6_url))


def test_tls_verification_is_on_by_default(nginx: Nginx) -> None:
    s = run_one(HttpSpec(nginx.https_url), qps=40, duration=0.5)
    assert s.success == 0 and s.errors == {TLS: N}
    assert "certificate" in s.error_samples[TLS]


def test_tls_with_the_ca_and_insecure(nginx: Nginx) -> None:
    ok_run(HttpSpec(nginx.https_url, cacert=nginx.ca_file))
    ok_run(HttpSpec(nginx.https_url, insecure=True))
    ok_run(HttpSpec(nginx.https_url, cacert=nginx.ca_file, host_header="kdoctor.test"))


def test_tls_host_name_is_checked(nginx: Nginx) -> None:
    s = run_one(
        HttpSpec(nginx.https_url, cacert=nginx.ca_file, host_header="wrong.example"),
        qps=40,
        duration=0.5,
    )
    assert s.errors == {TLS: N}
    assert "wrong.example" in s.error_samples[TLS] or "match" in s.error_samples[TLS]


def test_client_certificate(nginx: Nginx) -> None:
    s = run_one(HttpSpec(nginx.mtls_url, cacert=nginx.ca_file), qps=40, duration=0.5)
    assert s.codes == {"400": N} and s.errors == {BAD_STATUS: N}  # nginx: no certificate sent
    m = marker()
    spec = HttpSpec(
        nginx.mtls_url + f"?m={m}",
        cacert=nginx.ca_file,
        cert=nginx.client_cert,
        key=nginx.client_key,
    )
    ok_run(spec)
    lines = log_lines_with(nginx, m, N)
    assert len(lines) == N and all("CN=kdoctor test client" in line for line in lines)


def test_missing_tls_file_is_a_tls_failure(nginx: Nginx) -> None:
    s = run_one(HttpSpec(nginx.https_url, cacert="/nonexistent/ca.pem"), qps=40, duration=0.5)
    assert s.errors == {TLS: N}
    assert "cannot set up TLS" in s.error_samples[TLS]


def test_http2(nginx: Nginx) -> None:
    m = marker()
    s = run_one(
        HttpSpec(nginx.h2_url + f"?m={m}", cacert=nginx.ca_file, http2=True), qps=40, duration=0.5
    )
    assert s.success == N and s.codes == {"200": N}
    assert s.extra["protocol"] == "HTTP/2"
    assert s.bytes_in == N * len(INDEX_BODY)
    lines = log_lines_with(nginx, m, N)
    assert len(lines) == N and all("HTTP/2.0" in line for line in lines)
    s = run_one(HttpSpec(nginx.h2_url, http2=True), qps=40, duration=0.5)
    assert s.errors == {TLS: N}  # verification on by default here too


def test_http2_falls_back_to_http11(nginx: Nginx) -> None:
    s = run_one(HttpSpec(nginx.https_url, cacert=nginx.ca_file, http2=True), qps=40, duration=0.5)
    assert s.success == N and s.extra["protocol"] == "HTTP/1.1"


def test_redirect_is_not_followed(nginx: Nginx) -> None:
    m = marker()
    s = run_one(HttpSpec(nginx.url(f"/redirect?m={m}")), qps=40, duration=0.5)
    assert s.success == N and s.codes == {"302": N}  # 3xx passes by default
    s = run_one(
        HttpSpec(nginx.url("/redirect"), expect_status=StatusExpectation.parse("200")),
        qps=40,
        duration=0.5,
    )
    assert s.codes == {"302": N} and s.errors == {BAD_STATUS: N}


@pytest.mark.parametrize("code", [404, 500])
def test_error_status_is_counted_and_classified(nginx: Nginx, code: int) -> None:
    s = run_one(HttpSpec(nginx.url(f"/status/{code}")), qps=40, duration=0.5)
    assert s.success == 0
    assert s.codes == {str(code): N} and s.errors == {BAD_STATUS: N}
    assert s.latency.n == N  # answered in time: latency recorded
    check_accounting(s)
    s = run_one(
        HttpSpec(nginx.url(f"/status/{code}"), expect_status=StatusExpectation.parse(f"{code}")),
        qps=40,
        duration=0.5,
    )
    assert s.success == N


def test_refused_port(nginx: Nginx) -> None:
    s = run_one(HttpSpec(nginx.closed_url), qps=40, duration=0.5)
    assert s.errors == {REFUSED: N} and s.codes == {"0": N}
    check_accounting(s)


def test_timeout(nginx: Nginx) -> None:
    s = run_one(HttpSpec(nginx.slow_url + "?ms=3000"), qps=20, duration=0.5, timeout=0.3)
    assert s.errors == {TIMEOUT: 10}
    assert s.latency.n == 0
    check_accounting(s)


def test_reset(upstream: Upstream) -> None:
    s = run_one(HttpSpec(upstream.url + "/reset"), qps=40, duration=0.5)
    assert s.errors == {RESET: N}


def test_not_http_is_a_protocol_error(upstream: Upstream) -> None:
    s = run_one(HttpSpec(upstream.url + "/garbage"), qps=40, duration=0.5)
    assert s.errors == {PROTOCOL: N}


def test_unresolvable_host() -> None:
    s = run_one(HttpSpec("http://no-such-host.invalid/"), qps=40, duration=0.5)
    assert s.errors == {RESOLVE: N}


def test_unreachable_address() -> None:
    # A documentation prefix: no route, or a connect that never completes.
    s = run_one(HttpSpec("http://[2001:db8::1]:81/"), qps=2, duration=0.5, timeout=1.5)
    assert set(s.errors) <= {CONNECT, TIMEOUT} and s.success == 0 and s.completed == 1


def test_url_and_request_line() -> None:
    u = ParsedUrl("https://[::1]:8443/a/b?x=1#frag")
    assert (u.tls, u.host, u.port, u.path, u.host_header, u.sni) == (
        True,
        "::1",
        8443,
        "/a/b?x=1",
        "[::1]:8443",
        "::1",
    )
    u = ParsedUrl("http://10.0.0.1/", host_header="app.example:8080")
    assert (u.port, u.path, u.host_header, u.sni) == (80, "/", "app.example:8080", "app.example")
    req = build_request(
        HttpSpec("http://h/", method="post", headers=(("X-A", "1"),), body=b"xy"),
        ParsedUrl("http://h/"),
    )
    assert req.startswith(b"POST / HTTP/1.1\r\nHost: h\r\n")
    assert b"\r\nX-A: 1\r\n" in req and req.endswith(b"Content-Length: 2\r\n\r\nxy")
    with pytest.raises(ValueError):
        ParsedUrl("ftp://h/")
