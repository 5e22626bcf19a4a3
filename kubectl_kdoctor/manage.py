"""``get``, ``report``, ``delete``, ``cleanup`` and ``version`` against a cluster: each
returns data; the CLI renders it."""

from __future__ import annotations

import platform
from typing import Any

from kubectl_kdoctor import __version__
from kubectl_kdoctor.errors import KdoctorError
from kubectl_kdoctor.images import default_image
from kubectl_kdoctor.task import Access


def version_info(access: Access, client_only: bool) -> dict[str, Any]:
    info: dict[str, Any] = {
        "plugin": __version__,
        "python": platform.python_version(),
        "agentImage": default_image(),
    }
    if client_only:
        return info
    from kubectl_kdoctor.kube.client import connect
    from kubectl_kdoctor.kube.kdoctor import controller_status, server_version

    try:
        kube = connect(access)
        info["server"] = server_version(kube)
        found, why = controller_status(kube)
        info["kdoctorController"] = "found" if found else "not found"
        info["kdoctorControllerDetail"] = why
    except KdoctorError as exc:
        info["server"] = f"unreachable ({exc})"
    return info
