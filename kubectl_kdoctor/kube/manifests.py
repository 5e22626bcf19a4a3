"""Pure builders for every object a job-mode run creates, as plain dicts.

One Indexed Job is the run's root: one agent pod per selected node (node affinity on the
node names plus required pod anti-affinity on the hostname, so each node gets exactly one),
``backoffLimitPerIndex: 0`` so one crashing agent does not take its peers down,
``ttlSecondsAfterFinished`` and ``activeDeadlineSeconds`` so even a killed CLI leaves
nothing behind. Everything else (ServiceAccount, Role, RoleBinding, ConfigMap, Secret,
Services, Ingress, the agents' report ConfigMaps) is owned by that Job, so deleting the Job
or its TTL expiring removes the whole run.
"""

from __future__ import annotations

import base64
from typing import Any

MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGER = "kubectl-kdoctor"
RUN = "kdoctor.io/run"
KIND = "kdoctor.io/kind"
ROLE = "kdoctor.io/role"  # agent | report | config | service
RUN_ID = "kdoctor.io/run-id"  # a random id per run: which run an object belongs to, exactly
RUN_NAMESPACE = "kdoctor.io/namespace"  # on cluster-scoped kdoctor tasks: the CLI's namespace
START_PARALLELISM = "kdoctor.io/parallelism"  # Job annotations: the values the start patch sets
START_DEADLINE = "kdoctor.io/active-deadline-seconds"
NODE = "kdoctor.io/node"
INDEX = "batch.kubernetes.io/job-completion-index"

MULTUS_NETWORKS = "k8s.v1.cni.cncf.io/networks"
HTTP_PORT = 8080
HTTPS_PORT = 8443
TTL_AFTER_FINISHED = 120
AGENT_UID = 65532


def labels(run: str, kind: str, role: str) -> dict[str, str]:
    return {
        MANAGED_BY: MANAGER,
        "app.kubernetes.io/name": "kdoctor-agent",
        RUN: run,
        KIND: kind.lower(),
        ROLE: role,
    }


def is_ours(lab: dict[str, str] | None, run: str | None = None) -> bool:
    """The ownership rule of ``delete``, ``cleanup``, ``report`` and every teardown: an object is
    the plugin's when it carries the managed-by label, a run label (``run`` when given) and a
    run id. Anything else (a user's Job or kdoctor task of the same name) is never touched."""
    lab = lab or {}
    return (
        lab.get(MANAGED_BY) == MANAGER
        and bool(lab.get(RUN_ID))
        and bool(lab.get(RUN))
        and (run is None or lab.get(RUN) == run)
    )


def with_run_id(obj: dict[str, Any], run_id: str) -> dict[str, Any]:
    """``obj`` with the run id label on it (and on a Job's pod template)."""
    obj["metadata"].setdefault("labels", {})[RUN_ID] = run_id
    template = obj.get("spec", {}).get("template") if obj.get("kind") == "Job" else None
    if template is not None:
        template.setdefault("metadata", {}).setdefault("labels", {})[RUN_ID] = run_id
    return obj


def owner(job_name: str, job_uid: str) -> list[dict[str, Any]]:
    return [
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "name": job_name,
            "uid": job_uid,
            "controller": False,
            "blockOwnerDeletion": False,
        }
    ]


