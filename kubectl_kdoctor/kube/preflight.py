"""Before creating anything: which nodes are eligible (and why others are skipped), and
which permissions the user lacks (SelfSubjectAccessReview, all asked at once)."""

from __future__ import annotations

import dataclasses
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from kubectl_kdoctor.errors import Forbidden, InputError
from kubectl_kdoctor.kube.client import Kube
from kubectl_kdoctor.kube.errors import api_errors
from kubectl_kdoctor.runconfig import NodeInfo
from kubectl_kdoctor.task import Placement

CONTROL_PLANE_TAINTS = ("node-role.kubernetes.io/control-plane", "node-role.kubernetes.io/master")


@dataclasses.dataclass(frozen=True)
class Permission:
    verb: str
    resource: str
    group: str = ""
    namespaced: bool = True
    name: str | None = None

    def text(self) -> str:
        res = f"{self.resource}.{self.group}" if self.group else self.resource
        return f"{self.verb} {res}" + ("" if self.namespaced else " (cluster-wide)")


def job_mode_permissions(secret: bool, ingress: bool, cluster_dns: bool) -> list[Permission]:
    perms = [
        Permission("list", "nodes", namespaced=False),
        Permission("create", "jobs", "batch"),
        Permission("patch", "jobs", "batch"),
        Permission("delete", "jobs", "batch"),
        Permission("get", "pods"),
        Permission("list", "pods"),
        Permission("watch", "pods"),
        Permission("create", "configmaps"),
        Permission("get", "configmaps"),
        Permission("list", "configmaps"),
        Permission("watch", "configmaps"),
        Permission("create", "services"),
        Permission("get", "services"),
        Permission("list", "services"),
        Permission("watch", "services"),
        Permission("create", "serviceaccounts"),
        Permission("create", "roles", "rbac.authorization.k8s.io"),
        Permission("create", "rolebindings", "rbac.authorization.k8s.io"),
    ]
    if secret:
        perms += [Permission("create", "secrets"), Permission("get", "secrets")]
    if ingress:
        perms += [
            Permission("create", "ingresses", "networking.k8s.io"),
            Permission("get", "ingresses", "networking.k8s.io"),
        ]
    if cluster_dns:
        perms.append(Permission("get", "services", namespaced=True, name="kube-dns"))
    return perms


def rule_allows(rule: Any, p: Permission) -> bool:
    """Whether one RBAC resource rule (of a SelfSubjectRulesReview) grants ``p``."""
    groups = rule.api_groups or []
    resources = rule.resources or []
    verbs = rule.verbs or []
    names = rule.resource_names or []
    return (
        ("*" in groups or p.group in groups)
        and ("*" in resources or p.resource in resources)
        and ("*" in verbs or p.verb in verbs)
        and (not names or (p.name is not None and p.name in names))
    )


def _rules_review(kube: Kube, namespace: str) -> list[Any] | None:
    """The namespaced rules the user has, or None when the authorizer cannot list them all."""
    from kubernetes import client

    body = client.V1SelfSubjectRulesReview(
        spec=client.V1SelfSubjectRulesReviewSpec(namespace=namespace)
    )
    with api_errors("SelfSubjectRulesReview"):
        res = kube.authz.create_self_subject_rules_review(body, **kube.kw())
    if res.status.incomplete:
        return None
    return list(res.status.resource_rules or [])


