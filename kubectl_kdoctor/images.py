"""The agent image reference: derived from the package version, overridable."""

from __future__ import annotations

import os

from kubectl_kdoctor import __version__

AGENT_REPOSITORY = "ghcr.io/kubectl-kdoctor/agent"
IMAGE_ENV = "KUBECTL_KDOCTOR_IMAGE"


def default_image() -> str:
    """``$KUBECTL_KDOCTOR_IMAGE`` if set, else ``ghcr.io/kubectl-kdoctor/agent:v<version>``."""
    return os.environ.get(IMAGE_ENV) or f"{AGENT_REPOSITORY}:v{__version__}"