def _meta(
    name: str, namespace: str, lab: dict[str, str], own: list[dict[str, Any]] | None
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": namespace, "labels": lab}
    if own:
        meta["ownerReferences"] = own
    return meta


def job(
    *,
    run: str,
    kind: str,
    namespace: str,
    nodes: list[str],
    image: str,
    pull_policy: str | None,
    tolerations: list[dict[str, str]],
    host_network: bool,
    active_deadline: int,
    networks: str | None = None,
    api_endpoints: list[str] | None = None,
    ttl: int = TTL_AFTER_FINISHED,
    start_window: int = 60,
) -> dict[str, Any]:
    """The run's Job, created with ``parallelism: 0`` and ``activeDeadlineSeconds:
    start_window``: no pod starts before every other object of the run exists, yet the Job is
    not suspended, so its deadline (then its TTL) runs from the first instant and a CLI killed
    while creating leaves nothing. The start patch sets the values the annotations name."""
    n = len(nodes)
    agent_labels = labels(run, kind, "agent")
    container: dict[str, Any] = {
        "name": "agent",
        "image": image,
        "command": ["kubectl-kdoctor", "agent"],
        "args": ["--run", run],
        "env": [
            {"name": "KDOCTOR_RUN", "value": run},
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {
                "name": "POD_NAMESPACE",
                "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}},
            },
            {"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
            {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "HOST_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}},
            {"name": "HOME", "value": "/tmp"},
            {"name": "KDOCTOR_API_ENDPOINTS", "value": ",".join(api_endpoints or [])},
        ],
        "ports": [
            {"name": "http", "containerPort": HTTP_PORT, "protocol": "TCP"},
            {"name": "https", "containerPort": HTTPS_PORT, "protocol": "TCP"},
        ],
        "readinessProbe": {
            "httpGet": {"path": "/readyz", "port": HTTP_PORT},
            # Fast to become Ready, slow to drop out: a loaded node answers late, not never.
            "periodSeconds": 1,
            "timeoutSeconds": 5,
            "failureThreshold": 5,
        },
        "resources": {
            "requests": {"cpu": "50m", "memory": "64Mi"},
            "limits": {"memory": "256Mi"},
        },
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }
    if pull_policy:
        container["imagePullPolicy"] = pull_policy
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "serviceAccountName": run,
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": 5,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": AGENT_UID,
            "runAsGroup": AGENT_UID,
            "fsGroup": AGENT_UID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    # terms are ORed; a metadata.name field selector takes one value each
                    "nodeSelectorTerms": [
                        {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [n]}]}
                        for n in nodes
                    ]
                }
            },
            "podAntiAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": [
                    {
                        "labelSelector": {"matchLabels": {RUN: run}},
                        "topologyKey": "kubernetes.io/hostname",
                    }
                ]
            },
        },
        "containers": [container],
        "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}],
    }
    if tolerations:
        pod_spec["tolerations"] = tolerations
    template_meta: dict[str, Any] = {"labels": agent_labels}
    if networks:
        template_meta["annotations"] = {MULTUS_NETWORKS: networks}
    if host_network:
        pod_spec["hostNetwork"] = True
        pod_spec["dnsPolicy"] = "ClusterFirstWithHostNet"
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            **_meta(run, namespace, labels(run, kind, "run"), None),
            "annotations": {START_PARALLELISM: str(n), START_DEADLINE: str(active_deadline)},
        },
        "spec": {
            "completionMode": "Indexed",
            "completions": n,
            "parallelism": 0,  # raised to n once every object of the run exists
            "backoffLimitPerIndex": 0,
            "maxFailedIndexes": n,
            "ttlSecondsAfterFinished": ttl,
            "activeDeadlineSeconds": start_window,  # raised by the start patch
            "template": {"metadata": template_meta, "spec": pod_spec},
        },
    }


def service_account(
    run: str, kind: str, namespace: str, own: list[dict[str, Any]] | None
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": _meta(run, namespace, labels(run, kind, "rbac"), own),
        "automountServiceAccountToken": True,
    }


def role(
    run: str,
    kind: str,
    namespace: str,
    own: list[dict[str, Any]] | None,
    secret: bool,
    ingress: bool = False,
    services: bool = False,
) -> dict[str, Any]:
    """The agents' Role: only what they read and write (docs/security.md). ``get`` is
    narrowed to the run's own objects by name; ``create`` and ``list``/``watch`` cannot be
    (RBAC takes no names for them, and no label selector at all), so they are granted only to
    the kinds that need them: every agent creates its report; netreach agents also list and
    watch the run's agent pods and reports (by label) and list its Services."""
    rules: list[dict[str, Any]] = [
        {"apiGroups": [""], "resources": ["configmaps"], "resourceNames": [run], "verbs": ["get"]},
        {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["create"]},
    ]
    if secret:
        rules.append(
            {"apiGroups": [""], "resources": ["secrets"], "resourceNames": [run], "verbs": ["get"]}
        )
    if kind == "NetReach":
        rules += [
            {"apiGroups": [""], "resources": ["pods"], "verbs": ["list", "watch"]},
            {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["list", "watch"]},
        ]
        if services:
            rules.append({"apiGroups": [""], "resources": ["services"], "verbs": ["list"]})
    if ingress:
        rules.append(
            {
                "apiGroups": ["networking.k8s.io"],
                "resources": ["ingresses"],
                "resourceNames": [run],
                "verbs": ["get"],
            }
        )
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": _meta(run, namespace, labels(run, kind, "rbac"), own),
        "rules": rules,
    }


