"""Run the engine on one target in this (fresh) process and print a JSON result line.

``python -m bench.engine_run '{"cpu": 1, "kind": "http", "spec": {...}, "load": {...}}' OUT``

The result, written as JSON to the file OUT (not to a pipe: a large result must not depend
on how the event loop left the standard streams), holds the target's stats (``TargetStats.to_dict``), the CPU seconds this process
used, its peak RSS and the wall time: a separate process so that RSS is the agent's own.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from typing import Any

from kubectl_kdoctor.engine.runner import Target, run_sync
from kubectl_kdoctor.engine.spec import DnsSpec, HttpSpec, Load, from_dict


def run(job: dict[str, Any]) -> dict[str, Any]:
    if job.get("cpu") is not None:
        os.sched_setaffinity(0, {int(job["cpu"])})
    if job.get("nice"):
        try:
            os.nice(int(job["nice"]))
        except PermissionError:
            pass
    spec: HttpSpec | DnsSpec = (
        from_dict(DnsSpec, job["spec"])
        if job["kind"] == "dns"
        else from_dict(HttpSpec, job["spec"])
    )
    load = from_dict(Load, job["load"])
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    [stats] = run_sync([Target(job.get("name", job["kind"]), spec, load)])
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "stats": stats.to_dict(),
        "cpu_s": (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime),
        "wall_s": wall,
        "maxrss_mb": r1.ru_maxrss / 1024,
        # Involuntary context switches: how often another process took this core from us.
        "preempted": r1.ru_nivcsw - r0.ru_nivcsw,
    }


def main() -> None:
    result = run(json.loads(sys.argv[1]))
    with open(sys.argv[2], "w", encoding="utf-8") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main()
