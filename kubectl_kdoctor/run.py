"""Run a validated ``Invocation``: locally (``--local``), as the plugin's own agent Jobs, or
as a kdoctor task CR; return the exit code. Output goes through ``UI``."""

from __future__ import annotations

import secrets
import string

from kubectl_kdoctor.errors import EXIT_EXPECTATION, EXIT_OK
from kubectl_kdoctor.report.model import RunResult
from kubectl_kdoctor.task import Invocation
from kubectl_kdoctor.ui import UI


def new_name(command: str) -> str:
    alphabet = string.ascii_lowercase + string.digits
    return f"{command}-{''.join(secrets.choice(alphabet) for _ in range(5))}"


def exit_code(run: RunResult) -> int:
    return EXIT_OK if run.passed else EXIT_EXPECTATION


def execute(inv: Invocation, ui: UI) -> int:
    from kubectl_kdoctor.report.render import render_chunks

    name = inv.control.name or new_name(inv.task.command)
    if inv.control.local:
        from kubectl_kdoctor.cluster import warn_file_notes

        warn_file_notes(inv, ui)
        from kubectl_kdoctor.local import run_local

        result = run_local(inv.task, name, ui.progress, force=inv.control.force)
        for chunk in render_chunks(result, inv.control.output):
            ui.out(chunk)
        return exit_code(result)
    from kubectl_kdoctor.cluster import run_in_cluster

    return run_in_cluster(inv, name, ui)
