"""KdoctorReport: our layout round-trips exactly; kdoctor's three historical layouts parse."""

from __future__ import annotations

import json
from typing import Any

from kubectl_kdoctor.engine.stats import TargetStats
from kubectl_kdoctor.report.kdoctor import from_report, to_report
from kubectl_kdoctor.report.model import NodeResult, RunResult, TargetResult
from kubectl_kdoctor.report.render import render
from kubectl_kdoctor.report.verdict import judge
from kubectl_kdoctor.task import DNS, NETREACH, Expect


def _stats(name: str, lat_us: list[int], fails: int = 0) -> TargetStats:
    s = TargetStats(name=name, url="http://10.0.0.1:8080/", qps=10, planned=len(lat_us) + fails)
    s.start, s.end, s.attack = 1_700_000_000.0, 1_700_000_002.0, 2.0
    for v in lat_us:
        s.mark_sent(0.0001)
        s.ok("200", v, v // 2, 100)
    for _ in range(fails):
        s.mark_sent(0.0001)
        s.failed("timeout", "timeout after 1s")
    return s


def _run(fail_b: bool = False) -> RunResult:
    expect = Expect(success_rate=1.0, p99=0.05)
    run = RunResult(
        kind=NETREACH,
        name="mesh",
        created=1_700_000_000.0,
        spec={"x": 1},
        expect=expect,
        expected_nodes=["a", "b", "c"],
        mode="job",
    )
    for node in ("a", "b"):
        n = NodeResult(
            node=node, pod=f"p-{node}", round=1, start=1_700_000_000.0, end=1_700_000_003.0
        )
        for dest in ("a", "b"):
            s = _stats(
                f"AgentPodV4IP_p-{dest}_10.0.0.1",
                [100, 200, 300, 5000],
                fails=3 if (fail_b and dest == "b") else 0,
            )
            n.targets.append(TargetResult(s, judge(s, expect), "pod", "ipv4", dest))
        run.nodes.append(n)
    return run


def test_round_trip_keeps_histograms_and_verdicts() -> None:
    run = _run(fail_b=True)
    doc = json.loads(json.dumps(to_report(run)))
    assert doc["apiVersion"] == "system.kdoctor.io/v1beta1"
    assert doc["metadata"]["name"] == "netreach-mesh"
    assert doc["task"]["spec"] == {"netReach": {"x": 1}}
    entry = doc["report"]["latestRoundReport"][0]
    assert set(entry) >= {
        "roundNumber",
        "roundResult",
        "nodeName",
        "podName",
        "roundStartTimeStamp",
        "roundEndTimeStamp",
        "roundDuration",
        "taskNetReach",
    }
    detail = entry["taskNetReach"]["roundTaskDetail"][0]
    metrics = detail["requestTargetMetrics"]
    assert set(metrics["latencies"]) == {
        "p50InMs",
        "p90InMs",
        "p95InMs",
        "p99InMs",
        "maxInMs",
        "minInMs",
        "meanInMs",
    }
    assert metrics["latencies"]["maxInMs"] == 5.0
    assert metrics["latenciesInUs"]["min"] == 100
    back = from_report(doc)
    assert [n.node for n in back.nodes] == ["a", "b"]
    assert back.nodes[0].targets[0].stats.latency == run.nodes[0].targets[0].stats.latency
    assert back.passed is False
    assert back.missing_nodes() == {1: ["c"]}
    assert not back.nodes[0].targets[1].passed
    assert "success rate" in back.nodes[0].targets[1].verdict.reasons[0]


def test_table_names_failures_and_missing_nodes() -> None:
    text = render(_run(fail_b=True), "table")
    assert text.startswith("NetReach mesh (job): FAIL")
    assert "c: never reported (round 1)" in text
    assert "a -> b [pod/ipv4]" in text


def test_junit_and_html_render() -> None:
    run = _run()
    junit = render(run, "junit")
    assert junit.startswith("<?xml") and 'name="a"' in junit and "never reported" in junit
    page = render(run, "html")
    assert page.startswith("<!DOCTYPE html>") and "<svg" in page and "from \\ to" in page


ERA_A: dict[str, Any] = {
    "apiVersion": "system.kdoctor.io/v1beta1",
    "kind": "KdoctorReport",
    "metadata": {"name": "task", "creationTimestamp": None},
    "spec": {
        "TaskName": "task",
        "TaskType": "Netdns",
        "RoundNumber": 1,
        "FinishedRoundNumber": 1,
        "FailedRoundNumber": None,
        "Status": "Finished",
        "ReportRoundNumber": 1,
        "Report": [
            {
                "TaskName": "netdns.task",
                "TaskType": "Netdns",
                "RoundNumber": 1,
                "RoundResult": "succeed",
                "NodeName": "node-a",
                "PodName": "agent-1",
                "StartTimeStamp": "2023-06-01T10:00:00Z",
                "EndTimeStamp": "2023-06-01T10:00:10Z",
                "RoundDuration": "10s",
                "ReportType": "agent test report",
                "netDNSTaskSpec": {"request": {"qps": 10}},
                "netDNSTask": {
                    "targetType": "kdoctor agent",
                    "targetNumber": 1,
                    "succeed": True,
                    "MaxCPU": "10%",
                    "detail": [
                        {
                            "TargetName": "typeA_10.96.0.10:53_kubernetes.default.svc.cluster.local",
                            "TargetServer": "10.96.0.10:53",
                            "TargetProtocol": "udp",
                            "Succeed": True,
                            "MeanDelay": 1.5,
                            "SucceedRate": 1,
                            "Metrics": {
                                "StartTime": "2023-06-01T10:00:00Z",
                                "EndTime": "2023-06-01T10:00:10Z",
                                "RequestCounts": 100,
                                "SuccessCounts": 100,
                                "Latencies": {
                                    "P50_inMs": 1,
                                    "P90_inMs": 2,
                                    "P95_inMs": 2,
                                    "P99_inMs": 3,
                                    "Max_inMx": 7,
                                    "Min_inMs": 0,
                                    "Mean_inMs": 1.5,
                                },
                                "ReplyCode": {"NOERROR": 100},
                            },
                        }
                    ],
                },
            }
        ],
    },
}


def test_reads_era_a_with_the_max_typo() -> None:
    run = from_report(ERA_A)
    assert run.kind == DNS and run.name == "task" and run.passed
    t = run.nodes[0].targets[0]
    assert t.stats.requests == 100 and t.stats.success == 100
    assert t.latencies_ms()["max"] == 7 and t.latencies_ms()["p99"] == 3
    assert t.stats.codes == {"NOERROR": 100}


def test_reads_era_b_and_current_kdoctor_layout() -> None:
    era_b = json.loads(
        json.dumps(ERA_A).replace("P99_inMs", "P99InMs").replace("Max_inMx", "MaxInMs")
    )
    assert from_report(era_b).nodes[0].targets[0].latencies_ms()["max"] == 7
    current = {
        "apiVersion": "system.kdoctor.io/v1beta1",
        "kind": "KdoctorReport",
        "metadata": {"name": "netreach-x"},
        "task": {
            "name": "x",
            "kind": "NetReach",
            "spec": {"netReach": {"expect": {"successRate": 1}}},
        },
        "status": {
            "totalRoundNumber": 1,
            "roundFinishedNumber": 1,
            "status": "Finished",
            "roundNumber": 1,
        },
        "report": {
            "latestRoundReport": [
                {
                    "roundNumber": 1,
                    "roundResult": "fail",
                    "nodeName": "n1",
                    "podName": "p1",
                    "taskNetReach": {
                        "roundSucceed": False,
                        "roundTaskDetail": [
                            {
                                "name": "AgentClusterV4IP_10.96.0.5:80",
                                "url": "http://10.96.0.5:80",
                                "requestSucceed": False,
                                "failureReason": "Success Rate 0.5 is lower than request 1.00",
                                "requestTargetMetrics": {
                                    "requestCounts": 10,
                                    "successCounts": 5,
                                    "latencies": {"p99InMs": 4, "maxInMs": 9},
                                },
                            }
                        ],
                    },
                }
            ]
        },
    }
    run = from_report(current)
    assert not run.passed
    t = run.nodes[0].targets[0]
    assert t.stats.success_rate == 0.5
    assert "lower than request" in t.verdict.reasons[0]
