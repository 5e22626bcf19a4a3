"""One HTTP/1.1 keep-alive connection of the pool (``engine.http``): writes a request,
reads its response, reports the outcome to the executor.

Responses are read by a fast path that parses only the status line and ``Content-Length``
(and notices ``Connection: close``); parsed heads are cached by their bytes, so a server that
answers the same head again costs one dict lookup. Anything unusual (chunked, no length, ...)
goes to httptools. One request is in flight per connection (no pipelining).
"""

from __future__ import annotations

import asyncio
from time import perf_counter as _perf
from typing import TYPE_CHECKING, cast

import httptools

from kubectl_kdoctor.engine.neterrors import classify, describe
from kubectl_kdoctor.engine.stats import PROTOCOL, RESET

if TYPE_CHECKING:
    from kubectl_kdoctor.engine.http import HttpExecutor

MAX_HEAD = 64 * 1024
NO_BODY_STATUS = frozenset({204, 304})


class Request:
    __slots__ = ("conn", "deadline", "done", "intended", "retried", "sent")

    def __init__(self, intended: float, sent: float, deadline: float) -> None:
        self.intended = intended
        self.sent = sent
        self.deadline = deadline
        self.done = False
        self.retried = False
        self.conn: Connection | None = None


class _SlowParse:
    """httptools callbacks for responses the fast path does not take."""

    def __init__(self) -> None:
        self.headers_done = False
        self.complete = False
        self.body = 0

    def on_headers_complete(self) -> None:
        self.headers_done = True

    def on_body(self, body: bytes) -> None:
        self.body += len(body)

    def on_message_complete(self) -> None:
        self.complete = True


