"""Before measuring, wait (bounded) until each Service path answers once.

kube-proxy programs a new Service a moment after its endpoints become ready, so the first
requests of a run through a fresh ClusterIP or NodePort can be refused although the path is
fine; an ingress proxy lags the same way, but it answers meanwhile: 404 (no rule for the new
Ingress yet) or 503 (the rule has no ready endpoints yet). Each such target is tried every
200 ms until it answers with a status that is neither 404 nor 5xx, or the deadline; the time
it took is reported, and a path that never gets there is then measured (and fails) as it is.
"""

from __future__ import annotations

import asyncio
import time
from urllib.parse import urlsplit

WARM_PATHS = ("clusterip", "nodeport", "loadbalancer", "ingress")


def _settled(status_line: bytes) -> bool:
    """An answer from the path's own backend: not a proxy's 'no route' (404) or 'no
    endpoints / upstream failed' (5xx)."""
    parts = status_line.split(None, 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
        return False
    code = int(parts[1])
    return code != 404 and code < 500


async def _answers(url: str, timeout: float) -> bool:
    parts = urlsplit(url)
    host, port = parts.hostname or "", parts.port or 80
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except (OSError, asyncio.TimeoutError):
        return False
    try:
        writer.write(
            f"GET {parts.path or '/'} HTTP/1.1\r\nHost: {parts.netloc}\r\nConnection: close\r\n\r\n".encode()
        )
        line = await asyncio.wait_for(reader.readline(), timeout)
        return _settled(line)
    except (OSError, asyncio.TimeoutError):
        return False
    finally:
        writer.close()


async def wait_until_answering(
    urls: list[str], deadline: float, timeout: float = 0.5
) -> dict[str, float]:
    """url -> seconds until it first answered (absent: never did before the deadline)."""
    start = time.monotonic()
    ready: dict[str, float] = {}

    async def one(url: str) -> None:
        while time.monotonic() < deadline:
            if await _answers(url, timeout):
                ready[url] = time.monotonic() - start
                return
            await asyncio.sleep(0.2)

    await asyncio.gather(*(one(u) for u in dict.fromkeys(urls)))
    return ready
