"""``get``, ``report``, ``delete``, ``cleanup`` and ``version`` against a cluster: each
returns data; the CLI renders it."""

from __future__ import annotations

import dataclasses
import platform
import time
from collections import Counter
from typing import Any

from kubectl_kdoctor import __version__
from kubectl_kdoctor.errors import KdoctorError, NotFound
from kubectl_kdoctor.images import default_image
from kubectl_kdoctor.kube import manifests as m
from kubectl_kdoctor.kube.client import connect
from kubectl_kdoctor.kube.errors import api_errors
from kubectl_kdoctor.kube.objects import config_map_labels
from kubectl_kdoctor.report.model import RunResult
from kubectl_kdoctor.task import Access

RUN_SELECTOR = f"{m.MANAGED_BY}={m.MANAGER},{m.ROLE}=run"


@dataclasses.dataclass(frozen=True)
class Row:
    kind: str
    name: str
    namespace: str
    status: str
    detail: str
    age: float


def version_info(access: Access, client_only: bool) -> dict[str, Any]:
    info: dict[str, Any] = {
        "plugin": __version__,
        "python": platform.python_version(),
        "agentImage": default_image(),
    }
    if client_only:
        return info
    from kubectl_kdoctor.kube.kdoctor import controller_status, server_version

    try:
        kube = connect(access)
        info["server"] = server_version(kube)
        found, why = controller_status(kube)
        info["kdoctorController"] = "found" if found else "not found"
        info["kdoctorControllerDetail"] = why
    except KdoctorError as exc:
        info["server"] = f"unreachable ({exc})"
    return info


def _age(ts: Any) -> float:
    return max(0.0, time.time() - ts.timestamp()) if ts else 0.0


def list_runs(access: Access, kind: str | None, all_namespaces: bool) -> list[Row]:
    kube = connect(access)
    rows: list[Row] = []
    if kind in (None, "run"):
        with api_errors("list runs"):
            if all_namespaces:
                jobs = kube.batch.list_job_for_all_namespaces(
                    label_selector=RUN_SELECTOR, **kube.kw()
                ).items
            else:
                jobs = kube.batch.list_namespaced_job(
                    kube.namespace, label_selector=RUN_SELECTOR, **kube.kw()
                ).items
            # One metadata-only list for every run's report ConfigMaps: a run whose agents have
            # all reported is finished even while its Job (pods exiting) is still catching up.
            reported = Counter(
                (ns, labels.get(m.RUN))
                for ns, labels in config_map_labels(
                    kube, None if all_namespaces else kube.namespace, f"{m.ROLE}=report"
                )
            )
        for j in jobs:
            st = j.status
            n_reports = reported[(j.metadata.namespace, j.metadata.name)]
            conds = {c.type: c for c in (st.conditions or [])} if st else {}
            status = (
                "Complete"
                if "Complete" in conds and conds["Complete"].status == "True"
                else "Failed"
                if "Failed" in conds and conds["Failed"].status == "True"
                else "Suspended"
                if j.spec.suspend
                else "Complete"
                if n_reports >= (j.spec.completions or 0) > 0
                else "Running"
            )
            detail = f"{n_reports}/{j.spec.completions} agents reported"
            k = (j.metadata.labels or {}).get(m.KIND, "run")
            rows.append(
                Row(
                    f"run/{k}",
                    j.metadata.name,
                    j.metadata.namespace,
                    status,
                    detail,
                    _age(j.metadata.creation_timestamp),
                )
            )
    if kind != "run":
        from kubectl_kdoctor.kube.tasks import list_tasks

        rows += [Row(**r) for r in list_tasks(kube, kind)]
    return rows


def report_of(access: Access, kind: str | None, name: str) -> RunResult:
    kube = connect(access)
    if kind in (None, "run"):
        from kubectl_kdoctor.jobmode import load_run

        try:
            return load_run(kube, kube.namespace, name)
        except NotFound:
            if kind == "run":
                raise NotFound(
                    f"no run {name} in namespace {kube.namespace} (runs are deleted when they end unless --keep)"
                ) from None
    from kubectl_kdoctor.kube.tasks import task_report

    return task_report(kube, kind, name)


def delete(access: Access, kind: str | None, name: str) -> list[str]:
    """Delete a run or a kdoctor task; return what was deleted."""
    kube = connect(access)
    done: list[str] = []
    if kind in (None, "run"):
        from kubectl_kdoctor.jobmode import delete_run

        if delete_run(kube, kube.namespace, name):
            done.append(f"run {kube.namespace}/{name}")
    if kind != "run" and not done:
        from kubectl_kdoctor.kube.tasks import delete_task

        done += delete_task(kube, kind, name)
    if not done:
        raise NotFound(f"no run or kdoctor task named {name} (namespace {kube.namespace})")
    return done


def cleanup(access: Access, all_namespaces: bool) -> list[str]:
    """Delete every run and every object labelled managed-by kubectl-kdoctor."""
    from kubectl_kdoctor.kube.objects import sweep
    from kubectl_kdoctor.kube.tasks import cleanup_tasks

    kube = connect(access)
    return sweep(kube, all_namespaces) + cleanup_tasks(kube)
