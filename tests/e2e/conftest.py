"""Fixtures of the end-to-end tests."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.fixtures.cluster import LocalCluster


@pytest.fixture
def ns(local_cluster: LocalCluster) -> Iterator[str]:
    """A namespace that enforces PodSecurity 'restricted', as a careful cluster would."""
    name = f"kdj-{uuid.uuid4().hex[:6]}"
    local_cluster.kube().create(
        "/api/v1/namespaces",
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {
                "name": name,
                "labels": {"pod-security.kubernetes.io/enforce": "restricted"},
            },
        },
    )
    yield name
    local_cluster.kube().delete(f"/api/v1/namespaces/{name}")
