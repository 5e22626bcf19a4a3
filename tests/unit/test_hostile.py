"""Hostile input, table-driven: every case ends with the documented exit code and ONE line on
stderr naming the flag or field, no traceback, no hang, nothing sent to the API server.

The kubeconfig points at a logging fake API server (loopback, answers 403 to everything):
a case that got past validation would reach it. For exit-2 cases the log must stay empty,
which proves the input was refused before anything touched a cluster. Exit-3 cases are the
ones where the cluster configuration itself is at fault (a malformed kubeconfig).

Each case runs in-process through ``main`` (the one error boundary), bounded by
pytest-timeout; a few run the real entry point as a subprocess.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import click
import pytest
import yaml

from kubectl_kdoctor.cli import cli, main

URL = "http://127.0.0.1:9/"
ENTRY = Path(sys.executable).with_name("kubectl-kdoctor")


# --- the logging fake API server ----------------------------------------------------------


class _Recorder(BaseHTTPRequestHandler):
    log: list[str] = []

    def _answer(self) -> None:
        self.log.append(f"{self.command} {self.path}")
        body = json.dumps(
            {
                "kind": "Status",
                "apiVersion": "v1",
                "status": "Failure",
                "reason": "Forbidden",
                "code": 403,
                "message": "fake API server: forbidden",
            }
        ).encode()
        self.send_response(403)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _answer

    def log_message(self, *args: object) -> None:
        pass


class FakeApiServer(ThreadingHTTPServer):
    """The logging fake API server. A client that gave up (``--request-timeout 1ms``) resets its
    connection: not the server's error, and the traceback the standard server would print
    lands in the stderr a test captures from the in-process CLI."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


@pytest.fixture(scope="module")
def fake_api() -> Iterator[tuple[str, list[str]]]:
    server = FakeApiServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", _Recorder.log
    finally:
        server.shutdown()


# --- the files hostile cases name ---------------------------------------------------------

GOOD_HTTP = {
    "apiVersion": "kdoctor.io/v1beta1",
    "kind": "AppHttpHealthy",
    "metadata": {"name": "http-task"},
    "spec": {
        "schedule": {"schedule": "0 1", "roundNumber": 1, "roundTimeoutMinute": 1},
        "request": {"durationInSecond": 1, "qps": 5, "perRequestTimeoutInMS": 500},
        "target": {"host": "http://127.0.0.1:9/", "method": "GET", "header": ["X-A: 1"]},
        "expect": {"successRate": 1, "meanAccessDelayInMs": 1000},
    },
}
GOOD_NR = {
    "apiVersion": "kdoctor.io/v1beta1",
    "kind": "NetReach",
    "metadata": {"name": "nr-task"},
    "spec": {
        "schedule": {"schedule": "0 1", "roundNumber": 1, "roundTimeoutMinute": 1},
        "request": {"durationInSecond": 1, "qps": 5, "perRequestTimeoutInMS": 500},
        "target": {"endpoint": True, "clusterIP": True, "nodePort": False},
    },
}
GOOD_DNS = {
    "apiVersion": "kdoctor.io/v1beta1",
    "kind": "Netdns",
    "metadata": {"name": "dns-task"},
    "spec": {
        "request": {
            "durationInSecond": 1,
            "qps": 5,
            "perRequestTimeoutInMS": 500,
            "domain": "example.org",
            "protocol": "udp",
        },
        "target": {"targetUser": {"server": "127.0.0.1", "port": 53}},
    },
}


def _with(doc: dict, path: str, value: object) -> dict:  # type: ignore[type-arg]
    """A deep copy of ``doc`` with the dotted ``path`` set to ``value``."""
    out = json.loads(json.dumps(doc))
    node = out
    *parents, last = path.split(".")
    for p in parents:
        node = node.setdefault(p, {})
    node[last] = value
    return out


def _dump(doc: object) -> str:
    return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)


HTTP_YAML = _dump(GOOD_HTTP)

