"""Issue 22 in the report layer: no latency without an answer, failure reasons per target,
skipped nodes, DNS hints; in every output format."""

from __future__ import annotations

import json
from xml.etree import ElementTree as ET

import pytest
import yaml

from kubectl_kdoctor.engine.stats import REFUSED, TIMEOUT, TargetStats
from kubectl_kdoctor.report.kdoctor import from_report, to_report
from kubectl_kdoctor.report.model import NodeResult, RunResult, TargetResult
from kubectl_kdoctor.report.render import render
from kubectl_kdoctor.report.verdict import judge
from kubectl_kdoctor.task import DNS

OUTPUTS = ("table", "wide", "json", "yaml", "junit", "html")


def _dead_dns(n: int = 50) -> TargetStats:
    s = TargetStats(name="kube-dns", kind="dns", url="10.96.0.10:53", method="udp", qps=10)
    s.planned = n
    s.start, s.end, s.attack = 1_700_000_000.0, 1_700_000_006.0, 5.0
    for i in range(n):
        s.mark_sent(0.0001)
        if i % 10 == 0:
            s.failed(REFUSED, "ICMP port unreachable from the server")
        else:
            s.failed(TIMEOUT, "no reply within 1s")
    return s


def _run(stats: TargetStats, **kw: object) -> RunResult:
    run = RunResult(kind=DNS, name="d", created=1_700_000_000.0, spec={}, mode="job", **kw)  # type: ignore[arg-type]
    node = NodeResult(node="node-1", pod="p", start=1_700_000_000.0, end=1_700_000_006.0)
    node.targets.append(TargetResult(stats, judge(stats, run.expect)))
    run.nodes.append(node)
    return run


def test_no_answer_means_no_latency_in_every_format() -> None:
    run = _run(_dead_dns())
    table = render(run, "table")
    row = next(line for line in table.splitlines() if line.startswith("node-1"))
    assert "0.00ms" not in row and row.split()[5:10] == ["-", "-", "-", "-", "-"], row
    assert "0.00ms" not in render(run, "wide")
    doc = json.loads(render(run, "json"))
    detail = doc["report"]["latestRoundReport"][0]["taskNetDns"]["roundTaskDetail"][0]
    metrics = detail["requestTargetMetrics"]
    assert metrics["latenciesInUs"] is None and metrics["serviceTimeInUs"] is None
    # kdoctor's own fields: kdoctor's convention with zero successes (0, see its stats.Mean)
    assert set(metrics["latencies"].values()) == {0.0} and metrics["successCounts"] == 0
    assert yaml.safe_load(render(run, "yaml")) == doc
    junit = ET.fromstring(render(run, "junit"))
    out = junit.find(".//system-out")
    assert out is not None and out.text is not None
    assert "mean=- p99=- max=-" in out.text and "0.000ms" not in out.text
    page = render(run, "html")
    assert "<td>-</td>" in page and "<td>0.00</td>" not in page
    # read back: still no latency (ours and a kdoctor report with successCounts 0)
    back = from_report(doc)
    assert back.nodes[0].targets[0].latencies_ms() is None
    del detail["stats"]
    assert from_report(doc).nodes[0].targets[0].latencies_ms() is None


def test_a_failed_target_names_every_reason_with_counts() -> None:
    run = _run(_dead_dns())
    want = (
        "50 of 50 failed: 45 x no reply within 1s, "
        "5 x connection refused: ICMP port unreachable from the server"
    )
    for output in OUTPUTS:
        text = render(run, output)
        if output == "yaml":
            text = json.dumps(yaml.safe_load(text))
        assert want in text, output


def test_latency_present_when_answered() -> None:
    s = _dead_dns(0)
    s.planned = 1
    s.mark_sent(0.0)
    s.ok("NOERROR", 1500, 1400, 60)
    run = _run(s)
    assert "1.50ms" in render(run, "table")
    metrics = to_report(run)["report"]["latestRoundReport"][0]["taskNetDns"]["roundTaskDetail"][0][
        "requestTargetMetrics"
    ]
    assert metrics["latenciesInUs"]["max"] == 1500


def _passing() -> TargetStats:
    s = _dead_dns(0)
    s.planned = 2
    for _ in range(2):
        s.mark_sent(0.0)
        s.ok("NOERROR", 900, 800, 60)
    return s


SKIPPED = {"node-3": "NotReady (NodeStatusUnknown)"}


