"""Objects a run creates: labels, ownership, TTL/deadline, and PodSecurity 'restricted'."""

from __future__ import annotations

from kubectl_kdoctor.kube import manifests as m


def _job(host_network: bool = False) -> dict:
    return m.job(
        run="r1",
        kind="NetReach",
        namespace="ns",
        nodes=["a", "b"],
        image="img:1",
        pull_policy=None,
        tolerations=[],
        host_network=host_network,
        active_deadline=600,
    )


def test_job_is_the_root_with_ttl_deadline_and_one_agent_per_node() -> None:
    j = _job()
    spec = j["spec"]
    assert spec["completionMode"] == "Indexed" and spec["completions"] == 2
    # Created with no pod and a short deadline, never suspended (a suspended Job has no
    # deadline and no TTL); the start patch sets what the annotations say.
    assert spec["parallelism"] == 0 and "suspend" not in spec
    assert spec["ttlSecondsAfterFinished"] > 0 and spec["activeDeadlineSeconds"] == 60
    ann = j["metadata"]["annotations"]
    assert ann[m.START_PARALLELISM] == "2" and ann[m.START_DEADLINE] == "600"
    assert spec["backoffLimitPerIndex"] == 0
    aff = spec["template"]["spec"]["affinity"]
    terms = aff["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"
    ]
    assert [t["matchFields"][0]["values"] for t in terms] == [["a"], ["b"]]
    assert (
        aff["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][0]["topologyKey"]
        == "kubernetes.io/hostname"
    )
    assert j["metadata"]["labels"][m.MANAGED_BY] == "kubectl-kdoctor"


def test_pod_passes_restricted() -> None:
    pod = _job()["spec"]["template"]["spec"]
    psc = pod["securityContext"]
    assert psc["runAsNonRoot"] is True and psc["seccompProfile"]["type"] == "RuntimeDefault"
    assert not pod.get("hostNetwork")
    for c in pod["containers"]:
        sc = c["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"]["drop"] == ["ALL"] and "add" not in sc["capabilities"]
        assert sc["readOnlyRootFilesystem"] is True
        assert all(p["containerPort"] >= 1024 for p in c["ports"])


def test_owned_objects_carry_labels_and_owner() -> None:
    own = m.owner("r1", "uid-1")
    objs = [
        m.service_account("r1", "NetReach", "ns", own),
        m.role("r1", "NetReach", "ns", own, secret=True),
        m.role_binding("r1", "NetReach", "ns", own),
        m.config_map("r1", "NetReach", "ns", own, "{}"),
        m.index_service("r1", "NetReach", "ns", own, 0, ["ipv4", "ipv6"]),
        m.index_service("r1", "NetReach", "ns", own, 1, ["ipv4"], node_port=True),
    ]
    for o in objs:
        assert o["metadata"]["labels"][m.RUN] == "r1"
        assert o["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    role = objs[1]
    assert all(
        r.get("resourceNames") == ["r1"] for r in role["rules"] if "secrets" in r["resources"]
    )
    assert objs[4]["spec"]["ipFamilyPolicy"] == "RequireDualStack"
    assert objs[4]["spec"]["selector"][m.INDEX] == "0"
    assert objs[5]["spec"]["type"] == "NodePort" and objs[5]["spec"]["selector"][m.INDEX] == "1"
