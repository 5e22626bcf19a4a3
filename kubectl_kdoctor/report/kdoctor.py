"""``KdoctorReport`` (``system.kdoctor.io/v1beta1``): our results in kdoctor's current
layout (v0.2.2, ``reference/kdoctor-spec.md`` 8.3) plus fields of our own, and back.

Our extra fields sit beside kdoctor's, under names kdoctor never uses, so tools that read
kdoctor reports read ours: per detail ``stats`` (the full ``TargetStats`` with histograms,
for exact merging), ``latenciesInUs``, ``sendLagInUs``, ``lateRequests``,
``skippedRequests``, ``errorClasses``, ``path``, ``ipFamily``, ``targetNode``,
``measurementValid``, ``failureReasons``; per report ``verdict``, ``mode``, ``expectedNodes``,
``skippedNodes``, ``notReportedNodes``, ``previousRoundReports``.

Reading accepts all three historical layouts (8.4): era A (v0.1.0-v0.2.0, ``spec`` envelope,
``P50_inMs``/``Max_inMx``), era B (v0.2.1, ``spec`` envelope, ``P50InMs``), era C (current).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator, Mapping
from typing import Any

from kubectl_kdoctor.durations import format_duration
from kubectl_kdoctor.engine.stats import TargetStats
from kubectl_kdoctor.report.model import NodeResult, RunResult, TargetResult
from kubectl_kdoctor.report.verdict import Verdict, judge
from kubectl_kdoctor.task import DNS, HTTP, NETREACH, Expect

API_VERSION = "system.kdoctor.io/v1beta1"
SPEC_KEY = {NETREACH: "netReach", HTTP: "appHttpHealthy", DNS: "netDns"}
TASK_KEY = {NETREACH: "taskNetReach", HTTP: "taskAppHealthy", DNS: "taskNetDns"}
TARGET_TYPE = {NETREACH: "NetReach", HTTP: "HttpAppHealthy", DNS: "kdoctor agent"}


def rfc3339(ts: float) -> str | None:
    if not ts:
        return None
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: Any) -> float:
    if not value or not isinstance(value, str) or value.startswith("0001-"):
        return 0.0
    try:
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


def report_name(kind: str, name: str) -> str:
    return f"{kind.lower()}-{name}"


# --- RunResult -> KdoctorReport ----------------------------------------------------------


def to_report(run: RunResult) -> dict[str, Any]:
    out = to_report_envelope(run)
    latest = run.rounds_done
    out["report"] = {
        "latestRoundReport": [_node(run, n) for n in run.round_nodes(latest)],
        "previousRoundReports": [_node(run, n) for n in run.nodes if n.round != latest],
    }
    return out


def to_report_envelope(run: RunResult) -> dict[str, Any]:
    """Everything of the KdoctorReport but the per-agent entries."""
    latest = run.rounds_done
    missing = run.missing_nodes()
    out: dict[str, Any] = {
        "apiVersion": API_VERSION,
        "kind": "KdoctorReport",
        "metadata": {
            "name": report_name(run.kind, run.name),
            "creationTimestamp": rfc3339(run.created),
        },
        "task": {"name": run.name, "kind": run.kind, "spec": {SPEC_KEY[run.kind]: run.spec}},
        "status": {
            "totalRoundNumber": run.rounds_expected,
            "roundFinishedNumber": latest,
            "status": "Finished" if run.finished else "NotFinished",
            "roundNumber": latest,
            # ours
            "verdict": "pass" if run.passed else "fail",
            "mode": run.mode,
            "expectedNodes": list(run.expected_nodes),
            "skippedNodes": dict(run.skipped_nodes),
            "notReportedNodes": {str(r): v for r, v in missing.items()},
            "expect": _expect_dict(run.expect),
        },
    }
    if run.notes:
        out["status"]["notes"] = list(run.notes)
    if run.peer_plan:
        out["status"]["sampledPeers"] = {k: list(v) for k, v in run.peer_plan.items()}
    from kubectl_kdoctor.report.hints import all_hints

    found = all_hints(run)
    if found:
        out["status"]["hints"] = found
    if run.cluster_hints:
        out["status"]["clusterFindings"] = list(run.cluster_hints)
    return out


def to_report_chunks(run: RunResult) -> Iterator[str]:
    """``to_report`` as JSON text, one agent entry at a time: a thousand nodes' report never
    has to be held as one document."""
    envelope = to_report_envelope(run)
    head = json.dumps(envelope, indent=2)
    assert head.endswith("}")
    yield head[:-1].rstrip() + ',\n  "report": {\n    "latestRoundReport": ['
    latest = run.rounds_done
    for key, nodes in (
        ("latestRoundReport", run.round_nodes(latest)),
        ("previousRoundReports", [n for n in run.nodes if n.round != latest]),
    ):
        if key == "previousRoundReports":
            yield '],\n    "previousRoundReports": ['
        for i, n in enumerate(nodes):
            yield ("," if i else "") + "\n" + json.dumps(node_to_dict(run.kind, n))
    yield "]\n  }\n}\n"


def _expect_dict(e: Expect) -> dict[str, Any]:
    out: dict[str, Any] = {"successRate": e.success_rate}
    if e.mean_delay is not None:
        out["meanDelayInMs"] = e.mean_delay * 1000
    if e.p99 is not None:
        out["p99InMs"] = e.p99 * 1000
    if e.all_nodes:
        out["requireAllNodes"] = True
    return out


def _node(run: RunResult, n: NodeResult) -> dict[str, Any]:
    return node_to_dict(run.kind, n)


def node_to_dict(kind: str, n: NodeResult) -> dict[str, Any]:
    """One agent's round (kdoctor's ``Report`` entry plus our fields)."""
    reason = n.reason()
    task: dict[str, Any] = {
        "targetType": TARGET_TYPE[kind],
        "targetNumber": len(n.targets),
        "roundSucceed": n.passed,
        "systemResource": {
            "maxCPU": n.system.get("maxCPU", "0.000%"),
            "meanCPU": n.system.get("meanCPU", "0.000%"),
            "maxMemory": n.system.get("maxMemory", "0.00MB"),
        },
        "runningLoadTotal": {"appHttpHealthyQPS": 0, "netReachQPS": 0, "netDnsQPS": 0},
        "roundTaskDetail": [_detail(kind, t) for t in n.targets],
    }
    if reason:
        task["reasonsForFailure"] = reason
    out: dict[str, Any] = {
        "roundNumber": n.round,
        "roundResult": "succeed" if n.passed else "fail",
        "nodeName": n.node,
        "podName": n.pod,
        "roundStartTimeStamp": rfc3339(n.start),
        "roundEndTimeStamp": rfc3339(n.end),
        "roundDuration": format_duration(max(0.0, n.end - n.start)),
        TASK_KEY[kind]: task,
    }
    if reason:
        out["reasonsForFailure"] = reason
    if n.error:
        out["agentError"] = n.error
    return out


def _latency_block(t: TargetResult) -> dict[str, float]:
    """kdoctor's ``latencies``: its fields are required numbers, and kdoctor itself writes 0
    for every one when no request succeeded (``stats.Mean`` of nothing is 0); we do the same
    there, so its readers read ours. Our own ``latenciesInUs`` is null then."""
    lat = t.latencies_ms()
    if lat is None:
        return dict.fromkeys(LATENCY_KEYS, 0.0)
    return {
        "p50InMs": round(lat["p50"], 3),
        "p90InMs": round(lat["p90"], 3),
        "p95InMs": round(lat["p95"], 3),
        "p99InMs": round(lat["p99"], 3),
        "maxInMs": round(lat["max"], 3),
        "minInMs": round(lat["min"], 3),
        "meanInMs": round(lat["mean"], 3),
    }


LATENCY_KEYS = ("p50InMs", "p90InMs", "p95InMs", "p99InMs", "maxInMs", "minInMs", "meanInMs")


def _mean_delay(t: TargetResult) -> float:
    lat = t.latencies_ms()
    return round(lat["mean"], 3) if lat else 0.0  # kdoctor's convention (see _latency_block)


def _us_block(h: Any) -> dict[str, int] | None:
    if not h.n:
        return None  # nothing measured: absent, never 0
    return {
        "min": h.min,
        "mean": round(h.mean),
        "p50": h.percentile(0.5),
        "p90": h.percentile(0.9),
        "p95": h.percentile(0.95),
        "p99": h.percentile(0.99),
        "max": h.max,
    }


def _detail(kind: str, t: TargetResult) -> dict[str, Any]:
    s = t.stats
    reason = "; ".join(t.verdict.reasons) or None
    metrics: dict[str, Any] = {
        "requestStartTime": rfc3339(s.start),
        "requestEndTime": rfc3339(s.end),
        "requestDuration": format_duration(s.duration),
        "requestCounts": s.requests,
        "successCounts": s.success,
        "tps": round(s.tps, 3),
        "errors": {s.error_samples.get(k, k): v for k, v in s.errors.items()},
        "latencies": _latency_block(t),
        "existsNotSendRequests": s.skipped > 0,
        # ours
        "latenciesInUs": _us_block(s.latency),
        "serviceTimeInUs": _us_block(s.service),
        "sendLagInUs": _us_block(s.send_lag),
        "plannedRequests": s.planned,
        "sentRequests": s.sent,
        "lateRequests": s.late,
        "skippedRequests": s.skipped,
        "errorClasses": dict(s.errors),
        "qps": s.qps,
    }
    out: dict[str, Any]
    if kind == DNS:
        metrics.update(
            {
                "domain": s.extra.get("domain", ""),
                "server": s.url,
                "method": s.method,
                "failedCounts": s.failures,
                "replyCode": dict(s.codes),
                "qtype": s.extra.get("qtype", "A"),
                "truncatedReplies": s.truncated,
            }
        )
        out = {
            "name": s.name,
            "requestServer": s.url,
            "protocol": s.method,
            "requestSucceed": t.passed,
            "reasonsForFailure": reason,
            "requestMeanDelay": _mean_delay(t),
            "requestSucceedRate": round(s.success_rate, 6),
            "requestTargetMetrics": metrics,
        }
    else:
        metrics["totalDataSize"] = f"{s.bytes_in} byte"
        metrics["statusCodes"] = dict(s.codes)
        metrics["bytesOut"] = s.bytes_out
        out = {
            "name": s.name,
            "url": s.url,
            "method": s.method,
            "requestSucceed": t.passed,
            "requestMeanDelay": _mean_delay(t),
            "requestSucceedRate": round(s.success_rate, 6),
            "requestTargetMetrics": metrics,
        }
        if reason:
            out["failureReason" if kind == NETREACH else "reasonsForFailure"] = reason
    out["measurementValid"] = not t.verdict.invalid
    out["failureReasons"] = list(t.verdict.reasons)
    if t.path:
        out["path"] = t.path
    if t.family:
        out["ipFamily"] = t.family
    if t.target_node:
        out["targetNode"] = t.target_node
    out["stats"] = s.to_dict()
    return out


# --- KdoctorReport (any layout) -> RunResult -------------------------------------------------


def from_report(doc: Mapping[str, Any], expect: Expect | None = None) -> RunResult:
    """Read a KdoctorReport of any of kdoctor's three layouts (or ours)."""
    if "task" in doc or "report" in doc:
        return _from_current(doc, expect)
    if "spec" in doc and isinstance(doc["spec"], Mapping):
        return _from_legacy(doc, expect)
    raise ValueError("not a KdoctorReport: neither task/status/report nor spec envelope")


