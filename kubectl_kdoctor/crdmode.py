"""CRD mode: drive a kdoctor controller. Build the task CR from the same flags as job mode
(or from ``-f``), refusing what kdoctor cannot express; create it; follow ``.status`` round by
round; read the ``KdoctorReport``; delete the task unless ``--keep``.

kdoctor's admission rules that its schema does not show (``reference/kdoctor-spec.md`` 2, 7)
are applied here, before the API is called: every block sent explicitly, qps below the
per-kind maximum, ``roundTimeoutMinute <= interval``, placement only through ``affinity``.
"""

from __future__ import annotations

import copy
import secrets
import time
from typing import Any

import yaml

from kubectl_kdoctor.errors import ClusterError, InputError, Interrupted
from kubectl_kdoctor.kube import manifests as m
from kubectl_kdoctor.kube.client import Kube
from kubectl_kdoctor.report.model import RunResult
from kubectl_kdoctor.spec_kdoctor import kdoctor_spec
from kubectl_kdoctor.task import DNS, HTTP, NETREACH, Invocation, Placement, Task
from kubectl_kdoctor.ui import UI

API_VERSION = "kdoctor.io/v1beta1"
MAX_QPS = {NETREACH: 20, HTTP: 100, DNS: 100}  # kdoctor's chart defaults; qps must be below
MANAGED_LABELS = {"app.kubernetes.io/managed-by": "kubectl-kdoctor"}


def refuse_inexpressible(inv: Invocation, given: set[str]) -> None:
    """Exit 2 for every flag kdoctor cannot express (``given``: flags set on the command line)."""
    t = inv.task
    checks: list[tuple[str, str]] = [
        ("--expect-p99", "kdoctor has no percentile expectation"),
        ("--tolerate", "kdoctor's agentSpec has no tolerations (its agents tolerate every taint)"),
        ("--image", "the kdoctor controller chooses the agent image"),
        ("--image-pull-policy", "the kdoctor controller chooses the agent image"),
        ("--ingress-class", "kdoctor's Ingress has no class field"),
        ("--peers", "kdoctor always probes every agent"),
        ("--multus-networks", "kdoctor reads the interfaces its agents already have"),
        (
            "--data",
            "kdoctor takes a request body only from a ConfigMap (use -f with bodyConfigmapName)",
        ),
        (
            "--data-file",
            "kdoctor takes a request body only from a ConfigMap (use -f with bodyConfigmapName)",
        ),
        ("--cacert", "kdoctor takes TLS material only from a Secret (use -f with tlsSecretName)"),
        ("--cert", "kdoctor takes TLS material only from a Secret (use -f with tlsSecretName)"),
        ("--key", "kdoctor takes TLS material only from a Secret (use -f with tlsSecretName)"),
        ("--start-timeout", "the kdoctor controller starts its agents"),
        ("--tls-server-name", "kdoctor never verifies a DNS server's certificate"),
        ("--tc-fallback", "kdoctor has no setting for truncated UDP replies"),
        ("--require-all-nodes", "kdoctor's controller places its own agents"),
    ]
    if t.kind == DNS:
        checks.append(("--cacert", "kdoctor never verifies a DNS server's certificate"))
    for flag, why in checks:
        if flag in given:
            raise InputError(f"not supported with --mode crd: {why}", flag)
    if t.kind == HTTP and t.secret_headers:
        # The task CR is cluster-scoped and readable by whoever may read tasks; kdoctor takes
        # header values only in it. Sending "<redacted>" would test something else.
        header = t.secret_headers[0]
        flag = (
            "--header" if "--header" in given else "--filename" if "--filename" in given else "URL"
        )
        what = "user:password" if flag == "URL" else f"{header} header's value"
        raise InputError(
            f"not supported with --mode crd: the {what} would be stored in the cluster-scoped "
            f"{t.kind} task, readable by anyone who may read tasks (only Accept, Content-Type, "
            "User-Agent and a few other harmless headers may); use --mode job, which carries "
            "it in a Secret",
            flag,
        )
    if t.kind == DNS and t.dns is not None and t.dns.protocol == "tls" and not t.dns.insecure:
        raise InputError(
            "kdoctor never verifies a DNS server's certificate: with --mode crd add -k/--insecure "
            "to accept that, or use --mode job (it verifies)",
            "--protocol",
        )
    if t.kind == DNS and t.dns is not None:
        if "--qtype" in given and t.dns.qtype not in ("A", "AAAA"):
            raise InputError(
                "kdoctor queries only A or AAAA (chosen by the server's address family)", "--qtype"
            )
        if "--expect-rcode" in given and t.dns.expect_rcode != "NOERROR":
            raise InputError("kdoctor does not check the rcode", "--expect-rcode")
    if t.kind == HTTP and t.http is not None and "--expect-status" in given:
        st = t.http.expect_status
        if len(st.codes) != 1 or st.classes:
            raise InputError(
                "kdoctor takes one status code (e.g. 200), not a class or list", "--expect-status"
            )
    if t.load.qps >= MAX_QPS[t.kind]:
        raise InputError(
            f"kdoctor's controller refuses qps >= {MAX_QPS[t.kind]} for {t.kind} (its default limit); "
            "use --mode job for more",
            "--qps",
        )
    if t.load.duration != int(t.load.duration):
        raise InputError("kdoctor takes whole seconds", "--duration")
    if t.rounds > 1 and t.interval and t.interval % 60:
        raise InputError("kdoctor schedules rounds in whole minutes (e.g. 1m, 5m)", "--interval")


