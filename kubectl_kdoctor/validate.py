"""Parsers for every user-given value. Each raises ``InputError`` naming the flag and what
is expected, so every bad input ends in exit 2 with one line, before any cluster access."""

from __future__ import annotations

import ipaddress
import os
import re
import stat
from urllib.parse import urlsplit

from kubectl_kdoctor.durations import format_duration, parse_duration
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

MAX_URL = 8192  # what common servers accept in a request line
MAX_HEADER = 8192  # one header line
MAX_NAME = 40  # leaves room for suffixes such as -node-17 within 63 characters


def duration(
    text: str, flag: str, *, allow_zero: bool = False, maximum: float | None = None
) -> float:
    try:
        value = parse_duration(text)
    except ValueError as exc:
        raise InputError(f"{exc}", flag) from None
    if value <= 0 and not allow_zero:
        raise InputError(
            f"must be a duration > 0 such as 500ms, 10s or 1m30s (got {short_repr(text)})", flag
        )
    if maximum is not None and value > maximum:
        raise InputError(
            f"must be at most {format_duration(maximum)} (got {short_repr(text)})", flag
        )
    return value


def short_repr(text: object) -> str:
    """``repr`` of a user's value, cut to a length that fits one line."""
    r = repr(text)
    return r if len(r) <= 60 else r[:57] + "..."


def success_rate(text: str, flag: str = "--expect-success-rate") -> float:
    if not re.fullmatch(r"[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]{1,3})?", text):
        raise InputError(f"must be a number from 0 to 1 (got {short_repr(text)})", flag)
    try:
        value = float(text)
    except ValueError:
        raise InputError(f"must be a number from 0 to 1 (got {short_repr(text)})", flag) from None
    if not 0.0 <= value <= 1.0:  # NaN fails this too
        raise InputError(f"must be a number from 0 to 1 (got {short_repr(text)})", flag)
    return value


def positive_int(text: str | int, flag: str, maximum: int | None = None) -> int:
    # ASCII digits only: int() would also take "1_000", " 5 " and other scripts' digits
    if isinstance(text, str) and not re.fullmatch(r"[0-9]{1,30}", text):
        raise InputError(f"must be an integer > 0 (got {short_repr(text)})", flag)
    try:
        value = int(text)
    except (TypeError, ValueError):  # also: more digits than Python converts
        raise InputError(f"must be an integer > 0 (got {short_repr(text)})", flag) from None
    if value <= 0:
        raise InputError(f"must be an integer > 0 (got {short_repr(text)})", flag)
    if maximum is not None and value > maximum:
        raise InputError(f"must be at most {maximum:,} (got {short_repr(text)})", flag)
    return value


def run_name(text: str, flag: str = "--name") -> str:
    if len(text) > MAX_NAME or not _LABEL.fullmatch(text):
        raise InputError(
            f"must be a lower-case DNS label of at most {MAX_NAME} characters "
            f"(a-z, 0-9, '-'; got {text!r})",
            flag,
        )
    return text


def namespace(text: str, flag: str = "--namespace") -> str:
    """A namespace name: a lower-case DNS label (RFC 1123) of at most 63 characters."""
    if len(text) > 63 or not _LABEL.fullmatch(text):
        raise InputError(
            f"must be a namespace name: a lower-case DNS label of at most 63 characters "
            f"(a-z, 0-9, '-'; got {short_repr(text)})",
            flag,
        )
    return text


def object_name(text: str, flag: str = "NAME") -> str:
    """A Kubernetes object name: a lower-case DNS subdomain (RFC 1123), at most 253."""
    if len(text) > 253 or not all(_LABEL.fullmatch(p) for p in text.split(".")):
        raise InputError(
            f"must be a lower-case DNS-1123 name (a-z, 0-9, '-', '.'; got {short_repr(text)})", flag
        )
    return text


def plain_text(text: str, flag: str, *, header_safe: bool = False) -> str:
    """A name given to the API (a kubeconfig context, an impersonated user): no control
    characters; ``header_safe``: also Latin-1 only, as it travels in an HTTP header."""
    bad = next((c for c in text if ord(c) < 0x20 or ord(c) == 0x7F), None)
    if bad is not None:
        raise InputError(f"must not contain control characters (got {short_repr(text)})", flag)
    if header_safe and any(ord(c) > 0xFF for c in text):
        raise InputError(
            f"must be Latin-1 text: it is sent in an HTTP header (got {short_repr(text)})", flag
        )
    return text


def node_name(text: str, flag: str = "--node") -> str:
    """A lower-case DNS subdomain (node names, IngressClass names)."""
    if not text or len(text) > 253 or not _HOSTNAME.fullmatch(text) or text != text.lower():
        raise InputError(f"must be a lower-case DNS subdomain (got {text!r})", flag)
    return text


