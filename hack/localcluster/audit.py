"""Reading the apiserver's audit log (JSON lines, policy in controlplane.AUDIT_POLICY): which
API requests a run made, by whom.

One request = one audit ID. The policy omits the RequestReceived stage, so a plain request
has one event (ResponseComplete, or Panic) and a watch two (ResponseStarted when it starts,
ResponseComplete when it ends); events are merged by audit ID and timed by
``requestReceivedTimestamp``, so a watch counts once, from when it was made. Rotated files
(``audit-<time>.log``, at most two, 100 MB each) are read too, oldest first.

Users: ``kubernetes-admin`` (the kubeconfig's admin context, which tests and the CLI use by
default), ``kdoctor-cli`` (context ``kdoctor-cli``: an admin whose requests stand apart),
``system:serviceaccount:<ns>:<name>`` (pods, e.g. the agents), ``system:node:<node>`` (the
node agents), ``kdoctor:cluster-addons`` (the test tooling: health checks, LB and ingress
controllers). Not logged: health probes, the apiserver's loopback requests, Lease renewals.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import json
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from hack.localcluster import config

Event = dict[str, Any]


def log_dir() -> Path:
    return config.STATE_DIR / "audit"


def log_files() -> list[Path]:
    d = log_dir()
    rotated = sorted(d.glob("audit-*.log"))  # names carry the rotation time: sortable
    current = d / "audit.log"
    return rotated + ([current] if current.exists() else [])


def timestamp(value: str) -> float:
    """RFC 3339 (micro) -> seconds since the epoch."""
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


RECEIVED = re.compile(rb'"requestReceivedTimestamp":"([^"]+)"')


def _stamp(t: float) -> bytes:
    """The apiserver's MicroTime format (UTC, 6 digits): compares like the times do."""
    return dt.datetime.fromtimestamp(t, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ").encode()


def _lines(paths: Iterable[Path], since: float | None) -> Iterator[Event]:
    floor = _stamp(since) if since is not None else None
    for path in paths:
        try:
            if since is not None and path.stat().st_mtime < since:
                continue  # rotated before the window began
            with path.open("rb") as f:
                for line in f:
                    if floor is not None:
                        m = RECEIVED.search(line)
                        if m and m.group(1) < floor:
                            continue  # cheap skip, no JSON parsing
                    try:
                        yield json.loads(line)
                    except ValueError:
                        continue  # a line being written right now
        except FileNotFoundError:
            continue


def _matches(value: str, patterns: str | Iterable[str] | None) -> bool:
    if patterns is None:
        return True
    pats = [patterns] if isinstance(patterns, str) else list(patterns)
    return any(fnmatch.fnmatchcase(value, p) for p in pats)


def events(
    since: float | None = None,
    until: float | None = None,
    user: str | Iterable[str] | None = None,
    user_agent: str | None = None,
    namespace: str | None = None,
    verb: str | Iterable[str] | None = None,
    resource: str | Iterable[str] | None = None,
) -> list[Event]:
    """One event per request (merged by audit ID; the last stage seen wins), in the order
    requests were received. Filters: ``since``/``until`` (epoch seconds, on
    requestReceivedTimestamp), ``user`` (username glob(s), e.g.
    ``"system:serviceaccount:my-ns:*"``), ``user_agent`` (glob), ``namespace``
    (objectRef.namespace), ``verb`` and ``resource`` (globs; resource is
    ``[group/]resource[/subresource]``, e.g. ``pods``, ``pods/status``, ``batch/jobs``)."""
    merged: dict[str, Event] = {}
    for ev in _lines(log_files(), since):
        aid = ev.get("auditID")
        if not aid:
            continue
        prev = merged.get(aid)
        if prev is None or ev.get("stage") != "ResponseStarted":
            merged[aid] = ev if prev is None else {**prev, **ev}
    out = []
    for ev in merged.values():
        t = timestamp(ev.get("requestReceivedTimestamp") or ev["stageTimestamp"])
        if since is not None and t < since:
            continue
        if until is not None and t > until:
            continue
        if not _matches((ev.get("user") or {}).get("username", ""), user):
            continue
        if user_agent is not None and not fnmatch.fnmatchcase(ev.get("userAgent", ""), user_agent):
            continue
        ref = ev.get("objectRef") or {}
        if namespace is not None and ref.get("namespace") != namespace:
            continue
        if not _matches(ev.get("verb", ""), verb):
            continue
        if resource is not None and not _matches(resource_of(ev), resource):
            continue
        ev["_time"] = t
        out.append(ev)
    out.sort(key=lambda e: e["_time"])
    return out


def resource_of(ev: Event) -> str:
    """``[group/]resource[/subresource]`` of a resource request, or the URL path of a
    non-resource one (``/api``, ``/openapi/v3`` ...)."""
    ref = ev.get("objectRef")
    if not ref:
        return str(ev.get("requestURI", "")).split("?")[0]
    name = ref.get("resource", "")
    if ref.get("subresource"):
        name += "/" + ref["subresource"]
    return f"{ref['apiGroup']}/{name}" if ref.get("apiGroup") else name


def request_counts(
    since: float | None = None,
    until: float | None = None,
    users: str | Iterable[str] | None = None,
    **filters: Any,
) -> Counter[tuple[str, str, str]]:
    """(user, verb, resource) -> number of requests (filters as for ``events``)."""
    return Counter(
        ((e.get("user") or {}).get("username", ""), e.get("verb", ""), resource_of(e))
        for e in events(since=since, until=until, user=users, **filters)
    )
