"""Scale benchmarks of the CLI side (not timed tests).

    python -m bench.scale cli-start     # `kubectl kdoctor --help` and a bad input vs `kubectl version --client`
    python -m bench.scale cli-memory [--nodes 1000] [--peers 10]
                                         # peak RSS of collecting and rendering N agents' reports
    python -m bench.scale cluster [--nodes 100] [--peers 10] [--qps 1] [--duration 5s]
                                         # netreach on a local cluster of N simulated nodes

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


def cluster(nodes: int, peers: int, qps: int, duration: str, keep: bool) -> None:
    """netreach on a local cluster of ``nodes`` simulated nodes (started here unless one of that
    size runs): wall time, agents, report size, CLI peak RSS, API requests by verb/resource."""
    import os

    sys.path.insert(0, str(REPO))
    from hack.localcluster import config as cluster_config
    from tests.fixtures.cluster import _from_state

    state = cluster_config.ClusterState.load()
    started = False
    if state is None or len(state.node_names) != nodes:
        if state is not None:
            subprocess.run(
                [str(REPO / "hack" / "cluster"), "down"], check=True, capture_output=True
            )
        t0 = time.perf_counter()
        subprocess.run(
            [str(REPO / "hack" / "cluster"), "up", "--nodes", str(nodes), "--ip-family", "ipv4"],
            check=True,
            capture_output=True,
        )
        print(f"cluster of {nodes} nodes up in {time.perf_counter() - t0:.0f}s")
        started = True
    lc = _from_state(started_here=started)
    env = {**os.environ, "KUBECONFIG": str(lc.kubeconfig)}
    ns = f"kd-scale-{nodes}"
    subprocess.run(["kubectl", "create", "ns", ns], env=env, capture_output=True, check=False)
    out = Path(f"/tmp/kdoctor-bench-scale/cluster-{nodes}.json")
    t0 = time.time()
    with out.open("w") as fh:
        proc = subprocess.run(
            [
                "/usr/bin/time",
                "-f",
                "%M",
                str(CLI),
                "netreach",
                "-n",
                ns,
                "--mode",
                "job",
                "--context",
                lc.cli_context,
                "--qps",
                str(qps),
                "--duration",
                duration,
                "--peers",
                str(peers),
                "--start-timeout",
                "10m",
                "-o",
                "json",
            ],
            stdout=fh,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            check=False,
        )
    wall = time.time() - t0
    rss_kb = int(proc.stderr.strip().splitlines()[-1]) if proc.stderr.strip() else 0
    time.sleep(3)
    cli = lc.api_request_counts(since=t0, users=lc.cli_user)
    agents = lc.api_request_counts(since=t0, users=f"system:serviceaccount:{ns}:*")
    doc = json.loads(out.read_text()) if out.stat().st_size else {}
    entries = (doc.get("report") or {}).get("latestRoundReport") or []
    targets = sum(len(e["taskNetReach"]["roundTaskDetail"]) for e in entries)
    print(
        f"nodes {nodes}, peers {peers}: exit {proc.returncode}, wall {wall:.0f}s, agents reported {len(entries)}, "
        f"targets {targets}, report {out.stat().st_size / 1e6:.1f} MB, CLI peak RSS {rss_kb / 1024:.0f} MB"
    )
    print(f"API requests by the CLI: {sum(cli.values())}")
    for (verb, res), n in sorted(cli.items()):
        print(f"  {verb:7s} {res:55s} {n}")
    print(
        f"API requests by the agents: {sum(agents.values())} ({sum(agents.values()) / max(1, len(entries)):.1f} per agent)"
    )
    for (verb, res), n in sorted(agents.items()):
        print(f"  {verb:7s} {res:55s} {n}")
    for line in proc.stderr.splitlines()[:-1]:
        if line.startswith(("run ", "sampling:", "skipping node")):
            print(f"  cli: {line}")
    if proc.returncode not in (0, 1):
        print(proc.stderr[-2000:])
    if started and not keep:
        subprocess.run([str(REPO / "hack" / "cluster"), "down"], check=False, capture_output=True)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_generate":
        _generate(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
        return
    if len(sys.argv) > 1 and sys.argv[1] == "_collect":
        _collect(sys.argv[2], int(sys.argv[3]))
        return
    ap = argparse.ArgumentParser(prog="python -m bench.scale")
    ap.add_argument("what", choices=["cli-start", "cli-memory", "cluster"])
    ap.add_argument("--qps", type=int, default=1)
    ap.add_argument("--duration", default="5s")
    ap.add_argument("--keep", action="store_true", help="leave the cluster up")
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--nodes", type=int, default=1000)
    ap.add_argument("--peers", type=int, default=10)
    a = ap.parse_args()
    if a.what == "cli-start":
        cli_start(a.runs)
    elif a.what == "cluster":
        cluster(a.nodes if a.nodes != 1000 else 100, a.peers, a.qps, a.duration, a.keep)
    else:
        cli_memory(a.nodes, a.peers)


if __name__ == "__main__":
    main()
