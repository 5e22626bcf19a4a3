"""Run the engine (in a child process) and the reference tools (wrk, dnsperf) the same way:
pinned to the generator core, for the same duration, against the same server."""

from __future__ import annotations

import dataclasses
import json
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.procs import PRIORITY, ROOT, pinned
from kubectl_kdoctor.engine.spec import DnsSpec, HttpSpec, Load, to_dict
from kubectl_kdoctor.engine.stats import TargetStats


@dataclasses.dataclass
class EngineResult:
    stats: TargetStats
    cpu_s: float
    wall_s: float
    maxrss_mb: float
    preempted: int = 0  # involuntary context switches of the generator during the run

    @property
    def rate(self) -> float:
        """Completed requests per second over the sending period."""
        return self.stats.completed / self.stats.attack if self.stats.attack else 0.0

    @property
    def cpu(self) -> float:
        """Generator CPU as a fraction of one core over the sending period."""
        return self.cpu_s / self.wall_s if self.wall_s else 0.0


@dataclasses.dataclass
class ToolResult:
    rate: float
    cpu: float
    output: str


def run_engine(
    spec: HttpSpec | DnsSpec, load: Load, cpu: int | None, name: str = ""
) -> EngineResult:
    job = {
        "cpu": cpu,
        "nice": PRIORITY,
        "kind": "dns" if isinstance(spec, DnsSpec) else "http",
        "name": name or ("dns" if isinstance(spec, DnsSpec) else "http"),
        "spec": to_dict(spec),
        "load": to_dict(load),
    }
    with tempfile.TemporaryDirectory(prefix="kdoctor-engine-") as d:
        out = Path(d) / "result.json"
        proc = subprocess.run(
            [sys.executable, "-m", "bench.engine_run", json.dumps(job), str(out)],
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=load.duration + load.timeout + 120,
            check=False,
        )
        if proc.returncode != 0 or not out.exists():
            raise RuntimeError(f"engine run failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
        data: dict[str, Any] = json.loads(out.read_text())
    return EngineResult(
        TargetStats.from_dict(data["stats"]),
        data["cpu_s"],
        data["wall_s"],
        data["maxrss_mb"],
        data.get("preempted", 0),
    )


def _run_tool(argv: list[str], cpu: int | None, timeout: float) -> tuple[str, float, float]:
    argv = pinned(argv, None if cpu is None else str(cpu))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(
        argv,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_s = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    out = proc.stdout + proc.stderr
    if proc.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed ({proc.returncode}):\n{out[-2000:]}")
    return out, wall, cpu_s


def run_wrk(url: str, connections: int, duration: float, cpu: int | None) -> ToolResult:
    out, wall, cpu_s = _run_tool(
        ["wrk", "-t1", f"-c{connections}", f"-d{int(duration)}s", url], cpu, duration + 60
    )
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if not m:
        raise RuntimeError(f"cannot read wrk output:\n{out}")
    return ToolResult(float(m.group(1)), cpu_s / wall if wall else 0.0, out)


def run_dnsperf(
    server: str,
    port: int,
    name: str,
    qtype: str,
    duration: float,
    cpu: int | None,
    workdir: Path,
    tcp: bool = False,
    clients: int = 1,
    outstanding: int = 100,
) -> ToolResult:
    qfile = workdir / "dnsperf-queries.txt"
    qfile.write_text(f"{name} {qtype}\n")
    argv = [
        "dnsperf",
        "-s",
        server,
        "-p",
        str(port),
        "-d",
        str(qfile),
        "-l",
        str(int(duration)),
        "-c",
        str(clients),
        "-q",
        str(outstanding),
        "-T",
        "1",
    ]
    if tcp:
        argv += ["-m", "tcp"]
    out, wall, cpu_s = _run_tool(argv, cpu, duration + 60)
    m = re.search(r"Queries per second:\s+([\d.]+)", out)
    if not m:
        raise RuntimeError(f"cannot read dnsperf output:\n{out}")
    return ToolResult(float(m.group(1)), cpu_s / wall if wall else 0.0, out)
