"""DNS executor: UDP, TCP and DNS over TLS, built for rate.

The query is built once with dnspython (RD set, no EDNS, like kdoctor) and only its 2-byte id
is patched per send. Replies are checked from the header: id (matched against the queries in
flight on that socket or connection), QR, the question echoed back, TC and rcode; dnspython
parses a reply fully only for the first answer (kept as a sample) or to describe a mismatch.

- ``udp``: several connected sockets, used in turn, so queries leave from several source
  ports (and spread over servers behind a load balancer). A reply with TC=1 is counted in
  ``stats.truncated`` and, by default, ends the query as ``truncated (TC)``; with
  ``DnsSpec.tc_fallback`` the query is asked again over TCP, as a resolver would, and the TCP
  answer counts (its latency includes the UDP attempt). ICMP port unreachable ends a query
  as ``connection refused``.
- ``tcp`` / ``tls``: one (or a few) persistent connections; queries are pipelined,
  length-prefixed, written once per pacer burst and matched by id. A closed connection is
  reopened and its unanswered queries re-sent once. DoT verifies the server certificate
  (against ``cacert`` or the system trust store, for ``tls_name`` or the server) unless
  ``insecure``: unlike kdoctor, which never verifies it.

A reply succeeds when its rcode is ``expect_rcode`` (default NOERROR); any other rcode is an
answer in time with ``unexpected rcode``. Codes are counted by name. This is the only module
that imports dnspython.
"""

from __future__ import annotations

import asyncio
import ipaddress
import itertools
import socket
import ssl
from collections.abc import Callable, Coroutine
from typing import Any

import dns.exception
import dns.message
import dns.rcode
import dns.rdatatype

from kubectl_kdoctor.engine.dnschan import Query, StreamChannel, UdpChannel, udp_socket
from kubectl_kdoctor.engine.neterrors import classify, describe
from kubectl_kdoctor.engine.spec import DnsSpec, Load
from kubectl_kdoctor.engine.stats import (
    BAD_RCODE,
    OTHER,
    PROTOCOL,
    REFUSED,
    RESOLVE,
    TIMEOUT,
    TLS,
    TRUNCATED,
    TargetStats,
    late_read,
)
from kubectl_kdoctor.engine.tls import client_context

