"""Every bad input ends in exit 2 with one line naming the flag, before any cluster access.

The kubeconfig points at a closed port, so a command that got past validation would fail
with exit 3 (cluster unreachable), never 2: exit 2 proves validation caught the input.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from kubectl_kdoctor.cli import main


@pytest.fixture(autouse=True)
def _unreachable_cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    kc = tmp_path / "kubeconfig"
    kc.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        "clusters: [{name: c, cluster: {server: 'https://127.0.0.1:1'}}]\n"
        "users: [{name: u, user: {token: t}}]\n"
        "contexts: [{name: c, context: {cluster: c, user: u}}]\n"
    )
    monkeypatch.setenv("KUBECONFIG", str(kc))
    (tmp_path / "cert.pem").write_text(
        "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    )
    (tmp_path / "key.pem").write_text(
        "-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----\n"
    )
    (tmp_path / "junk.txt").write_text("hello\n")
    monkeypatch.chdir(tmp_path)


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    out, err = capsys.readouterr()
    return int(exc.value.code or 0), out, err


URL = "http://127.0.0.1:9/"

CASES: list[tuple[list[str], str]] = [
    # load and verdict flags, on every probe command
    (["http", URL, "--qps", "0"], "--qps"),
    (["http", URL, "--qps", "-5"], "--qps"),
    (["http", URL, "--qps", "1.5"], "--qps"),
    (["http", URL, "--qps", "ten"], "--qps"),
    (["dns", "--qps", "0"], "--qps"),
    (["netreach", "--qps", "0"], "--qps"),
    (["http", URL, "--duration", "10"], "--duration"),
    (["http", URL, "--duration", "-1s"], "--duration"),
    (["http", URL, "--duration", "0s"], "--duration"),
    (["http", URL, "--duration", "1x"], "--duration"),
    (["netreach", "--duration", "abc"], "--duration"),
    (["dns", "--timeout", "5"], "--timeout"),
    (["http", URL, "--timeout", "0"], "--timeout"),
    (["http", URL, "--rounds", "0"], "--rounds"),
    (["netreach", "--rounds", "x"], "--rounds"),
    (["http", URL, "--interval", "30s"], "--interval"),
    (["http", URL, "--rounds", "2", "--interval", "1s", "--duration", "5s"], "--interval"),
    (["http", URL, "--expect-success-rate", "1.5"], "--expect-success-rate"),
    (["http", URL, "--expect-success-rate", "-0.1"], "--expect-success-rate"),
    (["dns", "--expect-success-rate", "high"], "--expect-success-rate"),
    (["http", URL, "--expect-mean-delay", "fast"], "--expect-mean-delay"),
    (["netreach", "--expect-p99", "10"], "--expect-p99"),
    # http
    (["http"], "URL"),
    (["http", "example.com"], "URL"),
    (["http", "ftp://example.com/"], "URL"),
    (["http", "http://"], "URL"),
    (["http", "http:///path"], "URL"),
    (["http", "http://exa mple.com/"], "URL"),
    (["http", "http://[::zz]/"], "URL"),
    (["http", "http://example.com:99999/"], "URL"),
    (["http", URL, "-X", "FETCH"], "--method"),
    (["http", URL, "-H", "NoColon"], "--header"),
    (["http", URL, "-H", ": value"], "--header"),
    (["http", URL, "-d", "x", "--data-file", "junk.txt"], "--data"),
    (["http", URL, "--data-file", "missing.bin"], "--data-file"),
    (["http", "https://h/", "--cacert", "missing.pem"], "--cacert"),
    (["http", "https://h/", "--cacert", "junk.txt"], "--cacert"),
    (["http", "https://h/", "--cert", "cert.pem"], "--cert"),
    (["http", "https://h/", "--key", "key.pem"], "--key"),
    (["http", "https://h/", "--cert", "key.pem", "--key", "key.pem"], "--cert"),
    (["http", "https://h/", "--insecure", "--cacert", "cert.pem"], "--insecure"),
    (["http", URL, "--http2"], "--http2"),
    (["http", URL, "--insecure"], "--insecure"),
    (["http", URL, "--expect-status", "99"], "--expect-status"),
    (["http", URL, "--expect-status", "6xx"], "--expect-status"),
    (["http", URL, "--expect-status", "ok"], "--expect-status"),
    # dns
    (["dns", "--qtype", "AXFR"], "--qtype"),
    (["dns", "--qtype", "X"], "--qtype"),
    (["dns", "--expect-rcode", "BOGUS"], "--expect-rcode"),
    (["dns", "--protocol", "quic"], "--protocol"),
    (["dns", "--server", "10.0.0.1:0"], "--server"),
    (["dns", "--server", "10.0.0.1:70000"], "--server"),
    (["dns", "--server", "[fd00::1"], "--server"),
    (["dns", "--server", "bad host"], "--server"),
    (["dns", "bad..name"], "DOMAIN"),
    (["dns", "bad-.example"], "DOMAIN"),
    (["dns", "a" * 64 + ".example"], "DOMAIN"),
    (["dns", "--local"], "DOMAIN"),
    # netreach
    (["netreach", "--targets", "pod,icmp"], "--targets"),
    (["netreach", "--targets", ","], "--targets"),
    (["netreach", "--ip-family", "ipv5"], "--ip-family"),
    (["netreach", "--ingress-class", "nginx"], "--ingress-class"),
    (["netreach", "--peers", "0"], "--peers"),
    (["netreach", "--multus-networks", "ns/net1"], "--multus-networks"),
    (["netreach", "--targets", "pod,multus", "--multus-networks", "Bad!"], "--multus-networks"),
    (["netreach", "--targets", "ingress", "--ingress-class", "Bad_Class"], "--ingress-class"),
    # placement and run control
    (["netreach", "--node", "Bad_Node"], "--node"),
    (["netreach", "--node-selector", "a=b=c"], "--node-selector"),
    (["netreach", "--node-selector", "in (a)"], "--node-selector"),
    (["netreach", "--node-selector", ""], "--node-selector"),
    (["netreach", "--tolerate", "key:NoPanic"], "--tolerate"),
    (["netreach", "--tolerate", "=v"], "--tolerate"),
    (["netreach", "--name", "Bad_Name"], "--name"),
    (["netreach", "--name", "x" * 41], "--name"),
    (["netreach", "--image", ""], "--image"),
    (["netreach", "--image", "a b"], "--image"),
    (["netreach", "--image-pull-policy", "Sometimes"], "--image-pull-policy"),
    (["netreach", "--start-timeout", "soon"], "--start-timeout"),
    (["netreach", "--dry-run=server"], "--dry-run"),
    (["netreach", "--dry-run=maybe"], "--dry-run"),
    (["netreach", "--dry-run=client", "--no-wait"], "--dry-run"),
    (["netreach", "-o", "xml"], "--output"),
    (["netreach", "--mode", "daemonset"], "--mode"),
    (["netreach", "-f", "missing.yaml"], "--filename"),
    (["netreach", "-f", "junk.txt"], "--filename"),
    (["netreach", "--local"], "--local"),
    # --local with cluster-only flags
    (["http", URL, "--local", "--node", "n1"], "--node"),
    (["http", URL, "--local", "--node-selector", "a=b"], "--node-selector"),
    (["http", URL, "--local", "--tolerate", "all"], "--tolerate"),
    (["http", URL, "--local", "--host-network"], "--host-network"),
    (["http", URL, "--local", "--image", "x"], "--image"),
    (["http", URL, "--local", "--keep"], "--keep"),
    (["http", URL, "--local", "--no-wait"], "--no-wait"),
    (["http", URL, "--local", "--dry-run=client"], "--dry-run"),
    (["dns", "x.example", "--local", "--mode", "job"], "--mode"),
    (["dns", "x.example", "--local", "--start-timeout", "5s"], "--start-timeout"),
    # access flags
    (["netreach", "--request-timeout", "soon"], "--request-timeout"),
    (["netreach", "--kubeconfig", "missing.conf"], "--kubeconfig"),
    (["netreach", "--as-group", "g"], "--as-group"),
    # other commands
    (["get", "pods"], "KIND"),
    (["get", "-o", "wide"], "--output"),
    (["report", "nr/"], "NAME"),
    (["report", "x", "-o", "pdf"], "--output"),
    (["version", "-o", "xml"], "--output"),
    (["frobnicate"], "frobnicate"),
    (["http", URL, "--no-such-flag"], "--no-such-flag"),
]


@pytest.mark.parametrize(("argv", "flag"), CASES, ids=[" ".join(c[0])[:60] for c in CASES])
def test_bad_input_exits_2_with_one_line(
    argv: list[str], flag: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(argv, capsys)
    assert code == 2, err
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("Error: ")
    assert flag in lines[0]


def test_task_file_of_another_kind_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    f = tmp_path / "t.yaml"
    f.write_text("apiVersion: kdoctor.io/v1beta1\nkind: Netdns\nmetadata: {name: x}\nspec: {}\n")
    code, _, err = run(["netreach", "-f", str(f)], capsys)
    assert code == 2
    assert "kubectl kdoctor dns -f" in err


def test_version_client_needs_no_cluster(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["version", "--client"], capsys)
    assert code == 0
    assert "kubectl-kdoctor 0." in out
    assert "agent image: ghcr.io/kubectl-kdoctor/agent:v" in out


def test_help_lists_commands_and_hides_agent(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["--help"], capsys)
    assert code == 0
    for cmd in ("netreach", "http", "dns", "get", "report", "delete", "cleanup", "version"):
        assert f"  {cmd} " in out
    assert "\n  agent " not in out.split("Commands:")[1]
