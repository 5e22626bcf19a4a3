"""Create, find and delete the run's objects (dicts from ``manifests``), with our errors.

Creation goes through one typed call per kind (no ``kubernetes.utils``: its
``FailToCreateError`` escapes every translation). Deletion is by UID precondition only: an
object deleted here is the one that was read or created, never a same-named object made
since.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from typing import Any

from kubectl_kdoctor.errors import ClusterError, Conflict, Forbidden, NotFound
from kubectl_kdoctor.kube.client import Kube
from kubectl_kdoctor.kube.errors import api_errors
from kubectl_kdoctor.kube.manifests import MANAGED_BY, MANAGER, RUN, is_ours


@dataclasses.dataclass(frozen=True)
class Ref:
    """One object by kind, namespace, name and UID (what a delete needs)."""

    kind: str
    namespace: str
    name: str
    uid: str
    labels: dict[str, str] = dataclasses.field(default_factory=dict, compare=False)
    owners: tuple[str, ...] = dataclasses.field(default=(), compare=False)  # owner UIDs

    def __str__(self) -> str:
        return f"{self.kind.lower()} {self.namespace}/{self.name}"


def _api(kube: Kube, kind: str) -> tuple[Any, str]:
    """(API object, method suffix) of a namespaced kind the plugin creates or sweeps."""
    table: dict[str, tuple[Any, str]] = {
        "Job": (kube.batch, "job"),
        "Pod": (kube.core, "pod"),
        "ServiceAccount": (kube.core, "service_account"),
        "ConfigMap": (kube.core, "config_map"),
        "Secret": (kube.core, "secret"),
        "Service": (kube.core, "service"),
        "Role": (kube.rbac, "role"),
        "RoleBinding": (kube.rbac, "role_binding"),
        "Ingress": (kube.networking, "ingress"),
    }
    if kind not in table:
        raise ClusterError(f"the plugin does not create {kind} objects")
    return table[kind]


#: Every namespaced kind a run creates, in the order ``cleanup`` sweeps leftovers.
KINDS = ("Job", "Service", "Ingress", "ConfigMap", "Secret", "RoleBinding", "Role")
SWEPT = (*KINDS, "ServiceAccount", "Pod")


def create(kube: Kube, obj: dict[str, Any]) -> Ref:
    """Create one object; return its reference (with the UID the API gave it)."""
    kind, meta = obj["kind"], obj["metadata"]
    api, suffix = _api(kube, kind)
    fn: Callable[..., Any] = getattr(api, f"create_namespaced_{suffix}")
    with api_errors(f"create {kind} {meta['name']}"):
        res = fn(meta["namespace"], obj, **kube.kw())
    return Ref(kind, meta["namespace"], meta["name"], str(res.metadata.uid))


def read(kube: Kube, kind: str, namespace: str, name: str) -> Ref | None:
    """The object's reference (labels, owners), or None when there is none of that name."""
    api, suffix = _api(kube, kind)
    fn: Callable[..., Any] = getattr(api, f"read_namespaced_{suffix}")
    try:
        with api_errors(f"read {kind} {name}"):
            obj = fn(name, namespace, **kube.kw())
    except NotFound:
        return None
    return _ref(kind, obj.metadata)


def _ref(kind: str, meta: Any) -> Ref:
    return Ref(
        kind,
        str(meta.namespace),
        str(meta.name),
        str(meta.uid),
        dict(meta.labels or {}),
        tuple(str(o.uid) for o in (meta.owner_references or [])),
    )


def delete(kube: Kube, ref: Ref, propagation: str = "Background") -> bool:
    """Delete exactly ``ref`` (UID precondition); False when it is gone or was replaced by a
    same-named object since (which is left alone)."""
    from kubernetes import client

    api, suffix = _api(kube, ref.kind)
    fn: Callable[..., Any] = getattr(api, f"delete_namespaced_{suffix}")
    body = client.V1DeleteOptions(
        propagation_policy=propagation, preconditions=client.V1Preconditions(uid=ref.uid)
    )
    try:
        with api_errors(f"delete {ref.kind} {ref.name}"):
            fn(ref.name, ref.namespace, body=body, **kube.kw())
    except (NotFound, Conflict):  # Conflict: the UID precondition failed, not the same object
        return False
    return True


def list_ours(kube: Kube, kind: str, namespace: str | None, selector: str = "") -> list[Ref]:
    """The plugin's objects of ``kind`` (``manifests.is_ours``) in a namespace or everywhere."""
    return [ref for ref, _ in list_ours_with_objects(kube, kind, namespace, selector)]


def list_ours_with_objects(
    kube: Kube, kind: str, namespace: str | None, selector: str = ""
) -> list[tuple[Ref, Any]]:
    """``list_ours`` with each object as the API returned it (e.g. a Job's status)."""
    api, suffix = _api(kube, kind)
    sel = ",".join(s for s in (f"{MANAGED_BY}={MANAGER}", RUN, selector) if s)
    with api_errors(f"list {kind}s"):
        if namespace is None:
            lst = getattr(api, f"list_{suffix}_for_all_namespaces")(label_selector=sel, **kube.kw())
        else:
            lst = getattr(api, f"list_namespaced_{suffix}")(
                namespace, label_selector=sel, **kube.kw()
            )
    pairs = [(_ref(kind, o.metadata), o) for o in lst.items]
    return [(r, o) for r, o in pairs if is_ours(r.labels)]


_METADATA_ONLY = {"Accept": "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"}


def config_map_labels(
    kube: Kube, namespace: str | None, selector: str
) -> list[tuple[str, dict[str, str]]]:
    """(namespace, labels) of the matching ConfigMaps, listed metadata-only: report ConfigMaps
    carry megabytes of payload that ``get`` must not download just to count them."""
    core = kube.core
    kw = {"label_selector": selector, "_preload_content": False, "_headers": _METADATA_ONLY}
    with api_errors("list ConfigMaps"):
        if namespace is None:
            resp = core.list_config_map_for_all_namespaces(**kw, **kube.kw())
        else:
            resp = core.list_namespaced_config_map(namespace, **kw, **kube.kw())
        items = json.loads(resp.data).get("items") or []
    return [(i["metadata"].get("namespace", ""), i["metadata"].get("labels") or {}) for i in items]


def leftovers(
    kube: Kube, namespace: str | None, runs: set[str], unlisted: list[str] | None = None
) -> list[Ref]:
    """The plugin's objects not owned by any of the Jobs ``runs`` (UIDs): what a Job deletion
    will not remove because its Job is gone (or it never had one). Kinds the caller may not
    list are skipped and named in ``unlisted``."""
    out: list[Ref] = []
    for kind in SWEPT:
        if kind == "Job":
            continue
        try:
            refs = list_ours(kube, kind, namespace)
        except NotFound:
            continue  # e.g. no Ingress API on this cluster
        except Forbidden:
            if unlisted is not None:
                unlisted.append(kind)
            continue
        except ClusterError:
            if kind == "Ingress":
                continue
            raise
        out += [r for r in refs if not runs & set(r.owners)]
    return out
