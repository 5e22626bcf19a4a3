"""Which container images the simulated nodes can "run", and how.

There is no container runtime: a container is a host process in the pod's network (and
mount/UTS) namespace. The image decides the program, the way an image's ENTRYPOINT/CMD/ENV
would. Kubernetes semantics apply: ``command`` replaces the entrypoint, ``args`` replaces
the CMD (and with ``command`` given, the CMD is dropped).

| image (any tag or digest)            | entrypoint              | CMD                | user  |
|--------------------------------------|-------------------------|--------------------|-------|
| ghcr.io/kubectl-kdoctor/agent        | kubectl-kdoctor agent   | (none)             | 65532 |
| localhost/kdoctor-test/python        | (none)                  | python3            | 0     |
| localhost/kdoctor-test/shell         | /bin/sh -c              | "sleep infinity"   | 0     |
| localhost/kdoctor-test/pause,        | sleep infinity          | (none)             | 65535 |
| registry.k8s.io/pause                |                         |                    |       |
| registry.k8s.io/coredns/coredns      | <bin-dir>/coredns       | (none)             | 65532 |

The agent and python images put this repo's ``.venv/bin`` first on PATH (so
``kubectl-kdoctor`` and ``python``/``python3`` are the project's, with the ``kubernetes``
client importable); the others get the host's standard PATH. Every other image fails like
an image that cannot be pulled (ErrImagePull, then ImagePullBackOff).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from hack.localcluster import config

AGENT_REPOSITORY = "ghcr.io/kubectl-kdoctor/agent"  # == kubectl_kdoctor.images.AGENT_REPOSITORY
TEST_PYTHON = "localhost/kdoctor-test/python"
TEST_SHELL = "localhost/kdoctor-test/shell"
TEST_PAUSE = "localhost/kdoctor-test/pause"
COREDNS = "registry.k8s.io/coredns/coredns"

HOST_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
VENV_PATH = f"{config.VENV_BIN}:{HOST_PATH}"


@dataclass(frozen=True)
class ImageSpec:
    entrypoint: list[str]
    cmd: list[str]
    env: dict[str, str] = field(default_factory=dict)
    user: int = 0
    workdir: str = "/"


def split_image(image: str) -> tuple[str, str]:
    """-> (normalized repository, tag-or-digest suffix incl. ':' or '@')."""
    ref = image
    suffix = ""
    if "@" in ref:
        ref, digest = ref.split("@", 1)
        suffix = "@" + digest
    last = ref.rsplit("/", 1)[-1]
    if ":" in last:
        ref, tag = ref.rsplit(":", 1)
        suffix = ":" + tag + suffix
    elif not suffix:
        suffix = ":latest"
    first = ref.split("/", 1)[0]
    if "/" not in ref:
        ref = f"docker.io/library/{ref}"
    elif not ("." in first or ":" in first or first == "localhost"):
        ref = f"docker.io/{ref}"
    return ref, suffix


def normalize(image: str) -> str:
    repo, suffix = split_image(image)
    return repo + suffix


def image_id(image: str) -> str:
    repo, _ = split_image(image)
    return f"{repo}@sha256:{hashlib.sha256(normalize(image).encode()).hexdigest()}"


def resolve(image: str, bin_dir: str) -> ImageSpec | None:
    repo, _ = split_image(image)
    if repo == AGENT_REPOSITORY:
        return ImageSpec(["kubectl-kdoctor", "agent"], [], {"PATH": VENV_PATH}, user=65532)
    if repo == TEST_PYTHON:
        return ImageSpec([], ["python3"], {"PATH": VENV_PATH})
    if repo == TEST_SHELL:
        return ImageSpec(["/bin/sh", "-c"], ["sleep infinity"], {"PATH": HOST_PATH})
    if repo in (TEST_PAUSE, "registry.k8s.io/pause"):
        return ImageSpec(["sleep", "infinity"], [], {"PATH": HOST_PATH}, user=65535)
    if repo == COREDNS:
        return ImageSpec([f"{bin_dir}/coredns"], [], {"PATH": HOST_PATH}, user=65532)
    return None


def pull_error(image: str) -> str:
    ref = normalize(image)
    return (
        f'Failed to pull image "{image}": rpc error: code = NotFound desc = failed to pull and '
        f'unpack image "{ref}": failed to resolve reference "{ref}": {ref}: not found '
        "(the local test cluster runs only the images listed in docs/local-cluster.md)"
    )


def argv_for(spec: ImageSpec, command: list[str] | None, args: list[str] | None) -> list[str]:
    """Kubernetes' rule: command replaces ENTRYPOINT (and drops CMD); args replaces CMD."""
    if command:
        return list(command) + list(args or [])
    return spec.entrypoint + (list(args) if args else spec.cmd)