# name -> bytes of a hostile task file (each is used with the command of its kind)
TASK_FILES: dict[str, bytes] = {
    "t-nan.yaml": HTTP_YAML.replace("successRate: 1", "successRate: .nan").encode(),
    "t-inf.yaml": HTTP_YAML.replace("qps: 5", "qps: .inf").encode(),
    "t-neginf.yaml": HTTP_YAML.replace("durationInSecond: 1", "durationInSecond: -.inf").encode(),
    "t-abc.yaml": HTTP_YAML.replace("qps: 5", "qps: abc").encode(),
    "t-float.yaml": HTTP_YAML.replace("qps: 5", "qps: 2.5").encode(),
    "t-bool.yaml": HTTP_YAML.replace("qps: 5", "qps: true").encode(),
    "t-huge.yaml": HTTP_YAML.replace("qps: 5", "qps: " + "9" * 400).encode(),
    "t-int64.yaml": HTTP_YAML.replace(
        "roundNumber: 1", "roundNumber: 9223372036854775808"
    ).encode(),
    "t-rounds.yaml": HTTP_YAML.replace("roundNumber: 1", "roundNumber: 100000000").encode(),
    "t-qpsmax.yaml": HTTP_YAML.replace("qps: 5", "qps: 100000000").encode(),
    "t-latin1.yaml": HTTP_YAML.replace("X-A: 1", "X-A: caf\xe9").encode("latin-1"),
    "t-utf16.yaml": HTTP_YAML.encode("utf-16"),
    "t-utf16le.yaml": HTTP_YAML.encode("utf-16-le"),
    "t-utf32.yaml": HTTP_YAML.encode("utf-32"),
    "t-alias.yaml": HTTP_YAML.replace("header:\n", "header: &h\n").encode() + b"x-extra: *h\n",
    "t-bomb.yaml": (
        "apiVersion: kdoctor.io/v1beta1\nkind: AppHttpHealthy\nmetadata: {name: b}\n"
        "a0: &a0 ['lol','lol','lol','lol','lol','lol','lol','lol','lol']\n"
        + "".join(f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]\n" for i in range(1, 9))
        + "spec:\n  target:\n    host: http://x/\n    method: GET\n    header: *a8\n"
    ).encode(),
    "t-merge.yaml": HTTP_YAML.replace("  request:\n", "  request:\n    <<: {qps: 3}\n").encode(),
    "t-dup.yaml": HTTP_YAML.replace(
        "    method: GET\n", "    method: GET\n    method: POST\n"
    ).encode(),
    "t-deep.yaml": b"[" * 100_000,
    "t-deepmap.yaml": b"a: " + b"{b: " * 5000 + b"1" + b"}" * 5000,
    "t-unknown.yaml": HTTP_YAML.replace(
        "    method: GET\n", "    method: GET\n    hots: x\n"
    ).encode(),
    "t-unknown-top.yaml": (HTTP_YAML + "extra: 1\n").encode(),
    "t-unknown-meta.yaml": HTTP_YAML.replace(
        "  name: http-task\n", "  name: http-task\n  nmae: x\n"
    ).encode(),
    "t-spec-list.yaml": _dump(_with(GOOD_HTTP, "spec", [1, 2])).encode(),
    "t-spec-str.yaml": _dump(_with(GOOD_HTTP, "spec", "x")).encode(),
    "t-target-list.yaml": _dump(_with(GOOD_HTTP, "spec.target", ["host"])).encode(),
    "t-request-str.yaml": _dump(_with(GOOD_HTTP, "spec.request", "fast")).encode(),
    "t-headers-many.yaml": _dump(
        _with(GOOD_HTTP, "spec.target.header", [f"X-{i}: 1" for i in range(101)])
    ).encode(),
    "t-host-long.yaml": _dump(
        _with(GOOD_HTTP, "spec.target.host", "http://h/" + "a" * 9000)
    ).encode(),
    "t-header-map.yaml": _dump(_with(GOOD_HTTP, "spec.target.header", {"a": "b"})).encode(),
    "t-header-int.yaml": _dump(_with(GOOD_HTTP, "spec.target.header", [1])).encode(),
    "t-header-crlf.yaml": _dump(_with(GOOD_HTTP, "spec.target.header", ["X: a\r\nY: b"])).encode(),
    "t-header-nul.yaml": _dump(_with(GOOD_HTTP, "spec.target.header", ["X: a\x00b"])).encode(),
    "t-header-emoji.yaml": _dump(
        _with(GOOD_HTTP, "spec.target.header", ["X: \U0001f600"])
    ).encode(),
    "t-host-ftp.yaml": _dump(_with(GOOD_HTTP, "spec.target.host", "ftp://x/")).encode(),
    "t-host-int.yaml": _dump(_with(GOOD_HTTP, "spec.target.host", 80)).encode(),
    "t-host-space.yaml": _dump(_with(GOOD_HTTP, "spec.target.host", "http://a b/")).encode(),
    "t-host-missing.yaml": _dump(_with(GOOD_HTTP, "spec.target", {"method": "GET"})).encode(),
    "t-method.yaml": _dump(_with(GOOD_HTTP, "spec.target.method", "FETCH")).encode(),
    "t-status.yaml": _dump(_with(GOOD_HTTP, "spec.expect.statusCode", 700)).encode(),
    "t-rate.yaml": _dump(_with(GOOD_HTTP, "spec.expect.successRate", 1.5)).encode(),
    "t-rate-str.yaml": _dump(_with(GOOD_HTTP, "spec.expect.successRate", "all")).encode(),
    "t-delay0.yaml": _dump(_with(GOOD_HTTP, "spec.expect.meanAccessDelayInMs", 0)).encode(),
    "t-sched.yaml": _dump(_with(GOOD_HTTP, "spec.schedule.schedule", "every minute")).encode(),
    "t-sched-int.yaml": _dump(_with(GOOD_HTTP, "spec.schedule.schedule", 5)).encode(),
    "t-rounds0.yaml": _dump(_with(GOOD_HTTP, "spec.schedule.roundNumber", 0)).encode(),
    "t-date.yaml": HTTP_YAML.replace("schedule: 0 1", "schedule: 2024-01-01").encode(),
    "t-binary.yaml": HTTP_YAML.replace("  name: http-task", "  name: !!binary aGVsbG8=").encode(),
    "t-pyobj.yaml": HTTP_YAML.replace("qps: 5", "qps: !!python/object:os.system ls").encode(),
    "t-tab.yaml": HTTP_YAML.replace("    qps: 5", "\tqps: 5").encode(),
    "t-twodocs.yaml": (HTTP_YAML + "---\n" + HTTP_YAML).encode(),
    "t-empty.yaml": b"",
    "t-comment.yaml": b"# nothing\n",
    "t-scalar.yaml": b"hello\n",
    "t-nul.yaml": HTTP_YAML.encode() + b"\x00",
    "t-kind-int.yaml": HTTP_YAML.replace("kind: AppHttpHealthy", "kind: 7").encode(),
    "t-api.yaml": HTTP_YAML.replace("kdoctor.io/v1beta1", "kdoctor.io/v1").encode(),
    "t-name-bad.yaml": _dump(_with(GOOD_HTTP, "metadata.name", "Bad_Name")).encode(),
    "t-name-int.yaml": _dump(_with(GOOD_HTTP, "metadata.name", 42)).encode(),
    "t-labels.yaml": _dump(_with(GOOD_HTTP, "metadata.labels", {"a": 1})).encode(),
    "t-big.yaml": HTTP_YAML.encode() + b"#" * (1024 * 1024),
    "t-agentkind.yaml": _dump(_with(GOOD_HTTP, "spec.agentSpec", {"kind": "Pod"})).encode(),
    "t-affinity.yaml": _dump(
        _with(GOOD_HTTP, "spec.agentSpec", {"affinity": {"nodeAfinity": {}}})
    ).encode(),
    "t-affinity-node.yaml": _dump(
        _with(
            GOOD_HTTP,
            "spec.agentSpec",
            {
                "affinity": {
                    "nodeAffinity": {
                        "requiredDuringSchedulingIgnoredDuringExecution": {
                            "nodeSelectorTerms": [
                                {
                                    "matchExpressions": [
                                        {
                                            "key": "kubernetes.io/hostname",
                                            "operator": "In",
                                            "values": ["Bad_Node"],
                                        }
                                    ]
                                }
                            ]
                        }
                    }
                }
            },
        )
    ).encode(),
    "t-resources.yaml": _dump(
        _with(GOOD_HTTP, "spec.agentSpec", {"resources": {"limits": {"cpu": "lots"}}})
    ).encode(),
    "t-annotation.yaml": _dump(
        _with(GOOD_HTTP, "spec.agentSpec", {"annotation": {"a": ["b"]}})
    ).encode(),
    "t-hostnet.yaml": _dump(_with(GOOD_HTTP, "spec.agentSpec", {"hostNetwork": "yes"})).encode(),
    "nr-target-str.yaml": _dump(_with(GOOD_NR, "spec.target.endpoint", "true")).encode(),
    "nr-none.yaml": _dump(
        _with(GOOD_NR, "spec.target", {"endpoint": False, "clusterIP": False, "nodePort": False})
    ).encode(),
    "nr-unknown.yaml": _dump(_with(GOOD_NR, "spec.target.icmp", True)).encode(),
    "dns-proto.yaml": _dump(_with(GOOD_DNS, "spec.request.protocol", "quic")).encode(),
    "dns-port.yaml": _dump(_with(GOOD_DNS, "spec.target.targetUser.port", 70000)).encode(),
    "dns-port-str.yaml": _dump(_with(GOOD_DNS, "spec.target.targetUser.port", "53")).encode(),
    "dns-server.yaml": _dump(
        _with(GOOD_DNS, "spec.target.targetUser.server", "300.1.1.1")
    ).encode(),
    "dns-server-int.yaml": _dump(_with(GOOD_DNS, "spec.target.targetUser.server", 12)).encode(),
    "dns-domain.yaml": _dump(_with(GOOD_DNS, "spec.request.domain", "bad..name")).encode(),
    "dns-both.yaml": _dump(_with(GOOD_DNS, "spec.target.targetDns", {"testIPv4": True})).encode(),
    "dns-selector.yaml": _dump(
        _with(GOOD_DNS, "spec.sourceAgentNodeSelector", {"matchLabels": {"a": 1}})
    ).encode(),
}

