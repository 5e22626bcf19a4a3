"""Cluster modes: choose crd or job (``--mode``), then run.

``auto`` picks crd when the kdoctor CRDs are installed and the controller answers (its
report APIService is Available) and every flag given can be expressed as a kdoctor task;
it says on stderr which mode it chose and why. ``--mode crd --dry-run=client`` needs no
cluster at all.
"""

from __future__ import annotations

from kubectl_kdoctor.errors import EXIT_EXPECTATION, EXIT_OK, InputError
from kubectl_kdoctor.kube.client import connect
from kubectl_kdoctor.report.model import RunResult
from kubectl_kdoctor.task import Invocation
from kubectl_kdoctor.ui import UI


def warn_file_notes(inv: Invocation, ui: UI) -> None:
    """Name the task-file fields that have no meaning without a kdoctor controller."""
    for note in inv.file_notes:
        ui.warn(f"task file: {note} has no meaning without a kdoctor controller and was ignored")


def run_in_cluster(inv: Invocation, name: str, ui: UI) -> int:
    from kubectl_kdoctor.interrupts import as_interrupt

    # SIGTERM/SIGHUP as Ctrl-C from here: each mode deletes what it created on KeyboardInterrupt.
    with as_interrupt():
        return _run_in_cluster(inv, name, ui)


def _run_in_cluster(inv: Invocation, name: str, ui: UI) -> int:
    from kubectl_kdoctor import crdmode
    from kubectl_kdoctor.report.render import render_chunks

    mode = inv.control.mode
    if mode == "crd":
        crdmode.refuse_inexpressible(inv, set(inv.given))
        if inv.control.dry_run:
            ui.out(crdmode.dry_run_yaml(crdmode.task_object(inv, name, inv.document)))
            return EXIT_OK
    kube = connect(inv.access)
    if mode == "auto":
        from kubectl_kdoctor.kube.kdoctor import controller_status

        found, why = controller_status(kube)
        mode = "crd" if found else "job"
        if found:
            try:
                crdmode.refuse_inexpressible(inv, set(inv.given))
            except InputError as exc:
                mode, why = "job", f"{why}, but {exc}"
        ui.info(f"mode: {mode} ({why})")
    result: RunResult | None
    if mode == "crd":
        obj = crdmode.task_object(inv, name, inv.document)
        if inv.control.dry_run:
            ui.out(crdmode.dry_run_yaml(obj))
            return EXIT_OK
        result = crdmode.run_crd_mode(kube, inv, name, ui, obj)
    else:
        from kubectl_kdoctor.jobmode import run_job_mode

        warn_file_notes(inv, ui)
        result = run_job_mode(kube, inv, name, ui)
    if result is None:
        return EXIT_OK
    for chunk in render_chunks(result, inv.control.output):
        ui.out(chunk)
    return EXIT_OK if result.passed else EXIT_EXPECTATION