def role_binding(
    run: str, kind: str, namespace: str, own: list[dict[str, Any]] | None
) -> dict[str, Any]:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": _meta(run, namespace, labels(run, kind, "rbac"), own),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": run},
        "subjects": [{"kind": "ServiceAccount", "name": run, "namespace": namespace}],
    }


def config_map(
    run: str, kind: str, namespace: str, own: list[dict[str, Any]] | None, config_json: str
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta(run, namespace, labels(run, kind, "config"), own),
        "data": {"task.json": config_json},
    }


def secret(
    run: str, kind: str, namespace: str, own: list[dict[str, Any]] | None, data: dict[str, bytes]
) -> dict[str, Any]:
    """The run's Secret: header values, request body, TLS files, the responder token (bytes,
    so a binary body survives)."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _meta(run, namespace, labels(run, kind, "config"), own),
        "type": "Opaque",
        "data": {k: base64.b64encode(v).decode("ascii") for k, v in data.items()},
    }


def _families(families: list[str]) -> dict[str, Any]:
    fam = ["IPv6" if f == "ipv6" else "IPv4" for f in families]
    policy = "RequireDualStack" if len(fam) > 1 else "SingleStack"
    return {"ipFamilies": fam, "ipFamilyPolicy": policy}


HTTP_SERVICE_PORT = {"name": "http", "port": 80, "targetPort": HTTP_PORT, "protocol": "TCP"}


def index_service(
    run: str,
    kind: str,
    namespace: str,
    own: list[dict[str, Any]] | None,
    index: int,
    families: list[str],
    node_port: bool = False,
) -> dict[str, Any]:
    """A Service selecting only agent ``index``: its ClusterIP is the node x node ClusterIP
    cell and, as a NodePort Service, its NodePort on that agent's own node is the NodePort
    cell. (One NodePort Service with ``externalTrafficPolicy: Local`` would not do: with
    kube-proxy's default ClusterCIDR local-traffic detection, pod traffic to another node's
    NodePort is balanced cluster-wide without SNAT, and replies from a third node break.)"""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(f"{run}-{index}", namespace, labels(run, kind, "service"), own),
        "spec": {
            "type": "NodePort" if node_port else "ClusterIP",
            "selector": {RUN: run, ROLE: "agent", INDEX: str(index)},
            "ports": [dict(HTTP_SERVICE_PORT)],
            **_families(families),
        },
    }


def load_balancer_service(
    run: str, kind: str, namespace: str, own: list[dict[str, Any]] | None, families: list[str]
) -> dict[str, Any]:
    """One LoadBalancer Service over every agent (as a cloud load balancer would be used)."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(f"{run}-lb", namespace, labels(run, kind, "service"), own),
        "spec": {
            "type": "LoadBalancer",
            "selector": {RUN: run, ROLE: "agent"},
            "ports": [dict(HTTP_SERVICE_PORT)],
            **_families(families),
        },
    }


def ingress(
    run: str, kind: str, namespace: str, own: list[dict[str, Any]] | None, ingress_class: str | None
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "rules": [
            {
                "http": {
                    "paths": [
                        {
                            "path": f"/kdoctor/{run}",
                            "pathType": "Prefix",
                            "backend": {"service": {"name": f"{run}-0", "port": {"number": 80}}},
                        }
                    ]
                }
            }
        ]
    }
    if ingress_class:
        spec["ingressClassName"] = ingress_class
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": _meta(run, namespace, labels(run, kind, "service"), own),
        "spec": spec,
    }


def report_config_map(
    run: str,
    kind: str,
    namespace: str,
    own: list[dict[str, Any]],
    index: int,
    node: str,
    payload_b64: str,
) -> dict[str, Any]:
    lab = labels(run, kind, "report")
    lab[NODE] = node[:63]
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta(f"{run}-report-{index}", namespace, lab, own),
        "binaryData": {"report.json.gz": payload_b64},
    }
