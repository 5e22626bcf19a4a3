"""Secrets on the wire: a URL's user:password is sent as ``Authorization: Basic`` (and the URL
is reported without it), secret headers and the body reach the server while ``--local``'s
report and log carry none of them; the agents' responder answers only its run's token."""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import threading
from collections.abc import Iterator

import pytest

from bench.procs import free_port
from kubectl_kdoctor.agent import server as agent_server
from kubectl_kdoctor.agent.server import AgentServer
from kubectl_kdoctor.cli import main
from kubectl_kdoctor.engine.runner import Target, run_targets
from kubectl_kdoctor.engine.spec import HttpSpec, Load
from kubectl_kdoctor.engine.stats import BAD_STATUS
from kubectl_kdoctor.runconfig import TOKEN_HEADER
from tests.engine._util import run_one

BASIC = "Basic " + base64.b64encode(b"user:hunter2").decode()


class Capture:
    """A tiny real HTTP/1.1 server on loopback that keeps every request it receives."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.requests: list[bytes] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        buf = b""
        with conn:
            while True:
                while b"\r\n\r\n" not in buf:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buf += data
                head, _, rest = buf.partition(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    k, _, v = line.partition(b":")
                    if k.strip().lower() == b"content-length":
                        length = int(v)
                while len(rest) < length:
                    data = conn.recv(65536)
                    if not data:
                        return
                    rest += data
                with self.lock:
                    self.requests.append(head + b"\r\n\r\n" + rest[:length])
                buf = rest[length:]
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def capture() -> Iterator[Capture]:
    c = Capture()
    yield c
    c.close()


def test_url_user_password_is_sent_as_basic_auth(capture: Capture) -> None:
    s = run_one(HttpSpec(f"http://user:hunter2@127.0.0.1:{capture.port}/p?q=1"), qps=20)
    assert s.success == s.sent > 0, s.error_samples
    assert "hunter2" not in s.url and s.url == f"http://127.0.0.1:{capture.port}/p?q=1"
    for req in capture.requests:
        assert req.startswith(b"GET /p?q=1 HTTP/1.1\r\n")
        assert f"\r\nAuthorization: {BASIC}\r\n".encode() in req
        assert f"\r\nHost: 127.0.0.1:{capture.port}\r\n".encode() in req


def test_local_run_sends_every_secret_and_prints_none(
    capture: Capture, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [
        "http",
        "--local",
        f"http://user:hunter2@127.0.0.1:{capture.port}/x",
        "-H",
        "X-Vault-Token: s3cr3t",
        "-H",
        "Accept: text/plain",
        "-d",
        "bodysecret",
        "--qps",
        "10",
        "--duration",
        "500ms",
    ]
    for output in ("json", "yaml", "wide", "junit", "html"):
        with pytest.raises(SystemExit) as exc:
            main([*argv, "-o", output])
        out, err = capsys.readouterr()
        assert exc.value.code == 0, out + err
        for s in ("hunter2", "s3cr3t", "bodysecret", BASIC.split()[1]):
            assert s not in out + err, (output, s)
    doc = json.loads(_json_report(argv, capsys))
    headers = doc["task"]["spec"]["appHttpHealthy"]["target"]["header"]
    assert "X-Vault-Token: <redacted>" in headers and "Accept: text/plain" in headers
    assert "Authorization: <redacted>" in headers
    assert capture.requests
    for req in capture.requests:
        assert req.startswith(b"POST /x HTTP/1.1\r\n") and req.endswith(b"\r\n\r\nbodysecret")
        assert b"\r\nX-Vault-Token: s3cr3t\r\n" in req
        assert f"\r\nAuthorization: {BASIC}\r\n".encode() in req


def _json_report(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit):
        main([*argv, "-o", "json"])
    return capsys.readouterr().out


async def _probe(port: int, headers: tuple[tuple[str, str], ...], path: str = "/") -> dict:  # type: ignore[type-arg]
    [s] = await run_targets(
        [
            Target(
                "t",
                HttpSpec(f"http://127.0.0.1:{port}{path}", headers=headers),
                Load(qps=20, duration=0.25, timeout=2.0),
            )
        ]
    )
    return {"success": s.success, "sent": s.sent, "codes": s.codes, "errors": s.errors}


@pytest.mark.parametrize("parser", ["httptools", "fallback"])
def test_responder_answers_only_its_token(parser: str, monkeypatch: pytest.MonkeyPatch) -> None:
    if parser == "fallback":
        monkeypatch.setattr(agent_server, "httptools", None)

    async def scenario() -> None:
        port = free_port()
        srv = AgentServer("node-a", "pod-a", lambda: True)
        await srv.start("127.0.0.1", port, None, None)
        try:
            open_ = await _probe(port, ())
            assert open_["success"] == open_["sent"] > 0  # no token set yet: answers anyone
            srv.token = "t0k-of-this-run"
            good = await _probe(port, ((TOKEN_HEADER, "t0k-of-this-run"),))
            assert good["success"] == good["sent"] > 0, good
            lower = await _probe(port, (("x-kdoctor-token", "t0k-of-this-run"),))
            assert lower["success"] == lower["sent"] > 0, lower
            for headers in ((), ((TOKEN_HEADER, "wrong"),), ((TOKEN_HEADER, "t0k-of-this-ru"),)):
                bad = await _probe(port, headers)
                assert bad["codes"] == {"403": bad["sent"]} and bad["errors"] == {
                    BAD_STATUS: bad["sent"]
                }, bad
            ready = await _probe(port, (), "/readyz")  # the kubelet's probe carries no token
            assert ready["success"] == ready["sent"] > 0
            # a 403 names nothing about the agent
            r, w = await asyncio.open_connection("127.0.0.1", port)
            w.write(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            answer = await r.read()
            w.close()
            assert answer.startswith(b"HTTP/1.1 403 ") and b"node-a" not in answer
            assert b"pod-a" not in answer
        finally:
            await srv.close()

    asyncio.run(scenario())
