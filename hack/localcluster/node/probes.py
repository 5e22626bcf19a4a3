"""Container probes (httpGet, tcpSocket, exec), run from the node's netns as the kubelet does."""

from __future__ import annotations

import http.client
import socket
import ssl
import subprocess
import threading
from collections.abc import Callable
from typing import Any

from hack.localcluster.kube import JSON


def resolve_port(port: Any, container: JSON) -> int:
    if isinstance(port, int) or str(port).isdigit():
        return int(port)
    for p in container.get("ports") or []:
        if p.get("name") == port:
            return int(p["containerPort"])
    raise ValueError(f"port {port!r} not found in the container's ports")


def _err(exc: BaseException) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connect: connection refused"
    if isinstance(exc, TimeoutError | socket.timeout):
        return "context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
    return str(exc) or type(exc).__name__


def http_get(probe: JSON, host: str, container: JSON, timeout: float) -> tuple[bool, str]:
    hg = probe["httpGet"]
    host = hg.get("host") or host
    try:
        port = resolve_port(hg["port"], container)
    except ValueError as exc:
        return False, str(exc)
    scheme = hg.get("scheme", "HTTP").lower()
    path = hg.get("path") or "/"
    url = f"{scheme}://{host}:{port}{path}"
    conn: http.client.HTTPConnection
    if scheme == "https":
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        conn = http.client.HTTPSConnection(host, port, timeout=timeout, context=ctx)
    else:
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
    headers = {"User-Agent": "kube-probe/1.35", "Accept": "*/*"}
    headers.update({h["name"]: h["value"] for h in hg.get("httpHeaders") or []})
    try:
        conn.request("GET", path, headers=headers)
        resp = conn.getresponse()
        body = resp.read(1024)
    except Exception as exc:
        return False, f'Get "{url}": dial tcp {host}:{port}: {_err(exc)}'
    finally:
        conn.close()
    if 200 <= resp.status < 400:
        return True, ""
    return False, f"HTTP probe failed with statuscode: {resp.status} {body[:200]!r}"


def tcp_socket(probe: JSON, host: str, container: JSON, timeout: float) -> tuple[bool, str]:
    ts = probe["tcpSocket"]
    host = ts.get("host") or host
    try:
        port = resolve_port(ts["port"], container)
    except ValueError as exc:
        return False, str(exc)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True, ""
    except Exception as exc:
        return False, f"dial tcp {host}:{port}: {_err(exc)}"


ExecFn = Callable[[list[str], float], tuple[int, str]]


def exec_probe(probe: JSON, run_exec: ExecFn, timeout: float) -> tuple[bool, str]:
    try:
        rc, out = run_exec(list(probe["exec"].get("command") or []), timeout)
    except subprocess.TimeoutExpired:
        return False, f"command timed out after {timeout:g}s"
    return rc == 0, out.strip()[-500:]


def run_probe(probe: JSON, host: str, container: JSON, run_exec: ExecFn) -> tuple[bool, str]:
    timeout = float(probe.get("timeoutSeconds") or 1)
    if "httpGet" in probe:
        return http_get(probe, host, container, timeout)
    if "tcpSocket" in probe:
        return tcp_socket(probe, host, container, timeout)
    if "exec" in probe:
        return exec_probe(probe, run_exec, timeout)
    return False, f"probe type {sorted(probe)} is not supported by the local test cluster"


class ProbeWorker(threading.Thread):
    """Runs one probe of one container incarnation; reports result transitions."""

    def __init__(
        self,
        kind: str,  # startup | liveness | readiness
        probe: JSON,
        host: str,
        container: JSON,
        run_exec: ExecFn,
        on_result: Callable[[str, bool, str, bool], None],
        gate: threading.Event | None,
    ) -> None:
        super().__init__(daemon=True, name=f"probe-{kind}-{container['name']}")
        self.kind = kind
        self.probe = probe
        self.host = host
        self.container = container
        self.run_exec = run_exec
        self.on_result = on_result
        self.gate = gate  # liveness/readiness wait for the startup probe
        self.stopped = threading.Event()
        self.result: bool | None = None

    def stop(self) -> None:
        self.stopped.set()

    def run(self) -> None:
        if self.gate is not None:
            while not self.gate.wait(0.5):
                if self.stopped.is_set():
                    return
        if self.stopped.wait(float(self.probe.get("initialDelaySeconds") or 0)):
            return
        period = float(self.probe.get("periodSeconds") or 10)
        success_needed = int(self.probe.get("successThreshold") or 1)
        failure_needed = int(self.probe.get("failureThreshold") or 3)
        successes = failures = 0
        while not self.stopped.is_set():
            ok, msg = run_probe(self.probe, self.host, self.container, self.run_exec)
            if self.stopped.is_set():
                return
            if ok:
                successes, failures = successes + 1, 0
            else:
                successes, failures = 0, failures + 1
            if not ok:
                self.on_result(self.kind, False, msg, False)  # every failure: event Unhealthy
            new = self.result
            if ok and successes >= success_needed:
                new = True
            elif not ok and failures >= failure_needed:
                new = False
            if new != self.result:
                self.result = new
                if new is not None:
                    self.on_result(self.kind, new, "" if new else msg, True)
                if new is False and self.kind in ("liveness", "startup"):
                    return  # the container gets restarted; a new worker follows
                if new is True and self.kind == "startup":
                    return
            self.stopped.wait(period)
