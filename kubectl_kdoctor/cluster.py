"""Cluster modes: choose crd or job (``--mode``), then run."""

from __future__ import annotations

from kubectl_kdoctor.errors import EXIT_EXPECTATION, EXIT_OK, ClusterError
from kubectl_kdoctor.kube.client import connect
from kubectl_kdoctor.task import Invocation
from kubectl_kdoctor.ui import UI


def run_in_cluster(inv: Invocation, name: str, ui: UI) -> int:
    from kubectl_kdoctor.report.render import render

    kube = connect(inv.access)
    mode = inv.control.mode
    if mode == "auto":
        from kubectl_kdoctor.kube.kdoctor import controller_status

        found, why = controller_status(kube)
        mode = "crd" if found else "job"
        ui.info(f"mode: {mode} ({why})")
    if mode == "crd":
        raise ClusterError("crd mode is not available yet; use --mode job")
    from kubectl_kdoctor.jobmode import run_job_mode

    result = run_job_mode(kube, inv, name, ui)
    if result is None:
        return EXIT_OK
    ui.out(render(result, inv.control.output))
    return EXIT_OK if result.passed else EXIT_EXPECTATION