def missing_permissions(kube: Kube, namespace: str, perms: list[Permission]) -> list[Permission]:
    """The permissions the user lacks: namespaced ones from one SelfSubjectRulesReview of the
    namespace (when the authorizers can answer it completely, as RBAC does), the rest (and
    everything when they cannot) from SelfSubjectAccessReviews asked in parallel."""
    from kubernetes import client

    def check(p: Permission) -> bool:
        ns = ("kube-system" if p.name == "kube-dns" else namespace) if p.namespaced else None
        body = client.V1SelfSubjectAccessReview(
            spec=client.V1SelfSubjectAccessReviewSpec(
                resource_attributes=client.V1ResourceAttributes(
                    verb=p.verb, resource=p.resource, group=p.group, namespace=ns, name=p.name
                )
            )
        )
        with api_errors("SelfSubjectAccessReview"):
            res = kube.authz.create_self_subject_access_review(body, **kube.kw())
        return bool(res.status.allowed)

    local = [p for p in perms if p.namespaced and p.name != "kube-dns"]
    rules = _rules_review(kube, namespace) if local else None
    verdict: dict[Permission, bool] = {}
    if rules is not None:
        for p in local:
            if any(rule_allows(r, p) for r in rules):
                verdict[p] = True
    ask = [p for p in perms if p not in verdict]
    with ThreadPoolExecutor(max_workers=8) as pool:
        for p, ok in zip(ask, pool.map(check, ask), strict=True):
            verdict[p] = ok
    return [p for p in perms if not verdict[p]]


def require_permissions(
    kube: Kube, namespace: str, perms: list[Permission], who: str = "you"
) -> None:
    missing = missing_permissions(kube, namespace, perms)
    if missing:
        listed = ", ".join(p.text() for p in missing)
        raise Forbidden(f"{who} may not, in namespace {namespace}: {listed}; nothing was created")


def _tolerated(taint: Any, tolerations: list[dict[str, str]]) -> bool:
    for t in tolerations:
        if t.get("operator") == "Exists" and not t.get("key"):
            return True
        if t.get("key") != taint.key:
            continue
        if t.get("effect") and t.get("effect") != taint.effect:
            continue
        if t.get("operator") == "Exists" or t.get("value") == (taint.value or ""):
            return True
    return False


def _addresses(node: Any) -> NodeInfo:
    v4: list[str] = []
    v6: list[str] = []
    for a in (node.status.addresses if node.status else None) or []:
        if a.type in ("InternalIP", "ExternalIP"):
            (v6 if ":" in a.address else v4).append(a.address)
    return NodeInfo(node.metadata.name, tuple(v4), tuple(v6))


def eligible_nodes(
    kube: Kube, placement: Placement, tolerations: list[dict[str, str]]
) -> tuple[list[NodeInfo], dict[str, str], list[Any]]:
    """(selected, skipped name -> reason, raw node objects)."""
    with api_errors("list nodes"):
        items = kube.core.list_node(
            label_selector=placement.node_selector or None, **kube.kw()
        ).items
    by_name = {n.metadata.name: n for n in items}
    if placement.nodes:
        unknown = [n for n in placement.nodes if n not in by_name]
        if unknown:
            extra = f" matching {placement.node_selector!r}" if placement.node_selector else ""
            raise InputError(f"no such node{extra}: {', '.join(unknown)}", "--node")
        candidates = [by_name[n] for n in placement.nodes]
    else:
        candidates = sorted(items, key=lambda n: n.metadata.name)
    selected: list[NodeInfo] = []
    skipped: dict[str, str] = {}
    for node in candidates:
        name = node.metadata.name
        conds = {c.type: c for c in (node.status.conditions if node.status else None) or []}
        ready = conds.get("Ready")
        if ready is None or ready.status != "True":
            skipped[name] = f"NotReady ({ready.reason if ready else 'no Ready condition'})"
            continue
        if node.spec.unschedulable:
            skipped[name] = "cordoned (spec.unschedulable)"
            continue
        blocking = [
            t
            for t in node.spec.taints or []
            if t.effect in ("NoSchedule", "NoExecute") and not _tolerated(t, tolerations)
        ]
        if blocking:
            t = blocking[0]
            kind = "control-plane" if t.key in CONTROL_PLANE_TAINTS else "tainted"
            skipped[name] = (
                f"{kind} ({t.key}{'=' + t.value if t.value else ''}:{t.effect}); use --tolerate"
            )
            continue
        info = _addresses(node)
        if not info.ipv4 and not info.ipv6:
            skipped[name] = "no InternalIP address"
            continue
        selected.append(info)
    return selected, skipped, items