def _expect_from(status: Mapping[str, Any], spec: Mapping[str, Any]) -> Expect:
    e = status.get("expect")
    if isinstance(e, Mapping):
        return Expect(
            float(e.get("successRate", 1.0)),
            e["meanDelayInMs"] / 1000 if e.get("meanDelayInMs") is not None else None,
            e["p99InMs"] / 1000 if e.get("p99InMs") is not None else None,
            bool(e.get("requireAllNodes", False)),
        )
    se = spec.get("expect") or {}
    mean = se.get("meanAccessDelayInMs")
    return Expect(float(se.get("successRate", 1.0)), mean / 1000 if mean else None, None)


def _from_current(doc: Mapping[str, Any], expect: Expect | None) -> RunResult:
    task = doc.get("task") or {}
    kind = task.get("kind") or NETREACH
    spec_wrap = task.get("spec") or {}
    spec = dict(
        spec_wrap.get(SPEC_KEY.get(kind, ""), {}) or next(iter(spec_wrap.values()), {}) or {}
    )
    status = doc.get("status") or {}
    exp = expect or _expect_from(status, spec)
    run = RunResult(
        kind=kind,
        name=task.get("name") or str(doc.get("metadata", {}).get("name", "")),
        created=parse_time((doc.get("metadata") or {}).get("creationTimestamp")),
        spec=spec,
        expect=exp,
        rounds_expected=int(status.get("totalRoundNumber") or 1),
        finished=status.get("status", "Finished") == "Finished",
        mode=status.get("mode", "crd"),
        expected_nodes=list(status.get("expectedNodes") or []),
        skipped_nodes=dict(status.get("skippedNodes") or {}),
        missing={int(k): list(v) for k, v in (status.get("notReportedNodes") or {}).items()},
        notes=list(status.get("notes") or []),
        peer_plan={k: list(v) for k, v in (status.get("sampledPeers") or {}).items()},
        cluster_hints=[str(x) for x in status.get("clusterFindings") or []],
    )
    rep = doc.get("report") or {}
    entries = list(rep.get("previousRoundReports") or []) + list(rep.get("latestRoundReport") or [])
    for e in entries:
        run.nodes.append(_node_from(kind, e, exp, current=True))
    run.nodes.sort(key=lambda n: (n.round, n.node))
    return run


