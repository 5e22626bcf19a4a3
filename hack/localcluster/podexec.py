"""Run a command inside a pod's container (its netns, mounts, env and user), like
``kubectl exec`` (which the simulated nodes do not serve)."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

from hack.localcluster import config
from hack.localcluster.kube import Kube
from hack.localcluster.util import ClusterError

LAUNCH = Path(__file__).with_name("node") / "launch.py"


def container_spec(kube: Kube, namespace: str, pod: str, container: str | None = None) -> dict:  # type: ignore[type-arg]
    obj = kube.get(f"/api/v1/namespaces/{namespace}/pods/{pod}")
    node = obj["spec"].get("nodeName")
    if not node:
        raise ClusterError(f"pod {namespace}/{pod} is not scheduled")
    name = container or obj["spec"]["containers"][0]["name"]
    uid = obj["metadata"]["uid"]
    path = config.STATE_DIR / "nodes" / node / "pods" / uid / "containers" / name / "spec.json"
    if not path.exists():
        raise ClusterError(f"container {name} of pod {namespace}/{pod} has not been started")
    spec: dict = json.loads(path.read_text())  # type: ignore[type-arg]
    return spec


def exec_in_pod(
    kube: Kube,
    namespace: str,
    pod: str,
    argv: list[str],
    container: str | None = None,
    timeout: float = 60,
    capture: bool = True,
) -> subprocess.CompletedProcess[str]:
    spec = container_spec(kube, namespace, pod, container)
    spec["argv"] = argv
    spec["error_file"] = None
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(spec, f)
        spec_path = f.name
    try:
        return subprocess.run(
            [sys.executable, "-I", str(LAUNCH), spec_path],
            capture_output=capture,
            text=True,
            timeout=timeout,
            check=False,
        )
    finally:
        Path(spec_path).unlink(missing_ok=True)
