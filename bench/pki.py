"""A throw-away PKI made with the openssl CLI: a CA, a server certificate for the loopback
names (127.0.0.1, ::1, localhost, kdoctor.test, dns.kdoctor.test) and a client certificate."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path


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
