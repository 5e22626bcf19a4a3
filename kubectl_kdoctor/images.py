"""The agent image reference: derived from the package version, pinned by digest in a
released package, overridable.

Order: ``--image`` (the caller's), then ``$KUBECTL_KDOCTOR_IMAGE``, then
``ghcr.io/kubectl-kdoctor/agent:v<version>@sha256:<digest>`` when the release pipeline
recorded the digest in :mod:`kubectl_kdoctor._image_digest`, else the version tag alone.
"""

from __future__ import annotations

import os
import re

from kubectl_kdoctor import __version__, _image_digest

AGENT_REPOSITORY = "ghcr.io/kubectl-kdoctor/agent"
IMAGE_ENV = "KUBECTL_KDOCTOR_IMAGE"
DIGEST_RE = re.compile(r"sha256:[0-9a-f]{64}")
# Where a user whose nodes cannot pull the image learns how to get it there.
GET_IMAGE_DOC = (
    "https://github.com/kubectl-kdoctor/kubectl-kdoctor/blob/main/docs/install.md"
    "#the-agent-image-without-a-registry"
)


def tagged_image() -> str:
    """``ghcr.io/kubectl-kdoctor/agent:v<version>``: what ``make image`` names its archive."""
    return f"{AGENT_REPOSITORY}:v{__version__}"


def pinned_digest() -> str:
    """The digest the release recorded, or "" (a build from the repo, or a malformed pin)."""
    digest = _image_digest.DIGEST.strip()
    return digest if DIGEST_RE.fullmatch(digest) else ""


def default_image() -> str:
    """``$KUBECTL_KDOCTOR_IMAGE`` if set, else the version tag pinned by the recorded digest
    (``...:v<version>@sha256:...``), else the version tag alone."""
    env = os.environ.get(IMAGE_ENV)
    if env:
        return env
    digest = pinned_digest()
    return f"{tagged_image()}@{digest}" if digest else tagged_image()
