"""HTTP/1.1 executor on asyncio protocols, with a keep-alive connection pool.

The request is serialised once and written as-is on every send. Responses are read by a fast
path that parses only the status line and ``Content-Length`` (and notices ``Connection:
close``); anything unusual (chunked, no length, ...) goes to httptools. One request is in
flight per connection (no pipelining); a request takes an idle connection (most recently
used first) or opens a new one, up to the in-flight cap. Redirects are not followed: a 3xx is
a status like any other. A reused connection that the server closed before answering is
retried once on a fresh one (the keep-alive race); other transport failures end the request
with their class (see ``engine.neterrors``). Timeouts count from the actual send.

HTTP/2 is served by ``engine.http2`` (httpx); ``make_http_executor`` picks one.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections import deque
from collections.abc import Callable
from time import perf_counter as _perf
from typing import cast
from urllib.parse import urlsplit

import httptools

from kubectl_kdoctor import __version__
from kubectl_kdoctor.engine.neterrors import classify, describe
from kubectl_kdoctor.engine.pacing import Executor
from kubectl_kdoctor.engine.spec import HttpSpec, Load
from kubectl_kdoctor.engine.stats import (
    BAD_STATUS,
    PROTOCOL,
    RESET,
    RESOLVE,
    TIMEOUT,
    TLS,
    TargetStats,
)
from kubectl_kdoctor.engine.tls import client_context, server_name

USER_AGENT = f"kubectl-kdoctor/{__version__}"
MAX_HEAD = 64 * 1024
NO_BODY_STATUS = frozenset({204, 304})


class ParsedUrl:
    """A parsed HTTP(S) URL: where to connect and what to put in the request line."""

    def __init__(self, url: str, host_header: str | None = None) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise ValueError(f"unsupported URL scheme {parts.scheme!r} (expected http or https)")
        if not parts.hostname:
            raise ValueError(f"URL {url!r} has no host")
        self.tls = parts.scheme == "https"
        self.host = parts.hostname
        default_port = 443 if self.tls else 80
        self.port = parts.port or default_port
        self.path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        netloc = parts.netloc.rsplit("@", 1)[-1]
        self.host_header = host_header or netloc
        self.sni = server_name(host_header) if host_header else self.host


def build_request(spec: HttpSpec, target: ParsedUrl) -> bytes:
    """The request bytes: request line, headers, body (written unchanged on every send)."""
    method = spec.method.upper()
    given = {k.lower() for k, _ in spec.headers}
    lines = [f"{method} {target.path} HTTP/1.1"]
    if "host" not in given:
        lines.append(f"Host: {target.host_header}")
    if "user-agent" not in given:
        lines.append(f"User-Agent: {USER_AGENT}")
    if "accept" not in given:
        lines.append("Accept: */*")
    for k, v in spec.headers:
        if k.lower() in ("content-length", "transfer-encoding", "connection"):
            continue
        lines.append(f"{k}: {v}")
    if spec.body or method in ("POST", "PUT", "PATCH"):
        lines.append(f"Content-Length: {len(spec.body)}")
    head = "\r\n".join(lines) + "\r\n\r\n"
    return head.encode("latin-1") + spec.body


class _Req:
    __slots__ = ("conn", "deadline", "done", "intended", "retried", "sent")

    def __init__(self, intended: float, sent: float, deadline: float) -> None:
        self.intended = intended
        self.sent = sent
        self.deadline = deadline
        self.done = False
        self.retried = False
        self.conn: _Conn | None = None


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


class _Conn(asyncio.Protocol):
    """One keep-alive connection; reads one response at a time."""

    def __init__(self, ex: HttpExecutor) -> None:
        self.ex = ex
        self.transport: asyncio.Transport | None = None
        self.req: _Req | None = None
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
            ex.assign(req)
            return
        elif exc is not None:
            ex.fail(req, classify(exc, RESET), describe(exc))
        else:
            ex.fail(req, RESET, "connection closed before a complete response")
        ex.dispatch_pending()

    # --- request / response ------------------------------------------------------------

    def start(self, req: _Req) -> None:
        """Write ``req`` on this (connected, idle) connection."""
        self.req = req
        req.conn = self
        self.got = 0
        self.body_left = -1
        self.buf = b""
        self.parser = None
        self.slow = None
        assert self.transport is not None
        self.transport.write(self.ex.request)
        self.ex.stats.bytes_out += self.ex.request_len

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


class HttpExecutor:
    """HTTP/1.1 load on a keep-alive pool of asyncio connections."""

    def __init__(self, spec: HttpSpec, stats: TargetStats, load: Load) -> None:
        self.spec = spec
        self.stats = stats
        self.timeout = load.timeout
        self.max_conns = load.concurrency or load.inflight_cap()
        self.inflight = 0
        self.on_complete: Callable[[], None] | None = None
        self.nconns = 0
        self.idle: list[_Conn] = []
        self.pending: deque[_Req] = deque()
        self.expiry: deque[_Req] = deque()
        self.tasks: set[asyncio.Task[None]] = set()
        self.head_only = spec.method.upper() == "HEAD"
        self.request = b""
        self.request_len = 0
        self.addr = ""
        self.port = 0
        self.ssl: ssl.SSLContext | None = None
        self.sni: str | None = None
        self.broken: tuple[str, str] | None = None  # every send fails with this
        self._ok_status: dict[int, bool] = {}
        self._codes: dict[int, str] = {}
        self.heads: dict[bytes, tuple[int, int, bool]] = {}  # parsed response heads

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        target = ParsedUrl(self.spec.url, self.spec.host_header)
        self.request = build_request(self.spec, target)
        self.request_len = len(self.request)
        self.port = target.port
        if target.tls:
            try:
                self.ssl = client_context(
                    verify=not self.spec.insecure,
                    cacert=self.spec.cacert,
                    cert=self.spec.cert,
                    key=self.spec.key,
                    alpn=("http/1.1",),
                )
            except (OSError, ValueError) as e:
                self.broken = (TLS, f"cannot set up TLS: {describe(e)}")
                return
            self.sni = target.sni
        try:
            infos = await loop.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
            self.addr = str(infos[0][4][0])
        except (OSError, IndexError) as e:
            self.broken = (RESOLVE, f"cannot resolve {target.host}: {describe(e)}")

    # --- Executor ----------------------------------------------------------------------

    def send(self, intended: float, sent: float) -> None:
        req = _Req(intended, sent, sent + self.timeout)
        self.inflight += 1
        if self.broken is not None:
            self.fail(req, *self.broken)
            return
        self.expiry.append(req)
        self.assign(req)

    def flush(self) -> None:
        pass

    def expire(self, now: float) -> None:
        q = self.expiry
        while q:
            req = q[0]
            if req.done:
                q.popleft()
            elif req.deadline <= now:
                q.popleft()
                conn = req.conn
                if conn is not None and conn.req is req:
                    conn.kill()
                self.fail(req, TIMEOUT, f"no complete response within {self.timeout:g}s")
            else:
                break
        if self.pending:
            self.dispatch_pending()

    def abort(self, cls: str, detail: str) -> None:
        for req in self.expiry:
            if not req.done:
                if req.conn is not None and req.conn.req is req:
                    req.conn.kill()
                self.fail(req, cls, detail)
        self.expiry.clear()
        self.pending.clear()

    async def close(self) -> None:
        for conn in self.idle:
            conn.kill()
        self.idle.clear()
        for task in list(self.tasks):
            task.cancel()
        if self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)
        self.stats.extra.setdefault("protocol", "HTTP/1.1")

    # --- pool --------------------------------------------------------------------------

    def assign(self, req: _Req) -> None:
        """Give ``req`` a connection: an idle one, a new one, or a place in the queue."""
        idle = self.idle
        while idle:
            conn = idle.pop()
            if not conn.dead:
                conn.start(req)
                return
        if self.nconns < self.max_conns:
            self._connect(req)
        else:
            self.pending.append(req)

    def release(self, conn: _Conn) -> None:
        """``conn`` finished a response: reuse it (queued request first) or close it."""
        if conn.dead:
            return
        if not conn.keep:
            conn.kill()
            self.dispatch_pending()
            return
        pending = self.pending
        while pending:
            req = pending.popleft()
            if not req.done:
                conn.start(req)
                return
        self.idle.append(conn)

    def forget_idle(self, conn: _Conn) -> None:
        try:
            self.idle.remove(conn)
        except ValueError:
            pass

    def dispatch_pending(self) -> None:
        pending = self.pending
        while pending and (self.idle or self.nconns < self.max_conns):
            req = pending.popleft()
            if not req.done:
                self.assign(req)

    def _connect(self, req: _Req) -> None:
        conn = _Conn(self)
        conn.req = req
        req.conn = conn
        self.nconns += 1
        task = asyncio.get_running_loop().create_task(self._open_conn(conn))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _open_conn(self, conn: _Conn) -> None:
        try:
            await asyncio.wait_for(
                asyncio.get_running_loop().create_connection(
                    lambda: conn,
                    self.addr,
                    self.port,
                    ssl=self.ssl,
                    server_hostname=self.sni if self.ssl is not None else None,
                ),
                self.timeout,
            )
        except asyncio.CancelledError:
            conn.kill()
            raise
        except Exception as e:
            if not conn.dead:
                conn.dead = True
                self.nconns -= 1
            req = conn.req
            conn.req = None
            if req is not None and not req.done:
                if isinstance(e, TimeoutError):
                    self.fail(req, TIMEOUT, f"connect: no answer within {self.timeout:g}s")
                else:
                    self.fail(req, classify(e), f"connect: {describe(e)}")
            self.dispatch_pending()
            return
        req = conn.req
        if conn.dead:
            return
        if req is None or req.done:
            conn.req = None
            self.release(conn)
        else:
            conn.start(req)

    # --- recording ---------------------------------------------------------------------

    def complete(self, req: _Req, status: int, nbytes: int, now: float) -> None:
        if req.done:
            return
        req.done = True
        self.inflight -= 1
        code = self._codes.get(status)
        if code is None:
            code = self._codes[status] = str(status)
            self._ok_status[status] = self.spec.expect_status(status)
        lat = int((now - req.intended) * 1_000_000)
        svc = int((now - req.sent) * 1_000_000)
        if self._ok_status[status]:
            self.stats.ok(code, lat, svc, nbytes)
        else:
            self.stats.answered_bad(BAD_STATUS, code, lat, svc, nbytes)
        if self.on_complete is not None:
            self.on_complete()

    def fail(self, req: _Req, cls: str, detail: str) -> None:
        if req.done:
            return
        req.done = True
        self.inflight -= 1
        self.stats.failed(cls, detail)
        if self.on_complete is not None:
            self.on_complete()


def make_http_executor(spec: HttpSpec, stats: TargetStats, load: Load) -> Executor:
    """The executor for ``spec``: HTTP/2 through httpx when asked, else HTTP/1.1."""
    if spec.http2:
        from kubectl_kdoctor.engine.http2 import Http2Executor

        return Http2Executor(spec, stats, load)
    return HttpExecutor(spec, stats, load)
