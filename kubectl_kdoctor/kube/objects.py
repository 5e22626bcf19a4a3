"""Create and delete the run's objects (dicts from ``manifests``), with our errors."""

from __future__ import annotations

import json
from typing import Any

from kubectl_kdoctor.errors import ClusterError, NotFound
from kubectl_kdoctor.kube.client import Kube
from kubectl_kdoctor.kube.errors import api_errors
from kubectl_kdoctor.kube.manifests import MANAGED_BY, MANAGER


def create(kube: Kube, obj: dict[str, Any]) -> Any:
    from kubernetes import utils

    kind, name = obj["kind"], obj["metadata"]["name"]
    with api_errors(f"create {kind} {name}"):
        return utils.create_from_dict(kube.api, obj, namespace=obj["metadata"]["namespace"])


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


def delete_job(kube: Kube, namespace: str, name: str) -> bool:
    """Delete a Job in the background; garbage collection removes what it owns."""
    from kubernetes import client

    try:
        with api_errors(f"delete Job {name}"):
            kube.batch.delete_namespaced_job(
                name,
                namespace,
                body=client.V1DeleteOptions(propagation_policy="Background"),
                **kube.kw(),
            )
        return True
    except NotFound:
        return False


def sweep(kube: Kube, all_namespaces: bool) -> list[str]:
    """Delete every object labelled managed-by kubectl-kdoctor (``cleanup``)."""
    from kubernetes import client

    sel = f"{MANAGED_BY}={MANAGER}"
    done: list[str] = []
    opts = client.V1DeleteOptions(propagation_policy="Background")
    core, batch, rbac, net = kube.core, kube.batch, kube.rbac, kube.networking
    kinds: list[tuple[str, Any, Any, Any]] = [
        (
            "job",
            batch.list_job_for_all_namespaces,
            batch.list_namespaced_job,
            batch.delete_namespaced_job,
        ),
        (
            "service",
            core.list_service_for_all_namespaces,
            core.list_namespaced_service,
            core.delete_namespaced_service,
        ),
        (
            "configmap",
            core.list_config_map_for_all_namespaces,
            core.list_namespaced_config_map,
            core.delete_namespaced_config_map,
        ),
        (
            "secret",
            core.list_secret_for_all_namespaces,
            core.list_namespaced_secret,
            core.delete_namespaced_secret,
        ),
        (
            "serviceaccount",
            core.list_service_account_for_all_namespaces,
            core.list_namespaced_service_account,
            core.delete_namespaced_service_account,
        ),
        (
            "rolebinding",
            rbac.list_role_binding_for_all_namespaces,
            rbac.list_namespaced_role_binding,
            rbac.delete_namespaced_role_binding,
        ),
        (
            "role",
            rbac.list_role_for_all_namespaces,
            rbac.list_namespaced_role,
            rbac.delete_namespaced_role,
        ),
        (
            "ingress",
            net.list_ingress_for_all_namespaces,
            net.list_namespaced_ingress,
            net.delete_namespaced_ingress,
        ),
    ]
    for kind, list_all, list_ns, delete_fn in kinds:
        try:
            with api_errors(f"list {kind}"):
                lst = (
                    list_all(label_selector=sel, **kube.kw())
                    if all_namespaces
                    else list_ns(kube.namespace, label_selector=sel, **kube.kw())
                )
        except ClusterError:
            if kind == "ingress":
                continue
            raise
        for obj in lst.items:
            try:
                with api_errors(f"delete {kind} {obj.metadata.name}"):
                    delete_fn(obj.metadata.name, obj.metadata.namespace, body=opts, **kube.kw())
                done.append(f"{kind} {obj.metadata.namespace}/{obj.metadata.name}")
            except NotFound:
                pass
    return done
