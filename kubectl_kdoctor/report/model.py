"""The result of a run, independent of how it ran (local, job mode, kdoctor controller).

``RunResult`` holds one ``NodeResult`` per agent node and round, each with its
``TargetResult``s. ``kdoctor.py`` turns it into a ``KdoctorReport`` and back; the renderers
read it. Targets carry their full ``TargetStats`` (histograms included) when we measured
them, so rounds and agents merge exactly; a report read from a kdoctor controller has only
the figures kdoctor kept, held in ``TargetResult.figures``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

from kubectl_kdoctor.engine.stats import TargetStats, merge_all
from kubectl_kdoctor.report.verdict import Verdict, judge
from kubectl_kdoctor.task import Expect

PERCENTILES = (("p50", 0.50), ("p90", 0.90), ("p95", 0.95), ("p99", 0.99))


@dataclasses.dataclass(slots=True)
class TargetResult:
    stats: TargetStats
    verdict: Verdict
    path: str | None = None  # netreach: pod, clusterip, nodeport, loadbalancer, ingress, multus
    family: str | None = None  # ipv4 | ipv6
    target_node: str | None = None  # netreach: the node whose agent answered this path
    figures: dict[str, float] | None = None  # latencies (ms) of a foreign report, when no histogram

    @property
    def passed(self) -> bool:
        return self.verdict.passed

    def latencies_ms(self) -> dict[str, float] | None:
        """min, mean, p50, p90, p95, p99, max in milliseconds; None when nothing was
        answered in time (no latency to show: ``-`` / null, never 0)."""
        h = self.stats.latency
        if h.n == 0:
            return dict(self.figures) if self.figures else None
        out = {"min": h.min / 1000, "mean": h.mean / 1000}
        for key, q in PERCENTILES:
            out[key] = h.percentile(q) / 1000
        out["max"] = h.max / 1000
        return out


@dataclasses.dataclass(slots=True)
class NodeResult:
    node: str
    pod: str = ""
    round: int = 1
    start: float = 0.0
    end: float = 0.0
    targets: list[TargetResult] = dataclasses.field(default_factory=list)
    error: str | None = None  # agent-level failure (discovery, setup, timeout)
    system: dict[str, str] = dataclasses.field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return self.error is None and all(t.passed for t in self.targets)

    def reason(self) -> str:
        if self.error:
            return self.error
        for t in self.targets:
            if not t.passed:
                return f"test {t.stats.name}: {'; '.join(t.verdict.reasons)}"
        return ""


@dataclasses.dataclass
class RunResult:
    kind: str
    name: str
    created: float
    spec: dict[str, Any]  # the kdoctor-style task spec (netReach / appHttpHealthy / netDns)
    expect: Expect = Expect()
    rounds_expected: int = 1
    nodes: list[NodeResult] = dataclasses.field(default_factory=list)
    expected_nodes: list[str] = dataclasses.field(default_factory=list)
    skipped_nodes: dict[str, str] = dataclasses.field(default_factory=dict)
    missing: dict[int, list[str]] = dataclasses.field(default_factory=dict)  # round -> nodes
    mode: str = "local"
    finished: bool = True
    notes: list[str] = dataclasses.field(default_factory=list)
    peer_plan: dict[str, list[str]] = dataclasses.field(default_factory=dict)  # sampled pairs
    cluster_hints: list[str] = dataclasses.field(default_factory=list)  # learnt from the API

    # --- derived views ----------------------------------------------------------------

    @property
    def rounds_done(self) -> int:
        return max((n.round for n in self.nodes), default=0)

    def round_nodes(self, round_no: int) -> list[NodeResult]:
        return [n for n in self.nodes if n.round == round_no]

    def missing_nodes(self) -> dict[int, list[str]]:
        """Per round, expected nodes that never reported."""
        out = {r: sorted(v) for r, v in self.missing.items() if v}
        if self.expected_nodes:
            for r in range(1, self.rounds_done + 1):
                seen = {n.node for n in self.round_nodes(r)}
                gone = sorted(set(self.expected_nodes) - seen)
                if gone:
                    out[r] = sorted(set(out.get(r, [])) | set(gone))
        return out

    @property
    def passed(self) -> bool:
        if not self.nodes:
            return False
        if self.expect.all_nodes and self.skipped_nodes:
            return False  # --require-all-nodes
        return all(n.passed for n in self.nodes) and not self.missing_nodes()

    def skipped_failures(self) -> list[str]:
        """Skipped nodes as failures, when --require-all-nodes asked for every node."""
        if not self.expect.all_nodes:
            return []
        return [
            f"{node}: skipped ({why}) and --require-all-nodes is set"
            for node, why in sorted(self.skipped_nodes.items())
        ]

    def merged_by_node(self) -> list[NodeResult]:
        """One NodeResult per node with every target merged across rounds (exact)."""
        order: list[str] = []
        by_node: dict[str, list[NodeResult]] = {}
        for n in self.nodes:
            if n.node not in by_node:
                order.append(n.node)
            by_node.setdefault(n.node, []).append(n)
        out = []
        for node in order:
            rounds = by_node[node]
            if len(rounds) == 1:
                out.append(rounds[0])
                continue
            merged = NodeResult(
                node=node,
                pod=rounds[-1].pod,
                round=rounds[-1].round,
                start=min(r.start for r in rounds),
                end=max(r.end for r in rounds),
                error="; ".join(r.error for r in rounds if r.error) or None,
                system=rounds[-1].system,
            )
            merged.targets = merge_targets([t for r in rounds for t in r.targets], self.expect)
            out.append(merged)
        return out


def merge_targets(targets: Iterable[TargetResult], expect: Expect) -> list[TargetResult]:
    """Merge targets of the same name (rounds, agents); the merged verdict fails when any
    part failed, and otherwise is judged on the merged figures."""
    groups: dict[str, list[TargetResult]] = {}
    for t in targets:
        groups.setdefault(t.stats.name, []).append(t)
    out = []
    for name, parts in groups.items():
        stats = merge_all([p.stats for p in parts], name)
        assert stats is not None
        verdict = judge(stats, expect)
        failed = [r for p in parts if not p.passed for r in p.verdict.reasons]
        if failed and verdict.passed:
            verdict = Verdict(False, tuple(dict.fromkeys(failed)), verdict.invalid)
        first = parts[0]
        out.append(
            TargetResult(stats, verdict, first.path, first.family, first.target_node, first.figures)
        )
    return out
