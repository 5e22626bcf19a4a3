"""The packaged task schema is kdoctor's CRD schema (regenerate with hack/task-schema)."""

from __future__ import annotations

import importlib.machinery
import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CRDS = ROOT.parent / "shared" / "reference" / "kdoctor-crds"


def _generator():  # type: ignore[no-untyped-def]
    loader = importlib.machinery.SourceFileLoader("task_schema", str(ROOT / "hack" / "task-schema"))
    spec = importlib.util.spec_from_loader("task_schema", loader)
    assert spec is not None
    mod = importlib.util.module_from_spec(spec)
    loader.exec_module(mod)
    return mod


@pytest.mark.skipif(not CRDS.is_dir(), reason="kdoctor's CRDs are not at hand")
def test_packaged_schema_matches_the_crds() -> None:
    packaged = (ROOT / "kubectl_kdoctor" / "schemas" / "kdoctor-tasks.json").read_text()
    assert packaged == _generator().render(CRDS), "run hack/task-schema"


def test_schema_is_loaded_from_the_package() -> None:
    from kubectl_kdoctor.taskschema import spec_schema

    for kind in ("NetReach", "AppHttpHealthy", "Netdns"):
        props = spec_schema(kind)["properties"]
        assert {"schedule", "request", "target", "expect", "agentSpec"} <= set(props)
