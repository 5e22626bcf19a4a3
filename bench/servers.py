"""Real servers on loopback for the benchmarks and the tests: nginx, unbound, a small
Python upstream, and a throw-away PKI made with the openssl CLI.

Each server runs from a temporary prefix on free ports, optionally pinned to CPUs with
taskset, in its own session; ``stop()`` ends exactly the process it started (by pid).
Used by ``bench`` and by ``tests/fixtures/servers.py``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
INDEX_BODY = b"<html><body>kubectl-kdoctor test page</body></html>\n"
BIG_SIZE = 256 * 1024
TXT_BIG_RECORDS = 12  # 12 x 60-byte TXT strings: > 512 bytes, so truncated over UDP


def ipv6_loopback() -> bool:
    """Whether ::1 can be bound here."""
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def free_port(udp_too: bool = False) -> int:
    """A port free on 127.0.0.1 for TCP (and UDP when asked), and on ::1 when it exists."""
    v6 = ipv6_loopback()
    for _ in range(200):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        try:
            checks = [(socket.AF_INET, socket.SOCK_STREAM, "127.0.0.1")]
            if udp_too:
                checks.append((socket.AF_INET, socket.SOCK_DGRAM, "127.0.0.1"))
            if v6:
                checks.append((socket.AF_INET6, socket.SOCK_STREAM, "::1"))
                if udp_too:
                    checks.append((socket.AF_INET6, socket.SOCK_DGRAM, "::1"))
            for fam, typ, host in checks:
                with socket.socket(fam, typ) as s:
                    s.bind((host, port))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port found")


def wait_tcp(
    host: str, port: int, timeout: float = 10.0, proc: subprocess.Popen[bytes] | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"server exited with {proc.returncode}") from None
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


# --- PKI ------------------------------------------------------------------------------


@dataclass
class Pki:
    """A test CA, a server certificate for loopback names, and a client certificate."""

    dir: Path
    ca_file: Path = field(init=False)
    server_cert: Path = field(init=False)
    server_key: Path = field(init=False)
    client_cert: Path = field(init=False)
    client_key: Path = field(init=False)

    def __post_init__(self) -> None:
        d = self.dir
        self.ca_file = d / "ca.pem"
        self.server_cert = d / "server.pem"
        self.server_key = d / "server.key"
        self.client_cert = d / "client.pem"
        self.client_key = d / "client.key"

    @classmethod
    def make(cls, directory: Path) -> Pki:
        directory.mkdir(parents=True, exist_ok=True)
        p = cls(directory)
        d = str(directory)

        def ssl(*args: str) -> None:
            subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)

        ssl(
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "30",
            "-subj",
            "/CN=kdoctor test CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        )
        san = (
            "subjectAltName=IP:127.0.0.1,IP:::1,DNS:localhost,DNS:kdoctor.test,DNS:dns.kdoctor.test"
        )
        for name, ext in (
            ("server", f"{san}\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n"),
            ("client", "extendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE\n"),
        ):
            (directory / f"{name}.ext").write_text(ext)
            ssl(
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                f"{name}.key",
                "-out",
                f"{name}.csr",
                "-subj",
                f"/CN=kdoctor test {name}",
            )
            ssl(
                "x509",
                "-req",
                "-in",
                f"{name}.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                f"{name}.pem",
                "-days",
                "30",
                "-extfile",
                f"{name}.ext",
            )
        return p


# --- processes ------------------------------------------------------------------------


class Process:
    """A server process we started; ``stop()`` ends it (and only it) by pid."""

    def __init__(
        self, argv: Sequence[str], cpus: str | None, log: Path, cwd: Path | None = None
    ) -> None:
        cmd = list(argv)
        if cpus is not None and shutil.which("taskset"):
            cmd = ["taskset", "-c", cpus, *cmd]
        self.log = log
        self._logf = open(log, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=self._logf,
            stderr=subprocess.STDOUT,
            cwd=str(cwd) if cwd else None,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 5.0) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)
        self._logf.close()

    def tail(self, n: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


class Upstream:
    """``bench.upstream`` in a subprocess: the slow, chunked, EOF, reset and garbage cases."""

    def __init__(self, prefix: Path, cpus: str | None = None) -> None:
        prefix.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = Process(
            [sys.executable, "-m", "bench.upstream", str(self.port)],
            cpus,
            prefix / "upstream.log",
            ROOT,
        )
        wait_tcp("127.0.0.1", self.port, proc=self.process.proc)

    def stop(self) -> None:
        self.process.stop()


# --- nginx ----------------------------------------------------------------------------

_LOCATIONS = """
        location = /index.html {{ }}
        location = /big.bin {{ }}
        location = /status/404 {{ return 404 "not here\\n"; }}
        location = /status/500 {{ return 500 "broken\\n"; }}
        location = /redirect {{ return 302 /index.html; }}
        location = /echo {{ return 200 "$request_method x-foo=$http_x_foo host=$host\\n"; }}
        location = /close {{ keepalive_timeout 0; return 200 "closing\\n"; }}
        location = /body {{ proxy_pass http://127.0.0.1:{upstream}/echo; }}
        location = /slow {{ proxy_pass http://127.0.0.1:{upstream}/slow; proxy_read_timeout 60s; }}
        location = /chunked {{ proxy_pass http://127.0.0.1:{upstream}/chunked; }}
"""


@dataclass
class Nginx:
    """nginx-light on loopback: plain HTTP/1.1, HTTPS, HTTPS with client certs, HTTP/2."""

    prefix: Path
    pki: Pki
    upstream_port: int
    http_port: int = 0
    https_port: int = 0
    mtls_port: int = 0
    h2_port: int = 0
    closed_port: int = 0
    ipv6: bool = False
    process: Process | None = None

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}/index.html"

    @property
    def http6_url(self) -> str:
        return f"http://[::1]:{self.http_port}/index.html"

    @property
    def https_url(self) -> str:
        return f"https://127.0.0.1:{self.https_port}/index.html"

    @property
    def mtls_url(self) -> str:
        return f"https://127.0.0.1:{self.mtls_port}/index.html"

    @property
    def h2_url(self) -> str:
        return f"https://127.0.0.1:{self.h2_port}/index.html"

    @property
    def closed_url(self) -> str:
        return f"http://127.0.0.1:{self.closed_port}/"

    def url(self, path: str, scheme: str = "http") -> str:
        port = {"http": self.http_port, "https": self.https_port, "h2": self.h2_port}[scheme]
        return f"{'http' if scheme == 'http' else 'https'}://127.0.0.1:{port}{path}"

    @property
    def slow_url(self) -> str:
        return self.url("/slow")

    @property
    def access_log(self) -> Path:
        return self.prefix / "access.log"

    @property
    def ca_file(self) -> str:
        return str(self.pki.ca_file)

    @property
    def client_cert(self) -> str:
        return str(self.pki.client_cert)

    @property
    def client_key(self) -> str:
        return str(self.pki.client_key)

    @classmethod
    def start(
        cls,
        prefix: Path,
        pki: Pki,
        upstream_port: int,
        cpus: str | None = None,
        access_log: bool = True,
    ) -> Nginx:
        prefix.mkdir(parents=True, exist_ok=True)
        html = prefix / "html"
        html.mkdir(exist_ok=True)
        (html / "index.html").write_bytes(INDEX_BODY)
        (html / "big.bin").write_bytes(bytes(range(256)) * (BIG_SIZE // 256))
        n = cls(prefix, pki, upstream_port)
        n.ipv6 = ipv6_loopback()
        n.http_port, n.https_port, n.mtls_port, n.h2_port, n.closed_port = (
            free_port() for _ in range(5)
        )
        locations = _LOCATIONS.format(upstream=upstream_port)
        tls = f"ssl_certificate {pki.server_cert}; ssl_certificate_key {pki.server_key};"
        v6 = f"listen [::1]:{n.http_port};" if n.ipv6 else ""
        log = f"access_log {prefix}/access.log kd;" if access_log else "access_log off;"
        user = "user root;" if os.geteuid() == 0 else ""
        conf = f"""
{user}
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
daemon off;
events {{ worker_connections 20000; }}
worker_rlimit_nofile 40000;
http {{
    default_type text/plain;
    client_body_temp_path {prefix}/tmp_body;
    proxy_temp_path {prefix}/tmp_proxy;
    fastcgi_temp_path {prefix}/tmp_fastcgi;
    uwsgi_temp_path {prefix}/tmp_uwsgi;
    scgi_temp_path {prefix}/tmp_scgi;
    log_format kd '$server_port $request_method "$request_uri" $status $server_protocol '
                  'host=$host x_foo="$http_x_foo" ua="$http_user_agent" '
                  'len=$content_length body="$request_body" ssl_client="$ssl_client_s_dn" '
                  'conn=$connection reqs=$connection_requests';
    {log}
    keepalive_requests 1000000;
    keepalive_timeout 75s;
    sendfile on;
    tcp_nodelay on;
    server {{
        listen 127.0.0.1:{n.http_port} reuseport backlog=4096;
        {v6}
        root {html};
        {locations}
    }}
    server {{
        listen 127.0.0.1:{n.https_port} ssl;
        {tls}
        root {html};
        {locations}
    }}
    server {{
        listen 127.0.0.1:{n.mtls_port} ssl;
        {tls}
        ssl_client_certificate {pki.ca_file};
        ssl_verify_client on;
        root {html};
        {locations}
    }}
    server {{
        listen 127.0.0.1:{n.h2_port} ssl http2;
        {tls}
        root {html};
        {locations}
    }}
}}
"""
        (prefix / "nginx.conf").write_text(conf)
        n.process = Process(
            [
                "nginx",
                "-p",
                str(prefix),
                "-e",
                str(prefix / "error.log"),
                "-c",
                str(prefix / "nginx.conf"),
            ],
            cpus,
            prefix / "nginx.out",
        )
        try:
            for port in (n.http_port, n.https_port, n.mtls_port, n.h2_port):
                wait_tcp("127.0.0.1", port, proc=n.process.proc)
        except Exception as e:
            n.stop()
            err = (prefix / "error.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"nginx did not start: {e}\n{err}") from e
        return n

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()

    def log_lines(self) -> list[str]:
        try:
            return self.access_log.read_text(errors="replace").splitlines()
        except OSError:
            return []


# --- unbound --------------------------------------------------------------------------

ZONE = "kdoctor.test."
A_NAME = "a.kdoctor.test."
A_ADDR = "10.0.0.1"
AAAA_ADDR = "fd00::1"
CNAME_NAME = "www.kdoctor.test."
SRV_NAME = "_http._tcp.kdoctor.test."
TXT_NAME = "txt.kdoctor.test."
TXT_TEXT = "hello kdoctor"
MX_NAME = "kdoctor.test."
BIG_TXT_NAME = "big.kdoctor.test."
NX_NAME = "nope.kdoctor.test."
PTR_NAME = "1.0.0.10.in-addr.arpa."


@dataclass
class Unbound:
    """unbound on loopback: UDP and TCP on ``port``, DNS over TLS on ``tls_port``."""

    prefix: Path
    pki: Pki
    host: str = "127.0.0.1"
    port: int = 0
    tls_port: int = 0
    closed_port: int = 0
    ipv6: bool = False
    process: Process | None = None
    zone: str = ZONE
    a_name: str = A_NAME
    a_addr: str = A_ADDR
    aaaa_addr: str = AAAA_ADDR
    cname_name: str = CNAME_NAME
    srv_name: str = SRV_NAME
    txt_name: str = TXT_NAME
    mx_name: str = MX_NAME
    big_txt_name: str = BIG_TXT_NAME
    nx_name: str = NX_NAME
    ptr_name: str = PTR_NAME

    @property
    def ca_file(self) -> str:
        return str(self.pki.ca_file)

    @classmethod
    def start(cls, prefix: Path, pki: Pki, cpus: str | None = None, threads: int = 1) -> Unbound:
        prefix.mkdir(parents=True, exist_ok=True)
        u = cls(prefix, pki)
        u.ipv6 = ipv6_loopback()
        u.port = free_port(udp_too=True)
        u.tls_port = free_port()
        u.closed_port = free_port(udp_too=True)
        big = "\n".join(
            f"  local-data: '{BIG_TXT_NAME} 300 IN TXT \"{k:02d}-{'x' * 57}\"'"
            for k in range(TXT_BIG_RECORDS)
        )
        v6 = f"  interface: ::1@{u.port}\n" if u.ipv6 else ""
        conf = f"""
server:
  verbosity: 0
  num-threads: {threads}
  interface: 127.0.0.1@{u.port}
{v6}  interface: 127.0.0.1@{u.tls_port}
  tls-port: {u.tls_port}
  tls-service-key: "{pki.server_key}"
  tls-service-pem: "{pki.server_cert}"
  port: {u.port}
  do-ip4: yes
  do-ip6: {"yes" if u.ipv6 else "no"}
  do-udp: yes
  do-tcp: yes
  do-daemonize: no
  username: ""
  chroot: ""
  directory: "{prefix}"
  pidfile: "{prefix}/unbound.pid"
  logfile: "{prefix}/unbound.log"
  use-syslog: no
  access-control: 127.0.0.0/8 allow
  access-control: ::1/128 allow
  module-config: "iterator"
  do-not-query-localhost: yes
  incoming-num-tcp: 256
  outgoing-range: 256
  num-queries-per-thread: 4096
  so-reuseport: no
  so-rcvbuf: 4m
  so-sndbuf: 4m
  ratelimit: 0
  ip-ratelimit: 0
  tcp-idle-timeout: 60000
  minimal-responses: yes
  local-zone: "{ZONE}" static
  local-data: "{ZONE} 3600 IN SOA ns.{ZONE} admin.{ZONE} 1 3600 600 86400 60"
  local-data: "{ZONE} 3600 IN NS ns.{ZONE}"
  local-data: "ns.{ZONE} 3600 IN A 127.0.0.1"
  local-data: "{A_NAME} 300 IN A {A_ADDR}"
  local-data: "{A_NAME} 300 IN AAAA {AAAA_ADDR}"
  local-data: "{CNAME_NAME} 300 IN CNAME {A_NAME}"
  local-data: "{SRV_NAME} 300 IN SRV 10 5 80 {A_NAME}"
  local-data: '{TXT_NAME} 300 IN TXT "{TXT_TEXT}"'
  local-data: "{MX_NAME} 300 IN MX 10 mail.{ZONE}"
  local-data: "mail.{ZONE} 300 IN A 10.0.0.25"
{big}
  local-data-ptr: "{A_ADDR} {A_NAME}"
remote-control:
  control-enable: no
"""
        conf_path = prefix / "unbound.conf"
        conf_path.write_text(conf)
        u.process = Process(["unbound", "-d", "-c", str(conf_path)], cpus, prefix / "unbound.out")
        try:
            u._wait_ready()
        except Exception as e:
            u.stop()
            raise RuntimeError(f"unbound did not start: {e}\n{u.process.tail()}") from e
        return u

    def _wait_ready(self, timeout: float = 10.0) -> None:
        query = (
            b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00"
            + b"".join(bytes([len(p)]) + p.encode() for p in A_NAME.strip(".").split("."))
            + b"\x00\x00\x01\x00\x01"
        )
        deadline = time.monotonic() + timeout
        assert self.process is not None
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(0.2)
            while True:
                if not self.process.alive():
                    raise RuntimeError("unbound exited")
                try:
                    s.sendto(query, (self.host, self.port))
                    if s.recv(4096)[:2] == b"\x12\x34":
                        break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    raise TimeoutError("no answer from unbound")
                time.sleep(0.05)
        wait_tcp(self.host, self.tls_port, proc=self.process.proc)

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()


@contextlib.contextmanager
def servers(
    base: Path, server_cpus: str | None = None, access_log: bool = False
) -> Iterator[tuple[Nginx, Unbound, Upstream]]:
    """nginx + unbound + upstream for the duration of the block (all stopped after)."""
    pki = Pki.make(base / "pki")
    up = Upstream(base / "upstream", server_cpus)
    started: list[Upstream | Nginx | Unbound] = [up]
    try:
        ng = Nginx.start(base / "nginx", pki, up.port, server_cpus, access_log)
        started.append(ng)
        ub = Unbound.start(base / "unbound", pki, server_cpus)
        started.append(ub)
        yield ng, ub, up
    finally:
        for s in reversed(started):
            s.stop()
