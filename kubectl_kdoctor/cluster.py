"""Cluster modes: choose crd or job (``--mode``), then run."""

from __future__ import annotations

from kubectl_kdoctor.errors import ClusterError
from kubectl_kdoctor.task import Invocation
from kubectl_kdoctor.ui import UI


def run_in_cluster(inv: Invocation, name: str, ui: UI) -> int:
    raise ClusterError("cluster modes are being built; use --local")
