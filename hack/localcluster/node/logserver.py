"""The node's kubelet port (10250, TLS, client certs from the cluster CA): serves
``/containerLogs/{ns}/{pod}/{container}`` (so ``kubectl logs`` works through the apiserver)
and ``/healthz``."""

from __future__ import annotations

import json
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, unquote, urlparse

if TYPE_CHECKING:
    from hack.localcluster.node.agent import Agent


def find_pod_dir(pods_root: Path, ns: str, name: str) -> Path | None:
    best: tuple[float, Path] | None = None
    for meta in pods_root.glob("*/meta.json"):
        try:
            m = json.loads(meta.read_text())
        except (OSError, ValueError):
            continue
        if m.get("namespace") == ns and m.get("name") == name:
            t = meta.stat().st_mtime
            if best is None or t > best[0]:
                best = (t, meta.parent)
    return best[1] if best else None


def current_log(container_dir: Path, previous: bool) -> tuple[Path | None, int | None]:
    """-> (log file, pid of the running process or None)."""
    try:
        restart, pid = (container_dir / "current").read_text().split()
    except (OSError, ValueError):
        return None, None
    n = int(restart) - (1 if previous else 0)
    if n < 0:
        return None, None
    return container_dir / f"{n}.log", (None if previous else int(pid))


class Handler(BaseHTTPRequestHandler):
    agent: Agent
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _send(self, code: int, text: str) -> None:
        data = text.encode()
        self.send_response(code)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        url = urlparse(self.path)
        parts = [unquote(p) for p in url.path.strip("/").split("/")]
        if parts == ["healthz"]:
            self._send(200, "ok")
            return
        if len(parts) == 4 and parts[0] == "containerLogs":
            self.container_logs(parts[1], parts[2], parts[3], parse_qs(url.query))
            return
        self._send(404, "404 page not found (the local test cluster serves containerLogs only)")

    def container_logs(self, ns: str, pod: str, container: str, q: dict[str, list[str]]) -> None:
        def flag(name: str) -> bool:
            return q.get(name, ["false"])[0] in ("true", "1")

        pod_dir = find_pod_dir(self.agent.node_dir / "pods", ns, pod)
        if pod_dir is None:
            self._send(404, f'pod "{pod}" in namespace "{ns}" not found on this node')
            return
        cdir = pod_dir / "containers" / container
        path, pid = current_log(cdir, flag("previous"))
        if path is None or not path.exists():
            what = "previous terminated container" if flag("previous") else "container"
            self._send(
                400,
                f'{what} "{container}" in pod "{pod}" is waiting to start or not found',
            )
            return
        data = path.read_bytes()
        if "tailLines" in q:
            n = int(q["tailLines"][0])
            lines = data.splitlines(keepends=True)
            data = b"".join(lines[-n:]) if n > 0 else b""
        if "limitBytes" in q:
            data = data[: int(q["limitBytes"][0])]
        follow = flag("follow") and pid is not None
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        if not follow:
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        offset = path.stat().st_size

        def chunk(b: bytes) -> None:
            self.wfile.write(f"{len(b):x}\r\n".encode() + b + b"\r\n")
            self.wfile.flush()

        try:
            if data:
                chunk(data)
            while True:
                with path.open("rb") as f:
                    f.seek(offset)
                    new = f.read()
                if new:
                    offset += len(new)
                    chunk(new)
                elif not _alive(pid):
                    break
                else:
                    time.sleep(0.2)
            self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            pass


def _alive(pid: int | None) -> bool:
    if pid is None:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def serve(
    agent: Agent, host: str, port: int, cert: Path, key: Path, ca: Path
) -> ThreadingHTTPServer:
    handler = type("BoundHandler", (Handler,), {"agent": agent})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(cert), str(key))
    ctx.load_verify_locations(str(ca))
    ctx.verify_mode = ssl.CERT_REQUIRED
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True, name="kubelet-port").start()
    return server
