"""DNS executor: UDP, TCP and DNS over TLS, built for rate.

The query is built once with dnspython (RD set, no EDNS, like kdoctor) and only its 2-byte id
is patched per send. Replies are checked from the header: id (matched against the queries in
flight on that socket or connection), QR, the question echoed back, TC and rcode; dnspython
parses a reply fully only for the first answer (kept as a sample) or to describe a mismatch.

- ``udp``: several connected sockets, used in turn, so queries leave from several source
  ports (and spread over servers behind a load balancer). A reply with TC=1 is counted in
  ``stats.truncated`` and the query is retried over TCP, as a resolver would; its latency
  includes the retry. ICMP port unreachable ends a query as ``connection refused``.
- ``tcp`` / ``tls``: one (or a few) persistent connections; queries are pipelined,
  length-prefixed, written once per pacer burst and matched by id. A closed connection is
  reopened and its unanswered queries re-sent once. DoT verifies the server certificate only
  when a CA is given (or ``insecure`` is false), like kdoctor.

A reply succeeds when its rcode is ``expect_rcode`` (default NOERROR); any other rcode is an
answer in time with ``unexpected rcode``. Codes are counted by name. This is the only module
that imports dnspython.
"""

from __future__ import annotations

import asyncio
import ipaddress
import itertools
import random
import socket
import ssl
from collections import deque
from collections.abc import Callable, Coroutine
from time import perf_counter as _perf
from typing import Any, cast

import dns.exception
import dns.message
import dns.rcode
import dns.rdatatype

from kubectl_kdoctor.engine.neterrors import classify, describe
from kubectl_kdoctor.engine.spec import DnsSpec, Load
from kubectl_kdoctor.engine.stats import (
    BAD_RCODE,
    OTHER,
    PROTOCOL,
    REFUSED,
    RESET,
    RESOLVE,
    TIMEOUT,
    TLS,
    TargetStats,
)
from kubectl_kdoctor.engine.tls import client_context

UDP_SOCKETS = 8
UDP_BUFFER = 1 << 20  # bytes of socket buffer asked for (the kernel caps it at rmem_max)
STREAMS = 1
DOT_PORT = 853
RCODE_NAMES = tuple(dns.rcode.to_text(dns.rcode.Rcode.make(i)) for i in range(16))


def build_query(domain: str, qtype: str) -> bytes:
    """Wire form of a recursive query for ``domain``/``qtype`` with id 0 (no EDNS)."""
    q = dns.message.make_query(domain, dns.rdatatype.from_text(qtype))
    q.id = 0
    return q.to_wire()


def describe_reply(wire: bytes) -> str:
    """A short text of a reply, for error samples and the answer sample."""
    try:
        msg = dns.message.from_wire(wire, ignore_trailing=True)
    except dns.exception.DNSException as e:
        return f"unparsable reply ({len(wire)} bytes): {e}"
    question = " ".join(str(rr) for rr in msg.question) or "-"
    answers = [str(rr) for rr in msg.answer]
    return f"{question} -> {dns.rcode.to_text(msg.rcode())}: " + ("; ".join(answers) or "(none)")


def answer_lines(wire: bytes, limit: int = 8) -> list[str]:
    try:
        msg = dns.message.from_wire(wire, ignore_trailing=True)
    except dns.exception.DNSException:
        return []
    lines: list[str] = []
    for rrset in msg.answer:
        lines.extend(rrset.to_text().splitlines())
    return lines[:limit]


def _udp_socket(addr: str, port: int) -> socket.socket:
    """A non-blocking UDP socket connected to the server, with room for reply bursts."""
    family = socket.AF_INET6 if ":" in addr else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):
            try:
                sock.setsockopt(socket.SOL_SOCKET, opt, UDP_BUFFER)
            except OSError:
                pass
        sock.setblocking(False)
        sock.connect((addr, port))
    except OSError:
        sock.close()
        raise
    return sock


class _Query:
    __slots__ = ("chan", "deadline", "done", "intended", "qid", "retried", "sent")

    def __init__(self, intended: float, sent: float, deadline: float) -> None:
        self.intended = intended
        self.sent = sent
        self.deadline = deadline
        self.done = False
        self.retried = False
        self.qid = 0
        self.chan: _Udp | _Stream | None = None


