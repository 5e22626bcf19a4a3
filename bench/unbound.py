"""unbound on loopback from a temporary directory: UDP and TCP on one port, DNS over TLS on
another, serving the static zone ``kdoctor.test.``."""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass
from pathlib import Path

from bench.pki import Pki
from bench.procs import Process, free_port, ipv6_loopback, wait_tcp

TXT_BIG_RECORDS = 12  # 12 x 60-byte TXT strings: > 512 bytes, so truncated over UDP


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
