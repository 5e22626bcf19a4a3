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
    body = getattr(exc, "body", None)
    if body:
        try:
            data = json.loads(body)
            if isinstance(data, dict) and data.get("message"):
                return str(data["message"])
        except (ValueError, TypeError):
            pass
    reason = getattr(exc, "reason", None)
    return (
        str(reason or exc).strip().splitlines()[0]
        if str(reason or exc).strip()
        else type(exc).__name__
    )


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
        text = str(exc)
        if "Connection refused" in text or "Max retries" in text or isinstance(exc, OSError):
            text = (
                text.rsplit("(Caused by ", maxsplit=1)[-1].rstrip(")")
                if "(Caused by " in text
                else text
            )
        return ClusterError(f"{prefix}cluster unreachable: {text}")
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