def test_skipped_nodes_are_carried_in_every_format() -> None:
    run = _run(_passing(), skipped_nodes=dict(SKIPPED))
    assert run.passed
    table = render(run, "table")
    assert table.splitlines()[0].endswith(
        "PASS - 1 node(s), 1 target(s), 1 skipped (node-3: NotReady)"
    )
    assert "node-3: NotReady (NodeStatusUnknown)" in table
    doc = json.loads(render(run, "json"))
    assert doc["status"]["skippedNodes"] == SKIPPED and doc["status"]["verdict"] == "pass"
    assert yaml.safe_load(render(run, "yaml"))["status"]["skippedNodes"] == SKIPPED
    junit = ET.fromstring(render(run, "junit"))
    assert junit.get("skipped") == "1" and junit.get("failures") == "0"
    case = junit.find("./testsuite[@name='node-3']/testcase/skipped")
    assert case is not None and "NotReady" in (case.get("message") or "")
    page = render(run, "html")
    assert "Skipped nodes" in page and "node-3: NotReady (NodeStatusUnknown)" in page
    assert from_report(doc).skipped_nodes == SKIPPED


def test_require_all_nodes_makes_a_skipped_node_a_failure() -> None:
    from kubectl_kdoctor.task import Expect

    run = _run(_passing(), skipped_nodes=dict(SKIPPED), expect=Expect(all_nodes=True))
    assert not run.passed
    want = "node-3: skipped (NotReady (NodeStatusUnknown)) and --require-all-nodes is set"
    table = render(run, "table")
    assert "FAIL - 1 node(s)" in table and want in table
    assert want in render(run, "html")
    doc = json.loads(render(run, "json"))
    assert doc["status"]["verdict"] == "fail"
    assert doc["status"]["expect"]["requireAllNodes"] is True
    back = from_report(doc)
    assert back.expect.all_nodes and not back.passed
    junit = ET.fromstring(render(run, "junit"))
    assert junit.get("failures") == "1" and junit.get("skipped") == "0"
    assert junit.find("./testsuite[@name='node-3']/testcase/failure") is not None
    # without skipped nodes it changes nothing
    assert _run(_passing(), expect=Expect(all_nodes=True)).passed


def test_require_all_nodes_is_refused_with_local(capsys: pytest.CaptureFixture[str]) -> None:
    from kubectl_kdoctor.cli import main

    for argv in (
        ["http", "--local", "http://127.0.0.1:9/", "--require-all-nodes"],
        ["dns", "--local", "a.test", "--server", "127.0.0.1:9", "--require-all-nodes"],
    ):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        _, err = capsys.readouterr()
        assert exc.value.code == 2 and len(err.strip().splitlines()) == 1
        assert "--require-all-nodes" in err and "--local" in err


def test_tc_fallback_needs_udp_and_a_cluster_mode_that_has_it(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from kubectl_kdoctor.cli import main

    for argv, words in (
        (["dns", "a.test", "--protocol", "tcp", "--tc-fallback"], "needs --protocol udp"),
        (["dns", "a.test", "--mode", "crd", "--tc-fallback"], "not supported with --mode crd"),
        (
            ["dns", "a.test", "--mode", "crd", "--require-all-nodes"],
            "not supported with --mode crd",
        ),
    ):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        _, err = capsys.readouterr()
        assert exc.value.code == 2 and len(err.strip().splitlines()) == 1, err
        assert words in err and argv[-1] in err, err


def test_tc_fallback_reaches_the_dns_spec() -> None:
    from kubectl_kdoctor.cli.build import build

    inv = build(
        DNS, {"domain": "a.test", "local": True, "server": "127.0.0.1", "tc_fallback": True}
    )
    assert inv.task.dns is not None and inv.task.dns.tc_fallback
    inv = build(DNS, {"domain": "a.test", "local": True, "server": "127.0.0.1"})
    assert inv.task.dns is not None and not inv.task.dns.tc_fallback


def test_the_run_configuration_keeps_the_skipped_nodes() -> None:
    # `report NAME` rebuilds a kept run from its ConfigMap: the skipped nodes come with it.
    from kubectl_kdoctor.engine.spec import DnsSpec, Load
    from kubectl_kdoctor.kube.preflight import NodeInfo
    from kubectl_kdoctor.runconfig import AgentConfig, from_json, to_json
    from kubectl_kdoctor.task import Expect, Task

    task = Task(DNS, Load(), Expect(all_nodes=True), dns=DnsSpec("10.96.0.10", "a.test"))
    cfg = AgentConfig("r", "ns", "uid", task, (NodeInfo("node-1", ("10.0.0.1",), ()),))
    cfg = AgentConfig(**{**cfg.__dict__, "skipped": dict(SKIPPED)})
    back = from_json(to_json(cfg))
    assert back.skipped == SKIPPED and back.task.expect.all_nodes
    assert from_json(to_json(AgentConfig("r", "ns", "u", task, ()))).skipped == {}
