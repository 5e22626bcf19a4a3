"""The agent's HTTP(S) responder, which peers probe: keep-alive HTTP/1.1 on asyncio
protocols (httptools parses requests when installed), answering every path with a small
JSON body naming this agent, and ``/readyz`` for the readiness probe.

With a token (netreach runs: the run's Secret holds it), a request must carry it in
``X-Kdoctor-Token``, else it is answered 403 with nothing about the agent: the responder
is reachable on pod IPs, the run's Services and, with ``--host-network`` or the NodePort
path, on node addresses, and it answers only the run's own probers. ``/readyz`` and
``/healthz`` (the kubelet's probes) answer anyone, with ``ok`` only."""

from __future__ import annotations

import asyncio
import hmac
import json
import ssl
from collections.abc import Callable
from typing import cast

try:
    import httptools
except ImportError:  # pragma: no cover - httptools is a dependency on CPython
    httptools = None  # type: ignore[assignment]


TOKEN_HEADER = b"x-kdoctor-token"


class _Responder(asyncio.Protocol):
    def __init__(
        self, body: bytes, ready: Callable[[], bool], counter: list[int], token: list[bytes]
    ) -> None:
        self.body = body
        self.ready = ready
        self.counter = counter
        self.token = token  # [b""]: no token asked for; the list is shared, set once known
        self.given = b""  # the token of the request being parsed
        self.transport: asyncio.Transport | None = None
        self.url = b"/"
        self.keep = True
        self.buf = b""
        self.parser = httptools.HttpRequestParser(self) if httptools else None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport; they implement it
        self.transport = cast(asyncio.Transport, transport)

    # httptools callbacks
    def on_message_begin(self) -> None:
        self.given = b""

    def on_url(self, url: bytes) -> None:
        self.url = url

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() == TOKEN_HEADER:
            self.given = value.strip()

    def on_message_complete(self) -> None:
        assert self.parser is not None
        self.keep = self.parser.should_keep_alive()
        self._respond()

    def data_received(self, data: bytes) -> None:
        if self.parser is not None:
            try:
                self.parser.feed_data(data)
            except httptools.HttpParserError:
                self._send(400, b'{"error":"bad request"}', close=True)
            return
        self.buf += data  # fallback: requests without bodies
        while b"\r\n\r\n" in self.buf:
            head, self.buf = self.buf.split(b"\r\n\r\n", 1)
            lines = head.split(b"\r\n")
            line = lines[0].split(b" ")
            self.url = line[1] if len(line) > 1 else b"/"
            self.given = b""
            for h in lines[1:]:
                name, _, value = h.partition(b":")
                if name.strip().lower() == TOKEN_HEADER:
                    self.given = value.strip()
            self.keep = b"connection: close" not in head.lower()
            self._respond()

    def _respond(self) -> None:
        self.counter[0] += 1
        path = self.url.split(b"?", 1)[0]
        if path in (b"/readyz", b"/healthz"):
            ok = path == b"/healthz" or self.ready()
            self._send(200 if ok else 503, b"ok" if ok else b"not ready", close=not self.keep)
            return
        want = self.token[0]
        if want and not hmac.compare_digest(self.given, want):
            self._send(403, b'{"error":"forbidden"}', close=not self.keep)
            return
        self._send(200, self.body, close=not self.keep)

    def _send(self, status: int, body: bytes, close: bool) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        reason = {
            200: b"OK",
            400: b"Bad Request",
            403: b"Forbidden",
            503: b"Service Unavailable",
        }[status]
        head = (
            b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n%s\r\n"
            % (status, reason, len(body), b"Connection: close\r\n" if close else b"")
        )
        self.transport.write(head + body)
        if close:
            self.transport.close()


class AgentServer:
    """HTTP on ``http_port`` and, when a certificate is given, HTTPS on ``https_port``."""

    def __init__(self, node: str, pod: str, ready: Callable[[], bool], token: str = "") -> None:
        self.body = json.dumps({"serverName": pod, "nodeName": node}).encode()
        self.ready = ready
        self.counter = [0]
        self._token = [token.encode()]
        self.servers: list[asyncio.AbstractServer] = []

    async def start(
        self, host: str | None, http_port: int, https_port: int | None, tls: ssl.SSLContext | None
    ) -> None:
        loop = asyncio.get_running_loop()

        def factory() -> asyncio.Protocol:
            return _Responder(self.body, self.ready, self.counter, self._token)

        self.servers.append(
            await loop.create_server(
                factory, host=host, port=http_port, reuse_address=True, backlog=4096
            )
        )
        if tls is not None and https_port:
            self.servers.append(
                await loop.create_server(
                    factory, host=host, port=https_port, ssl=tls, reuse_address=True, backlog=4096
                )
            )

    @property
    def token(self) -> str:
        return self._token[0].decode()

    @token.setter
    def token(self, value: str) -> None:
        """From now on, answer only requests carrying ``value`` ("": every request)."""
        self._token[0] = value.encode()

    @property
    def requests(self) -> int:
        return self.counter[0]

    async def close(self) -> None:
        for s in self.servers:
            s.close()
        for s in self.servers:
            await s.wait_closed()