class Connection(asyncio.Protocol):
    """One keep-alive connection; reads one response at a time."""

    def __init__(self, ex: HttpExecutor) -> None:
        self.ex = ex
        self.transport: asyncio.Transport | None = None
        self.req: Request | None = None
        self.dead = False
        self.served = 0  # responses completed on this connection
        self.got = 0  # bytes received for the current request
        self.buf = b""
        self.body_left = -1  # -1: reading the head
        self.body_len = 0
        self.status = 0
        self.keep = True
        self.parser: httptools.HttpResponseParser | None = None
        self.slow: _SlowParse | None = None

    # --- asyncio.Protocol --------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        now = _perf()
        if self.req is None or self.dead:
            self._protocol_error(now, "data received while no request was in flight")
            return
        self.got += len(data)
        if self.parser is not None:
            self._feed_slow(data, now)
        elif self.body_left >= 0:  # in the body of a response with a known length
            n = len(data)
            if n >= self.body_left:
                self._done(self.status, self.body_len, now)
            else:
                self.body_left -= n
        else:
            self._head(self.buf + data if self.buf else data, now)

    def _head(self, buf: bytes, now: float) -> None:
        """Parse a response head from ``buf`` (fast path; httptools for the unusual)."""
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            if len(buf) > MAX_HEAD:
                self._protocol_error(now, "response head larger than 64 KiB")
            else:
                self.buf = buf
            return
        self.buf = b""
        head = buf[:end]
        cache = self.ex.heads
        info = cache.get(head)
        if info is None:
            info = self._parse_head(buf, head, end, now)
            if info is None:
                return
            if len(cache) >= 64:
                cache.clear()
            cache[head] = info
        status, length, keep = info
        if status < 0:  # informational (1xx): the final response follows
            self._head(buf[end + 4 :], now)
            return
        self.keep = keep
        rest = len(buf) - end - 4
        if rest >= length:
            self._done(status, length, now)
        else:
            self.status = status
            self.body_len = length
            self.body_left = length - rest

    def _parse_head(
        self, buf: bytes, head: bytes, end: int, now: float
    ) -> tuple[int, int, bool] | None:
        """(status, body length, keep-alive) of a head, or None when handled otherwise.

        A status of -1 marks an informational response. Heads with chunked or unknown body
        lengths switch this response to httptools (and are not cached)."""
        if not head.startswith(b"HTTP/1.") or head[8:9] != b" ":
            self._protocol_error(now, f"not an HTTP/1.x response: {buf[:40]!r}")
            return None
        try:
            status = int(head[9:12])
        except ValueError:
            self._protocol_error(now, f"bad status line: {buf[:40]!r}")
            return None
        if 100 <= status < 200 and status != 101:
            return (-1, 0, True)
        low = head.lower()
        if self.ex.head_only or status in NO_BODY_STATUS or status == 101:
            length = 0
        else:
            i = low.find(b"\r\ncontent-length:")
            if i < 0 or b"\r\ntransfer-encoding:" in low:
                self._start_slow(buf, now)
                return None
            j = low.find(b"\r\n", i + 17)
            try:
                length = int(low[i + 17 : j if j > 0 else len(low)])
            except ValueError:
                self._protocol_error(now, "bad Content-Length")
                return None
            if length < 0:
                self._protocol_error(now, "bad Content-Length")
                return None
        if head[7] == 48:  # HTTP/1.0: keep-alive only when asked for
            keep = b"\r\nconnection: keep-alive" in low
        else:
            keep = b"\r\nconnection: close" not in low
        return (status, length, keep)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        ex = self.ex
        if self.dead:
            return
        self.dead = True
        ex.nconns -= 1
        req = self.req
        self.req = None
        if req is None or req.done:
            ex.forget_idle(self)
        elif (
            exc is None
            and self.parser is not None
            and self.slow is not None
            and self.slow.headers_done
        ):
            # A body delimited by the end of the connection.
            self.served += 1
            ex.complete(req, self.parser.get_status_code(), self.slow.body, _perf())
        elif (
            self.got == 0
            and self.served > 0
            and not req.retried
            and (exc is None or classify(exc) == RESET)
        ):
            req.retried = True  # the keep-alive race: the server closed an idle connection
            req.conn = None
            ex.retries += 1
            ex.assign(req)
            return
        elif exc is not None:
            ex.fail(req, classify(exc, RESET), describe(exc))
        else:
            ex.fail(req, RESET, "connection closed before a complete response")
        ex.dispatch_pending()

    # --- request / response ------------------------------------------------------------

    def start(self, req: Request) -> None:
        """Write ``req`` on this (connected, idle) connection; the parsing state was reset
        when the previous response ended (``_done``)."""
        self.req = req
        req.conn = self
        self.got = 0
        ex = self.ex
        ex.written += 1
        self.transport.write(ex.request)  # type: ignore[union-attr]

    def kill(self) -> None:
        """Drop this connection now (its request has been ended elsewhere)."""
        if not self.dead:
            self.dead = True
            self.ex.nconns -= 1
        self.req = None
        if self.transport is not None:
            self.transport.abort()

    def _start_slow(self, buf: bytes, now: float) -> None:
        self.slow = _SlowParse()
        self.parser = httptools.HttpResponseParser(self.slow)
        self.buf = b""
        self._feed_slow(buf, now)

    def _feed_slow(self, data: bytes, now: float) -> None:
        assert self.parser is not None and self.slow is not None
        try:
            self.parser.feed_data(data)
        except Exception as e:
            self._protocol_error(now, f"malformed response: {e}")
            return
        if self.slow.complete:
            self.keep = self.parser.should_keep_alive()
            self._done(self.parser.get_status_code(), self.slow.body, now)

    def _done(self, status: int, nbytes: int, now: float) -> None:
        req = self.req
        self.req = None
        self.served += 1
        self.parser = None
        self.slow = None
        self.body_left = -1
        assert req is not None
        ex = self.ex
        ex.release(self)  # first, so that a request sent on completion can reuse it
        ex.complete(req, status, nbytes, now)

    def _protocol_error(self, now: float, detail: str) -> None:
        req = self.req
        self.kill()
        if req is not None and not req.done:
            self.ex.fail(req, PROTOCOL, detail)
        self.ex.dispatch_pending()
