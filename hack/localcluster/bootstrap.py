"""Objects `up` creates: test namespaces, the restricted user's RBAC, CoreDNS (as the
``kube-dns`` Service in kube-system, run as a Deployment on the simulated nodes), the
IngressClass the addons' ingress controller serves, and multus' NetworkAttachmentDefinition
CRD (with read access to it for the nodes, whose agents play multus)."""

from __future__ import annotations

import json

from hack.localcluster import config
from hack.localcluster.kube import JSON, Kube, path_of
from hack.localcluster.util import wait_for

COREFILE = f"""\
.:53 {{
    errors
    health {{
       lameduck 5s
    }}
    ready
    kubernetes {config.CLUSTER_DOMAIN} in-addr.arpa ip6.arpa {{
       pods insecure
       fallthrough in-addr.arpa ip6.arpa
       ttl 30
    }}
    prometheus :9153
    cache 30
    loop
    reload
    loadbalance
}}
"""


def namespaces() -> list[JSON]:
    return [
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {
                "name": config.TEST_NAMESPACE,
                "labels": {
                    "pod-security.kubernetes.io/enforce": "restricted",
                    "pod-security.kubernetes.io/enforce-version": "latest",
                },
            },
        },
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": config.RBAC_NAMESPACE}},
    ]


def restricted_rbac() -> list[JSON]:
    user = {"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": config.RESTRICTED_USER}
    read = ["get", "list", "watch"]
    return [
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": "kdoctor-restricted", "namespace": config.RBAC_NAMESPACE},
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": read}],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "kdoctor-restricted", "namespace": config.RBAC_NAMESPACE},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": "kdoctor-restricted",
            },
            "subjects": [user],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": "kdoctor-restricted-nodes"},
            "rules": [{"apiGroups": [""], "resources": ["nodes"], "verbs": read}],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": "kdoctor-restricted-nodes"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "kdoctor-restricted-nodes",
            },
            "subjects": [user],
        },
    ]


def coredns(replicas: int, dual: bool = False) -> list[JSON]:
    ns = "kube-system"
    labels = {"k8s-app": "kube-dns"}
    return [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": "coredns", "namespace": ns},
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": "system:coredns"},
            "rules": [
                {
                    "apiGroups": [""],
                    "resources": ["endpoints", "services", "pods", "namespaces"],
                    "verbs": ["list", "watch"],
                },
                {
                    "apiGroups": ["discovery.k8s.io"],
                    "resources": ["endpointslices"],
                    "verbs": ["list", "watch"],
                },
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": "system:coredns"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "system:coredns",
            },
            "subjects": [{"kind": "ServiceAccount", "name": "coredns", "namespace": ns}],
        },
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "coredns", "namespace": ns},
            "data": {"Corefile": COREFILE},
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "coredns", "namespace": ns, "labels": labels},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": labels},
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "priorityClassName": "system-cluster-critical",
                        "serviceAccountName": "coredns",
                        "dnsPolicy": "Default",
                        "nodeSelector": {"kubernetes.io/os": "linux"},
                        "tolerations": [
                            {"key": "CriticalAddonsOnly", "operator": "Exists"},
                            {
                                "key": "node-role.kubernetes.io/control-plane",
                                "effect": "NoSchedule",
                            },
                        ],
                        "affinity": {
                            "podAntiAffinity": {
                                "preferredDuringSchedulingIgnoredDuringExecution": [
                                    {
                                        "weight": 100,
                                        "podAffinityTerm": {
                                            "labelSelector": {
                                                "matchExpressions": [
                                                    {
                                                        "key": "k8s-app",
                                                        "operator": "In",
                                                        "values": ["kube-dns"],
                                                    }
                                                ]
                                            },
                                            "topologyKey": "kubernetes.io/hostname",
                                        },
                                    }
                                ]
                            }
                        },
                        "containers": [
                            {
                                "name": "coredns",
                                "image": f"registry.k8s.io/coredns/coredns:{config.COREDNS_VERSION}",
                                "args": ["-conf", "/etc/coredns/Corefile"],
                                "resources": {
                                    "limits": {"memory": "170Mi"},
                                    "requests": {"cpu": "100m", "memory": "70Mi"},
                                },
                                "volumeMounts": [
                                    {
                                        "name": "config-volume",
                                        "mountPath": "/etc/coredns",
                                        "readOnly": True,
                                    }
                                ],
                                "ports": [
                                    {"name": "dns", "containerPort": 53, "protocol": "UDP"},
                                    {"name": "dns-tcp", "containerPort": 53, "protocol": "TCP"},
                                    {"name": "metrics", "containerPort": 9153, "protocol": "TCP"},
                                    {
                                        "name": "liveness-probe",
                                        "containerPort": 8080,
                                        "protocol": "TCP",
                                    },
                                    {
                                        "name": "readiness-probe",
                                        "containerPort": 8181,
                                        "protocol": "TCP",
                                    },
                                ],
                                "securityContext": {
                                    "allowPrivilegeEscalation": False,
                                    "capabilities": {"add": ["NET_BIND_SERVICE"], "drop": ["ALL"]},
                                    "readOnlyRootFilesystem": True,
                                },
                                "livenessProbe": {
                                    "httpGet": {"path": "/health", "port": "liveness-probe"},
                                    "initialDelaySeconds": 60,
                                    "timeoutSeconds": 5,
                                    "successThreshold": 1,
                                    "failureThreshold": 5,
                                },
                                "readinessProbe": {
                                    "httpGet": {"path": "/ready", "port": "readiness-probe"},
                                    "periodSeconds": 2,
                                    "timeoutSeconds": 1,
                                },
                            }
                        ],
                        "volumes": [
                            {
                                "name": "config-volume",
                                "configMap": {
                                    "name": "coredns",
                                    "items": [{"key": "Corefile", "path": "Corefile"}],
                                },
                            }
                        ],
                    },
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {
                "name": "kube-dns",
                "namespace": ns,
                "labels": {
                    "k8s-app": "kube-dns",
                    "kubernetes.io/cluster-service": "true",
                    "kubernetes.io/name": "CoreDNS",
                },
                "annotations": {"prometheus.io/port": "9153", "prometheus.io/scrape": "true"},
            },
            "spec": {
                "selector": labels,
                "clusterIP": config.DNS_SERVICE_IP,
                **(
                    {
                        "ipFamilyPolicy": "PreferDualStack",
                        "ipFamilies": ["IPv4", "IPv6"],
                        "clusterIPs": [config.DNS_SERVICE_IP, config.DNS_SERVICE_IP6],
                    }
                    if dual
                    else {}
                ),
                "ports": [
                    {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                    {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53},
                    {"name": "metrics", "port": 9153, "protocol": "TCP", "targetPort": 9153},
                ],
            },
        },
    ]


