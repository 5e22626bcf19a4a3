"""kdoctor task CRs (NetReach, AppHttpHealthy, Netdns; cluster-scoped, ``kdoctor.io/v1beta1``)
and their ``KdoctorReport`` (``system.kdoctor.io/v1beta1``): list, read, delete."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

from kubectl_kdoctor.errors import ClusterError, Conflict, NotFound
from kubectl_kdoctor.kube.client import Kube
from kubectl_kdoctor.kube.errors import api_errors
from kubectl_kdoctor.kube.manifests import MANAGED_BY, MANAGER, RUN, RUN_NAMESPACE, is_ours
from kubectl_kdoctor.report.kdoctor import from_report
from kubectl_kdoctor.report.model import NodeResult, RunResult
from kubectl_kdoctor.task import DNS, HTTP, KINDS, NETREACH

GROUP, VERSION = "kdoctor.io", "v1beta1"
PLURAL = {NETREACH: "netreaches", HTTP: "apphttphealthies", DNS: "netdnses"}
REPORT_GROUP = "system.kdoctor.io"


def _age(ts: str | None) -> float:
    from kubectl_kdoctor.report.kdoctor import parse_time

    t = parse_time(ts)
    return max(0.0, time.time() - t) if t else 0.0


def list_kind(kube: Kube, kind: str, selector: str | None = None) -> list[dict[str, Any]]:
    try:
        with api_errors(f"list {PLURAL[kind]}"):
            res = kube.custom.list_cluster_custom_object(
                GROUP, VERSION, PLURAL[kind], label_selector=selector or "", **kube.kw()
            )
    except NotFound:
        return []  # the CRD is not installed
    return list(res.get("items") or [])


def list_tasks(kube: Kube, kind: str | None) -> list[dict[str, Any]]:
    rows = []
    for k in [kind] if kind else KINDS:
        for obj in list_kind(kube, k):
            st = obj.get("status") or {}
            status = (
                "Finished"
                if st.get("finish")
                else ("Running" if st.get("doneRound") is not None else "Pending")
            )
            last = st.get("lastRoundStatus") or "-"
            rows.append(
                {
                    "kind": k,
                    "name": obj["metadata"]["name"],
                    "namespace": "",
                    "status": status,
                    "detail": f"round {st.get('doneRound', 0)}/{st.get('expectedRound', '?')}, last {last}",
                    "age": _age(obj["metadata"].get("creationTimestamp")),
                }
            )
    return rows


def get_task(kube: Kube, kind: str | None, name: str) -> tuple[str, dict[str, Any]]:
    for k in [kind] if kind else KINDS:
        try:
            with api_errors(f"get {k} {name}"):
                return k, kube.custom.get_cluster_custom_object(
                    GROUP, VERSION, PLURAL[k], name, **kube.kw()
                )
        except NotFound:
            continue
    raise NotFound(f"no run or kdoctor task named {name}")


def read_report(kube: Kube, kind: str, name: str) -> dict[str, Any] | None:
    """The KdoctorReport ``<kind>-<name>`` from the aggregated API; None when not served."""
    for report_name in (f"{kind.lower()}-{name}", name):
        try:
            with api_errors(f"get KdoctorReport {report_name}"):
                obj = kube.custom.get_namespaced_custom_object(
                    REPORT_GROUP, VERSION, "default", "kdoctorreports", report_name, **kube.kw()
                )
            return dict(obj)
        except NotFound:
            continue
        except ClusterError:
            return None
    return None


def task_report(kube: Kube, kind: str | None, name: str) -> RunResult:
    k, obj = get_task(kube, kind, name)
    doc = read_report(kube, k, name)
    if doc is not None:
        run = from_report(doc)
        run.mode = "crd"
        _add_status(run, obj.get("status") or {})
        return run
    return from_status(k, obj)


def _add_status(run: RunResult, st: dict[str, Any]) -> None:
    """What only ``.status`` knows: which nodes never reported, per round, and who was expected."""
    for rec in st.get("history") or []:
        r = int(rec.get("roundNumber") or 0)
        if rec.get("notReportAgentNodeList"):
            run.missing[r] = sorted(
                set(run.missing.get(r, [])) | set(rec["notReportAgentNodeList"])
            )
        if r == run.rounds_done or not run.expected_nodes:
            seen = set(rec.get("succeedAgentNodeList") or []) | set(
                rec.get("failedAgentNodeList") or []
            )
            run.expected_nodes = sorted(seen | set(rec.get("notReportAgentNodeList") or []))
    run.finished = bool(st.get("finish", run.finished))


def from_status(kind: str, obj: dict[str, Any]) -> RunResult:
    """A RunResult from ``.status`` alone (no report API): per node, succeeded or failed."""
    from kubectl_kdoctor.report.kdoctor import _expect_from, parse_time

    st = obj.get("status") or {}
    spec = obj.get("spec") or {}
    run = RunResult(
        kind=kind,
        name=obj["metadata"]["name"],
        created=parse_time(obj["metadata"].get("creationTimestamp")),
        spec=spec,
        expect=_expect_from({}, spec),
        rounds_expected=int(st.get("expectedRound") or 1),
        mode="crd",
        finished=bool(st.get("finish")),
    )
    run.notes.append("the KdoctorReport API is not served: per-node verdicts from .status only")
    for rec in st.get("history") or []:
        r = int(rec.get("roundNumber") or 0)
        for node in rec.get("succeedAgentNodeList") or []:
            run.nodes.append(NodeResult(node=node, round=r))
        for node in rec.get("failedAgentNodeList") or []:
            run.nodes.append(
                NodeResult(node=node, round=r, error=rec.get("failureReason") or "the agent failed")
            )
        if rec.get("notReportAgentNodeList"):
            run.missing[r] = list(rec["notReportAgentNodeList"])
    run.nodes.sort(key=lambda n: (n.round, n.node))
    return run


@dataclasses.dataclass(frozen=True)
class TaskRef:
    """A kdoctor task by kind, name and UID, with what ownership and ``cleanup`` look at."""

    kind: str
    name: str
    uid: str
    labels: dict[str, str] = dataclasses.field(default_factory=dict, compare=False)
    finished: bool = dataclasses.field(default=False, compare=False)

    def __str__(self) -> str:
        return f"{self.kind.lower()} {self.name}"


def _task_ref(kind: str, obj: dict[str, Any]) -> TaskRef:
    meta = obj.get("metadata") or {}
    return TaskRef(
        kind,
        str(meta.get("name", "")),
        str(meta.get("uid", "")),
        dict(meta.get("labels") or {}),
        bool((obj.get("status") or {}).get("finish")),
    )


def find_tasks(kube: Kube, kind: str | None, name: str) -> list[TaskRef]:
    """Every kdoctor task named ``name`` (of ``kind``, or of each kind), whoever made it."""
    out = []
    for k in [kind] if kind else KINDS:
        try:
            with api_errors(f"get {k} {name}"):
                obj = kube.custom.get_cluster_custom_object(
                    GROUP, VERSION, PLURAL[k], name, **kube.kw()
                )
        except NotFound:
            continue  # none of that name, or the CRD is not installed
        out.append(_task_ref(k, obj))
    return out


def plugin_tasks(kube: Kube, namespace: str | None) -> list[TaskRef]:
    """The plugin's kdoctor tasks (``manifests.is_ours``) made from ``namespace`` (the
    namespace label records the CLI's namespace; None: from any namespace)."""
    sel = f"{MANAGED_BY}={MANAGER},{RUN}" + (f",{RUN_NAMESPACE}={namespace}" if namespace else "")
    out = []
    for k in KINDS:
        out += [_task_ref(k, o) for o in list_kind(kube, k, sel)]
    return [t for t in out if is_ours(t.labels, t.name)]


