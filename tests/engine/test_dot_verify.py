"""DNS over TLS verifies the server certificate by default: a real unbound serving DoT on
loopback with a self-signed ``CN=evil.invalid`` certificate fails verification with a clear
reason, and passes with ``--cacert`` of that certificate plus the matching
``--tls-server-name``, or with ``-k``. Both through the engine and through ``dns --local``."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bench.unbound import Unbound
from kubectl_kdoctor.cli import main
from kubectl_kdoctor.engine.spec import DnsSpec
from kubectl_kdoctor.engine.stats import TLS
from tests.engine._util import run_one

N = 20  # queries per check: qps 40 for 0.5 s


@dataclass
class SelfSigned:
    """A self-signed server certificate (its own CA), as Unbound.start takes a PKI."""

    dir: Path

    @property
    def ca_file(self) -> Path:
        return self.dir / "evil.pem"

    @property
    def server_cert(self) -> Path:
        return self.dir / "evil.pem"

    @property
    def server_key(self) -> Path:
        return self.dir / "evil.key"


@pytest.fixture(scope="module")
def evil(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Unbound]:
    d = tmp_path_factory.mktemp("evil")
    cert = SelfSigned(d)
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(cert.server_key),
            "-out",
            str(cert.server_cert),
            "-days",
            "2",
            "-subj",
            "/CN=evil.invalid",
            "-addext",
            "subjectAltName=DNS:evil.invalid",
        ],
        check=True,
        capture_output=True,
    )
    server = Unbound.start(d / "unbound", cert)  # type: ignore[arg-type]
    try:
        yield server
    finally:
        server.stop()


def dot(server: Unbound, **kw: object) -> DnsSpec:
    return DnsSpec(server.host, server.a_name, port=server.tls_port, protocol="tls", **kw)  # type: ignore[arg-type]


def test_self_signed_server_fails_verification_with_the_reason(evil: Unbound) -> None:
    s = run_one(dot(evil), qps=40, duration=0.5)
    assert s.success == 0 and s.errors == {TLS: N}, s.error_samples
    assert "self-signed certificate" in s.error_samples[TLS], s.error_samples


def test_its_ca_and_matching_name_pass(evil: Unbound) -> None:
    s = run_one(dot(evil, cacert=evil.ca_file, tls_name="evil.invalid"), qps=40, duration=0.5)
    assert s.success == N, s.error_samples


def test_its_ca_without_the_name_fails_on_the_name(evil: Unbound) -> None:
    s = run_one(dot(evil, cacert=evil.ca_file), qps=40, duration=0.5)  # checked for 127.0.0.1
    assert s.errors == {TLS: N}
    assert "IP address mismatch" in s.error_samples[TLS], s.error_samples
    s = run_one(dot(evil, cacert=evil.ca_file, tls_name="good.example"), qps=40, duration=0.5)
    assert s.errors == {TLS: N}
    assert "Hostname mismatch" in s.error_samples[TLS], s.error_samples


def test_insecure_passes(evil: Unbound) -> None:
    s = run_one(dot(evil, insecure=True), qps=40, duration=0.5)
    assert s.success == N, s.error_samples


@pytest.mark.parametrize(
    ("extra", "code", "expect"),
    [
        ((), 1, "self-signed certificate"),
        (("--tls-server-name", "evil.invalid"), 1, "self-signed certificate"),
        (("--cacert", "{ca}", "--tls-server-name", "evil.invalid"), 0, "PASS"),
        (("--cacert", "{ca}", "--tls-server-name", "other.invalid"), 1, "Hostname mismatch"),
        (("-k",), 0, "PASS"),
        (("--insecure", "--tls-server-name", "whatever.invalid"), 0, "PASS"),
    ],
)
def test_dns_local_cli(
    evil: Unbound,
    capsys: pytest.CaptureFixture[str],
    extra: tuple[str, ...],
    code: int,
    expect: str,
) -> None:
    argv = [
        "dns",
        "--local",
        evil.a_name,
        "--server",
        f"{evil.host}:{evil.tls_port}",
        "--protocol",
        "tls",
        "--qps",
        "20",
        "--duration",
        "500ms",
        "-o",
        "wide",
        *(a.format(ca=evil.ca_file) for a in extra),
    ]
    with pytest.raises(SystemExit) as exc:
        main(argv)
    out, err = capsys.readouterr()
    assert exc.value.code == code, out + err
    assert expect in out, out
