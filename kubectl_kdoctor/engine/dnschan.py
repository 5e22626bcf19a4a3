"""The sockets of the DNS executor (``engine.dns``): connected UDP sockets and pipelined
TCP/TLS streams, each with the queries in flight on it, keyed by query id.

Ids are given per socket in sequence from a random start, skipping ids still in flight, so
a socket can carry up to 65,536 queries at once. Replies are matched here by id and handed
to the executor, which checks and records them.
"""

from __future__ import annotations

import asyncio
import random
import socket
from time import perf_counter as _perf
from typing import TYPE_CHECKING, cast

from kubectl_kdoctor.engine.neterrors import classify, describe
from kubectl_kdoctor.engine.stats import RESET, TIMEOUT

if TYPE_CHECKING:
    from kubectl_kdoctor.engine.dns import DnsExecutor

READ_BATCH = 64  # datagrams read per wake-up of a UDP socket
UDP_BUFFER = 1 << 20  # bytes of socket buffer asked for (the kernel caps it at rmem_max)


def udp_socket(addr: str, port: int) -> socket.socket:
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


# A query in flight: (intended send time, actual send time, deadline, re-sent already).
# It is in flight exactly while it sits in its channel's ``inflight`` dict, whose insertion
# order is (nearly) deadline order, so timeouts are found at the front of each dict.
Query = tuple[float, float, float, bool]


class UdpChannel:
    """One connected, non-blocking UDP socket and the queries in flight on it.

    Read with ``add_reader`` and a ``recv`` loop (``READ_BATCH`` datagrams at most per
    wake-up): one wake-up per burst of replies instead of one protocol callback (and one
    address tuple) per datagram.
    """

    def __init__(self, ex: DnsExecutor, sock: socket.socket) -> None:
        self.ex = ex
        self.sock: socket.socket | None = sock
        self.inflight: dict[int, Query] = {}
        self.next_id = random.randrange(0x10000)
        self.refused = False  # ICMP port unreachable seen since the last reply
        asyncio.get_running_loop().add_reader(sock.fileno(), self.readable)

    def readable(self, limit: int = READ_BATCH) -> None:
        # At most ``limit`` datagrams per wake-up: the poll is level-triggered, so the rest
        # is read on the next loop iteration, after the pacer had its turn to send.
        sock = self.sock
        if sock is None:
            return
        recv = sock.recv
        inflight = self.inflight
        answer = self.ex.answer
        for _ in range(limit):
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
            answer(q, data, _perf(), True)

    def send(self, q: Query) -> None:
        inflight = self.inflight
        qid = self.next_id
        while qid in inflight:
            qid = (qid + 1) & 0xFFFF
        self.next_id = (qid + 1) & 0xFFFF
        sock = self.sock
        if sock is None:
            self.ex.unsent += 1
            self.ex.fail(q, RESET, "socket closed")
            return
        inflight[qid] = q
        try:
            sock.send(qid.to_bytes(2, "big") + self.ex.tail)
        except OSError as e:
            del inflight[qid]
            self.ex.unsent += 1
            self.ex.fail(q, classify(e), f"send: {describe(e)}")

    def close(self) -> None:
        sock = self.sock
        if sock is not None:
            self.sock = None
            asyncio.get_running_loop().remove_reader(sock.fileno())
            sock.close()


class StreamChannel(asyncio.Protocol):
    """One TCP or TLS connection with pipelined, length-prefixed queries."""

    def __init__(self, ex: DnsExecutor, slot: int) -> None:
        self.ex = ex
        self.slot = slot
        self.transport: asyncio.Transport | None = None
        self.inflight: dict[int, Query] = {}
        self.next_id = random.randrange(0x10000)
        self.out: list[bytes] = []
        self.buf = b""
        self.state = "new"  # new | connecting | open | closed

    def send(self, q: Query) -> None:
        inflight = self.inflight
        qid = self.next_id
        while qid in inflight:
            qid = (qid + 1) & 0xFFFF
        self.next_id = (qid + 1) & 0xFFFF
        inflight[qid] = q
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
        left = list(self.inflight.values())
        self.inflight.clear()
        self.out.clear()
        ex.stream_closed(self)
        for q in left:
            if q[3]:  # re-sent once already
                if exc is not None:
                    ex.fail(q, classify(exc, RESET), describe(exc))
                else:
                    ex.fail(q, RESET, "connection closed before the answer")
            else:
                ex.resend_stream((q[0], q[1], q[2], True), self.slot)
