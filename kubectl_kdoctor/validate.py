"""Parsers for every user-given value. Each raises ``InputError`` naming the flag and what
is expected, so every bad input ends in exit 2 with one line, before any cluster access."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from urllib.parse import urlsplit

from kubectl_kdoctor.durations import parse_duration
from kubectl_kdoctor.engine.spec import DNS_QTYPES, DNS_RCODES, StatusExpectation
from kubectl_kdoctor.errors import InputError
from kubectl_kdoctor.task import Toleration

_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)([A-Za-z0-9_]([-A-Za-z0-9_]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9_]([-A-Za-z0-9_]{0,61}[A-Za-z0-9])?)*\.?$"
)
_HEADER_NAME = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_QUALIFIED = re.compile(
    r"^([A-Za-z0-9][-A-Za-z0-9_.]{0,251}[A-Za-z0-9]?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
)
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$")
EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")

MAX_NAME = 40  # leaves room for suffixes such as -node-17 within 63 characters


def duration(text: str, flag: str, *, allow_zero: bool = False) -> float:
    try:
        value = parse_duration(text)
    except ValueError as exc:
        raise InputError(f"{exc}", flag) from None
    if value <= 0 and not allow_zero:
        raise InputError(f"must be a duration > 0 such as 500ms, 10s or 1m30s (got {text!r})", flag)
    return value


def success_rate(text: str, flag: str = "--expect-success-rate") -> float:
    try:
        value = float(text)
    except ValueError:
        raise InputError(f"must be a number from 0 to 1 (got {text!r})", flag) from None
    if not 0.0 <= value <= 1.0:
        raise InputError(f"must be a number from 0 to 1 (got {text!r})", flag)
    return value


def positive_int(text: str | int, flag: str) -> int:
    try:
        value = int(text)
    except (TypeError, ValueError):
        raise InputError(f"must be an integer > 0 (got {text!r})", flag) from None
    if value <= 0:
        raise InputError(f"must be an integer > 0 (got {text!r})", flag)
    return value


def run_name(text: str, flag: str = "--name") -> str:
    if len(text) > MAX_NAME or not _LABEL.match(text):
        raise InputError(
            f"must be a lower-case DNS label of at most {MAX_NAME} characters "
            f"(a-z, 0-9, '-'; got {text!r})",
            flag,
        )
    return text


def node_name(text: str, flag: str = "--node") -> str:
    """A lower-case DNS subdomain (node names, IngressClass names)."""
    if not text or len(text) > 253 or not _HOSTNAME.match(text) or text != text.lower():
        raise InputError(f"must be a lower-case DNS subdomain (got {text!r})", flag)
    return text


def url(text: str, flag: str = "URL") -> str:
    try:
        parts = urlsplit(text)
    except ValueError as exc:
        raise InputError(f"invalid URL {text!r}: {exc}", flag) from None
    if parts.scheme not in ("http", "https"):
        raise InputError(f"must be an http:// or https:// URL (got {text!r})", flag)
    try:
        host = parts.hostname
        port = parts.port
    except ValueError as exc:
        raise InputError(f"invalid URL {text!r}: {exc}", flag) from None
    if not host:
        raise InputError(f"must name a host (got {text!r})", flag)
    if ":" in host:
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise InputError(f"invalid IPv6 address in {text!r}", flag) from None
    elif not _HOSTNAME.match(host):
        raise InputError(f"invalid host {host!r} in {text!r}", flag)
    if port == 0:
        raise InputError(f"invalid port 0 in {text!r}", flag)
    return text


def header(text: str, flag: str = "--header") -> tuple[str, str]:
    name, sep, value = text.partition(":")
    name = name.strip()
    if not sep or not name or not _HEADER_NAME.match(name):
        raise InputError(f"must be 'Name: value' (got {text!r})", flag)
    return name, value.strip()


def status(text: str, flag: str = "--expect-status") -> StatusExpectation:
    try:
        return StatusExpectation.parse(text)
    except ValueError as exc:
        raise InputError(str(exc), flag) from None


def qtype(text: str, flag: str = "--qtype") -> str:
    value = text.upper()
    if value not in DNS_QTYPES:
        raise InputError(f"must be one of {', '.join(DNS_QTYPES)} (got {text!r})", flag)
    return value


def rcode(text: str, flag: str = "--expect-rcode") -> str:
    value = text.upper()
    if value not in DNS_RCODES:
        raise InputError(f"must be an rcode name such as NOERROR or NXDOMAIN (got {text!r})", flag)
    return value


def domain(text: str, flag: str = "DOMAIN") -> str:
    name = text.rstrip(".")
    if text in (".",):
        return "."
    if not name or len(name) > 253 or not _HOSTNAME.match(name):
        raise InputError(
            f"must be a domain name such as kubernetes.default.svc.cluster.local (got {text!r})",
            flag,
        )
    return name + "."


def server(text: str, default_port: int, flag: str = "--server") -> tuple[str, int]:
    """``HOST``, ``HOST:PORT``, ``[V6]:PORT`` or a bare IPv6 address."""
    host, port_text = text, ""
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise InputError(f"unclosed '[' in {text!r}", flag)
        host, rest = text[1:end], text[end + 1 :]
        if rest:
            if not rest.startswith(":"):
                raise InputError(f"expected HOST[:PORT] (got {text!r})", flag)
            port_text = rest[1:]
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    port = default_port
    if port_text:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise InputError(f"invalid port in {text!r} (expected 1-65535)", flag)
        port = int(port_text)
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if ":" in host or not _HOSTNAME.match(host):
            raise InputError(
                f"expected an IP address or host name, HOST[:PORT] (got {text!r})", flag
            ) from None
    return host, port


def toleration(text: str, flag: str = "--tolerate") -> Toleration:
    """``all`` or ``KEY[=VALUE][:EFFECT]``."""
    if text == "all":
        return Toleration(operator="Exists")
    body, _, effect = text.partition(":")
    if effect and effect not in EFFECTS:
        raise InputError(f"effect must be one of {', '.join(EFFECTS)} (got {effect!r})", flag)
    key, eq, value = body.partition("=")
    if not key or not _QUALIFIED.match(key):
        raise InputError(f"expected all or KEY[=VALUE][:EFFECT] (got {text!r})", flag)
    if eq and not _LABEL_VALUE.match(value):
        raise InputError(f"invalid toleration value {value!r}", flag)
    if eq:
        return Toleration("Equal", key, value, effect or None)
    return Toleration("Exists", key, None, effect or None)


_SEL_SET = re.compile(r"^\s*(!)?\s*([^\s=!,()]+)\s*(?:(in|notin)\s*\(([^)]*)\))?\s*$")
_SEL_EQ = re.compile(r"^\s*([^\s=!,()]+)\s*(==|=|!=)\s*([^\s=!,()]*)\s*$")


def selector(text: str, flag: str = "--node-selector") -> str:
    """A label selector as kubectl takes it: ``k=v,k!=v,k in (a,b),!k,k``."""
    if not text.strip():
        raise InputError("must not be empty (expected e.g. disktype=ssd)", flag)
    for req in _split_selector(text):
        m = _SEL_EQ.match(req)
        if m:
            key, value = m.group(1), m.group(3)
            if not _QUALIFIED.match(key) or not _LABEL_VALUE.match(value):
                raise InputError(f"invalid requirement {req.strip()!r}", flag)
            continue
        m = _SEL_SET.match(req)
        if m and _QUALIFIED.match(m.group(2)) and not (m.group(1) and m.group(3)):
            values = [v.strip() for v in (m.group(4) or "").split(",")] if m.group(3) else []
            if m.group(3) and (not values or not all(_LABEL_VALUE.match(v) for v in values)):
                raise InputError(f"invalid value list in {req.strip()!r}", flag)
            continue
        raise InputError(f"invalid requirement {req.strip()!r} (expected e.g. disktype=ssd)", flag)
    return text


def _split_selector(text: str) -> list[str]:
    out, depth, cur = [], 0, ""
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    out.append(cur)
    return out


def readable_file(text: str, flag: str) -> str:
    p = Path(text)
    if not p.is_file():
        raise InputError(f"no such file: {text}", flag)
    try:
        with p.open("rb"):
            pass
    except OSError as exc:
        raise InputError(f"cannot read {text}: {exc.strerror}", flag) from None
    return str(p)


def pem_file(text: str, flag: str, what: str) -> str:
    """A readable PEM file holding a ``certificate`` or a ``private key``."""
    path = readable_file(text, flag)
    data = Path(path).read_bytes()
    marker = b"-----BEGIN CERTIFICATE-----" if what == "certificate" else b"PRIVATE KEY-----"
    if marker not in data:
        raise InputError(f"{text} holds no PEM {what}", flag)
    return path


_NET = re.compile(
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?/)?[a-z0-9]([-a-z0-9.]*[a-z0-9])?(@[a-zA-Z0-9_.-]{1,15})?$"
)


def multus_networks(text: str, flag: str = "--multus-networks") -> str:
    """A multus network request: a comma list of ``[namespace/]name[@interface]``."""
    items = [i.strip() for i in text.split(",")]
    if not text.strip() or any(not _NET.match(i) for i in items):
        raise InputError(
            f"must be a comma list of [namespace/]name[@interface] (got {text!r})", flag
        )
    return ",".join(items)
