"""An agent image the nodes cannot pull: the run stops at the first pull error (well within
--start-timeout) with one line naming the image, the node, the pull error and where to read
how to get the image onto the nodes; exit 3; nothing left behind."""

from __future__ import annotations

import time

import pytest

from kubectl_kdoctor.images import GET_IMAGE_DOC, IMAGE_ENV
from tests.e2e.kd import kdoctor, wait_clean
from tests.fixtures.cluster import LocalCluster

pytestmark = pytest.mark.cluster

START_TIMEOUT = 240  # seconds; the pull error must end the run long before this
LOAD = ["--qps", "5", "--duration", "2s", "--timeout", "500ms", "--mode", "job"]
TAGGED = "registry.invalid/kdoctor/agent:v0-missing"
PINNED = "registry.invalid/kdoctor/agent@sha256:" + "0" * 64


@pytest.mark.parametrize(
    ("args", "env", "image"),
    [
        (["netreach", "--image", TAGGED], {}, TAGGED),
        (["dns", "kubernetes.default.svc.cluster.local"], {IMAGE_ENV: PINNED}, PINNED),
    ],
    ids=["netreach-flag", "dns-env-digest"],
)
def test_unpullable_image_ends_in_one_line_exit_3_nothing_left(
    local_cluster: LocalCluster, ns: str, args: list[str], env: dict[str, str], image: str
) -> None:
    start = time.monotonic()
    proc = kdoctor(
        local_cluster,
        *args,
        *LOAD,
        "-n",
        ns,
        "--start-timeout",
        f"{START_TIMEOUT}s",
        env=env,
        timeout=START_TIMEOUT + 120,
    )
    took = time.monotonic() - start
    assert proc.returncode == 3, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    assert proc.stdout == ""
    err = proc.stderr.strip().splitlines()[-1]
    # The image, the node, the kubelet's reason and message, and how to get the image.
    assert f"cannot pull the agent image {image}" in err, err
    node = err.split("node ", 1)[1].split()[0]
    assert node in local_cluster.nodes, err
    assert "ErrImagePull" in err or "ImagePullBackOff" in err, err
    assert "failed to resolve reference" in err, err  # the runtime's own pull error
    assert "--image" in err and GET_IMAGE_DOC in err, err
    assert "--start-timeout" not in err  # ended by the pull error, not by the timeout
    assert took < START_TIMEOUT, took
    assert wait_clean(local_cluster, ns) == []
