"""Before measuring, wait (bounded) until each Service path answers once.

kube-proxy programs a new Service a moment after its endpoints become ready, so the first
requests of a run through a fresh ClusterIP or NodePort can be refused although the path is
fine; an ingress proxy lags the same way, but it answers meanwhile: 404 (no rule for the new
Ingress yet) or 503 (the rule has no ready endpoints yet). Each such target is tried every
200 ms, on a new connection each time, until it has answered with a status that is neither
404 nor 5xx for ``STABLE_FOR`` seconds in a row, or the deadline; the time it took is
reported, and a path that never gets there is then measured (and fails) as it is.

Why "in a row": a proxy that reloads its configuration (nginx, so ingress-nginx on every new
rule) keeps its old workers accepting connections for a while (nginx's master waits 100 ms
before it tells them to stop): a first good answer from a new worker can be followed by a
503 from an old one. Seen in this project's tests: the good answer at +0 ms, an old worker's
503 to the first measured request at +1 ms.
"""

from __future__ import annotations

import asyncio
import time
from urllib.parse import urlsplit

from kubectl_kdoctor.runconfig import TOKEN_HEADER

WARM_PATHS = ("clusterip", "nodeport", "loadbalancer", "ingress")
RETRY_EVERY = 0.2  # seconds between tries
STABLE_FOR = 0.5  # seconds a path must answer well in a row to count as ready


def _settled(status_line: bytes) -> bool:
    """An answer from the path's own backend: not a proxy's 'no route' (404) or 'no
    endpoints / upstream failed' (5xx)."""
    parts = status_line.split(None, 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
        return False
    code = int(parts[1])
    return code != 404 and code < 500


async def _answers(url: str, timeout: float, token: str = "") -> bool:
    parts = urlsplit(url)
    host, port = parts.hostname or "", parts.port or 80
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except (OSError, asyncio.TimeoutError):
        return False
    try:
        auth = f"{TOKEN_HEADER}: {token}\r\n" if token else ""
        writer.write(
            f"GET {parts.path or '/'} HTTP/1.1\r\nHost: {parts.netloc}\r\n{auth}"
            "Connection: close\r\n\r\n".encode()
        )
        line = await asyncio.wait_for(reader.readline(), timeout)
        return _settled(line)
    except (OSError, asyncio.TimeoutError):
        return False
    finally:
        writer.close()


async def wait_until_answering(
    urls: list[str],
    deadline: float,
    timeout: float = 0.5,
    stable_for: float = STABLE_FOR,
    token: str = "",
) -> dict[str, float]:
    """url -> seconds until it began answering well for good (``stable_for`` seconds in a
    row); absent: it did not before the deadline."""
    start = time.monotonic()
    ready: dict[str, float] = {}

    async def one(url: str) -> None:
        since: float | None = None  # start of the current run of good answers
        while time.monotonic() < deadline:
            now = time.monotonic()
            if await _answers(url, timeout, token):
                since = now if since is None else since
                if now - since >= stable_for:
                    ready[url] = since - start
                    return
            else:
                since = None
            await asyncio.sleep(RETRY_EVERY)

    await asyncio.gather(*(one(u) for u in dict.fromkeys(urls)))
    return ready