def url(text: str, flag: str = "URL") -> str:
    """An absolute http:// or https:// URL, as it will go on the wire: no spaces, control
    characters, backslashes or non-ASCII (percent-encode them). ``user:password@`` is
    accepted (it becomes Basic auth)."""
    if len(text) > MAX_URL:
        raise InputError(f"longer than {MAX_URL} characters (got {len(text)})", flag)
    bad = next((c for c in text if ord(c) <= 0x20 or ord(c) == 0x7F), None)
    if bad is not None:
        what = "a space" if bad == " " else f"a control character ({bad!r})"
        raise InputError(
            f"contains {what}; percent-encode it, e.g. %20 (got {short_repr(text)})", flag
        )
    odd = next((c for c in text if ord(c) > 0x7E), None)
    if odd is not None:
        raise InputError(
            f"contains the non-ASCII character {odd!r}; percent-encode it (got {short_repr(text)})",
            flag,
        )
    if "\\" in text:
        raise InputError(f"contains a backslash; use '/' (got {short_repr(text)})", flag)
    try:
        parts = urlsplit(text)
    except ValueError as exc:
        raise InputError(f"invalid URL {short_repr(text)}: {exc}", flag) from None
    if parts.scheme not in ("http", "https") or not text.lower().startswith(
        ("http://", "https://")
    ):
        raise InputError(f"must be an http:// or https:// URL (got {short_repr(text)})", flag)
    try:
        host = parts.hostname
        port = parts.port
    except ValueError as exc:
        raise InputError(f"invalid URL {short_repr(text)}: {exc}", flag) from None
    if not host:
        raise InputError(f"must name a host (got {short_repr(text)})", flag)
    if ":" in host:
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise InputError(f"invalid IPv6 address in {short_repr(text)}", flag) from None
    else:
        why = host_problem(host)
        if why:
            raise InputError(f"{why} in {short_repr(text)}", flag)
    if port == 0:
        raise InputError(f"invalid port 0 in {short_repr(text)}", flag)
    return text


def host_problem(host: str) -> str | None:
    """Why ``host`` (not an IPv6 address) is no IPv4 address or host name, or None.

    A name whose last label is all digits is an IPv4 address or nothing (``300.1.1.1``,
    ``1.2.3`` are not host names: RFC 1123 section 2.1)."""
    name = host.rstrip(".") if host != "." else host
    labels = name.split(".")
    if labels[-1].isdigit():
        try:
            ipaddress.IPv4Address(name)
        except ValueError:
            return f"invalid IPv4 address {host!r}"
        return None
    if not _HOSTNAME.fullmatch(host):
        return f"invalid host {host!r}"
    return None


def header(text: str, flag: str = "--header") -> tuple[str, str]:
    """``Name: value``. The name is an HTTP token; the value has no CR, LF, NUL or other
    control character (one would put another header on the wire) and is Latin-1."""
    if len(text) > MAX_HEADER:
        raise InputError(f"longer than {MAX_HEADER} characters (got {len(text)})", flag)
    name, sep, value = text.partition(":")
    name = name.strip(" \t")
    if not sep or not name or not _HEADER_NAME.fullmatch(name):
        raise InputError(f"must be 'Name: value' (got {short_repr(text)})", flag)
    value = value.strip(" \t")
    bad = next((c for c in value if (ord(c) < 0x20 and c != "\t") or ord(c) == 0x7F), None)
    if bad is not None:
        raise InputError(
            f"the value of {name} contains the control character {bad!r} "
            "(CR, LF and NUL would forge or cut headers)",
            flag,
        )
    if any(ord(c) > 0xFF for c in value):
        raise InputError(
            f"the value of {name} must be Latin-1 text (HTTP/1.1 carries bytes, not "
            f"Unicode; got {short_repr(value)})",
            flag,
        )
    return name, value


def status(text: str, flag: str = "--expect-status") -> StatusExpectation:
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in text):
        raise InputError(f"must not contain control characters (got {short_repr(text)})", flag)
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
    if not name or len(name) > 253 or not _HOSTNAME.fullmatch(name):
        raise InputError(
            f"must be a domain name such as kubernetes.default.svc.cluster.local (got {text!r})",
            flag,
        )
    return name + "."


