"""Scale benchmarks of the CLI side (not timed tests).

    python -m bench.scale cli-start     # `kubectl kdoctor --help` and a bad input vs `kubectl version --client`
    python -m bench.scale cli-memory [--nodes 1000] [--peers 10]
                                         # peak RSS of collecting and rendering N agents' reports

cli-memory builds synthetic agent report payloads exactly as agents write them (every target
with its latency, service-time and send-lag histograms), then runs the CLI's own collection
and rendering path (decode -> RunResult -> table and json) in a child process and reports its
peak RSS against the 200 MB goal.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CLI = REPO / ".venv" / "bin" / "kubectl-kdoctor"


def _time(cmd: list[str], runs: int) -> float:
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(cmd, capture_output=True, check=False)
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples)


def cli_start(runs: int) -> None:
    ours_help = _time([str(CLI), "--help"], runs)
    ours_bad = _time([str(CLI), "http", "--qps", "0"], runs)
    ref = _time(["kubectl", "version", "--client"], runs)
    print(
        f"kubectl kdoctor --help:        {ours_help * 1000:7.1f} ms (median of {runs}) goal < 300 ms: {'yes' if ours_help < 0.3 else 'NO'}"
    )
    print(
        f"kubectl kdoctor bad input:     {ours_bad * 1000:7.1f} ms                goal < 300 ms: {'yes' if ours_bad < 0.3 else 'NO'}"
    )
    print(
        f"kubectl version --client:      {ref * 1000:7.1f} ms (reference)   ratio help/kubectl {ours_help / ref:.2f}x"
    )


def _payloads(nodes: int, peers: int) -> list[dict[str, object]]:
    from kubectl_kdoctor.engine.stats import TargetStats
    from kubectl_kdoctor.report.kdoctor import node_to_dict
    from kubectl_kdoctor.report.model import NodeResult, TargetResult
    from kubectl_kdoctor.report.verdict import judge
    from kubectl_kdoctor.task import NETREACH, Expect

    rnd = random.Random(7)
    names = [f"node-{i}" for i in range(nodes)]
    out = []
    for i, node in enumerate(names):
        nr = NodeResult(node=node, pod=f"run-{i}-abcde", round=1, start=1.7e9, end=1.7e9 + 12)
        dests = [names[(i + d) % nodes] for d in range(peers + 1)]
        for dest in dests:
            for path in ("pod", "clusterip", "nodeport"):
                s = TargetStats(
                    name=f"Agent{path}_{dest}",
                    url=f"http://10.0.0.1:8080/{dest}",
                    qps=10,
                    planned=100,
                )
                s.start, s.end, s.attack = 1.7e9, 1.7e9 + 10, 10.0
                for _ in range(100):
                    s.mark_sent(rnd.random() * 0.002)
                    lat = int(rnd.lognormvariate(7, 0.6))
                    s.ok("200", lat, lat - 50, 120)
                nr.targets.append(TargetResult(s, judge(s, Expect()), path, "ipv4", dest))
        out.append(
            {
                "run": "bench",
                "node": node,
                "pod": nr.pod,
                "index": i,
                "rounds": [node_to_dict(NETREACH, nr)],
            }
        )
    return out


def cli_memory(nodes: int, peers: int) -> None:
    base = Path("/tmp/kdoctor-bench-scale")
    base.mkdir(exist_ok=True)
    blobs = base / f"reports-{nodes}-{peers}.jsonl"
    if not blobs.exists():
        subprocess.run(
            [sys.executable, __file__, "_generate", str(blobs), str(nodes), str(peers)], check=True
        )
    child = subprocess.run(
        [sys.executable, __file__, "_collect", str(blobs), str(nodes)],
        capture_output=True,
        text=True,
        check=True,
    )
    print(child.stdout.strip())


def _collect(path: str, nodes: int) -> None:
    """Child: what the CLI does with N report ConfigMaps (the binaryData only)."""
    from kubectl_kdoctor.jobmode import assemble, node_results
    from kubectl_kdoctor.report.model import RunResult
    from kubectl_kdoctor.report.render import render, render_chunks
    from kubectl_kdoctor.runconfig import decode_report
    from kubectl_kdoctor.task import NETREACH, Expect

    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter()
    expect = Expect()
    reported = {}
    with Path(path).open() as fh:
        for line in fh:  # as the CLI's watch does: one report at a time, then dropped
            node, rounds = node_results(NETREACH, decode_report(json.loads(line)), expect)
            reported[node] = rounds
    run = RunResult(
        kind=NETREACH,
        name="bench",
        created=1.7e9,
        spec={},
        expect=expect,
        expected_nodes=[f"node-{i}" for i in range(nodes)],
        mode="job",
    )
    assemble(run, reported, [])
    t_collect = time.perf_counter() - t0
    rss_collect = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    table = render(run, "table")
    t_table = time.perf_counter() - t0 - t_collect
    rss_table = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    size = 0
    for chunk in render_chunks(run, "json"):  # what -o json writes, piece by piece
        size += len(chunk)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    targets = sum(len(n.targets) for n in run.nodes)
    print(
        f"{nodes} reports, {targets} targets: collect {t_collect:.1f}s, table {t_table:.1f}s "
        f"({len(table.splitlines())} lines), json {size / 1e6:.0f} MB; "
        f"peak RSS after collect {rss_collect:.0f} MB, after table {rss_table:.0f} MB, after json {peak:.0f} MB "
        f"(imports {base_rss:.0f} MB); goal < 200 MB: {'yes' if peak < 200 else 'NO'}"
    )


def _generate(path: str, nodes: int, peers: int) -> None:
    from kubectl_kdoctor.runconfig import encode_report

    with Path(path).open("w") as fh:
        for p in _payloads(nodes, peers):
            fh.write(json.dumps({"report.json.gz": encode_report(p)}) + "\n")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_generate":
        _generate(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
        return
    if len(sys.argv) > 1 and sys.argv[1] == "_collect":
        _collect(sys.argv[2], int(sys.argv[3]))
        return
    ap = argparse.ArgumentParser(prog="python -m bench.scale")
    ap.add_argument("what", choices=["cli-start", "cli-memory"])
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--nodes", type=int, default=1000)
    ap.add_argument("--peers", type=int, default=10)
    a = ap.parse_args()
    if a.what == "cli-start":
        cli_start(a.runs)
    else:
        cli_memory(a.nodes, a.peers)


if __name__ == "__main__":
    main()
