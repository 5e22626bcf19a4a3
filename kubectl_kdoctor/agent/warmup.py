"""Before measuring, wait (bounded) until each Service path answers once.

kube-proxy programs a new Service a moment after its endpoints become ready, so the first
requests of a run through a fresh ClusterIP or NodePort can be refused although the path is
fine. Each such target is tried every 200 ms until one answer or the deadline; the time it
took is reported, and a path that never answers is then measured (and fails) as it is.
"""

from __future__ import annotations

import asyncio
import time
from urllib.parse import urlsplit

WARM_PATHS = ("clusterip", "nodeport", "loadbalancer", "ingress")


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
        return line.startswith(b"HTTP/1.")
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
