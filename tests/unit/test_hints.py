"""Culprit hints on synthetic matrices."""

from __future__ import annotations

from kubectl_kdoctor.engine.stats import TargetStats
from kubectl_kdoctor.report.hints import hints
from kubectl_kdoctor.report.model import NodeResult, RunResult, TargetResult
from kubectl_kdoctor.report.verdict import judge
from kubectl_kdoctor.task import NETREACH, Expect

NODES = ["n1", "n2", "n3"]


def _t(name: str, ok: bool, path: str, fam: str, dest: str | None) -> TargetResult:
    s = TargetStats(name=name, planned=10)
    for _ in range(10):
        s.mark_sent(0.0)
        if ok:
            s.ok("200", 1000, 900)
        else:
            s.failed("timeout")
    return TargetResult(s, judge(s, Expect()), path, fam, dest)


def run_with(bad) -> RunResult:  # bad(src, path, fam, dst) -> True when the cell fails
    run = RunResult(kind=NETREACH, name="r", created=0, spec={}, expected_nodes=NODES)
    for src in NODES:
        n = NodeResult(node=src)
        for fam in ("ipv4", "ipv6"):
            for path in ("pod", "clusterip", "nodeport"):
                for dst in NODES:
                    n.targets.append(
                        _t(f"{path}-{fam}-{dst}", not bad(src, path, fam, dst), path, fam, dst)
                    )
            n.targets.append(
                _t(f"ingress-{fam}", not bad(src, "ingress", fam, "*"), "ingress", fam, None)
            )
        run.nodes.append(n)
    return run


def test_all_pass_gives_no_hint() -> None:
    assert hints(run_with(lambda *a: False)) == []


def test_cut_link() -> None:
    h = hints(run_with(lambda s, p, f, d: {s, d} == {"n1", "n2"}))
    assert h == [
        "n1 <-> n2: every path between them fails, both ways, while each reaches the others - the link between them"
    ]


def test_service_proxy_of_one_node() -> None:
    # kube-proxy down on n2: ClusterIP from n2 fails; NodePort to n2 fails from everyone
    h = hints(
        run_with(
            lambda s, p, f, d: (p == "clusterip" and s == "n2") or (p == "nodeport" and d == "n2")
        )
    )
    assert any(
        x.startswith("n2: pod IPs work but ClusterIP from it and its NodePort fail") for x in h
    )
    assert not any("link" in x for x in h)


def test_dead_node() -> None:
    h = hints(
        run_with(
            lambda s, p, f, d: (d == "n3" and s != "n3") or (s == "n3" and d not in ("n3", "*"))
        )
    )
    assert h[0].startswith("n3: every path to and from it fails")


def test_secondary_interface_of_one_node() -> None:
    def bad(s: str, p: str, f: str, d: str) -> bool:
        return p == "multus" and "n3" in (s, d) and s != d

    run = run_with(lambda *a: False)
    for n in run.nodes:
        for dst in NODES:
            n.targets.append(
                _t(f"multus-{dst}", not bad(n.node, "multus", "ipv4", dst), "multus", "ipv4", dst)
            )
    assert any(
        h.startswith("n3: its pod IP answers but its secondary interface does not")
        for h in hints(run)
    )


def test_only_ipv6_and_only_ingress() -> None:
    assert any(
        "only IPv6 fails (every IPv6 cell" in x
        for x in hints(run_with(lambda s, p, f, d: f == "ipv6"))
    )
    pair = hints(run_with(lambda s, p, f, d: f == "ipv6" and {s, d} == {"n1", "n3"}))
    assert any("only IPv6 fails, between n1 <-> n3" in x for x in pair)
    assert any(
        "only the ingress path fails" in x
        for x in hints(run_with(lambda s, p, f, d: p == "ingress"))
    )
