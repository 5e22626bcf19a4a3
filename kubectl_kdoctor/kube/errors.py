"""The one place API exceptions become ours: status code -> ``errors`` class, with the
API's own message trimmed to one line."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from kubectl_kdoctor.errors import ClusterError, Conflict, Forbidden, NotFound

T = TypeVar("T")


def _message(exc: BaseException) -> str:
    """The API's message on one line (an admission webhook's or policy's may span several)."""
    body = getattr(exc, "body", None)
    if body:
        try:
            data = json.loads(body)
            if isinstance(data, dict) and data.get("message"):
                return " ".join(str(data["message"]).split())
        except (ValueError, TypeError):
            pass
    reason = getattr(exc, "reason", None)
    return (
        str(reason or exc).strip().splitlines()[0]
        if str(reason or exc).strip()
        else type(exc).__name__
    )


def _transport_reason(exc: BaseException) -> str:
    """``https://host:port: connection refused`` from urllib3's nested reprs."""
    from urllib3.exceptions import (
        ConnectTimeoutError,
        MaxRetryError,
        NameResolutionError,
        NewConnectionError,
        ProtocolError,
        ReadTimeoutError,
        SSLError,
    )

    where = ""
    inner: BaseException | None = exc
    if isinstance(exc, MaxRetryError):
        pool = exc.pool
        where = f"{pool.scheme}://{pool.host}:{pool.port}: " if pool is not None else ""
        inner = exc.reason
    if isinstance(inner, NameResolutionError):
        return f"{where}cannot resolve the host name"
    if isinstance(inner, ConnectTimeoutError) and not isinstance(inner, NewConnectionError):
        return f"{where}connection timed out"  # (urllib3's NewConnectionError subclasses it)
    if isinstance(inner, ReadTimeoutError):
        return f"{where}no answer in time"
    if isinstance(inner, SSLError):
        return f"{where}TLS error: {inner.args[0] if inner.args else inner}"
    if isinstance(inner, NewConnectionError | ProtocolError | OSError):
        text = str(inner)
        for marker, short in (
            ("Connection refused", "connection refused"),
            ("No route to host", "no route to host"),
            ("Network is unreachable", "network unreachable"),
            ("Connection reset", "connection reset"),
            ("ended prematurely", "the connection ended early"),
        ):
            if marker in text:
                return f"{where}{short}"
        return f"{where}{text.split(': ', 1)[-1]}"
    return f"{where}{type(inner).__name__}: {inner}"


def translate(exc: BaseException, what: str = "") -> ClusterError:
    """Map a kubernetes-client / urllib3 exception to our error tree."""
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError as Urllib3Error

    prefix = f"{what}: " if what else ""
    if isinstance(exc, ApiException):
        status = int(exc.status or 0)
        msg = _message(exc)
        cls: type[ClusterError] = ClusterError
        if status == 403:
            cls = Forbidden
        elif status == 404:
            cls = NotFound
        elif status == 409:
            cls = Conflict
        elif status == 401:
            msg = f"unauthorized: check your credentials ({msg})"
        elif status == 0:
            msg = f"cluster unreachable: {msg}"
        return cls(f"{prefix}{msg}", status=status, reason=getattr(exc, "reason", None))
    if isinstance(exc, Urllib3Error | OSError):
        return ClusterError(f"{prefix}cluster unreachable: {_transport_reason(exc)}")
    return ClusterError(f"{prefix}{type(exc).__name__}: {exc}")


@contextmanager
def api_errors(what: str = "") -> Iterator[None]:
    """``with api_errors("create Job x"):`` translates whatever the client raises."""
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError as Urllib3Error

    try:
        yield
    except (ApiException, Urllib3Error, OSError) as exc:
        raise translate(exc, what) from exc


def call(fn: Callable[..., T], *args: object, what: str = "", **kwargs: object) -> T:
    with api_errors(what):
        return fn(*args, **kwargs)
