"""HTTP/2 executor through httpx (``HttpSpec.http2``).

httpx negotiates HTTP/2 by ALPN (``https://``) and falls back to HTTP/1.1 when the server does
not offer it; the protocol each response came with is counted in ``stats.extra["protocols"]``.
This path is slower than the HTTP/1.1 executor (one task per request, httpx's pool); it is
meant for HTTP/2 checks at modest rates. This is the only module that imports httpx.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from time import perf_counter as _perf
from urllib.parse import urlsplit

import httpx

from kubectl_kdoctor.engine.neterrors import classify, describe
from kubectl_kdoctor.engine.spec import HttpSpec, Load
from kubectl_kdoctor.engine.stats import (
    BAD_STATUS,
    CONNECT,
    OTHER,
    PROTOCOL,
    RESET,
    TIMEOUT,
    TLS,
    TargetStats,
    late_read,
)
from kubectl_kdoctor.engine.tls import client_context, server_name


def classify_httpx(exc: BaseException) -> str:
    """The stats error class of an httpx exception."""
    if isinstance(exc, httpx.TimeoutException):
        return TIMEOUT
    if isinstance(exc, httpx.ConnectError):
        return classify(exc, CONNECT)
    if isinstance(exc, httpx.RemoteProtocolError):
        return RESET if "disconnect" in str(exc).lower() else PROTOCOL
    if isinstance(exc, (httpx.ReadError, httpx.WriteError, httpx.CloseError)):
        return classify(exc, RESET)
    if isinstance(exc, (httpx.ProtocolError, httpx.DecodingError)):
        return PROTOCOL
    return classify(exc, OTHER)


class Http2Executor:
    """HTTP/2 (or whatever ALPN agrees) load through an ``httpx.AsyncClient``."""

    def __init__(self, spec: HttpSpec, stats: TargetStats, load: Load) -> None:
        self.spec = spec
        self.stats = stats
        self.timeout = load.timeout
        self.max_conns = load.concurrency or load.inflight_cap()
        self.inflight = 0
        self.on_complete: Callable[[], None] | None = None
        self.tasks: set[asyncio.Task[None]] = set()
        self.client: httpx.AsyncClient | None = None
        self.broken: tuple[str, str] | None = None
        self.aborted = (TIMEOUT, "no answer before the end of the run")  # for cancelled ones
        self.protocols: dict[str, int] = {}
        self.extensions: dict[str, str] = {}
        self.headers: list[tuple[str, str]] = list(spec.headers)
        self.method = spec.method.upper()
        self.bytes_out = len(spec.body) + sum(len(k) + len(v) + 4 for k, v in spec.headers)

    async def open(self) -> None:
        verify: object = False
        if urlsplit(self.spec.url).scheme == "https":
            try:
                verify = client_context(
                    verify=not self.spec.insecure,
                    cacert=self.spec.cacert,
                    cert=self.spec.cert,
                    key=self.spec.key,
                    alpn=("h2", "http/1.1"),
                )
            except (OSError, ValueError) as e:
                self.broken = (TLS, f"cannot set up TLS: {describe(e)}")
                return
        if self.spec.host_header:
            if not any(k.lower() == "host" for k, _ in self.headers):
                self.headers.append(("Host", self.spec.host_header))
            self.extensions["sni_hostname"] = server_name(self.spec.host_header)
        self.client = httpx.AsyncClient(
            http1=True,
            http2=True,
            verify=verify,  # type: ignore[arg-type]
            timeout=httpx.Timeout(self.timeout),
            limits=httpx.Limits(max_connections=self.max_conns, max_keepalive_connections=64),
            follow_redirects=False,
            trust_env=False,
        )

    def send(self, intended: float, sent: float) -> None:
        self.inflight += 1
        if self.broken is not None:
            self._fail(*self.broken)
            return
        task = asyncio.get_running_loop().create_task(self._one(intended, sent))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _one(self, intended: float, sent: float) -> None:
        assert self.client is not None
        # httpx's timeout bounds each phase (connect, write, read, pool), not the whole
        # request: the total is bounded here, from the intended send time as latency is.
        deadline = intended + self.timeout
        try:
            r = await asyncio.wait_for(
                self.client.request(
                    self.method,
                    self.spec.url,
                    headers=self.headers,
                    content=self.spec.body or None,
                    extensions=self.extensions or None,
                ),
                max(0.0, deadline - _perf()),
            )
        except asyncio.CancelledError:
            self._fail(*self.aborted)
            raise
        except TimeoutError:
            self._fail(TIMEOUT, f"no complete response within {self.timeout:g}s")
            return
        except Exception as e:
            self._fail(classify_httpx(e), describe(e))
            return
        now = _perf()
        if now > deadline:
            self._fail(TIMEOUT, late_read(now - intended, self.timeout))
            return
        self.inflight -= 1
        self.stats.bytes_out += self.bytes_out
        code = str(r.status_code)
        version = r.http_version
        self.protocols[version] = self.protocols.get(version, 0) + 1
        lat = int((now - intended) * 1_000_000)
        svc = int((now - sent) * 1_000_000)
        nbytes = len(r.content)
        if self.spec.expect_status(r.status_code):
            self.stats.ok(code, lat, svc, nbytes)
        else:
            self.stats.answered_bad(BAD_STATUS, code, lat, svc, nbytes)
        if self.on_complete is not None:
            self.on_complete()

    def _fail(self, cls: str, detail: str) -> None:
        self.inflight -= 1
        self.stats.failed(cls, detail)
        if self.on_complete is not None:
            self.on_complete()

    def flush(self) -> None:
        pass

    def expire(self, now: float) -> None:
        pass  # httpx enforces the timeout of each request

    def abort(self, cls: str, detail: str) -> None:
        self.aborted = (cls, detail)
        for task in list(self.tasks):
            task.cancel()

    async def close(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        if self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)
        if self.client is not None:
            await self.client.aclose()
        self.stats.extra["protocols"] = dict(self.protocols)
        if self.protocols:
            self.stats.extra["protocol"] = max(self.protocols, key=lambda k: self.protocols[k])