def _from_legacy(doc: Mapping[str, Any], expect: Expect | None) -> RunResult:
    spec_env = doc["spec"]
    kind = spec_env.get("TaskType") or NETREACH
    entries = list(spec_env.get("Report") or [])
    task_spec: dict[str, Any] = {}
    for e in entries:
        for key in ("NetReachTaskSpec", "HttpAppHealthyTaskSpec", "netDNSTaskSpec"):
            if e.get(key):
                task_spec = dict(e[key])
    exp = expect or _expect_from({}, task_spec)
    run = RunResult(
        kind=kind,
        name=spec_env.get("TaskName") or str(doc.get("metadata", {}).get("name", "")),
        created=parse_time((doc.get("metadata") or {}).get("creationTimestamp")),
        spec=task_spec,
        expect=exp,
        rounds_expected=int(spec_env.get("RoundNumber") or 1),
        finished=spec_env.get("Status", "Finished") == "Finished",
        mode="crd",
    )
    for e in entries:
        run.nodes.append(_node_from(kind, e, exp, current=False))
    return run


def _get(d: Mapping[str, Any], *keys: str, default: Any = None) -> Any:
    for k in keys:
        if k in d and d[k] is not None:
            return d[k]
    return default


def node_from_dict(kind: str, e: Mapping[str, Any], expect: Expect) -> NodeResult:
    """Inverse of ``node_to_dict`` (also reads kdoctor's current layout)."""
    return _node_from(kind, e, expect, current=True)


