"""nginx-light on loopback from a temporary prefix: plain HTTP/1.1 (also on [::1]), HTTPS,
HTTPS requiring a client certificate, HTTP/2, with the locations the tests and benchmarks use."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from bench.pki import Pki
from bench.procs import Process, free_port, ipv6_loopback, wait_tcp

INDEX_BODY = b"<html><body>kubectl-kdoctor test page</body></html>\n"
BIG_SIZE = 256 * 1024

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