# The shape of the examples in kdoctor's own docs: `kubectl get -o yaml` output with status,
# agentSpec fields that mean nothing here, a header without a space after the colon.
UPSTREAM_SHAPED = """\
apiVersion: kdoctor.io/v1beta1
kind: AppHttpHealthy
metadata:
  name: web-check
spec:
  agentSpec:
    hostNetwork: false
    kind: DaemonSet
    terminationGracePeriodMinutes: 60
  expect:
    meanAccessDelayInMs: 1500
    successRate: 1
    statusCode: 200
  request:
    durationInSecond: 1
    perRequestTimeoutInMS: 200
    qps: 5
  schedule:
    roundNumber: 1
    roundTimeoutMinute: 1
    schedule: 0 1
  target:
    enableLatencyMetric: false
    header:
    - Accept:text/html
    host: http://127.0.0.1:9
    http2: false
    method: GET
status:
  doneRound: 1
  expectedRound: 1
  finish: true
  history:
    - deadLineTimeStamp: "2024-01-01T00:00:41Z"
      duration: 17.2s
      roundNumber: 1
      status: succeed
      succeedAgentNodeList: [node-a]
  lastRoundStatus: succeed
"""

KUBECONFIGS: dict[str, bytes] = {
    "kc-invalid.yaml": b"clusters: [\n",
    "kc-list.yaml": b"- a\n- b\n",
    "kc-scalar.yaml": b"just text\n",
    "kc-latin1.yaml": "current-context: caf\xe9\n".encode("latin-1"),
    "kc-utf16.yaml": "current-context: c\n".encode("utf-16"),
    "kc-clusters-map.yaml": b"clusters: {a: b}\ncontexts: []\ncurrent-context: c\n",
    "kc-context-str.yaml": b"contexts: [{name: c, context: 7}]\ncurrent-context: c\n",
    "kc-noname.yaml": b"contexts: [{context: {cluster: c}}]\ncurrent-context: c\n",
    "kc-nocurrent.yaml": b"apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\nusers: []\n",
    "kc-missing-cluster.yaml": (
        b"apiVersion: v1\nkind: Config\ncurrent-context: c\nclusters: []\nusers: []\n"
        b"contexts: [{name: c, context: {cluster: nope, user: nope}}]\n"
    ),
    "kc-bad-ca.yaml": (
        b"apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        b"clusters: [{name: c, cluster: {server: 'https://127.0.0.1:1', "
        b"certificate-authority-data: '!!!not base64!!!'}}]\n"
        b"users: [{name: u, user: {token: t}}]\n"
        b"contexts: [{name: c, context: {cluster: c, user: u}}]\n"
    ),
    "kc-current-list.yaml": b"current-context: [a]\n",
}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("hostile")
    (d / "cert.pem").write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    (d / "key.pem").write_text("-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----\n")
    (d / "junk.txt").write_text("hello\n")
    (d / "empty.txt").write_bytes(b"")
    (d / "adir").mkdir()
    os.mkfifo(d / "fifo")
    (d / "big.bin").write_bytes(b"x" * (800 * 1024))
    (d / "body-700k.bin").write_bytes(b"x" * (700 * 1024))
    pem = "-----BEGIN CERTIFICATE-----\n" + "A" * 64 + "\n"
    (d / "ca-300k.pem").write_text(pem * (300 * 1024 // 65) + "-----END CERTIFICATE-----\n")
    (d / "link-loop").symlink_to(d / "link-loop")
    for name, data in {**TASK_FILES, **KUBECONFIGS}.items():
        (d / name).write_bytes(data)
    (d / "ok-http.yaml").write_text(HTTP_YAML)
    (d / "ok-upstream.yaml").write_text(UPSTREAM_SHAPED)
    return d


@pytest.fixture(autouse=True)
def _env(workdir: Path, fake_api: tuple[str, list[str]], monkeypatch: pytest.MonkeyPatch) -> None:
    server, log = fake_api
    kc = workdir / "kubeconfig"
    kc.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        f"clusters: [{{name: c, cluster: {{server: '{server}'}}}}]\n"
        "users: [{name: u, user: {token: t}}]\n"
        "contexts: [{name: c, context: {cluster: c, user: u, namespace: ns1}}]\n"
    )
    monkeypatch.setenv("KUBECONFIG", str(kc))
    for var in ("KUBECTL_KDOCTOR_TTL_SECONDS", "KUBECTL_KDOCTOR_IMAGE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(workdir)
    log.clear()


# --- the cases -----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Case:
    argv: tuple[str, ...]
    code: int
    needle: str  # what the one line must contain: the flag, field or variable
    env: tuple[tuple[str, str], ...] = ()


def c(*argv: str, code: int = 2, needle: str, env: dict[str, str] | None = None) -> Case:
    return Case(tuple(argv), code, needle, tuple((env or {}).items()))


NUL_FREE_CTRL = "a\x1bb"

CASES: list[Case] = [
    # durations: every duration flag, odd spellings, overflow
    c("http", URL, "--duration", "9" * 400 + "s", needle="--duration"),
    c("http", URL, "--duration", "9" * 400, needle="--duration"),
    c("http", URL, "--duration", "1" + "0" * 20 + "h", needle="--duration"),
    c("http", URL, "--duration", "1ms", needle="sends no request"),
    c("http", URL, "--duration", "50ms", "--qps", "10", needle="--duration"),
    c("dns", "--duration", "1us", needle="--duration"),
    c("netreach", "--duration", "0.001s", needle="--duration"),
    c("http", URL, "--duration", "25h", needle="--duration"),
    c("http", URL, "--duration", "NaNs", needle="--duration"),
    c("http", URL, "--duration", "infs", needle="--duration"),
    c("http", URL, "--duration", "1.5.5s", needle="--duration"),
    c("http", URL, "--duration", "\uff11s", needle="--duration"),
    c("http", URL, "--duration", "1s\n", needle="--duration"),
    c("http", URL, "--duration", "1e3s", needle="--duration"),
    c("http", URL, "--duration", "-0s", needle="--duration"),
    c("http", URL, "--duration", "1d", needle="--duration"),
    c("http", URL, "--timeout", "2h", needle="--timeout"),
    c("http", URL, "--timeout", "9" * 30 + "h", needle="--timeout"),
    c("http", URL, "--timeout", "0s", needle="--timeout"),
    c("http", URL, "--rounds", "2", "--interval", "25h", needle="--interval"),
    c("http", URL, "--rounds", "2", "--interval", "soon", needle="--interval"),
    c("netreach", "--start-timeout", "2h", needle="--start-timeout"),
    c("netreach", "--start-timeout", "0s", needle="--start-timeout"),
    c("netreach", "--request-timeout", "2h", needle="--request-timeout"),
    c("netreach", "--request-timeout", "-1s", needle="--request-timeout"),
    c("get", "--request-timeout", "x", needle="--request-timeout"),
    c("http", URL, "--expect-p99", "999999999999h", needle="--expect-p99"),
    c("http", URL, "--expect-p99", "0s", needle="--expect-p99"),
    c("http", URL, "--expect-mean-delay", "-5ms", needle="--expect-mean-delay"),
    # integers and rates
    c("http", URL, "--qps", "9" * 400, needle="--qps"),
    c("http", URL, "--qps", "9" * 5000, needle="--qps"),
    c("http", URL, "--qps", "1_000", needle="--qps"),
    c("http", URL, "--qps", "\u0661\u0660", needle="--qps"),
    c("http", URL, "--qps", "0x10", needle="--qps"),
    c("http", URL, "--qps", "1e3", needle="--qps"),
    c("http", URL, "--qps", " 5", needle="--qps"),
    c("http", URL, "--qps", "+5", needle="--qps"),
    c("http", URL, "--qps", "2000000", needle="--qps"),
    c("http", URL, "--local", "--qps", "100000000000", needle="--qps"),
    c("http", URL, "--local", "--qps", "50000", needle="--qps"),
    c("dns", "x.example", "--local", "--server", "127.0.0.1", "--qps", "30000", needle="--qps"),
    c("netreach", "--rounds", "10001", needle="--rounds"),
    c("netreach", "--rounds", "-1", needle="--rounds"),
    c("netreach", "--peers", "9" * 50, needle="--peers"),
    c("netreach", "--peers", "1.0", needle="--peers"),
    c("http", URL, "--expect-success-rate", "nan", needle="--expect-success-rate"),
    c("http", URL, "--expect-success-rate", "inf", needle="--expect-success-rate"),
    c("http", URL, "--expect-success-rate", "-0", needle="--expect-success-rate"),
    c("http", URL, "--expect-success-rate", "1e400", needle="--expect-success-rate"),
    c("http", URL, "--expect-success-rate", "0_5", needle="--expect-success-rate"),
    c("http", URL, "--expect-success-rate", "99%", needle="--expect-success-rate"),
    # URLs
    c("http", "http://exa mple.com/", needle="URL"),
    c("http", "http://example.com/a b", needle="URL"),
    c("http", "http://example.com/\x00", needle="URL"),
    c("http", "http://example.com/\r\nX-Evil: 1", needle="URL"),
    c("http", "http://example.com/\t", needle="URL"),
    c("http", "http://example.com/café", needle="URL"),
    c("http", "http://bücher.example/", needle="URL"),
    c("http", "http://example.com\\@evil.example/", needle="URL"),
    c("http", "ftp://example.com/", needle="URL"),
    c("http", "file:///etc/passwd", needle="URL"),
    c("http", "gopher://example.com/", needle="URL"),
    c("http", "javascript:alert(1)", needle="URL"),
    c("http", "//example.com/", needle="URL"),
    c("http", "http:example.com", needle="URL"),
    c("http", "http://300.1.1.1/", needle="URL"),
    c("http", "http://1.2.3/", needle="URL"),
    c("http", "http://[::1/", needle="URL"),
    c("http", "http://[fe80::zz]/", needle="URL"),
    c("http", "http://example.com:0/", needle="URL"),
    c("http", "http://example.com:65536/", needle="URL"),
    c("http", "http://example.com:-1/", needle="URL"),
    c("http", "http://example.com:port/", needle="URL"),
    c("http", "http://-bad-.example/", needle="URL"),
    c("http", "http://" + "a" * 64 + ".example/", needle="URL"),
    c("http", "http://user:pass@/", needle="URL"),
    c("http", "http://example.com/" + "a" * 9000, needle="URL"),
    c("http", URL, "-H", "X-A: " + "v" * 9000, needle="--header"),
    c("http", URL, *[a for i in range(101) for a in ("-H", f"X-{i}: 1")], needle="--header"),
    c("http", "https://h/", "--http2", "--cacert", "junk.txt", needle="--cacert"),
    # headers
    c("http", URL, "-H", "X-A: a\r\nX-Evil: 1", needle="--header"),
    c("http", URL, "-H", "X-A: a\nb", needle="--header"),
    c("http", URL, "-H", "X-A: a\rb", needle="--header"),
    c("http", URL, "-H", "X-A: a\x00b", needle="--header"),
    c("http", URL, "-H", "X-A: " + NUL_FREE_CTRL, needle="--header"),
    c("http", URL, "-H", "X-A: a\x7fb", needle="--header"),
    c("http", URL, "-H", "X-A: \u20ac", needle="--header"),
    c("http", URL, "-H", "X-A: \U0001f600", needle="--header"),
    c("http", URL, "-H", "X-Ä: 1", needle="--header"),
    c("http", URL, "-H", "X A: 1", needle="--header"),
    c("http", URL, "-H", "X-A\r\nEvil: 1", needle="--header"),
    c("http", URL, "-H", "(X): 1", needle="--header"),
    c("http", URL, "-H", "X-A 1", needle="--header"),
    c("http", URL, "-H", "Ok: 1", "-H", "Bad\n: 2", needle="--header"),
    # dns server, domain and friends
    c("dns", "--server", "::1:53", needle="--server"),
    c("dns", "--server", "fd00::1:853", needle="--server"),
    c("dns", "--server", "300.1.1.1", needle="--server"),
    c("dns", "--server", "1.2.3.4.5", needle="--server"),
    c("dns", "--server", "10.0.0.1:", needle="--server"),
    c("dns", "--server", ":53", needle="--server"),
    c("dns", "--server", "[::1]", "--qps", "0", needle="--qps"),
    c("dns", "--server", "[::1]x", needle="--server"),
    c("dns", "--server", "[::1]:", needle="--server"),
    c("dns", "--server", "[10.0.0.1]:53", needle="--server"),
    c("dns", "--server", "[::1]:99999", needle="--server"),
    c("dns", "--server", "10.0.0.1:53:53", needle="--server"),
    c("dns", "--server", "10.0.0.1:0053x", needle="--server"),
    c("dns", "--server", "dns\n.example", needle="--server"),
    c("dns", "--server", "host_name!", needle="--server"),
    c("dns", "--server", "10.0.0.1:" + "5" * 40, needle="--server"),
    c("dns", "bad name.example", needle="DOMAIN"),
    c("dns", "a\x00b.example", needle="DOMAIN"),
    c("dns", "..", needle="DOMAIN"),
    c("dns", "ex\u00e4mple.org", needle="DOMAIN"),
    c("dns", "a" * 300, needle="DOMAIN"),
    c("dns", "--qtype", "A\n", needle="--qtype"),
    c("dns", "--qtype", "ANY", needle="--qtype"),
    c("dns", "--expect-rcode", "NOERROR\x00", needle="--expect-rcode"),
    c("dns", "--protocol", "doh", needle="--protocol"),
    # netreach
    c("netreach", "--targets", "pod,,clusterip,icmp", needle="--targets"),
    c("netreach", "--targets", " , ", needle="--targets"),
    c("netreach", "--targets", "pod\n", "--ip-family", "ipv7", needle="--ip-family"),
    c("netreach", "--ip-family", "IPv4 ", needle="--ip-family"),
    c("netreach", "--peers", "-3", needle="--peers"),
    c("netreach", "--targets", "ingress", "--ingress-class", "a/b", needle="--ingress-class"),
    c(
        "netreach",
        "--targets",
        "multus",
        "--multus-networks",
        "ns/net@" + "x" * 20,
        needle="--multus-networks",
    ),
    # placement and run control
    c("netreach", "--node", "node-1\n", needle="--node"),
    c("netreach", "--node", "Node-1", needle="--node"),
    c("netreach", "--node", "a" * 254, needle="--node"),
    c("netreach", "--node-selector", "a=b,", needle="--node-selector"),
    c("netreach", "--node-selector", "a in (b", needle="--node-selector"),
    c("netreach", "--node-selector", "!a=b", needle="--node-selector"),
    c("netreach", "--node-selector", "a=" + "b" * 64, needle="--node-selector"),
    c("netreach", "--tolerate", "key=value:NoPanic", needle="--tolerate"),
    c("netreach", "--tolerate", "ke y", needle="--tolerate"),
    c("netreach", "--name", "run\n", needle="--name"),
    c("netreach", "--name", "-run", needle="--name"),
    c("netreach", "--name", "run.with.dots", needle="--name"),
    c("netreach", "--name", "RUN", needle="--name"),
    c("netreach", "--image", "img\nname", needle="--image"),
    c("netreach", "--image", "i" * 5000, needle="--image"),
    c("netreach", "--image-pull-policy", "always", needle="--image-pull-policy"),
    c("netreach", "--mode", "AUTO", needle="--mode"),
    c("netreach", "-o", "JSON", needle="--output"),
    c("netreach", "--dry-run=Client", needle="--dry-run"),
    c("netreach", "--dry-run=client", "--keep", needle="--dry-run"),
    c("http", URL, "--local", "--name", "x", needle="--name"),
    c("http", URL, "-d", "x", "--data-file", "big.bin", needle="--data"),
    c("http", URL, "-X", "GET\r\nX: 1", needle="--method"),
    c("http", URL, "-X", "CONNECT", needle="--method"),
    c("http", URL, "--expect-status", "2xx,", needle="--expect-status"),
    c("http", URL, "--expect-status", "200\n", needle="--expect-status"),
    # access flags
    c("netreach", "-n", "Team_A", needle="--namespace"),
    c("netreach", "-n", "team-a\n", needle="--namespace"),
    c("netreach", "-n", "a" * 64, needle="--namespace"),
    c("netreach", "-n", "team.a", needle="--namespace"),
    c("get", "-n", "../etc", needle="--namespace"),
    c("-n", "BAD", "get", needle="--namespace"),
    c("cleanup", "-n", "x_y", needle="--namespace"),
    c("version", "-n", "x y", needle="--namespace"),
    c("netreach", "--context", "c\nd", needle="--context"),
    c("netreach", "--cluster", "c\x00", needle="--cluster"),
    c("netreach", "--user", "u\x1b[31m", needle="--user"),
    c("netreach", "--as", "admin\r\nX-Evil: 1", needle="--as"),
    c("netreach", "--as", "j\u00fcrgen\u20ac", needle="--as"),
    c("netreach", "--as", "a", "--as-group", "g\n", needle="--as-group"),
    c("netreach", "--as-group", "g", needle="--as-group"),
    c("get", "--kubeconfig", "adir", needle="--kubeconfig"),
    c("get", "--kubeconfig", "fifo", needle="--kubeconfig"),
    c("get", "--kubeconfig", "/dev/zero", needle="--kubeconfig"),
    c("get", "--kubeconfig", "missing.conf", needle="--kubeconfig"),
    c("get", "--kubeconfig", "link-loop", needle="--kubeconfig"),
    c("get", "--kubeconfig", "adir/nope/x", needle="--kubeconfig"),
    c("get", "--kubeconfig", "junk.txt/x", needle="--kubeconfig"),
    # files given to flags
    c("http", URL, "--data-file", "adir", needle="--data-file"),
    c("http", URL, "--data-file", "fifo", needle="--data-file"),
    c("http", URL, "--data-file", "/dev/zero", needle="--data-file"),
    c("http", URL, "--data-file", "big.bin", needle="--data-file"),
    c(
        "http",
        "https://h/",
        "--data-file",
        "body-700k.bin",
        "--cacert",
        "ca-300k.pem",
        needle="--data-file",
    ),
    c("http", "https://h/", "--cacert", "adir", needle="--cacert"),
    c("http", "https://h/", "--cacert", "fifo", needle="--cacert"),
    c("http", "https://h/", "--cacert", "/dev/zero", needle="--cacert"),
    c("http", "https://h/", "--cacert", "empty.txt", needle="--cacert"),
    c("http", "https://h/", "--cert", "fifo", "--key", "key.pem", needle="--cert"),
    c("http", "https://h/", "--cert", "cert.pem", "--key", "/dev/zero", needle="--key"),
    c("netreach", "-f", "adir", needle="--filename"),
    c("netreach", "-f", "fifo", needle="--filename"),
    c("netreach", "-f", "/dev/zero", needle="--filename"),
    c("netreach", "-f", "/dev/null", needle="--filename"),
    c("netreach", "-f", "-", needle="--filename"),
    c("netreach", "-f", "link-loop", needle="--filename"),
    # environment variables the plugin reads
    c("netreach", needle="KUBECTL_KDOCTOR_TTL_SECONDS", env={"KUBECTL_KDOCTOR_TTL_SECONDS": "abc"}),
    c("netreach", needle="KUBECTL_KDOCTOR_TTL_SECONDS", env={"KUBECTL_KDOCTOR_TTL_SECONDS": "-1"}),
    c("netreach", needle="KUBECTL_KDOCTOR_TTL_SECONDS", env={"KUBECTL_KDOCTOR_TTL_SECONDS": "1e3"}),
    c(
        "http",
        URL,
        needle="KUBECTL_KDOCTOR_TTL_SECONDS",
        env={"KUBECTL_KDOCTOR_TTL_SECONDS": "9" * 400},
    ),
    c("dns", needle="KUBECTL_KDOCTOR_TTL_SECONDS", env={"KUBECTL_KDOCTOR_TTL_SECONDS": "\u0663"}),
    c("netreach", needle="KUBECTL_KDOCTOR_IMAGE", env={"KUBECTL_KDOCTOR_IMAGE": "a b"}),
    c("netreach", needle="KUBECTL_KDOCTOR_IMAGE", env={"KUBECTL_KDOCTOR_IMAGE": "img\n"}),
    c("get", needle="KUBECONFIG", env={"KUBECONFIG": "adir"}),
    c("get", needle="KUBECONFIG", env={"KUBECONFIG": "fifo"}),
    c("get", needle="KUBECONFIG", env={"KUBECONFIG": "missing:/dev/zero"}),
    # a malformed kubeconfig: the cluster configuration is at fault, exit 3
    *[
        c("get", code=3, needle=name, env={"KUBECONFIG": name})
        for name in KUBECONFIGS
        if name not in ("kc-nocurrent.yaml", "kc-missing-cluster.yaml", "kc-bad-ca.yaml")
    ],
    c("get", code=3, needle="context", env={"KUBECONFIG": "kc-nocurrent.yaml"}),
    c("get", code=3, needle="kubeconfig", env={"KUBECONFIG": "kc-missing-cluster.yaml"}),
    c("get", code=3, needle="kubeconfig", env={"KUBECONFIG": "kc-bad-ca.yaml"}),
    c("delete", "x", code=3, needle="kc-list.yaml", env={"KUBECONFIG": "kc-list.yaml"}),
    c("netreach", code=3, needle="kc-invalid.yaml", env={"KUBECONFIG": "kc-invalid.yaml"}),
    c("get", "--kubeconfig", "kc-latin1.yaml", code=3, needle="UTF-8"),
    c("get", "--context", "nope", needle="--context"),
    c("get", "--cluster", "nope", needle="--cluster"),
    c("get", "--user", "nope", needle="--user"),
    # task files (-f), each with the command of its kind
    *[c("http", "-f", name, needle=name) for name in TASK_FILES if name.startswith("t-")],
    *[c("netreach", "-f", name, needle=name) for name in TASK_FILES if name.startswith("nr-")],
    *[c("dns", "-f", name, needle=name) for name in TASK_FILES if name.startswith("dns-")],
    c("netreach", "-f", "ok-http.yaml", needle="kubectl kdoctor http -f"),
    c("http", "-f", "ok-http.yaml", "--local", "--node", "n1", needle="--node"),
    c("http", "-f", "ok-http.yaml", "--local", "--qps", "0", needle="--qps"),
    # the other commands
    c("report", "Bad_Name", needle="NAME"),
    c("report", "name\n", needle="NAME"),
    c("report", "nr/Bad", needle="NAME"),
    c("report", "pods/x", needle="NAME"),
    c("report", "a" * 254, needle="NAME"),
    c("delete", "../x", needle="NAME"),
    c("delete", "x y", needle="NAME"),
    c("delete", "netreach/", needle="NAME"),
    c("delete", "-x", needle="-x"),
    c("delete", "x", "y", needle="y"),
    c("get", "pods", needle="KIND"),
    c("get", "run\n", needle="KIND"),
    c("get", "-o", "wide", needle="--output"),
    c("report", "x", "-o", "pdf", needle="--output"),
    c("version", "-o", "xml", needle="--output"),
    c("cleanup", "extra", needle="extra"),
    c("frobnicate", needle="frobnicate"),
    c("http", URL, "--qps", needle="--qps"),
    c("http", URL, "--bogus", needle="--bogus"),
    c("netreach", "-v=6", needle="-="),
]


def _empty_value_cases() -> list[Case]:
    """Every option of every command (and of the group), given an empty value."""
    out: list[Case] = []
    needs = {"report": ("x",), "delete": ("x",), "http": (URL,)}
    for name, cmd in sorted(cli.commands.items()):
        for p in cmd.params:
            if isinstance(p, click.Option) and not p.is_flag and not p.count:
                flag = max(p.opts, key=len)
                out.append(c(name, *needs.get(name, ()), flag, "", needle=flag))
            elif isinstance(p, click.Argument):
                out.append(c(name, "", needle=p.human_readable_name))
    for p in cli.params:
        if isinstance(p, click.Option) and not p.is_flag and not p.count:
            flag = max(p.opts, key=len)
            out.append(c(flag, "", "get", needle=flag))
    return out


EMPTY_CASES = _empty_value_cases()


def run_main(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    out, err = capsys.readouterr()
    return int(exc.value.code or 0), out, err


def _check(
    case: Case, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, log: list[str]
) -> None:
    for k, val in case.env:
        monkeypatch.setenv(k, val)
    code, out, err = run_main(list(case.argv), capsys)
    lines = err.strip().splitlines()
    assert "Traceback" not in err, err
    assert code == case.code, f"exit {code}, wanted {case.code}: {err}"
    assert len(lines) == 1, err
    assert lines[0].startswith("Error: "), err
    assert case.needle in lines[0], f"{case.needle!r} not in {lines[0]!r}"
    assert out == ""
    if case.code == 2:
        assert log == [], f"the API server was called: {log}"


def test_at_least_150_hostile_cases() -> None:
    assert len(CASES) >= 150, len(CASES)
    assert len({(x.argv, x.env) for x in CASES}) == len(CASES), "duplicate cases"


@pytest.mark.timeout(60)
@pytest.mark.parametrize("case", CASES, ids=[repr(" ".join(x.argv))[1:61] for x in CASES])
def test_hostile_input(
    case: Case,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    fake_api: tuple[str, list[str]],
) -> None:
    _check(case, capsys, monkeypatch, fake_api[1])


@pytest.mark.timeout(60)
@pytest.mark.parametrize("case", EMPTY_CASES, ids=[" ".join(x.argv)[:60] for x in EMPTY_CASES])
def test_empty_value_is_an_error(
    case: Case,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    fake_api: tuple[str, list[str]],
) -> None:
    _check(case, capsys, monkeypatch, fake_api[1])


# --- the error boundary ---------------------------------------------------------------------


def _boom(*_: object, **__: object) -> None:
    raise RuntimeError("boom\nsecond line")


def test_unexpected_error_is_one_line_exit_3(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("kubectl_kdoctor.cli.probe.build", _boom)
    code, out, err = run_main(["netreach"], capsys)
    assert code == 3 and out == ""
    assert err.strip().splitlines() == [
        "Error: unexpected RuntimeError: boom second line (run with -v for details)"
    ]


def test_verbose_shows_the_traceback(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("kubectl_kdoctor.cli.probe.build", _boom)
    code, _, err = run_main(["netreach", "-v"], capsys)
    assert code == 3
    assert "Traceback (most recent call last)" in err and "_boom" in err
    assert err.strip().splitlines()[-1] == "Error: unexpected RuntimeError: boom second line"


def test_an_agent_error_keeps_its_traceback_in_the_log(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("kubectl_kdoctor.agent.main.main", _boom)
    code, _, err = run_main(["agent", "--run", "r1"], capsys)
    assert code == 3
    assert "Traceback (most recent call last)" in err
    assert err.strip().splitlines()[-1] == "Error: unexpected RuntimeError: boom second line"


def test_keyboard_interrupt_is_130(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupt(*_: object, **__: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr("kubectl_kdoctor.cli.probe.build", interrupt)
    code, _, err = run_main(["netreach"], capsys)
    assert code == 130 and "Traceback" not in err


@pytest.mark.parametrize("name", ["ok-http.yaml", "ok-upstream.yaml"])
def test_a_real_kdoctor_manifest_runs_with_local(
    name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """metadata.name does not count as --name: the manifest is accepted with --local (it runs
    against a closed loopback port and fails its expectation: exit 1, a report on stdout)."""
    code, out, err = run_main(["http", "-f", name, "--local", "-o", "json"], capsys)
    assert code == 1, err
    assert json.loads(out)["kind"] == "KdoctorReport"
    assert "Traceback" not in err


def test_file_name_is_checked_as_a_run_name_in_a_cluster(
    capsys: pytest.CaptureFixture[str], fake_api: tuple[str, list[str]]
) -> None:
    code, _, err = run_main(["http", "-f", "t-name-bad.yaml"], capsys)
    assert code == 2 and "metadata.name" in err
    assert fake_api[1] == []


# --- the real entry point ----------------------------------------------------------------


def _entry(
    args: list[str], cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "KUBECONFIG": str(cwd / "kubeconfig"), **(env or {})}
    return subprocess.run(
        [str(ENTRY), *args],
        cwd=cwd,
        env=full,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["netreach", "-f", "fifo"], "FIFO"),
        (["http", URL, "--data-file", "/dev/zero"], "device"),
        (["http", "-f", "t-bomb.yaml"], "anchors"),
        (["http", "-f", "t-deep.yaml"], "nested"),
        (["dns", "--server", "::1:53"], "[::1]:53"),
        (["get", "-n", "Bad"], "--namespace"),
    ],
)
def test_entry_point(args: list[str], needle: str, workdir: Path) -> None:
    proc = _entry(args, workdir)
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    assert len(proc.stderr.strip().splitlines()) == 1 and needle in proc.stderr


def test_entry_point_env_var(workdir: Path) -> None:
    proc = _entry(["netreach"], workdir, env={"KUBECTL_KDOCTOR_TTL_SECONDS": "abc"})
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "Error: KUBECTL_KDOCTOR_TTL_SECONDS: must be a number of seconds from 0 to 604800 "
        "(got 'abc')"
    )


def test_non_utf8_argv_bytes(workdir: Path) -> None:
    """argv bytes that are not UTF-8 (surrogate-escaped by Python) are data in a body, and
    refused where text is needed, never a crash."""
    body = _entry(["http", URL, "-d", "\udcff", "--dry-run=client", "-X", "FETCH"], workdir)
    assert body.returncode == 2 and "--method" in body.stderr and "Traceback" not in body.stderr
    for args, needle in (
        (["http", URL, "-H", "X-A: \udcff"], "--header"),
        (["dns", "\udcff"], "DOMAIN"),
        (["report", "\udcff"], "NAME"),
    ):
        proc = _entry(args, workdir)
        assert proc.returncode == 2 and needle in proc.stderr, proc.stderr


def test_non_utf8_body_is_sent_as_given(capsys: pytest.CaptureFixture[str]) -> None:
    from kubectl_kdoctor.cli.build import build

    inv = build("AppHttpHealthy", {"url": URL, "data": "a\udcffb"})
    assert inv.task.http is not None and inv.task.http.body == b"a\xffb"


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_unwritable_stderr_keeps_the_exit_code(workdir: Path) -> None:
    """With stderr on a full disk the error cannot be said, but the exit code still tells."""
    with open("/dev/full", "w") as full:
        proc = subprocess.run(
            [str(ENTRY), "http", URL, "--qps", "0"],
            cwd=workdir,
            stderr=full,
            timeout=60,
            check=False,
        )
    assert proc.returncode == 2


def test_closed_stdout_ends_quietly(workdir: Path) -> None:
    """``kubectl kdoctor ... | head``: the reader went away; no traceback, no message."""
    p = subprocess.Popen(
        [str(ENTRY), "netreach", "--help"],
        cwd=workdir,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert p.stdout is not None and p.stderr is not None
    p.stdout.close()
    err = p.stderr.read()
    assert p.wait(timeout=60) == 141
    assert err == b""


@pytest.mark.parametrize(
    "kubeconfig", ["fifo", "adir", "kc-latin1.yaml", "kc-list.yaml", "t-deep.yaml"]
)
def test_completion_survives_a_hostile_kubeconfig(kubeconfig: str, workdir: Path) -> None:
    """Completing --context reads the kubeconfig: a FIFO must not block it, junk not break it."""
    proc = _entry(
        ["__complete", "netreach", "--context", ""],
        workdir,
        env={"KUBECONFIG": str(workdir / kubeconfig)},
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""


def _has_socket(pid: int) -> bool:
    fds = Path(f"/proc/{pid}/fd")
    try:
        return any(os.readlink(fd).startswith("socket:") for fd in fds.iterdir())
    except OSError:
        return False


def test_ctrl_c_stops_an_absurd_local_load(workdir: Path) -> None:
    """--local at a huge rate (allowed with --force) still stops on the first Ctrl-C: exit 130,
    long before its --duration would have ended (the wait below is only a hang guard)."""
    import signal

    # SIGINT at its default (a shell starts background jobs with it ignored), then exec
    reset = "import os,signal,sys; signal.signal(signal.SIGINT, signal.SIG_DFL); os.execv(sys.argv[1], sys.argv[1:])"
    argv = [
        str(ENTRY),
        "http",
        "--local",
        "http://127.0.0.1:9/",
        "--qps",
        "200000",
        "--force",
        "--duration",
        "10m",
        "--timeout",
        "100ms",
    ]
    p = subprocess.Popen(
        [sys.executable, "-c", reset, *argv],
        cwd=workdir,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # Running: its event loop holds sockets (a fixed sleep raced the imports on a busy
        # machine, where a SIGINT before main() is not yet the CLI's to handle).
        deadline = time.monotonic() + 120
        while not _has_socket(p.pid):
            assert p.poll() is None, p.communicate()[1]
            assert time.monotonic() < deadline, "the load never started"
            time.sleep(0.1)
        time.sleep(0.5)
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=120)
    finally:
        p.kill()
    assert p.returncode == 130, err
    assert "Traceback" not in err