def _node_from(kind: str, e: Mapping[str, Any], expect: Expect, current: bool) -> NodeResult:
    task: Any
    if current:
        task = e.get(TASK_KEY[kind]) or next((e[k] for k in TASK_KEY.values() if k in e), {})
    else:
        task = _get(e, "NetReachTask", "HttpAppHealthyTask", "netDNSTask", default={})
    node = NodeResult(
        node=str(_get(e, "nodeName", "NodeName", default="")),
        pod=str(_get(e, "podName", "PodName", default="")),
        round=int(_get(e, "roundNumber", "RoundNumber", default=1)),
        start=parse_time(_get(e, "roundStartTimeStamp", "StartTimeStamp")),
        end=parse_time(_get(e, "roundEndTimeStamp", "EndTimeStamp")),
        error=e.get("agentError"),
    )
    sysres = _get(task, "systemResource", "SystemResource", default={}) or {}
    node.system = {
        "maxCPU": str(_get(sysres, "maxCPU", "MaxCPU", default=_get(task, "MaxCPU", default=""))),
        "meanCPU": str(_get(sysres, "meanCPU", "MeanCPU", default="")),
        "maxMemory": str(
            _get(sysres, "maxMemory", "MaxMemory", default=_get(task, "MaxMemory", default=""))
        ),
    }
    details = _get(task, "roundTaskDetail", "Detail", "detail", default=[]) or []
    node.targets = [_target_from(kind, d, expect) for d in details]
    succeed = _get(task, "roundSucceed", "Succeed", "succeed")
    reason = _get(e, "reasonsForFailure", "FailedReason") or _get(
        task, "reasonsForFailure", "FailureReason", "failureReason"
    )
    if succeed is False and all(t.passed for t in node.targets):
        node.error = node.error or reason or "the agent reported a failed round"
    return node