class _Udp:
    """One connected, non-blocking UDP socket and the queries in flight on it.

    Read with ``add_reader`` and a ``recv`` loop until the socket is empty: one wake-up
    per burst of replies instead of one protocol callback (and address tuple) per datagram.
    """

    def __init__(self, ex: DnsExecutor, sock: socket.socket) -> None:
        self.ex = ex
        self.sock: socket.socket | None = sock
        self.inflight: dict[int, _Query] = {}
        self.next_id = random.randrange(0x10000)
        self.refused = False  # ICMP port unreachable seen since the last reply
        asyncio.get_running_loop().add_reader(sock.fileno(), self.readable)

    def readable(self) -> None:
        sock = self.sock
        if sock is None:
            return
        recv = sock.recv
        inflight = self.inflight
        answer = self.ex.answer
        now = _perf()
        while True:
            try:
                data = recv(4096)
            except BlockingIOError:
                return
            except OSError as e:  # e.g. ECONNREFUSED after an ICMP port unreachable
                self.ex.udp_error(self, e)
                continue
            if len(data) < 12:
                self.ex.unmatched += 1
                continue
            q = inflight.pop((data[0] << 8) | data[1], None)
            if q is None:
                self.ex.unmatched += 1  # late (after its timeout), duplicated or foreign
                continue
            self.refused = False
            answer(q, data, now, True)

    def send(self, q: _Query) -> None:
        inflight = self.inflight
        qid = self.next_id
        while qid in inflight:
            qid = (qid + 1) & 0xFFFF
        self.next_id = (qid + 1) & 0xFFFF
        q.qid = qid
        q.chan = self
        if self.sock is None:
            self.ex.unsent += 1
            self.ex.fail(q, RESET, "socket closed")
            return
        inflight[qid] = q
        try:
            self.sock.send(qid.to_bytes(2, "big") + self.ex.tail)
        except OSError as e:
            inflight.pop(qid, None)
            self.ex.unsent += 1
            self.ex.fail(q, classify(e), f"send: {describe(e)}")

    def close(self) -> None:
        sock = self.sock
        if sock is not None:
            self.sock = None
            asyncio.get_running_loop().remove_reader(sock.fileno())
            sock.close()


class _Stream(asyncio.Protocol):
    """One TCP or TLS connection with pipelined, length-prefixed queries."""

    def __init__(self, ex: DnsExecutor, slot: int) -> None:
        self.ex = ex
        self.slot = slot
        self.transport: asyncio.Transport | None = None
        self.inflight: dict[int, _Query] = {}
        self.next_id = random.randrange(0x10000)
        self.out: list[bytes] = []
        self.buf = b""
        self.state = "new"  # new | connecting | open | closed

    def send(self, q: _Query) -> None:
        inflight = self.inflight
        qid = self.next_id
        while qid in inflight:
            qid = (qid + 1) & 0xFFFF
        self.next_id = (qid + 1) & 0xFFFF
        inflight[qid] = q
        q.qid = qid
        q.chan = self
        self.out.append(self.ex.frame_len + qid.to_bytes(2, "big") + self.ex.tail)
        if self.state == "new":
            self.state = "connecting"
            self.ex.spawn(self._connect())

    def flush(self) -> None:
        if self.out and self.transport is not None:
            self.transport.write(b"".join(self.out))
            self.out.clear()

    async def _connect(self) -> None:
        ex = self.ex
        try:
            await asyncio.wait_for(
                asyncio.get_running_loop().create_connection(
                    lambda: self,
                    ex.addr,
                    ex.port if ex.protocol != "udp" else ex.tcp_port,
                    ssl=ex.ssl if ex.protocol == "tls" else None,
                    server_hostname=ex.sni if ex.protocol == "tls" else None,
                ),
                ex.timeout,
            )
        except asyncio.CancelledError:
            raise
        except Exception as e:
            self.state = "closed"
            ex.unsent += len(self.out)
            self.out.clear()
            if isinstance(e, TimeoutError):
                cls, detail = TIMEOUT, f"connect: no answer within {ex.timeout:g}s"
            else:
                cls, detail = classify(e), f"connect: {describe(e)}"
            for q in list(self.inflight.values()):
                ex.fail(q, cls, detail)
            self.inflight.clear()
            ex.stream_closed(self)
            return
        self.state = "open"
        self.flush()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except (OSError, AttributeError):
                pass

    def data_received(self, data: bytes) -> None:
        now = _perf()
        buf = self.buf + data if self.buf else data
        n = len(buf)
        pos = 0
        reply = self.ex.stream_reply
        while n - pos >= 2:
            size = (buf[pos] << 8) | buf[pos + 1]
            end = pos + 2 + size
            if end > n:
                break
            reply(self, buf[pos + 2 : end], now)
            pos = end
        self.buf = buf[pos:] if pos < n else b""

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.state = "closed"
        ex = self.ex
        left = [q for q in self.inflight.values() if not q.done]
        self.inflight.clear()
        self.out.clear()
        ex.stream_closed(self)
        for q in left:
            if q.retried:
                if exc is not None:
                    ex.fail(q, classify(exc, RESET), describe(exc))
                else:
                    ex.fail(q, RESET, "connection closed before the answer")
            else:
                q.retried = True
                ex.resend_stream(q, self.slot)


