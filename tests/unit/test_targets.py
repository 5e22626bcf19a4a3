from __future__ import annotations

from kubectl_kdoctor.agent.targets import missing_paths, netreach_targets
from kubectl_kdoctor.engine.spec import HttpSpec, Load
from kubectl_kdoctor.runconfig import Endpoints, Peer

PEERS = [
    Peer(0, "n1", "p0", ("10.244.1.2",), ("fd00:1::2",), (("net1", "192.168.50.2"),)),
    Peer(1, "n2", "p1", ("10.244.2.2",), ("fd00:2::2",)),
    Peer(2, "n3", "p2", ("10.244.3.2",), ()),
]
EPS = Endpoints(
    cluster_ips={0: {"ipv4": "10.96.0.10"}, 1: {"ipv4": "10.96.0.11"}, 2: {"ipv4": "10.96.0.12"}},
    node_ports={0: {"ipv4": 30080}, 1: {"ipv4": 30081}, 2: {"ipv4": 30082}},
    node_addresses={
        "n1": {"ipv4": "172.30.0.11"},
        "n2": {"ipv4": "172.30.0.12"},
        "n3": {"ipv4": "172.30.0.13"},
    },
)


def test_full_mesh_covers_every_peer_and_path() -> None:
    ts = netreach_targets(
        me="n1",
        peers=PEERS,
        endpoints=EPS,
        paths=("pod", "clusterip", "nodeport"),
        families=("ipv4",),
        load=Load(),
    )
    cells = {(t.path, t.target_node) for t in ts}
    assert cells == {(p, n) for p in ("pod", "clusterip", "nodeport") for n in ("n1", "n2", "n3")}
    urls = {t.target.spec.url for t in ts if isinstance(t.target.spec, HttpSpec)}
    assert (
        "http://10.244.2.2:8080/" in urls
        and "http://10.96.0.12:80/" in urls
        and "http://172.30.0.13:30082/" in urls
    )
    names = [t.target.name for t in ts]
    assert "AgentPodV4IP_p1_10.244.2.2" in names and "AgentClusterV4IP_10.96.0.11:80" in names
    assert "AgentNodePortV4IP_172.30.0.12_30081" in names
    assert len(set(names)) == len(names)


def test_ipv6_multus_and_sampling() -> None:
    ts = netreach_targets(
        me="n1",
        peers=PEERS,
        endpoints=EPS,
        paths=("pod", "multus"),
        families=("ipv4", "ipv6"),
        load=Load(),
        plan=["n2"],
    )
    assert {t.target_node for t in ts} == {"n1", "n2"}
    v6 = [t for t in ts if t.family == "ipv6"]
    assert [t.target.spec.url for t in v6 if isinstance(t.target.spec, HttpSpec)] == [
        "http://[fd00:1::2]:8080/",
        "http://[fd00:2::2]:8080/",
    ]
    assert any(t.path == "multus" and t.target.name.endswith("net1_192.168.50.2") for t in ts)


def test_missing_paths_are_named() -> None:
    gaps = missing_paths(("loadbalancer", "ingress", "nodeport"), ("ipv4",), EPS)
    assert any("LoadBalancer" in g for g in gaps) and any("Ingress" in g for g in gaps)
    assert not any("NodePort" in g for g in gaps)
