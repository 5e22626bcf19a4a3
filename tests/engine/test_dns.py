"""The DNS executor against real unbound (and small real misbehaving servers)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator

import dns.message
import dns.rrset
import pytest

from bench.servers import TXT_BIG_RECORDS, Unbound
from kubectl_kdoctor.engine.dns import build_query
from kubectl_kdoctor.engine.resolvconf import default_nameserver, nameservers, search_domains
from kubectl_kdoctor.engine.spec import DnsSpec
from kubectl_kdoctor.engine.stats import BAD_RCODE, PROTOCOL, REFUSED, TIMEOUT, TLS, TRUNCATED
from tests.engine._util import check_accounting, run_one

N = 20  # queries per check: qps 40 for 0.5 s


def spec(server: Unbound, name: str, **kw: object) -> DnsSpec:
    kw.setdefault("port", server.port)
    return DnsSpec(server.host, name, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("qtype", "attr", "expect"),
    [
        ("A", "a_name", "10.0.0.1"),
        ("AAAA", "a_name", "fd00::1"),
        ("CNAME", "cname_name", "CNAME a.kdoctor.test."),
        ("SRV", "srv_name", "SRV 10 5 80 a.kdoctor.test."),
        ("TXT", "txt_name", '"hello kdoctor"'),
        ("MX", "mx_name", "MX 10 mail.kdoctor.test."),
        ("NS", "zone", "NS ns.kdoctor.test."),
        ("PTR", "ptr_name", "PTR a.kdoctor.test."),
        ("SOA", "zone", "SOA ns.kdoctor.test."),
    ],
)
def test_each_qtype(dns_server: Unbound, qtype: str, attr: str, expect: str) -> None:
    s = run_one(spec(dns_server, getattr(dns_server, attr), qtype=qtype), qps=40, duration=0.5)
    assert s.success == N and s.codes == {"NOERROR": N}, s.error_samples
    assert any(expect in line for line in s.extra["answer_sample"]), s.extra
    assert s.kind == "dns" and s.method == "udp" and s.url == f"127.0.0.1:{dns_server.port}"
    assert s.extra["qtype"] == qtype
    check_accounting(s)
    assert s.bytes_out == N * len(build_query(getattr(dns_server, attr), qtype))


@pytest.mark.parametrize("protocol", ["udp", "tcp", "tls"])
def test_protocols(dns_server: Unbound, protocol: str) -> None:
    port = dns_server.tls_port if protocol == "tls" else dns_server.port
    s = run_one(
        spec(
            dns_server, dns_server.a_name, protocol=protocol, port=port, cacert=dns_server.ca_file
        ),
        qps=200,
        duration=0.5,
    )
    assert s.success == 100, s.error_samples
    assert s.method == protocol
    assert s.bytes_in > 0 and s.bytes_out > 0
    check_accounting(s)


def test_nxdomain(dns_server: Unbound) -> None:
    s = run_one(spec(dns_server, dns_server.nx_name), qps=40, duration=0.5)
    assert s.success == 0 and s.codes == {"NXDOMAIN": N} and s.errors == {BAD_RCODE: N}
    assert s.latency.n == N  # an answer in time, with the wrong rcode
    s = run_one(spec(dns_server, dns_server.nx_name, expect_rcode="NXDOMAIN"), qps=40, duration=0.5)
    assert s.success == N


def test_truncated_udp_is_retried_over_tcp(dns_server: Unbound) -> None:
    s = run_one(
        spec(dns_server, dns_server.big_txt_name, qtype="TXT", tc_fallback=True),
        qps=40,
        duration=0.5,
    )
    assert s.truncated == N
    assert s.success == N, s.error_samples
    assert len(s.extra["answer_sample"]) == min(8, TXT_BIG_RECORDS)  # the full RRset, over TCP
    assert s.bytes_in > N * 512


def test_truncated_udp_is_a_failure_of_its_own_by_default(dns_server: Unbound) -> None:
    s = run_one(spec(dns_server, dns_server.big_txt_name, qtype="TXT"), qps=40, duration=0.5)
    assert s.truncated == N and s.errors == {TRUNCATED: N} and s.success == 0


def test_tls_verification(dns_server: Unbound) -> None:
    port = dns_server.tls_port
    # Verified by default (unlike kdoctor): the system trust store does not know the test CA.
    s = run_one(
        spec(dns_server, dns_server.a_name, protocol="tls", port=port), qps=40, duration=0.5
    )
    assert s.errors == {TLS: N}
    # -k: not verified.
    s = run_one(
        spec(dns_server, dns_server.a_name, protocol="tls", port=port, insecure=True),
        qps=40,
        duration=0.5,
    )
    assert s.success == N
    # With the CA, the name is checked too.
    s = run_one(
        spec(
            dns_server,
            dns_server.a_name,
            protocol="tls",
            port=port,
            cacert=dns_server.ca_file,
            tls_name="dns.kdoctor.test",
        ),
        qps=40,
        duration=0.5,
    )
    assert s.success == N
    s = run_one(
        spec(
            dns_server,
            dns_server.a_name,
            protocol="tls",
            port=port,
            cacert=dns_server.ca_file,
            tls_name="other.example",
        ),
        qps=40,
        duration=0.5,
    )
    assert s.errors == {TLS: N}


@pytest.mark.parametrize("protocol", ["udp", "tcp"])
def test_refused(dns_server: Unbound, protocol: str) -> None:
    s = run_one(
        spec(dns_server, dns_server.a_name, protocol=protocol, port=dns_server.closed_port),
        qps=40,
        duration=0.5,
        timeout=0.5,
    )
    assert s.errors == {REFUSED: N}, s.error_samples
    check_accounting(s)


def test_many_in_flight_on_one_socket(dns_server: Unbound) -> None:
    s = run_one(spec(dns_server, dns_server.a_name, sockets=1), qps=4000, duration=0.5)
    assert s.success == 2000 and not s.extra.get("unmatched_replies")


# --- misbehaving servers (real sockets on loopback) -----------------------------------------


@pytest.fixture
def udp_server() -> Iterator[Callable[[Callable[[bytes], list[bytes]]], int]]:
    """Start a UDP server answering each datagram with ``handler(query)``; yields a starter."""
    stops: list[Callable[[], None]] = []

    def start(handler: Callable[[bytes], list[bytes]]) -> int:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(0.1)
        stop = threading.Event()

        def serve() -> None:
            while not stop.is_set():
                try:
                    data, addr = sock.recvfrom(4096)
                except OSError:
                    continue
                for reply in handler(data):
                    sock.sendto(reply, addr)
            sock.close()

        t = threading.Thread(target=serve, daemon=True)
        t.start()

        def halt() -> None:
            stop.set()
            t.join(2)

        stops.append(halt)
        return int(sock.getsockname()[1])

    yield start
    for halt in stops:
        halt()


def reply_to(query: bytes, name: str | None = None) -> bytes:
    q = dns.message.from_wire(query)
    r = dns.message.make_response(q)
    if name is not None:  # answer a different question, with the same id
        r.question = [
            dns.rrset.RRset(dns.name.from_text(name), q.question[0].rdclass, q.question[0].rdtype)
        ]
    return r.to_wire()


def test_replies_are_matched_by_id(
    udp_server: Callable[[Callable[[bytes], list[bytes]]], int],
) -> None:
    def handler(query: bytes) -> list[bytes]:
        good = reply_to(query)
        wrong = bytes([query[0] ^ 0xFF, query[1] ^ 0xFF]) + good[2:]
        return [wrong, good]  # a foreign reply first, then the real one

    port = udp_server(handler)
    s = run_one(DnsSpec("127.0.0.1", "x.example.", port=port, sockets=1), qps=40, duration=0.5)
    assert s.success == N
    assert s.extra["unmatched_replies"] == N


def test_reply_to_another_question_is_a_protocol_error(
    udp_server: Callable[[Callable[[bytes], list[bytes]]], int],
) -> None:
    port = udp_server(lambda q: [reply_to(q, name="other.example.")])
    s = run_one(DnsSpec("127.0.0.1", "x.example.", port=port), qps=40, duration=0.5)
    assert s.errors == {PROTOCOL: N}
    assert "other.example" in s.error_samples[PROTOCOL]


def test_no_answer_is_a_timeout(
    udp_server: Callable[[Callable[[bytes], list[bytes]]], int],
) -> None:
    port = udp_server(lambda q: [])
    s = run_one(DnsSpec("127.0.0.1", "x.example.", port=port), qps=40, duration=0.5, timeout=0.3)
    assert s.errors == {TIMEOUT: N} and s.latency.n == 0
    check_accounting(s)


def test_case_randomised_question_is_accepted(
    udp_server: Callable[[Callable[[bytes], list[bytes]]], int],
) -> None:
    port = udp_server(lambda q: [reply_to(q, name="X.ExAmPlE.")])
    s = run_one(DnsSpec("127.0.0.1", "x.example.", port=port), qps=40, duration=0.5)
    assert s.success == N


# --- resolv.conf ------------------------------------------------------------------------------


def test_resolv_conf(tmp_path: pytest.TempPathFactory) -> None:
    p = tmp_path / "resolv.conf"  # type: ignore[operator]
    p.write_text(
        "# comment\nsearch svc.cluster.local cluster.local\noptions ndots:5\n"
        "nameserver fe80::1%eth0\nnameserver 10.96.0.10 ; trailing\nnameserver not-an-ip\n"
    )
    assert nameservers(str(p)) == ["fe80::1%eth0", "10.96.0.10"]
    assert default_nameserver(str(p)) == "fe80::1%eth0"
    assert search_domains(str(p)) == ["svc.cluster.local", "cluster.local"]
    empty = tmp_path / "empty"  # type: ignore[operator]
    empty.write_text("options ndots:1\n")
    assert default_nameserver(str(empty)) is None
    assert default_nameserver(str(tmp_path / "missing")) is None  # type: ignore[operator]


# --- misbehaving TCP servers -------------------------------------------------------------------


@pytest.fixture
def tcp_server() -> Iterator[Callable[[Callable[[list[bytes]], tuple[list[bytes], bool]]], int]]:
    """Start a TCP DNS server: each connection reads queries in batches; ``handler(batch)``
    returns the replies to send and whether to close the connection after them."""
    stops: list[Callable[[], None]] = []

    def start(handler: Callable[[list[bytes]], tuple[list[bytes], bool]]) -> int:
        lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        lsock.bind(("127.0.0.1", 0))
        lsock.listen(16)
        lsock.settimeout(0.1)
        stop = threading.Event()

        def conn(c: socket.socket) -> None:
            c.settimeout(0.05)
            buf = b""
            with c:
                while not stop.is_set():
                    try:
                        data = c.recv(65536)
                    except TimeoutError:
                        data = None
                    except OSError:
                        return
                    if data == b"":
                        return
                    buf += data or b""
                    batch = []
                    while len(buf) >= 2 and len(buf) >= 2 + int.from_bytes(buf[:2], "big"):
                        n = int.from_bytes(buf[:2], "big")
                        batch.append(buf[2 : 2 + n])
                        buf = buf[2 + n :]
                    if not batch:
                        continue
                    replies, close = handler(batch)
                    c.sendall(b"".join(len(r).to_bytes(2, "big") + r for r in replies))
                    if close:
                        return

        def serve() -> None:
            while not stop.is_set():
                try:
                    c, _ = lsock.accept()
                except OSError:
                    continue
                threading.Thread(target=conn, args=(c,), daemon=True).start()
            lsock.close()

        t = threading.Thread(target=serve, daemon=True)
        t.start()

        def halt() -> None:
            stop.set()
            t.join(2)

        stops.append(halt)
        return int(lsock.getsockname()[1])

    yield start
    for halt in stops:
        halt()


def test_tcp_replies_out_of_order_are_matched(
    tcp_server: Callable[[Callable[[list[bytes]], tuple[list[bytes], bool]]], int],
) -> None:
    port = tcp_server(lambda batch: ([reply_to(q) for q in reversed(batch)], False))
    s = run_one(
        DnsSpec("127.0.0.1", "x.example.", port=port, protocol="tcp"), qps=400, duration=0.5
    )
    assert s.success == 200, s.error_samples
    assert not s.extra.get("unmatched_replies")


def test_tcp_reconnects_and_resends(
    tcp_server: Callable[[Callable[[list[bytes]], tuple[list[bytes], bool]]], int],
) -> None:
    # Every other batch of queries is dropped with the connection: the queries in flight
    # are sent again, once, on a new connection (which answers them).
    batches = [0]

    def handler(batch: list[bytes]) -> tuple[list[bytes], bool]:
        batches[0] += 1
        if batches[0] % 2:
            return [], True
        return [reply_to(q) for q in batch], False

    port = tcp_server(handler)
    s = run_one(
        DnsSpec("127.0.0.1", "x.example.", port=port, protocol="tcp"), qps=400, duration=0.5
    )
    assert s.success == 200, s.error_samples
    assert batches[0] > 2
