"""Map a transport exception to one of the error classes of ``engine.stats``.

A network failure is a data point, not an exception: executors catch what the socket layer
raises, turn it into ``(class, detail)`` here and record it, and the run goes on.
"""

from __future__ import annotations

import errno
import socket
import ssl

from kubectl_kdoctor.engine.stats import (
    CONNECT,
    OTHER,
    PROTOCOL,
    REFUSED,
    RESET,
    RESOLVE,
    TIMEOUT,
    TLS,
)

_CONNECT_ERRNOS = frozenset(
    {
        errno.EHOSTUNREACH,
        errno.ENETUNREACH,
        errno.ENETDOWN,
        errno.EHOSTDOWN,
        errno.EADDRNOTAVAIL,
        errno.EADDRINUSE,
        errno.ETIMEDOUT,
        errno.EAFNOSUPPORT,
    }
)
_LOCAL_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
_RESET_ERRNOS = frozenset({errno.ECONNRESET, errno.EPIPE, errno.ECONNABORTED})


def _chain(exc: BaseException) -> list[BaseException]:
    out: list[BaseException] = []
    cur: BaseException | None = exc
    while cur is not None and cur not in out and len(out) < 8:
        out.append(cur)
        cur = cur.__cause__ or cur.__context__
    return out


def classify_one(exc: BaseException) -> str | None:
    """The class of one exception, without looking at its causes (None: not a known one)."""
    if isinstance(exc, ssl.SSLError):  # before OSError: SSLError is an OSError
        return TLS
    if isinstance(exc, socket.gaierror):
        return RESOLVE
    if isinstance(exc, ConnectionRefusedError):
        return REFUSED
    if isinstance(exc, (ConnectionResetError, BrokenPipeError, ConnectionAbortedError)):
        return RESET
    if isinstance(exc, TimeoutError):
        return TIMEOUT
    if isinstance(exc, OSError):
        if exc.errno in _LOCAL_ERRNOS:
            return OTHER  # the generator's own limits (file descriptors, memory)
        if exc.errno == errno.ECONNREFUSED:
            return REFUSED
        if exc.errno in _RESET_ERRNOS:
            return RESET
        if exc.errno in _CONNECT_ERRNOS:
            return CONNECT
        return CONNECT if exc.errno else OTHER
    if isinstance(exc, (ValueError, EOFError)):
        return PROTOCOL
    return None


def classify(exc: BaseException, default: str = OTHER) -> str:
    """The most specific class found in the exception or its causes."""
    for e in _chain(exc):
        cls = classify_one(e)
        if cls is not None:
            return cls
    return default


def describe(exc: BaseException) -> str:
    """A one-line, user-facing description of a transport exception."""
    for e in _chain(exc):
        text = str(e).strip()
        if isinstance(e, ssl.SSLCertVerificationError):
            text = e.verify_message or text
        if text:
            return f"{type(e).__name__}: {text.splitlines()[0][:200]}"
    return type(exc).__name__
