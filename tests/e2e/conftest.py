"""Fixtures of the end-to-end tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.kd import namespace
from tests.fixtures.cluster import LocalCluster


@pytest.fixture
def ns(local_cluster: LocalCluster) -> Iterator[str]:
    """A namespace that enforces PodSecurity 'restricted', as a careful cluster would."""
    with namespace(local_cluster, "kdj") as name:
        yield name
