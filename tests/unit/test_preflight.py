"""RBAC rule matching for the SelfSubjectRulesReview preflight (pure logic)."""

from __future__ import annotations

from types import SimpleNamespace

from kubectl_kdoctor.kube.preflight import Permission, rule_allows


def rule(
    groups: list[str], resources: list[str], verbs: list[str], names: list[str] | None = None
) -> SimpleNamespace:
    return SimpleNamespace(
        api_groups=groups, resources=resources, verbs=verbs, resource_names=names
    )


def test_exact_and_wildcards() -> None:
    create_jobs = Permission("create", "jobs", "batch")
    assert rule_allows(rule(["batch"], ["jobs"], ["create", "delete"]), create_jobs)
    assert rule_allows(rule(["*"], ["*"], ["*"]), create_jobs)
    assert not rule_allows(rule([""], ["jobs"], ["create"]), create_jobs)  # core group is not batch
    assert not rule_allows(rule(["batch"], ["jobs"], ["get"]), create_jobs)


def test_resource_names_only_grant_named_objects() -> None:
    named = rule([""], ["services"], ["get"], ["kube-dns"])
    assert rule_allows(named, Permission("get", "services", name="kube-dns"))
    assert not rule_allows(named, Permission("get", "services"))
