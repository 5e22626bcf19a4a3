"""The sampling guarantee, as a property: every node probed and probing, K each way."""

from __future__ import annotations

from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from kubectl_kdoctor.sampling import FULL_MESH_MAX, choose_peers, peer_plan


@given(n=st.integers(min_value=1, max_value=400), k=st.integers(min_value=1, max_value=60))
def test_every_node_probes_and_is_probed_k_times(n: int, k: int) -> None:
    nodes = [f"node-{i}" for i in range(n)]
    plan = peer_plan(nodes, k)
    kk = min(k, n - 1)
    assert set(plan) == set(nodes)
    probed = Counter(p for peers in plan.values() for p in peers)
    for node, peers in plan.items():
        assert len(peers) == len(set(peers)) == kk
        assert node not in peers
    if kk:
        assert set(probed) == set(nodes)
        assert set(probed.values()) == {kk}


def test_full_mesh_below_the_threshold_then_sampled() -> None:
    assert choose_peers(FULL_MESH_MAX, 0) == FULL_MESH_MAX - 1
    assert choose_peers(FULL_MESH_MAX + 1, 0) == 10
    assert choose_peers(5, 50) == 4
    plan = peer_plan(["a", "b", "c", "d"], 3)
    assert plan["a"] == ["b", "c", "d"]


@settings(deadline=None)
@given(n=st.integers(min_value=2, max_value=120), k=st.integers(min_value=1, max_value=30))
def test_agents_wait_for_their_peers_and_serve_whoever_probes_them(n: int, k: int) -> None:
    """An agent waits for exactly the agents it probes, and keeps serving until exactly the
    agents that probe it reported: the two relations are each other's inverse."""
    from kubectl_kdoctor.engine.spec import Load
    from kubectl_kdoctor.runconfig import AgentConfig, NodeInfo
    from kubectl_kdoctor.task import NETREACH, Task

    nodes = [f"node-{i}" for i in range(n)]
    plan = peer_plan(nodes, k) if n - 1 > k else {}
    cfg = AgentConfig(
        run="r",
        namespace="ns",
        job_uid="u",
        task=Task(NETREACH, Load(qps=1, duration=1.0)),
        nodes=tuple(NodeInfo(x) for x in nodes),
        peer_plan=plan,
    )
    sees = {a: cfg.must_see(a) for a in nodes}
    served = {a: cfg.probed_by(a) for a in nodes}
    for a in nodes:
        assert a in sees[a] and a in served[a]
        for b in nodes:
            if a != b:
                assert (b in sees[a]) == (a in served[b])
        if not plan:
            assert sees[a] == served[a] == set(nodes)


def test_loadbalancer_and_ingress_backends_serve_until_every_agent_reported() -> None:
    """Every prober goes through the LoadBalancer (all agents behind it) and the Ingress
    (agent 0 behind it), sampled or not: with those paths an agent serves every node."""
    from kubectl_kdoctor.engine.spec import Load
    from kubectl_kdoctor.runconfig import AgentConfig, NodeInfo
    from kubectl_kdoctor.task import NETREACH, NetReachTargets, Task

    nodes = [f"node-{i}" for i in range(30)]
    plan = peer_plan(nodes, 3)

    def served(paths: tuple[str, ...]) -> dict[str, set[str]]:
        task = Task(NETREACH, Load(qps=1, duration=1.0), netreach=NetReachTargets(paths=paths))
        cfg = AgentConfig(
            run="r",
            namespace="ns",
            job_uid="u",
            task=task,
            nodes=tuple(NodeInfo(x) for x in nodes),
            peer_plan=plan,
        )
        return {a: cfg.probed_by(a) for a in nodes}

    assert all(len(s) == 4 for s in served(("pod", "clusterip")).values())  # itself + 3
    for paths in (("pod", "loadbalancer"), ("ingress",)):
        assert all(s == set(nodes) for s in served(paths).values())
