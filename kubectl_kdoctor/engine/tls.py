"""Client TLS contexts for the executors (HTTPS, HTTP/2, DNS over TLS).

Verification is on by default (system trust store, or ``cacert`` when given); ``verify=False``
turns both the chain and the host-name check off. A client certificate is loaded when given.
"""

from __future__ import annotations

import ssl
from collections.abc import Sequence


def client_context(
    *,
    verify: bool = True,
    cacert: str | None = None,
    cert: str | None = None,
    key: str | None = None,
    alpn: Sequence[str] = (),
) -> ssl.SSLContext:
    """A client ``SSLContext``; raises OSError / ssl.SSLError when a file cannot be used."""
    ctx = ssl.create_default_context(cafile=cacert) if verify else ssl.create_default_context()
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if cert:
        ctx.load_cert_chain(cert, key or None)
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    return ctx


def server_name(host: str) -> str:
    """The host part of a ``host[:port]`` or ``[v6]:port`` override, for SNI and checks."""
    h = host.strip()
    if h.startswith("["):
        return h[1 : h.index("]")] if "]" in h else h[1:]
    if h.count(":") == 1:
        return h.split(":", 1)[0]
    return h