UDP_SOCKETS = 8
DRAIN_LIMIT = 1 << 16  # datagrams read from a socket before timing out its queries
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
        proto = spec.protocol.lower()
        self.protocol = {"tcp-tls": "tls", "dot": "tls"}.get(proto, proto)  # kdoctor's names
        self.inflight = 0
        self.on_complete: Callable[[], None] | None = None
        self.n_udp = udp_sockets or spec.sockets or UDP_SOCKETS
        self.n_streams = streams or spec.sockets or STREAMS
        self.udp: list[UdpChannel] = []
        self.streams: list[StreamChannel | None] = []
        self.fallback: StreamChannel | None = None  # TCP for truncated UDP replies
        self.rr = 0
        self.next_channel: Callable[[], UdpChannel | StreamChannel] = self._next_stream
        self.unsent = 0  # sends that never reached the wire
        self.resent = 0  # queries written again (TC retry over TCP, reconnect)
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
                    verify=not spec.insecure,
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
                    sock = udp_socket(self.addr, self.port)
                except OSError as e:
                    self.broken = (classify(e), f"cannot open a UDP socket: {describe(e)}")
                    return
                self.udp.append(UdpChannel(self, sock))
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
        # The deadline counts from the intended send time, as latency does: no success is
        # ever slower than the timeout (docs/verdicts.md).
        q = (intended, sent, intended + self.timeout, False)
        if self.broken is not None:
            self.unsent += 1
            self.fail(q, *self.broken)
            return
        self.next_channel().send(q)

    def _next_stream(self) -> StreamChannel:
        i = self.rr
        self.rr = i + 1 if i + 1 < self.n_streams else 0
        return self._stream(i)

    def _stream(self, slot: int) -> StreamChannel:
        s = self.streams[slot]
        if s is None or s.state == "closed":
            s = self.streams[slot] = StreamChannel(self, slot)
        return s

    def flush(self) -> None:
        for s in self.streams:
            if s is not None:
                s.flush()

    def channels(self) -> list[UdpChannel | StreamChannel]:
        """Every socket or connection that may have queries in flight."""
        out: list[UdpChannel | StreamChannel] = [*self.udp]
        out.extend(s for s in self.streams if s is not None)
        if self.fallback is not None:
            out.append(self.fallback)
        return out

    def expire(self, now: float) -> None:
        for chan in self.channels():
            inflight = chan.inflight
            if not inflight or next(iter(inflight.values()))[2] > now:
                continue
            if isinstance(chan, UdpChannel):
                chan.readable(DRAIN_LIMIT)  # replies still queued in the socket come first
            late = []
            for qid, q in inflight.items():
                if q[2] > now:
                    break
                late.append(qid)
            if not late:
                continue
            cls, detail = TIMEOUT, f"no reply within {self.timeout:g}s"
            if isinstance(chan, UdpChannel) and chan.refused:
                cls, detail = REFUSED, "ICMP port unreachable from the server"
            for qid in late:
                self.fail(inflight.pop(qid), cls, detail)

    def abort(self, cls: str, detail: str) -> None:
        for chan in self.channels():
            left = list(chan.inflight.values())
            chan.inflight.clear()
            for q in left:
                self.fail(q, cls, detail)

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

    def stream_reply(self, chan: StreamChannel, data: bytes, now: float) -> None:
        if len(data) < 12:
            self.unmatched += 1
            return
        q = chan.inflight.pop((data[0] << 8) | data[1], None)
        if q is None:
            self.unmatched += 1  # late (after its timeout), duplicated or foreign
            return
        self.answer(q, data, now, False)

    def answer(self, q: Query, data: bytes, now: float, udp: bool) -> None:
        """A reply matched by id to ``q`` (taken out of flight): check it and record it."""
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
            self.stats.truncated += 1
            if not self.spec.tc_fallback:
                self.fail(
                    q,
                    TRUNCATED,
                    "truncated (TC) reply over UDP: the answer does not fit, or the server "
                    "rate-limits (RRL slip); --tc-fallback retries over TCP",
                    "TC",
                )
                return
            if now > q[2]:
                self.fail(q, TIMEOUT, late_read(now - q[0], self.timeout))
                return
            self.resent += 1  # TC=1 and --tc-fallback: ask again over TCP, as a resolver does
            self._fallback().send(q)
            self.fallback_flush()
            return
        if now > q[2]:  # read after its deadline (the loop was busy): too late to count
            self.fail(q, TIMEOUT, late_read(now - q[0], self.timeout))
            return
        self.inflight -= 1
        rcode = data[3] & 0x0F
        if rcode == self.expect:
            self.stats.ok(
                self.expect_name,
                int((now - q[0]) * 1_000_000),
                int((now - q[1]) * 1_000_000),
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
                int((now - q[0]) * 1_000_000),
                int((now - q[1]) * 1_000_000),
                len(data),
            )
        if self.on_complete is not None:
            self.on_complete()

    def udp_error(self, chan: UdpChannel, exc: Exception) -> None:
        cls = classify(exc)
        detail = describe(exc)
        if cls == REFUSED:
            chan.refused = True
            detail = "ICMP port unreachable from the server"
        # The error belongs to one datagram; end the oldest query in flight on that socket.
        for qid, q in chan.inflight.items():
            del chan.inflight[qid]
            self.fail(q, cls, detail)
            break

    def _fallback(self) -> StreamChannel:
        s = self.fallback
        if s is None or s.state == "closed":
            s = self.fallback = StreamChannel(self, -1)
        return s

    def fallback_flush(self) -> None:
        if self.fallback is not None:
            self.fallback.flush()

    def stream_closed(self, s: StreamChannel) -> None:
        if s.slot >= 0 and self.streams[s.slot] is s:
            self.streams[s.slot] = None
        elif s.slot < 0 and self.fallback is s:
            self.fallback = None

    def resend_stream(self, q: Query, slot: int) -> None:
        self.resent += 1
        if slot < 0:
            self._fallback().send(q)
            self.fallback_flush()
        else:
            s = self._stream(slot)
            s.send(q)
            s.flush()

    def fail(self, q: Query, cls: str, detail: str, code: str = "0") -> None:
        """End ``q`` (already out of flight) without a usable answer."""
        self.inflight -= 1
        self.stats.failed(cls, detail, code)
        if self.on_complete is not None:
            self.on_complete()
