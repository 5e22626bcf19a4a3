"""Culprit hints: name the likely cause where the netreach matrix shows a clear pattern.

Each rule looks at the cells (source node, path, family, destination node) -> pass/fail,
merged across rounds:

- every path to one node fails from every other node          -> that node's network (or agent)
- every path from one node fails                                -> that node's network
- pod IPs work from a node but its ClusterIP cells all fail,
  and the NodePort cells *to* it fail from everywhere           -> that node's service proxy
- only one pair of nodes fails, in both directions              -> the link between them
- every IPv6 cell fails while IPv4 works                        -> the IPv6 data path
  (or only between some pairs)
- only the Ingress fails / only the LoadBalancer fails          -> the ingress controller / LB
- secondary-interface (multus) cells to a node fail, pod IP ok  -> that node's secondary network

For dns and http targets (``target_hints``), per target:

- some queries answered at normal latency (p99 under half the timeout), the rest never
  answered (or answered TC=1)                                   -> server-side rate limiting
- every UDP reply truncated (TC=1), nothing else                -> the answer is too large for
                                                                   UDP, or RRL slips every one

and what the CLI learnt from the API (``RunResult.cluster_hints``), e.g. that the cluster DNS
Service has no ready endpoints.

Hints are hints: they state the pattern they saw, so a reader can check it.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from kubectl_kdoctor.engine.stats import TIMEOUT, TRUNCATED
from kubectl_kdoctor.report.model import RunResult, TargetResult, merge_targets
from kubectl_kdoctor.task import DNS, NETREACH

Cell = tuple[str, str, str, str]  # source, path, family, destination ("*" for LB/Ingress)


def cells(run: RunResult) -> dict[Cell, bool]:
    out: dict[Cell, bool] = {}
    for n in run.merged_by_node():
        groups: dict[Cell, list[TargetResult]] = defaultdict(list)
        for t in n.targets:
            if t.path:
                groups[(n.node, t.path, t.family or "", t.target_node or "*")].append(t)
        for key, parts in groups.items():
            merged = merge_targets(parts, run.expect)
            out[key] = all(m.passed for m in merged)
    return out


def _all_fail(values: list[bool]) -> bool:
    return bool(values) and not any(values)


def hints(run: RunResult) -> list[str]:
    c = cells(run)
    if not c or all(c.values()):
        return []
    nodes = sorted({k[0] for k in c} | {k[3] for k in c if k[3] != "*"})
    out: list[str] = []
    dead_to: set[str] = set()
    dead_from: set[str] = set()
    for x in nodes:
        to_x = [ok for (s, p, f, d), ok in c.items() if d == x and s != x]
        from_x = [ok for (s, p, f, d), ok in c.items() if s == x and d not in (x, "*")]
        if len(nodes) > 2 and _all_fail(to_x):
            dead_to.add(x)
        if len(nodes) > 2 and _all_fail(from_x):
            dead_from.add(x)
    for x in sorted(dead_to & dead_from):
        out.append(f"{x}: every path to and from it fails - its network (or its agent)")
    for x in sorted(dead_to - dead_from):
        out.append(f"{x}: every path to it fails from every other node - its network or its agent")
    for x in sorted(dead_from - dead_to):
        out.append(f"{x}: every path from it fails - its network")
    suspects = dead_to | dead_from

    for x in nodes:
        if x in suspects:
            continue
        pod_from = [ok for (s, p, f, d), ok in c.items() if s == x and p == "pod"]
        cip_from = [
            ok for (s, p, f, d), ok in c.items() if s == x and p in ("clusterip", "loadbalancer")
        ]
        np_to = [ok for (s, p, f, d), ok in c.items() if d == x and p == "nodeport"]
        if pod_from and all(pod_from) and (_all_fail(cip_from) or _all_fail(np_to)):
            what = [
                w
                for w, v in (("ClusterIP from it", cip_from), ("its NodePort", np_to))
                if _all_fail(v)
            ]
            out.append(
                f"{x}: pod IPs work but {' and '.join(what)} fail - its service proxy (kube-proxy)"
            )
            suspects.add(x)

    pairs: dict[tuple[str, str], list[bool]] = defaultdict(list)
    for (s, _p, _f, d), ok in c.items():
        if d not in ("*", s) and s not in suspects and d not in suspects:
            pairs[tuple(sorted((s, d)))].append(ok)  # type: ignore[index]
    bad_pairs = [pair for pair, oks in pairs.items() if _all_fail(oks)]
    for a, b in sorted(bad_pairs):
        out.append(
            f"{a} <-> {b}: every path between them fails, both ways, while each reaches the others - the link between them"
        )

    fams = {f for (_, _, f, _) in c}
    if {"ipv4", "ipv6"} <= fams:
        v4 = [ok for (s, p, f, d), ok in c.items() if f == "ipv4"]
        v6 = [ok for (s, p, f, d), ok in c.items() if f == "ipv6"]
        if all(v4) and _all_fail(v6):
            out.append(
                "only IPv6 fails (every IPv6 cell, every IPv4 cell passes) - the IPv6 data path"
            )
        elif all(v4) and not all(v6):
            v6_pairs = sorted(
                {
                    tuple(sorted((s, d)))
                    for (s, p, f, d), ok in c.items()
                    if f == "ipv6" and not ok and d != "*"
                }
            )
            if v6_pairs:
                listed = ", ".join(f"{a} <-> {b}" for a, b in v6_pairs[:5])
                out.append(f"only IPv6 fails, between {listed} - the IPv6 path between those nodes")

    for front, culprit in (
        ("ingress", "the ingress controller or its route"),
        ("loadbalancer", "the load balancer"),
    ):
        this = [ok for (_s, p, _f, _d), ok in c.items() if p == front]
        others = [ok for (_s, p, _f, _d), ok in c.items() if p != front]
        if _all_fail(this) and others and all(others):
            out.append(f"only the {front} path fails, from every node - {culprit}")

    for x in nodes:
        mul = [ok for (s, p, f, d), ok in c.items() if d == x and p == "multus" and s != x]
        pod = [ok for (s, p, f, d), ok in c.items() if d == x and p == "pod" and s != x]
        if _all_fail(mul) and pod and all(pod):
            out.append(
                f"{x}: its pod IP answers but its secondary interface does not - its secondary (multus) network"
            )
    return out


def all_hints(run: RunResult) -> list[str]:
    """Every hint of a run: the netreach matrix's or the targets', then the API's."""
    found = hints(run) if run.kind == NETREACH else target_hints(run)
    return found + [h for h in run.cluster_hints if h not in found]


