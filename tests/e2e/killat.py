"""Run the CLI and send it a signal at one precise instant of a job-mode run's creation (test
tooling only): ``killat.py SIGNAL STAGE ARGS...`` where STAGE is ``create:N`` (right after
the N-th object of the run was created: 1 is the Job) or ``start`` (right after the patch that
starts the agents). Everything else is the real CLI against the real API server; the signal
is what a CI runner's timeout (SIGTERM) or an OOM kill / lost machine (SIGKILL) would send."""

from __future__ import annotations

import os
import signal
import sys
from typing import Any


def main() -> None:
    sig = signal.Signals[sys.argv[1]]
    stage = sys.argv[2]
    from kubernetes import client

    from kubectl_kdoctor.kube import objects

    made = 0
    create = objects.create

    def counting_create(kube: Any, obj: dict[str, Any]) -> Any:
        nonlocal made
        ref = create(kube, obj)
        made += 1
        if stage == f"create:{made}":
            os.kill(os.getpid(), sig)
        return ref

    patch = client.BatchV1Api.patch_namespaced_job

    def signalling_patch(self: Any, *args: Any, **kwargs: Any) -> Any:
        out = patch(self, *args, **kwargs)
        if stage == "start":
            os.kill(os.getpid(), sig)
        return out

    objects.create = counting_create
    client.BatchV1Api.patch_namespaced_job = signalling_patch  # type: ignore[method-assign]
    from kubectl_kdoctor.cli import main as cli_main

    sys.argv = ["kubectl-kdoctor", *sys.argv[3:]]
    cli_main()


if __name__ == "__main__":
    main()