def ingress_class() -> list[JSON]:
    return [
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "IngressClass",
            "metadata": {
                "name": config.INGRESS_CLASS,
                "annotations": {"ingressclass.kubernetes.io/is-default-class": "true"},
            },
            "spec": {"controller": config.INGRESS_CONTROLLER},
        }
    ]


# multus' own CRD (deployments/multus-daemonset.yml upstream), as is.
NAD_CRD: JSON = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "network-attachment-definitions.k8s.cni.cncf.io"},
    "spec": {
        "group": "k8s.cni.cncf.io",
        "scope": "Namespaced",
        "names": {
            "plural": "network-attachment-definitions",
            "singular": "network-attachment-definition",
            "kind": "NetworkAttachmentDefinition",
            "shortNames": ["net-attach-def"],
        },
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {
                        "description": "NetworkAttachmentDefinition is a CRD schema specified by "
                        "the Network Plumbing Working Group to express the intent for attaching "
                        "pods to one or more logical or physical networks. More information "
                        "available at: https://github.com/k8snetworkplumbingwg/multi-net-spec",
                        "type": "object",
                        "properties": {
                            "apiVersion": {
                                "description": "APIVersion defines the versioned schema of this "
                                "representation of an object.",
                                "type": "string",
                            },
                            "kind": {
                                "description": "Kind is a string value representing the REST "
                                "resource this object represents.",
                                "type": "string",
                            },
                            "metadata": {"type": "object"},
                            "spec": {
                                "description": "NetworkAttachmentDefinition spec defines the "
                                "desired state of a network attachment",
                                "type": "object",
                                "properties": {
                                    "config": {
                                        "description": "NetworkAttachmentDefinition config is a "
                                        "JSON-formatted CNI configuration",
                                        "type": "string",
                                    }
                                },
                            },
                        },
                    }
                },
            }
        ],
    },
}


DEFAULT_NAD_CONFIG = {
    "cniVersion": "0.3.1",
    "type": "macvlan",
    "master": "eth1",
    "mode": "bridge",
    "ipam": {"type": "whereabouts", "range": str(config.SECONDARY_POOL)},
}


def default_nad() -> JSON:
    """A NAD anyone can name as ``default/kdoctor-secondary`` (192.168.50.0/24)."""
    return {
        "apiVersion": "k8s.cni.cncf.io/v1",
        "kind": "NetworkAttachmentDefinition",
        "metadata": {"name": config.DEFAULT_NAD, "namespace": "default"},
        "spec": {"config": json.dumps(DEFAULT_NAD_CONFIG)},
    }


def multus() -> list[JSON]:
    """The NAD CRD, and read access to NADs for the nodes (multus runs with its own service
    account; here the node agents play multus, with their node identity)."""
    return [
        NAD_CRD,
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": "kdoctor:multus-node"},
            "rules": [
                {
                    "apiGroups": ["k8s.cni.cncf.io"],
                    "resources": ["network-attachment-definitions"],
                    "verbs": ["get", "list", "watch"],
                }
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": "kdoctor:multus-node"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "kdoctor:multus-node",
            },
            "subjects": [
                {"kind": "Group", "apiGroup": "rbac.authorization.k8s.io", "name": "system:nodes"}
            ],
        },
    ]


def apply_all(kube: Kube, nodes: int, dual: bool = False) -> None:
    objs = namespaces() + restricted_rbac() + coredns(min(2, nodes), dual)
    for obj in objs + ingress_class() + multus():
        kube.apply(path_of(obj), obj)
    wait_for(
        "the NetworkAttachmentDefinition CRD to be established",
        lambda: any(
            c["type"] == "Established" and c["status"] == "True"
            for c in kube.get(path_of(NAD_CRD)).get("status", {}).get("conditions") or []
        ),
        30,
    )
    nad = default_nad()
    kube.apply(path_of(nad), nad)
