"""What to load and how: plain dataclasses shared by the CLI, the agent and the executors.

They round-trip through JSON (``to_dict`` / ``from_dict``) because the CLI hands them to
agents in a ConfigMap. Secrets (header values such as Authorization, TLS keys) are carried
separately and never serialised into a report.
"""

from __future__ import annotations

import base64
import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar
from urllib.parse import unquote

T = TypeVar("T")

DNS_QTYPES = ("A", "AAAA", "CNAME", "SRV", "TXT", "MX", "NS", "PTR", "SOA")
DNS_PROTOCOLS = ("udp", "tcp", "tls")
DNS_RCODES = (
    "NOERROR",
    "FORMERR",
    "SERVFAIL",
    "NXDOMAIN",
    "NOTIMP",
    "REFUSED",
    "YXDOMAIN",
    "YXRRSET",
    "NXRRSET",
    "NOTAUTH",
    "NOTZONE",
)
HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS")

# Header names whose values are known to be harmless. Every other header's value is secret:
# it travels in the run's Secret and is shown as REDACTED (an allow-list, so a credential
# under a name nobody listed, such as X-Vault-Token or Private-Token, is never printed).
PUBLIC_HEADERS = frozenset(
    {
        "accept",
        "accept-charset",
        "accept-encoding",
        "accept-language",
        "cache-control",
        "connection",
        "content-type",
        "host",
        "pragma",
        "user-agent",
    }
)
REDACTED = "<redacted>"


def secret_header(name: str) -> bool:
    """Whether a header's value is secret (every name but the harmless few)."""
    return name.strip().lower() not in PUBLIC_HEADERS


def secret_header_names(headers: Iterable[tuple[str, str]]) -> tuple[str, ...]:
    return tuple(k for k, _ in headers if secret_header(k))


def split_userinfo(url: str) -> tuple[str, str | None]:
    """``url`` without its ``user:password@`` part, and the ``Authorization`` value it means
    (``Basic base64(user:password)``, percent-decoded as curl does; None without userinfo).
    The rest of the URL is kept as written."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url, None
    end = len(rest)
    for ch in "/?#\\":  # a backslash ends the authority as in browsers (WHATWG)
        i = rest.find(ch)
        if i >= 0:
            end = min(end, i)
    netloc = rest[:end]
    if "@" not in netloc:
        return url, None
    userinfo, _, hostport = netloc.rpartition("@")
    stripped = f"{scheme}://{hostport}{rest[end:]}"
    if not userinfo:
        return stripped, None
    user, _, password = userinfo.partition(":")
    pair = f"{unquote(user)}:{unquote(password)}".encode()
    return stripped, "Basic " + base64.b64encode(pair).decode("ascii")


@dataclasses.dataclass(frozen=True)
class Load:
    """The rate plan of one target: ``qps`` sends per second for ``duration`` seconds."""

    qps: int = 10
    duration: float = 10.0
    timeout: float = 1.0  # per request, seconds
    max_inflight: int = 0  # 0 = derived: qps x timeout (at least 64), capped at 10000
    # > 0: closed loop instead of a rate (benchmarks): keep this many requests in flight,
    # send the next as soon as one ends, for ``duration`` seconds; ``qps`` is ignored.
    concurrency: int = 0

    def inflight_cap(self) -> int:
        if self.max_inflight > 0:
            return self.max_inflight
        return int(min(10000, max(64, self.qps * max(self.timeout, 0.001) * 1.2)))

    @property
    def planned(self) -> int:
        return round(self.qps * self.duration)


@dataclasses.dataclass(frozen=True)
class StatusExpectation:
    """``--expect-status``: exact codes and/or classes (``2xx``); default 2xx or 3xx."""

    codes: tuple[int, ...] = ()
    classes: tuple[int, ...] = (2, 3)

    def __call__(self, status: int) -> bool:
        return status in self.codes or status // 100 in self.classes

    @classmethod
    def parse(cls, text: str) -> StatusExpectation:
        """Parse ``200``, ``2xx`` or a comma list of them; ValueError when invalid."""
        codes: list[int] = []
        classes: list[int] = []
        for part in (p.strip().lower() for p in text.split(",")):
            if len(part) == 3 and part[0] in "12345" and part[1:] == "xx":
                classes.append(int(part[0]))
            elif part.isdigit() and 100 <= int(part) <= 599:
                codes.append(int(part))
            else:
                raise ValueError(
                    f"invalid status {part!r}: expected a code 100-599 or a class such as 2xx"
                )
        return cls(tuple(codes), tuple(classes))

    def text(self) -> str:
        return ",".join([str(c) for c in self.codes] + [f"{c}xx" for c in self.classes])


@dataclasses.dataclass(frozen=True)
class HttpSpec:
    url: str
    method: str = "GET"
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""
    http2: bool = False
    insecure: bool = False
    cacert: str | None = None  # PEM file path
    cert: str | None = None  # client certificate PEM path
    key: str | None = None  # client key PEM path
    expect_status: StatusExpectation = StatusExpectation()
    host_header: str | None = None  # Host/SNI override (Ingress by IP)


@dataclasses.dataclass(frozen=True)
class DnsSpec:
    server: str  # IP address (v4 or v6) or host name
    domain: str
    port: int = 53
    protocol: str = "udp"  # udp | tcp | tls
    qtype: str = "A"
    expect_rcode: str = "NOERROR"
    insecure: bool = False  # DoT: True skips verifying the server certificate (-k)
    cacert: str | None = None  # DoT: PEM file of the CA to verify the server against
    tls_name: str | None = None  # DoT: name to verify the certificate for (default: server)
    sockets: int = 0  # UDP sockets (source ports) or TCP/TLS connections; 0 = 8 UDP / 1 stream
    # A UDP reply with TC=1: False = a failure of its own class (``truncated (TC)``);
    # True = ask again over TCP, as a resolver does, and count the TCP answer.
    tc_fallback: bool = False

    @property
    def server_address(self) -> str:
        host = f"[{self.server}]" if ":" in self.server else self.server
        return f"{host}:{self.port}"


def without_userinfo(spec: HttpSpec) -> HttpSpec:
    """``spec`` with a URL's ``user:password@`` moved into an ``Authorization: Basic`` header
    (unless one is given), so the credentials are sent and the URL carries them no more."""
    url, auth = split_userinfo(spec.url)
    if url == spec.url:
        return spec
    headers = spec.headers
    if auth is not None and not any(k.lower() == "authorization" for k, _ in headers):
        headers = (*headers, ("Authorization", auth))
    return dataclasses.replace(spec, url=url, headers=headers)


def to_dict(obj: Any) -> dict[str, Any]:
    """JSON-able dict of a spec dataclass (bytes as latin-1 text, tuples as lists)."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(obj):
        v = getattr(obj, f.name)
        if isinstance(v, bytes):
            v = v.decode("latin-1")
        elif isinstance(v, StatusExpectation):
            v = v.text()
        elif isinstance(v, tuple):
            v = [list(x) if isinstance(x, tuple) else x for x in v]
        out[f.name] = v
    return out


def from_dict(cls: type[T], data: Mapping[str, Any]) -> T:
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if f.name not in data:
            continue
        v = data[f.name]
        if f.name == "body":
            v = str(v).encode("latin-1")
        elif f.name == "expect_status":
            v = StatusExpectation.parse(v) if v else StatusExpectation()
        elif f.name == "headers":
            v = tuple((str(k), str(val)) for k, val in v)
        kwargs[f.name] = v
    return cls(**kwargs)