def _timeout_ms(spec: dict[str, Any]) -> float | None:
    request = spec.get("request") if isinstance(spec, dict) else None
    value = request.get("perRequestTimeoutInMS") if isinstance(request, dict) else None
    return float(value) if isinstance(value, (int, float)) and value > 0 else None


def target_hints(run: RunResult) -> list[str]:
    out: list[str] = []
    if run.kind != DNS:
        return out
    timeout_ms = _timeout_ms(run.spec)
    normal_ms = timeout_ms / 2 if timeout_ms else 250.0
    for n in run.merged_by_node():
        for t in n.targets:
            s = t.stats
            where = f"{n.node} {s.name}"
            sent = s.requests - s.skipped
            tc = s.errors.get(TRUNCATED, 0)
            lost = s.errors.get(TIMEOUT, 0)
            if sent <= 0 or t.passed:
                continue
            if tc and tc == sent:
                out.append(
                    f"{where}: every UDP reply came truncated (TC=1) - the answer does not fit "
                    "in 512 bytes (queries carry no EDNS), or the server rate-limits every query "
                    "(RRL 'slip'); --tc-fallback retries over TCP as a resolver does, or use "
                    "--protocol tcp"
                )
                continue
            answered = s.success
            rest = sent - answered
            if not answered or not rest or lost + tc != rest:
                continue
            p99_ms = s.latency.percentile(0.99) / 1000 if s.latency.n else 0.0
            if p99_ms > normal_ms:
                continue
            how = (
                "never answered"
                if not tc
                else (
                    "answered truncated (TC=1, RRL 'slip')"
                    if not lost
                    else "never answered or answered truncated (TC=1, RRL 'slip')"
                )
            )
            out.append(
                f"{where}: {answered} of {sent} queries answered at normal latency "
                f"(p99 {p99_ms:.2f}ms), the other {rest} {how} - the server likely rate-limits "
                "(response rate limiting); lower --qps, or query from more source addresses"
                + ("; --tc-fallback retries TC replies over TCP as a resolver does" if tc else "")
            )
    return out