def delete_task(kube: Kube, task: TaskRef) -> bool:
    """Delete exactly ``task`` (UID precondition); False when it is gone or was replaced."""
    from kubernetes import client

    body = client.V1DeleteOptions(preconditions=client.V1Preconditions(uid=task.uid))
    try:
        with api_errors(f"delete {task.kind} {task.name}"):
            kube.custom.delete_cluster_custom_object(
                GROUP, VERSION, PLURAL[task.kind], task.name, body=body, **kube.kw()
            )
    except (NotFound, Conflict):
        return False
    return True


def create_task(kube: Kube, obj: dict[str, Any]) -> TaskRef:
    kind, name = obj["kind"], obj["metadata"]["name"]
    with api_errors(f"create {kind} {name}"):
        made = kube.custom.create_cluster_custom_object(
            GROUP, VERSION, PLURAL[kind], obj, **kube.kw()
        )
    return _task_ref(kind, dict(made))


def _round_line(kind: str, name: str, st: dict[str, Any]) -> str:
    hist = st.get("history") or []
    cur = hist[0] if hist else {}
    ok = len(cur.get("succeedAgentNodeList") or [])
    bad = len(cur.get("failedAgentNodeList") or [])
    miss = len(cur.get("notReportAgentNodeList") or [])
    return (
        f"{kind} {name}: round {cur.get('roundNumber', 0)} of {st.get('expectedRound', '?')} "
        f"{cur.get('status', 'pending')}: {ok} succeeded, {bad} failed, {miss} not reported"
        + (" - finished" if st.get("finish") else "")
    )


def watch_task(
    kube: Kube, kind: str, name: str, deadline: float, progress: Callable[[str], None]
) -> dict[str, Any]:
    """Follow ``.status`` of a task (a watch on that one object) until ``finish`` or the
    deadline; return the last status seen."""
    from kubernetes import watch

    status: dict[str, Any] = {}
    last = ""
    rv = ""
    while time.monotonic() < deadline:
        w = watch.Watch()
        try:
            with api_errors(f"watch {kind} {name}"):
                for ev in w.stream(
                    kube.custom.list_cluster_custom_object,
                    GROUP,
                    VERSION,
                    PLURAL[kind],
                    field_selector=f"metadata.name={name}",
                    resource_version=rv or None,
                    timeout_seconds=max(1, min(60, int(deadline - time.monotonic()))),
                ):
                    obj = ev["object"]
                    rv = obj.get("metadata", {}).get("resourceVersion", rv)
                    if ev["type"] == "DELETED":
                        raise NotFound(f"{kind} {name} was deleted while it ran")
                    status = dict(obj.get("status") or {})
                    line = _round_line(kind, name, status)
                    if line != last:
                        progress(line)
                        last = line
                    if status.get("finish"):
                        w.stop()
                        return status
        except ClusterError as exc:
            if exc.status == 410:
                rv = ""
                continue
            raise
    return status