def task_object(
    inv: Invocation, name: str, document: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The kdoctor task CR; with ``document`` (a ``-f`` file) its other fields are kept."""
    task: Task = inv.task
    spec = kdoctor_spec(task)
    if task.kind == DNS and task.dns is not None and task.dns.server == "":
        spec["target"] = {
            "targetDns": {
                "testIPv4": task.dns.qtype != "AAAA",
                "testIPv6": task.dns.qtype == "AAAA",
            }
        }
    out_spec: dict[str, Any] = copy.deepcopy((document or {}).get("spec") or {})
    for key, value in spec.items():
        if isinstance(value, dict) and isinstance(out_spec.get(key), dict):
            out_spec[key].update(value)
        else:
            out_spec[key] = value
    agent = _agent_spec(inv.placement)
    if agent:
        out_spec.setdefault("agentSpec", {}).update(agent)
    meta = copy.deepcopy((document or {}).get("metadata") or {})
    meta = {k: v for k, v in meta.items() if k in ("labels", "annotations")}
    meta["name"] = name
    meta.setdefault("labels", {}).update({**MANAGED_LABELS, m.RUN: name})
    return {"apiVersion": API_VERSION, "kind": task.kind, "metadata": meta, "spec": out_spec}


def _agent_spec(p: Placement) -> dict[str, Any]:
    out: dict[str, Any] = {}
    terms: list[dict[str, Any]] = []
    if p.nodes:
        terms.append(
            {
                "matchExpressions": [
                    {"key": "kubernetes.io/hostname", "operator": "In", "values": list(p.nodes)}
                ]
            }
        )
    elif p.node_selector:
        exprs = []
        for req in p.node_selector.split(","):
            key, _, value = req.partition("=")
            if not value or "!" in key or " " in key.strip():
                raise InputError(
                    "only key=value requirements can become kdoctor affinity", "--node-selector"
                )
            exprs.append(
                {"key": key.strip(), "operator": "In", "values": [value.strip().lstrip("=")]}
            )
        terms.append({"matchExpressions": exprs})
    if terms:
        out["affinity"] = {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": terms}
            }
        }
    if p.host_network:
        out["hostNetwork"] = True
    return out


def dry_run_yaml(obj: dict[str, Any]) -> str:
    return yaml.safe_dump(obj, sort_keys=False)


def run_crd_mode(
    kube: Kube, inv: Invocation, name: str, ui: UI, obj: dict[str, Any]
) -> RunResult | None:
    from kubectl_kdoctor.kube.kdoctor import controller_status
    from kubectl_kdoctor.kube.preflight import Permission, require_permissions
    from kubectl_kdoctor.kube.tasks import (
        PLURAL,
        TaskRef,
        create_task,
        delete_task,
        find_tasks,
        task_report,
        watch_task,
    )

    kind = inv.task.kind
    found, why = controller_status(kube)
    if not found:
        raise ClusterError(f"--mode crd: no kdoctor controller answers ({why}); use --mode job")
    require_permissions(
        kube,
        kube.namespace,
        [
            Permission(verb, PLURAL[kind], "kdoctor.io", namespaced=False)
            for verb in ("create", "get", "watch", "delete")
        ]
        + [Permission("get", "kdoctorreports", "system.kdoctor.io")],
    )
    run_id = secrets.token_hex(6)
    obj["metadata"].setdefault("labels", {}).update(
        {m.RUN: name, m.RUN_ID: run_id, m.RUN_NAMESPACE: kube.namespace}
    )
    task: TaskRef | None = None
    try:
        task = create_task(kube, obj)
        ui.progress(f"created {kind} {name}")
        if inv.control.no_wait:
            ui.out(f"{kind} {name} created; see: kubectl kdoctor report {name}\n")
            return None
        deadline = time.monotonic() + 120 + expected_seconds(obj["spec"]["schedule"])
        status = watch_task(kube, kind, name, deadline, ui.progress)
        if not status.get("finish"):
            raise ClusterError(
                f"the kdoctor controller did not finish {kind} {name} in time "
                f"(round {status.get('doneRound', 0)}/{status.get('expectedRound', '?')}); is it running?"
            )
        run = task_report(kube, kind, name)
        if not run.notes or "not served" not in run.notes[0]:
            ui.progress(f"report: KdoctorReport {kind.lower()}-{name}")
        else:
            ui.info("kdoctor report API not served: the report is built from the task's .status")
        return run
    except KeyboardInterrupt:
        if task is None:  # interrupted before the create answered: it may exist all the same
            try:
                task = next(
                    (t for t in find_tasks(kube, kind, name) if t.labels.get(m.RUN_ID) == run_id),
                    None,
                )
                if task is not None:
                    delete_task(kube, task)
            except ClusterError:
                pass
            task = None
            raise Interrupted(
                f"interrupted while creating {kind} {name}; nothing was left"
            ) from None
        if inv.control.keep:
            task = None
            raise Interrupted(f"interrupted; {kind} {name} kept (--keep)") from None
        delete_task(kube, task)
        task = None
        raise Interrupted(f"interrupted; {kind} {name} deleted") from None
    finally:
        if task is not None and not inv.control.keep and not inv.control.no_wait:
            try:
                delete_task(kube, task)
            except ClusterError as exc:
                ui.warn(f"could not delete {kind} {name}: {exc}")


def expected_seconds(schedule: dict[str, Any]) -> int:
    """How long kdoctor may take for every round: rounds x max(interval, round timeout)."""
    rounds = max(1, int(schedule.get("roundNumber", 1)))
    per_round = int(schedule.get("roundTimeoutMinute", 60)) * 60
    fields = str(schedule.get("schedule", "0 1")).split(" ")
    interval = int(fields[1]) * 60 if len(fields) == 2 and fields[1].isdigit() else per_round
    start = int(fields[0]) * 60 if len(fields) == 2 and fields[0].isdigit() else 0
    return start + rounds * max(per_round, interval)