def _target_from(kind: str, d: Mapping[str, Any], expect: Expect) -> TargetResult:
    m = _get(d, "requestTargetMetrics", "Metrics", default={}) or {}
    if isinstance(d.get("stats"), Mapping):
        stats = TargetStats.from_dict(d["stats"])
        verdict = judge(stats, expect)
        reasons = tuple(d.get("failureReasons") or verdict.reasons)
        passed = bool(d.get("requestSucceed", verdict.passed))
        return TargetResult(
            stats,
            Verdict(passed, reasons if not passed else (), not d.get("measurementValid", True)),
            d.get("path"),
            d.get("ipFamily"),
            d.get("targetNode"),
        )
    name = str(_get(d, "name", "TargetName", default=""))
    stats = TargetStats(name=name, kind="dns" if kind == DNS else "http")
    stats.url = str(_get(d, "url", "TargetUrl", "requestServer", "TargetServer", default=""))
    stats.method = str(_get(d, "method", "TargetMethod", "protocol", "TargetProtocol", default=""))
    total = int(_get(m, "requestCounts", "RequestCounts", default=0))
    ok = int(_get(m, "successCounts", "SuccessCounts", default=0))
    stats.completed, stats.success = total, ok
    stats.start = parse_time(_get(m, "requestStartTime", "StartTime"))
    stats.end = parse_time(_get(m, "requestEndTime", "EndTime"))
    codes = _get(m, "statusCodes", "StatusCodes", "replyCode", "ReplyCode", default={}) or {}
    stats.codes = {str(k): int(v) for k, v in codes.items()}
    errors = _get(m, "errors", "Errors", default={}) or {}
    stats.errors = {str(k): int(v) for k, v in errors.items()}
    stats.error_samples = {k: k for k in stats.errors}
    if _get(m, "existsNotSendRequests", "ExistsNotSendRequests", default=False):
        stats.extra["existsNotSendRequests"] = True
    if kind == DNS:
        stats.extra["domain"] = _get(m, "domain", "TargetDomain", default="")
    lat = _get(m, "latencies", "Latencies", default={}) or {}
    figures: dict[str, float] | None = {
        "p50": float(_get(lat, "p50InMs", "P50InMs", "P50_inMs", default=0)),
        "p90": float(_get(lat, "p90InMs", "P90InMs", "P90_inMs", default=0)),
        "p95": float(_get(lat, "p95InMs", "P95InMs", "P95_inMs", default=0)),
        "p99": float(_get(lat, "p99InMs", "P99InMs", "P99_inMs", default=0)),
        "max": float(_get(lat, "maxInMs", "MaxInMs", "Max_inMx", "Max_inMs", default=0)),
        "min": float(_get(lat, "minInMs", "MinInMs", "Min_inMs", default=0)),
        "mean": float(
            _get(
                lat,
                "meanInMs",
                "MeanInMs",
                "Mean_inMs",
                default=_get(d, "requestMeanDelay", "MeanDelay", default=0),
            )
        ),
    }
    if ok == 0:
        figures = None  # kdoctor writes 0 for every latency when nothing succeeded
    passed = bool(_get(d, "requestSucceed", "Succeed", default=True))
    reason = _get(d, "failureReason", "reasonsForFailure", "FailureReason")
    verdict = Verdict(
        passed, (str(reason),) if (not passed and reason) else (() if passed else ("failed",))
    )
    return TargetResult(stats, verdict, figures=figures)
