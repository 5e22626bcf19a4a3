"""The agent's warm-up: a Service path counts as ready once its own backend answers, not when
a proxy in front of it answers 'no route yet' (404) or 'no endpoints yet' (503)."""

from __future__ import annotations

import asyncio
import time

import pytest

from kubectl_kdoctor.agent.warmup import _settled, wait_until_answering


@pytest.mark.parametrize(
    ("line", "settled"),
    [
        (b"HTTP/1.1 200 OK\r\n", True),
        (b"HTTP/1.0 301 Moved Permanently\r\n", True),
        (b"HTTP/1.1 403 Forbidden\r\n", True),
        (b"HTTP/1.1 404 Not Found\r\n", False),
        (b"HTTP/1.1 502 Bad Gateway\r\n", False),
        (b"HTTP/1.1 503 Service Temporarily Unavailable\r\n", False),
        (b"HTTP/1.1 200\r\n", True),  # the reason phrase is optional
        (b"SSH-2.0-OpenSSH\r\n", False),
        (b"", False),
    ],
)
def test_settled_status_lines(line: bytes, settled: bool) -> None:
    assert _settled(line) is settled


async def _lagging_proxy(codes: list[int]) -> tuple[asyncio.Server, list[int]]:
    """A loopback HTTP server answering ``codes`` in turn (then the last one forever)."""
    seen: list[int] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        code = codes[min(len(seen), len(codes) - 1)]
        seen.append(code)
        writer.write(
            f"HTTP/1.1 {code} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode()
        )
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, seen


def test_waits_past_a_proxys_404_and_503_until_the_backend_answers() -> None:
    async def main() -> tuple[float | None, list[int]]:
        server, seen = await _lagging_proxy([404, 503, 503, 200])
        port = server.sockets[0].getsockname()[1]
        url = f"http://127.0.0.1:{port}/kdoctor/netreach-x"
        async with server:
            ready = await wait_until_answering([url], time.monotonic() + 10)
        return ready.get(url), seen

    after, seen = asyncio.run(main())
    assert seen[:4] == [404, 503, 503, 200] and set(seen[4:]) == {200}
    assert len(seen) >= 4 + 2  # good answers for STABLE_FOR (0.5 s) at 200 ms intervals
    assert after is not None and after >= 0.6  # three retries, 200 ms apart


def test_a_bad_answer_after_a_good_one_starts_the_streak_again() -> None:
    """A reloading proxy: a new worker answers 200, then an old one still answers 503."""

    async def main() -> tuple[float | None, list[int]]:
        server, seen = await _lagging_proxy([200, 503, 200])
        port = server.sockets[0].getsockname()[1]
        url = f"http://127.0.0.1:{port}/"
        async with server:
            ready = await wait_until_answering([url], time.monotonic() + 10)
        return ready.get(url), seen

    after, seen = asyncio.run(main())
    assert seen[:3] == [200, 503, 200]
    assert after is not None and after >= 0.4  # ready from the third try on, not the first


def test_a_path_that_never_settles_is_left_out_at_the_deadline() -> None:
    async def main() -> tuple[dict[str, float], list[int]]:
        server, seen = await _lagging_proxy([503])
        port = server.sockets[0].getsockname()[1]
        async with server:
            ready = await wait_until_answering(
                [f"http://127.0.0.1:{port}/"], time.monotonic() + 0.5
            )
        return ready, seen

    ready, seen = asyncio.run(main())
    assert ready == {}
    assert len(seen) >= 2 and set(seen) == {503}