def server(text: str, default_port: int, flag: str = "--server") -> tuple[str, int]:
    """``HOST``, ``HOST:PORT``, ``[V6]:PORT`` or a bare IPv6 address (default port).

    A bare IPv6 address whose last group could be a port (``::1:53``, ``fd00::1:853``) is
    refused: write ``[::1]:53`` for a port, ``[::1:53]`` for the address."""
    host, port_text = text, ""
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise InputError(f"unclosed '[' in {short_repr(text)}", flag)
        host, rest = text[1:end], text[end + 1 :]
        if rest:
            if not rest.startswith(":"):
                raise InputError(f"expected HOST[:PORT] (got {short_repr(text)})", flag)
            port_text = rest[1:]
            if not port_text:
                raise InputError(f"missing port after ':' in {short_repr(text)}", flag)
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise InputError(
                f"expected an IPv6 address inside [...] (got {short_repr(text)})", flag
            ) from None
    elif text.count(":") == 1:
        host, port_text = text.split(":")
        if not port_text:
            raise InputError(f"missing port after ':' in {short_repr(text)}", flag)
    elif ":" in text:
        try:
            ipaddress.IPv6Address(text)
        except ValueError:
            raise InputError(
                f"expected an IP address or host name, HOST[:PORT] or [IPV6]:PORT "
                f"(got {short_repr(text)})",
                flag,
            ) from None
        head, _, last = text.rpartition(":")
        if last.isdigit() and _is_ipv6(head):
            raise InputError(
                f"{text!r} is ambiguous: write [{head}]:{last} for port {last}, "
                f"or [{text}] for that address",
                flag,
            )
    port = default_port
    if port_text:
        if not port_text.isdigit() or len(port_text) > 5 or not 0 < int(port_text) < 65536:
            raise InputError(f"invalid port in {short_repr(text)} (expected 1-65535)", flag)
        port = int(port_text)
    if not host:
        raise InputError(f"missing host in {short_repr(text)}", flag)
    if ":" not in host:
        why = host_problem(host)
        if why:
            raise InputError(f"{why}; expected HOST[:PORT] (got {short_repr(text)})", flag)
    return host, port


def _is_ipv6(text: str) -> bool:
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


def toleration(text: str, flag: str = "--tolerate") -> Toleration:
    """``all`` or ``KEY[=VALUE][:EFFECT]``."""
    if text == "all":
        return Toleration(operator="Exists")
    body, _, effect = text.partition(":")
    if effect and effect not in EFFECTS:
        raise InputError(f"effect must be one of {', '.join(EFFECTS)} (got {effect!r})", flag)
    key, eq, value = body.partition("=")
    if not key or not _QUALIFIED.fullmatch(key):
        raise InputError(f"expected all or KEY[=VALUE][:EFFECT] (got {text!r})", flag)
    if eq and not _LABEL_VALUE.fullmatch(value):
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
        m = _SEL_EQ.fullmatch(req)
        if m:
            key, value = m.group(1), m.group(3)
            if not _QUALIFIED.fullmatch(key) or not _LABEL_VALUE.fullmatch(value):
                raise InputError(f"invalid requirement {req.strip()!r}", flag)
            continue
        m = _SEL_SET.fullmatch(req)
        if m and _QUALIFIED.fullmatch(m.group(2)) and not (m.group(1) and m.group(3)):
            values = [v.strip() for v in (m.group(4) or "").split(",")] if m.group(3) else []
            if m.group(3) and (not values or not all(_LABEL_VALUE.fullmatch(v) for v in values)):
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


def regular_file(text: str, flag: str) -> str:
    """A path that names a regular file (following symlinks). A directory, a FIFO (which
    would block a reader forever), a device (``/dev/zero`` never ends) or a socket is named
    for what it is; nothing is opened here."""
    if not text:
        raise InputError("must not be empty (expected a file)", flag)
    if "\x00" in text:
        raise InputError(f"invalid path {text!r} (NUL byte)", flag)
    try:
        st = os.stat(text)
    except FileNotFoundError:
        raise InputError(f"no such file: {text}", flag) from None
    except NotADirectoryError:
        raise InputError(f"no such file: {text} (a parent is not a directory)", flag) from None
    except OSError as exc:
        raise InputError(f"cannot read {text}: {exc.strerror or exc}", flag) from None
    if not stat.S_ISREG(st.st_mode):
        raise InputError(f"{text} is {_file_kind(st.st_mode)}, not a regular file", flag)
    return text


def _file_kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a file"


def readable_file(text: str, flag: str) -> str:
    """A regular file this process can open."""
    path = regular_file(text, flag)
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise InputError(f"cannot read {text}: {exc.strerror or exc}", flag) from None
    return path


def read_file(text: str, flag: str, limit: int, what: str = "file") -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes (read no further, even when
    the file grows meanwhile)."""
    path = regular_file(text, flag)
    try:
        with open(path, "rb") as fh:
            data = fh.read(limit + 1)
    except OSError as exc:
        raise InputError(f"cannot read {text}: {exc.strerror or exc}", flag) from None
    if len(data) > limit:
        raise InputError(f"{text}: the {what} is larger than {_size(limit)}", flag)
    return data


def _size(n: int) -> str:
    if n % (1024 * 1024) == 0:
        return f"{n // (1024 * 1024)} MiB"
    if n % 1024 == 0:
        return f"{n // 1024} KiB"
    return f"{n} bytes"


MAX_PEM_BYTES = 1024 * 1024


def pem_file(text: str, flag: str, what: str) -> str:
    """A readable PEM file holding a ``certificate`` or a ``private key``."""
    path = regular_file(text, flag)
    data = read_file(path, flag, MAX_PEM_BYTES, f"PEM {what}")
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
    if not text.strip() or any(not _NET.fullmatch(i) for i in items):
        raise InputError(
            f"must be a comma list of [namespace/]name[@interface] (got {text!r})", flag
        )
    return ",".join(items)
