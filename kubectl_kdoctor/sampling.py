"""Which peers each node probes: the full mesh on small clusters, a circulant sample on large
ones, with a coverage guarantee.

With ``k`` peers per node, node ``i`` (of ``n``, in name order) probes nodes ``i + d`` for
``k`` distinct offsets ``d`` spread evenly over ``1 .. n-1``. Every offset is used by every
node, so every node probes exactly ``k`` peers and is probed by exactly ``k`` (a circulant
graph), every node's own agent is probed by itself too, and every path type runs on every
sampled pair. The full mesh stays the default up to ``FULL_MESH_MAX`` nodes: there one agent
already drives ``n x paths`` targets (20 nodes x 3 paths x 10 qps = 600 requests/s, while
answering as many), about what a Python agent on a fraction of a core sustains comfortably.
"""

from __future__ import annotations

FULL_MESH_MAX = 20
DEFAULT_PEERS = 10


def offsets(n: int, k: int) -> list[int]:
    """``k`` distinct offsets in ``1 .. n-1``, spread as evenly as possible."""
    k = max(0, min(k, n - 1))
    out: list[int] = []
    for j in range(1, k + 1):
        d = max(1, min(n - 1, round(j * n / (k + 1))))
        while d in out:  # collisions only when k is close to n - 1: take the next free one
            d = d % (n - 1) + 1
        out.append(d)
    return sorted(out)


def peer_plan(nodes: list[str], k: int) -> dict[str, list[str]]:
    """node -> the peers it probes (itself excluded; it always probes itself too)."""
    order = sorted(nodes)
    n = len(order)
    ds = offsets(n, k)
    return {order[i]: [order[(i + d) % n] for d in ds] for i in range(n)}


def choose_peers(n_nodes: int, asked: int) -> int:
    """Peers per node: ``asked`` when given (0 = default), the full mesh up to FULL_MESH_MAX."""
    if asked:
        return min(asked, max(0, n_nodes - 1))
    return n_nodes - 1 if n_nodes <= FULL_MESH_MAX else DEFAULT_PEERS