class DnsExecutor:
    """DNS load over UDP, TCP or TLS (see the module docstring)."""

    def __init__(
        self,
        spec: DnsSpec,
        stats: TargetStats,
        load: Load,
        udp_sockets: int = 0,
        streams: int = 0,
    ) -> None:
        self.spec = spec
        self.stats = stats
        self.timeout = load.timeout
        self.protocol = spec.protocol.lower()
        self.inflight = 0
        self.on_complete: Callable[[], None] | None = None
        self.n_udp = udp_sockets or spec.sockets or UDP_SOCKETS
        self.n_streams = streams or spec.sockets or STREAMS
        self.udp: list[_Udp] = []
        self.streams: list[_Stream | None] = []
        self.fallback: _Stream | None = None  # TCP for truncated UDP replies
        self.rr = 0
        self.next_channel: Callable[[], _Udp | _Stream] = self._next_stream
        self.unsent = 0  # sends that never reached the wire
        self.resent = 0  # queries written again (TC retry over TCP, reconnect)
        self.expiry: deque[_Query] = deque()
        self.tasks: set[asyncio.Task[None]] = set()
        self.broken: tuple[str, str] | None = None
        self.addr = ""
        self.port = spec.port
        self.tcp_port = spec.port
        self.ssl: ssl.SSLContext | None = None
        self.sni: str | None = None
        self.tail = b""
        self.frame_len = b""
        self.question = b""
        self.question_lower = b""
        self.qend = 12
        self.qsize = 0
        self.expect = dns.rcode.from_text(spec.expect_rcode)
        self.expect_name = RCODE_NAMES[self.expect] if self.expect < 16 else spec.expect_rcode
        self.unmatched = 0
        self.nodata = 0
        self.sampled = False

    # --- set-up ------------------------------------------------------------------------

    async def open(self) -> None:
        spec = self.spec
        self.stats.extra.update({"domain": spec.domain, "qtype": spec.qtype.upper()})
        try:
            wire = build_query(spec.domain, spec.qtype.upper())
        except (dns.exception.DNSException, ValueError) as e:
            self.broken = (OTHER, f"cannot build the query: {e}")
            return
        self.tail = wire[2:]
        self.frame_len = len(wire).to_bytes(2, "big")
        self.question = wire[12:]
        self.question_lower = self.question.lower()
        self.qend = 12 + len(self.question)
        self.qsize = len(wire)
        try:
            self.addr = await self._resolve(spec.server)
        except OSError as e:
            self.broken = (RESOLVE, f"cannot resolve {spec.server}: {describe(e)}")
            return
        if self.protocol == "tls":
            try:
                self.ssl = client_context(
                    verify=bool(spec.cacert) or not spec.insecure,
                    cacert=spec.cacert,
                    alpn=("dot",),
                )
            except (OSError, ValueError) as e:
                self.broken = (TLS, f"cannot set up TLS: {describe(e)}")
                return
            self.sni = spec.tls_name or spec.server
        if self.protocol == "udp":
            for _ in range(self.n_udp):
                try:
                    sock = _udp_socket(self.addr, self.port)
                except OSError as e:
                    self.broken = (classify(e), f"cannot open a UDP socket: {describe(e)}")
                    return
                self.udp.append(_Udp(self, sock))
            self.next_channel = itertools.cycle(self.udp).__next__
        else:
            self.streams = [None] * self.n_streams

    @staticmethod
    async def _resolve(host: str) -> str:
        try:
            ipaddress.ip_address(host.split("%", 1)[0])
            return host
        except ValueError:
            pass
        infos = await asyncio.get_running_loop().getaddrinfo(host, None)
        if not infos:
            raise socket.gaierror(f"no address for {host}")
        return str(infos[0][4][0])

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    # --- Executor ----------------------------------------------------------------------

    def send(self, intended: float, sent: float) -> None:
        self.inflight += 1
        q = _Query(intended, sent, sent + self.timeout)
        if self.broken is not None:
            self.unsent += 1
            self.fail(q, *self.broken)
            return
        self.expiry.append(q)
        self.next_channel().send(q)

    def _next_stream(self) -> _Stream:
        i = self.rr
        self.rr = i + 1 if i + 1 < self.n_streams else 0
        return self._stream(i)

    def _stream(self, slot: int) -> _Stream:
        s = self.streams[slot]
        if s is None or s.state == "closed":
            s = self.streams[slot] = _Stream(self, slot)
        return s

    def flush(self) -> None:
        for s in self.streams:
            if s is not None:
                s.flush()

    def expire(self, now: float) -> None:
        q = self.expiry
        while q:
            head = q[0]
            if head.done:
                q.popleft()
            elif head.deadline <= now:
                q.popleft()
                chan = head.chan
                cls, detail = TIMEOUT, f"no reply within {self.timeout:g}s"
                if chan is not None:
                    chan.inflight.pop(head.qid, None)
                    if isinstance(chan, _Udp) and chan.refused:
                        cls, detail = REFUSED, "ICMP port unreachable from the server"
                self.fail(head, cls, detail)
            else:
                break

    def abort(self, cls: str, detail: str) -> None:
        for q in self.expiry:
            if not q.done:
                if q.chan is not None:
                    q.chan.inflight.pop(q.qid, None)
                self.fail(q, cls, detail)
        self.expiry.clear()

    async def close(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        if self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)
        for chan in self.udp:
            chan.close()
        for s in [*self.streams, self.fallback]:
            if s is not None and s.transport is not None:
                s.state = "closed"
                s.inflight.clear()
                s.transport.close()
        self.stats.bytes_out += (self.stats.sent - self.unsent + self.resent) * self.qsize
        extra = self.stats.extra
        if self.unmatched:
            extra["unmatched_replies"] = self.unmatched
        if self.nodata:
            extra["nodata"] = self.nodata

    # --- replies -----------------------------------------------------------------------

    def stream_reply(self, chan: _Stream, data: bytes, now: float) -> None:
        if len(data) < 12:
            self.unmatched += 1
            return
        q = chan.inflight.pop((data[0] << 8) | data[1], None)
        if q is None:
            self.unmatched += 1  # late (after its timeout), duplicated or foreign
            return
        self.answer(q, data, now, False)

    def answer(self, q: _Query, data: bytes, now: float, udp: bool) -> None:
        """A reply matched by id to ``q``: check it from the header and record it."""
        if q.done:
            self.unmatched += 1
            return
        flags = data[2]
        if flags & 0x82 == 0x80 and data.startswith(self.question, 12):
            pass  # the common case: a reply, not truncated, to our question
        elif not flags & 0x80 or (
            data[4:6] == b"\x00\x01"
            and not data.startswith(self.question, 12)
            and data[12 : self.qend].lower() != self.question_lower
        ):
            self.fail(q, PROTOCOL, f"reply does not match the query: {describe_reply(data)}")
            return
        elif flags & 0x02 and udp:
            self.stats.truncated += 1  # TC=1: ask again over TCP, as a resolver would
            self.resent += 1
            self._fallback().send(q)
            self.fallback_flush()
            return
        q.done = True
        self.inflight -= 1
        rcode = data[3] & 0x0F
        if rcode == self.expect:
            self.stats.ok(
                self.expect_name,
                int((now - q.intended) * 1_000_000),
                int((now - q.sent) * 1_000_000),
                len(data),
            )
            if data[7] == 0 and data[6] == 0:
                self.nodata += 1
            if not self.sampled:
                self.sampled = True
                self.stats.extra["answer_sample"] = answer_lines(data)
        else:
            self.stats.answered_bad(
                BAD_RCODE,
                RCODE_NAMES[rcode],
                int((now - q.intended) * 1_000_000),
                int((now - q.sent) * 1_000_000),
                len(data),
            )
        if self.on_complete is not None:
            self.on_complete()

    def udp_error(self, chan: _Udp, exc: Exception) -> None:
        cls = classify(exc)
        if cls == REFUSED:
            chan.refused = True
        # The error belongs to one datagram; end the oldest query in flight on that socket.
        for qid, q in chan.inflight.items():
            del chan.inflight[qid]
            self.fail(q, cls, describe(exc))
            break

    def _fallback(self) -> _Stream:
        s = self.fallback
        if s is None or s.state == "closed":
            s = self.fallback = _Stream(self, -1)
        return s

    def fallback_flush(self) -> None:
        if self.fallback is not None:
            self.fallback.flush()

    def stream_closed(self, s: _Stream) -> None:
        if s.slot >= 0 and self.streams[s.slot] is s:
            self.streams[s.slot] = None
        elif s.slot < 0 and self.fallback is s:
            self.fallback = None

    def resend_stream(self, q: _Query, slot: int) -> None:
        self.resent += 1
        if slot < 0:
            self._fallback().send(q)
            self.fallback_flush()
        else:
            s = self._stream(slot)
            s.send(q)
            s.flush()

    def fail(self, q: _Query, cls: str, detail: str) -> None:
        if q.done:
            return
        q.done = True
        self.inflight -= 1
        self.stats.failed(cls, detail)
        if self.on_complete is not None:
            self.on_complete()
