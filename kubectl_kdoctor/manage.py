"""``get``, ``report``, ``delete``, ``cleanup`` and ``version`` against a cluster: each
returns data; the CLI renders it."""

from __future__ import annotations

import dataclasses
import platform
import time
from collections import Counter
from collections.abc import Callable
from functools import partial
from typing import Any

from kubectl_kdoctor import __version__
from kubectl_kdoctor.errors import Forbidden, InputError, KdoctorError, NotFound
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


def run_status(job: Any, n_reports: int) -> str:
    """Creating (its objects are being made: parallelism still 0), Running, Complete (every
    agent reported, even while its pods are still exiting) or Failed."""
    st = job.status
    conds = {c.type: c for c in (st.conditions or [])} if st else {}
    if "Complete" in conds and conds["Complete"].status == "True":
        return "Complete"
    if "Failed" in conds and conds["Failed"].status == "True":
        return "Failed"
    if job.spec.suspend or job.spec.parallelism == 0:
        return "Creating"
    if n_reports >= (job.spec.completions or 0) > 0:
        return "Complete"
    return "Running"


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
            n_reports = reported[(j.metadata.namespace, j.metadata.name)]
            status = run_status(j, n_reports)
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
    foreign: InputError | None = None
    if kind in (None, "run"):
        from kubectl_kdoctor.jobmode import load_run

        try:
            return load_run(kube, kube.namespace, name)
        except InputError as exc:  # a Job of that name the plugin did not make
            if kind == "run":
                raise
            foreign = exc
        except NotFound:
            if kind == "run":
                raise NotFound(
                    f"no run {name} in namespace {kube.namespace} (runs are deleted when they end unless --keep)"
                ) from None
    from kubectl_kdoctor.kube.tasks import task_report

    try:
        return task_report(kube, kind, name)
    except NotFound:
        if foreign is not None:
            raise foreign from None
        raise


def delete(access: Access, kind: str | None, name: str) -> list[str]:
    """Delete the plugin's run or kdoctor task NAME; return what was deleted. A same-named
    object the plugin did not make (``manifests.is_ours``) is refused (exit 2), never deleted."""
    from kubectl_kdoctor.jobmode import not_ours
    from kubectl_kdoctor.kube import objects
    from kubectl_kdoctor.kube.tasks import delete_task, find_tasks

    kube = connect(access)
    ns = kube.namespace
    done: list[str] = []
    foreign: list[str] = []
    if kind in (None, "run"):
        job = objects.read(kube, "Job", ns, name)
        if job is not None and m.is_ours(job.labels, name):
            if objects.delete(kube, job):
                done.append(f"run {ns}/{name}")
        elif job is not None:
            foreign.append(f"Job {ns}/{name}")
    if kind != "run" and not done:
        for task in find_tasks(kube, kind, name):
            if not m.is_ours(task.labels, name):
                foreign.append(f"{task.kind} {name}")
            elif delete_task(kube, task):
                done.append(f"{task.kind} {name}")
    if done:
        return done
    if foreign:
        raise not_ours(" and ".join(foreign))
    raise NotFound(f"no run or kdoctor task named {name} (namespace {ns})")


@dataclasses.dataclass(frozen=True)
class Sweep:
    """What ``cleanup`` deletes (or would) and what it spares, one line each."""

    delete: list[str]
    spared: list[str]
    notes: list[str] = dataclasses.field(default_factory=list)


def cleanup(
    access: Access,
    all_namespaces: bool,
    *,
    everything: bool = False,
    dry_run: bool = False,
    say: Callable[[str], None] = lambda line: None,
) -> Sweep:
    """Delete the plugin's finished runs, their leftovers and the plugin's finished kdoctor
    tasks, in the namespace (kdoctor tasks: made from it) or everywhere (``all_namespaces``).
    Runs and tasks still in progress are spared unless ``everything``. ``say`` hears each line
    as it is done (``deleted ...`` / ``would delete ...``)."""
    from kubectl_kdoctor.kube import objects
    from kubectl_kdoctor.kube.tasks import delete_task, plugin_tasks

    kube = connect(access)
    ns = None if all_namespaces else kube.namespace
    verb = "would delete" if dry_run else "deleted"
    out = Sweep([], [])

    def act(line: str, do: Callable[[], bool]) -> None:
        if dry_run or do():
            out.delete.append(line)
            say(f"{verb} {line}")

    listed = objects.list_ours_with_objects(kube, "Job", ns, f"{m.ROLE}=run")
    runs = [job for job, _ in listed]
    reported = Counter(
        (n, labels.get(m.RUN)) for n, labels in config_map_labels(kube, ns, f"{m.ROLE}=report")
    )
    for job, job_obj in listed:
        status = run_status(job_obj, reported[(job.namespace, job.name)])
        if status in ("Creating", "Running") and not everything:
            out.spared.append(f"run {job.namespace}/{job.name}: {status.lower()}")
            continue
        act(f"run {job.namespace}/{job.name} ({status})", partial(objects.delete, kube, job))
    unlisted: list[str] = []
    for ref in objects.leftovers(kube, ns, {j.uid for j in runs}, unlisted):
        act(
            f"{ref} (left over by run {ref.labels.get(m.RUN)})",
            partial(objects.delete, kube, ref),
        )
    if unlisted:
        out.notes.append(f"leftovers not swept: may not list {', '.join(unlisted)} objects")
    try:
        tasks = plugin_tasks(kube, ns)
    except (
        Forbidden
    ) as exc:  # kdoctor tasks are cluster-scoped: a namespaced user may not list them
        out.notes.append(f"kdoctor tasks not swept: {exc}")
        tasks = []
    for task in tasks:
        if not task.finished and not everything:
            out.spared.append(f"{task}: in progress")
            continue
        act(str(task), partial(delete_task, kube, task))
    return out
