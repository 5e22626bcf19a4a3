"""A tiny HTTP/1.1 server for the odd cases nginx cannot produce by itself.

Run as ``python -m bench.upstream PORT [HOST]``; it serves until SIGTERM. Endpoints:

- ``/slow?ms=N``: answers 200 after N milliseconds (nginx proxies its ``/slow`` here);
- ``/chunked``: a chunked body of ``CHUNKED_BODY``;
- ``/eof``: a body delimited by closing the connection (no length, no chunks);
- ``/reset``: resets the connection (RST) without answering;
- ``/drop``: answers, then closes the (keep-alive) connection 50 ms later;
- ``/garbage``: answers bytes that are not HTTP;
- ``/echo`` and anything else: 200 with ``method path`` and the request body length.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import struct
import sys
from typing import cast
from urllib.parse import parse_qs, urlsplit

import httptools

CHUNKS = (b"hello ", b"kdoctor ", b"chunks\n")
CHUNKED_BODY = b"".join(CHUNKS)
EOF_BODY = b"eof-delimited body\n"


class _Handler(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.url = b""
        self.body = 0
        self.tasks: set[asyncio.Task[None]] = set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            if self.transport is not None:
                self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        for t in self.tasks:
            t.cancel()

    # httptools callbacks
    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_body(self, body: bytes) -> None:
        self.body += len(body)

    def on_message_complete(self) -> None:
        url, body = self.url.decode("latin-1"), self.body
        method = self.parser.get_method().decode("latin-1")
        self.url, self.body = b"", 0
        task = asyncio.get_running_loop().create_task(self.respond(method, url, body))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def respond(self, method: str, url: str, body: int) -> None:
        parts = urlsplit(url)
        path = parts.path
        t = self.transport
        if t is None:
            return
        if path.endswith("/slow"):
            ms = float(parse_qs(parts.query).get("ms", ["100"])[0])
            await asyncio.sleep(ms / 1000)
            self.write(200, b"slow\n")
        elif path.endswith("/chunked"):
            out = (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: text/plain\r\n\r\n"
            )
            for c in CHUNKS:
                out += b"%x\r\n%s\r\n" % (len(c), c)
            t.write(out + b"0\r\n\r\n")
        elif path.endswith("/eof"):
            t.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + EOF_BODY)
            t.close()
        elif path.endswith("/reset"):
            sock = t.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            t.abort()
        elif path.endswith("/drop"):
            # Keep-alive in words, but the connection is closed 50 ms after the answer.
            self.write(200, b"dropping\n")
            asyncio.get_running_loop().call_later(0.05, t.close)
        elif path.endswith("/garbage"):
            t.write(b"SSH-2.0-OpenSSH_9.2\r\n\r\n")
        else:
            self.write(200, f"{method} {url} body={body}\n".encode())

    def write(self, status: int, body: bytes) -> None:
        if self.transport is not None:
            self.transport.write(
                b"HTTP/1.1 %d X\r\nContent-Length: %d\r\nContent-Type: text/plain\r\n\r\n%s"
                % (status, len(body), body)
            )


async def serve(port: int, host: str = "127.0.0.1") -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_Handler, host, port, reuse_address=True, backlog=1024)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    print("ready", flush=True)
    async with server:
        await stop.wait()


def main(argv: list[str]) -> None:
    asyncio.run(serve(int(argv[0]), argv[1] if len(argv) > 1 else "127.0.0.1"))


if __name__ == "__main__":
    main(sys.argv[1:])
