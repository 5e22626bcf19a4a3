"""The local cluster itself (hack/cluster): real control plane, simulated nodes that run
pods, Services through kube-proxy, cluster DNS, RBAC/PodSecurity, and the fault helpers."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from hack.localcluster.config import CGROUP_NAME
from hack.localcluster.kube import JSON, ApiError, Kube
from hack.localcluster.network import pod_netns_name
from tests.fixtures.cluster import REPO, LocalCluster, other_sessions

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

# A tiny HTTP server answering every GET with its pod name.
SERVER = """
import http.server as h, os
class H(h.BaseHTTPRequestHandler):
    def do_GET(self):
        b = os.environ["HOSTNAME"].encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(b)))
        self.end_headers()
        self.wfile.write(b)
    def log_message(self, *a):
        pass
h.ThreadingHTTPServer(("", 8080), H).serve_forever()
"""

# Fetch every URL in argv[1] (JSON list); print {url: body | "ERR ..."} as JSON.
CLIENT = """
import json, sys, urllib.request
out = {}
for url in json.loads(sys.argv[1]):
    try:
        out[url] = urllib.request.urlopen(url, timeout=float(sys.argv[2])).read().decode()
    except Exception as exc:
        out[url] = "ERR " + type(exc).__name__
print(json.dumps(out))
"""

READY_PROBE = {"httpGet": {"path": "/", "port": 8080}, "periodSeconds": 1}


def fetch(lc: LocalCluster, ns: str, pod: str, urls: list[str], timeout: float = 3) -> JSON:
    proc = lc.pod_exec(ns, pod, ["python3", "-c", CLIENT, json.dumps(urls), str(timeout)])
    assert proc.returncode == 0, proc.stderr
    result: JSON = json.loads(proc.stdout)
    return result


@dataclass
class Servers:
    namespace: str
    pods: dict[str, str]  # node -> pod name
    pod_ips: dict[str, str]  # node -> pod IP
    cluster_ips: dict[str, str]  # node -> ClusterIP of the Service selecting that pod
    node_ports: dict[str, int]  # node -> nodePort of that Service


@pytest.fixture(scope="module")
def servers(local_cluster: LocalCluster) -> Iterator[Servers]:
    """One HTTP server pod pinned to each node, each behind its own NodePort Service."""
    lc = local_cluster
    kube = lc.kube()
    ns = f"kdt-srv-{uuid.uuid4().hex[:6]}"
    kube.create(
        "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}
    )
    pods, ips, cips, nports = {}, {}, {}, {}
    for node in lc.nodes:
        name = f"srv-{node}"
        lc.run_pod(
            ns,
            name,
            ["python3", "-c", SERVER],
            node=node,
            labels={"app": "srv", "srv": name},
            ports=[{"containerPort": 8080, "name": "http"}],
            readinessProbe=READY_PROBE,
        )
        svc = kube.create(
            f"/api/v1/namespaces/{ns}/services",
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": name},
                "spec": {
                    "type": "NodePort",
                    "selector": {"srv": name},
                    "ports": [{"port": 80, "targetPort": "http", "protocol": "TCP"}],
                },
            },
        )
        pods[node] = name
        cips[node] = svc["spec"]["clusterIP"]
        nports[node] = svc["spec"]["ports"][0]["nodePort"]
    for node, name in pods.items():
        ips[node] = lc.wait_pod(ns, name)["status"]["podIP"]
    for node, name in pods.items():  # endpoints published by the real EndpointSlice controller
        lc.wait_for(
            f"EndpointSlice of {name}",
            lambda name=name: kube.get(
                f"/apis/discovery.k8s.io/v1/namespaces/{ns}/endpointslices",
                labelSelector=f"kubernetes.io/service-name={name}",
            ),
            lambda sl, node=node: any(
                ips[node] in ep.get("addresses", []) and ep.get("conditions", {}).get("ready")
                for s in sl["items"]
                for ep in s.get("endpoints") or []
            ),
            60,
        )
    for node in lc.nodes:  # kube-proxy on every node has programmed the new Services
        urls = [f"http://{cips[n]}/" for n in lc.nodes]
        urls += [f"http://{lc.node_ips[node]}:{nports[n]}/" for n in lc.nodes]
        script = f"for u in {' '.join(urls)}; do curl -sf -m 2 -o /dev/null $u || exit 1; done"
        lc.wait_for(
            f"Services programmed on {node}",
            lambda script=script, node=node: {
                "rc": lc.node_exec(node, ["sh", "-c", script]).returncode
            },
            lambda r: r["rc"] == 0,
            60,
        )
    yield Servers(ns, pods, ips, cips, nports)
    with contextlib.suppress(Exception):  # the lifecycle test may have replaced the cluster
        lc.kube().delete(f"/api/v1/namespaces/{ns}")


def test_nodes_registered_ready_with_addresses(local_cluster: LocalCluster) -> None:
    lc = local_cluster
    nodes = {n["metadata"]["name"]: n for n in lc.kube().get("/api/v1/nodes")["items"]}
    assert sorted(nodes) == ["node-1", "node-2", "node-3"]
    for name, node in nodes.items():
        conds = {c["type"]: c["status"] for c in node["status"]["conditions"]}
        assert conds["Ready"] == "True"
        internal = [a["address"] for a in node["status"]["addresses"] if a["type"] == "InternalIP"]
        assert internal[0] == lc.node_ips[name]  # IPv4 first; dual stack: then IPv6
        assert internal[1:] == ([lc.node_ips6[name]] if lc.dual_stack else [])
        assert node["spec"]["podCIDR"] == lc.pod_cidrs[name]
        assert node["metadata"]["labels"]["kubernetes.io/hostname"] == name
        assert node["status"]["nodeInfo"]["kubeletVersion"].startswith("v1.")
    dns = lc.kube().get("/api/v1/namespaces/kube-system/services/kube-dns")
    assert dns["spec"]["clusterIP"] == lc.dns_ip
    assert dns["metadata"]["labels"]["k8s-app"] == "kube-dns"
    assert dns["metadata"]["labels"]["kubernetes.io/name"] == "CoreDNS"


def test_job_runs_on_named_node_and_completes(
    local_cluster: LocalCluster, cluster_namespace: str
) -> None:
    lc, ns = local_cluster, cluster_namespace
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "hello"},
        "spec": {
            "backoffLimit": 0,
            "ttlSecondsAfterFinished": 300,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "nodeSelector": {"kubernetes.io/hostname": "node-2"},
                    "containers": [
                        {
                            "name": "hello",
                            "image": lc.images["shell"],
                            "args": ['echo "ran on $NODE as $POD"'],
                            "env": [
                                {
                                    "name": "NODE",
                                    "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}},
                                },
                                {
                                    "name": "POD",
                                    "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}},
                                },
                            ],
                        }
                    ],
                }
            },
        },
    }
    kube = lc.kube()
    kube.create(f"/apis/batch/v1/namespaces/{ns}/jobs", job)
    done = lc.wait_for(
        "job hello to complete",
        lambda: kube.get(f"/apis/batch/v1/namespaces/{ns}/jobs/hello"),
        lambda j: any(
            c["type"] in ("Complete", "Failed") and c["status"] == "True"
            for c in j.get("status", {}).get("conditions") or []
        ),
        120,
    )
    conds = {c["type"]: c["status"] for c in done["status"]["conditions"]}
    assert conds.get("Complete") == "True", done["status"]
    pods = kube.get(f"/api/v1/namespaces/{ns}/pods", labelSelector="job-name=hello")["items"]
    assert len(pods) == 1
    pod = pods[0]
    assert pod["spec"]["nodeName"] == "node-2"
    assert pod["status"]["phase"] == "Succeeded"
    cs = pod["status"]["containerStatuses"][0]
    assert cs["state"]["terminated"]["exitCode"] == 0
    assert cs["state"]["terminated"]["reason"] == "Completed"
    assert lc.pod_logs(ns, pod["metadata"]["name"]).strip() == (
        f"ran on node-2 as {pod['metadata']['name']}"
    )


def test_pods_reach_each_other_by_pod_ip_cluster_ip_and_node_port(
    local_cluster: LocalCluster, servers: Servers
) -> None:
    lc = local_cluster
    for client_node, client in servers.pods.items():
        targets: dict[str, str] = {}
        for node, pod in servers.pods.items():
            targets[f"http://{servers.pod_ips[node]}:8080/"] = pod
            targets[f"http://{servers.cluster_ips[node]}/"] = pod
            for via in lc.nodes:  # every Service's NodePort on every node
                targets[f"http://{lc.node_ips[via]}:{servers.node_ports[node]}/"] = pod
        got = fetch(lc, servers.namespace, client, list(targets))
        wrong = {u: (got.get(u), want) for u, want in targets.items() if got.get(u) != want}
        assert not wrong, f"from {client} on {client_node}: {wrong}"


def test_nodes_and_root_netns_reach_services(local_cluster: LocalCluster, servers: Servers) -> None:
    lc = local_cluster
    for node in lc.nodes:
        for target in lc.nodes:
            url = f"http://{servers.cluster_ips[target]}/"
            r = lc.node_exec(node, ["curl", "-sS", "-m", "5", url])
            assert r.stdout == servers.pods[target], (node, url, r.stderr)
    for target in lc.nodes:  # the test process itself (root netns, routed via node-1)
        body = urllib.request.urlopen(f"http://{servers.cluster_ips[target]}/", timeout=5).read()
        assert body.decode() == servers.pods[target]


def test_dns_returns_service_cluster_ip(local_cluster: LocalCluster, servers: Servers) -> None:
    lc = local_cluster
    svc = servers.pods["node-3"]
    fqdn = f"{svc}.{servers.namespace}.svc.{lc.cluster_domain}"
    script = (
        "import json, socket, sys, dns.resolver\n"
        "r = dns.resolver.Resolver(configure=False)\n"
        f"r.nameservers = ['{lc.dns_ip}']\n"
        "a = [x.address for x in r.resolve(sys.argv[1], 'A')]\n"
        "b = socket.gethostbyname(sys.argv[2])\n"  # through the pod's resolv.conf search path
        "print(json.dumps([a, b, open('/etc/resolv.conf').read()]))\n"
    )
    client = servers.pods["node-1"]
    proc = lc.pod_exec(servers.namespace, client, ["python3", "-c", script, fqdn, svc])
    assert proc.returncode == 0, proc.stderr
    direct, via_search, resolv = json.loads(proc.stdout)
    assert direct == [servers.cluster_ips["node-3"]]
    assert via_search == servers.cluster_ips["node-3"]
    assert f"nameserver {lc.dns_ip}" in resolv
    assert f"search {servers.namespace}.svc.{lc.cluster_domain}" in resolv


def test_cut_link_between_two_nodes_and_heal(local_cluster: LocalCluster, servers: Servers) -> None:
    lc = local_cluster
    ip = servers.pod_ips

    def matrix() -> dict[tuple[str, str], bool]:
        res = {}
        for src in ("node-1", "node-2"):
            urls = {f"http://{ip[dst]}:8080/": dst for dst in lc.nodes if dst != src}
            got = fetch(lc, servers.namespace, servers.pods[src], list(urls), timeout=4)
            for url, dst in urls.items():
                res[(src, dst)] = got[url] == servers.pods[dst]
        return res

    def node_to_node(src: str, dst: str) -> bool:  # node traffic, not just pods
        url = f"http://{lc.node_ips[dst]}:10256/healthz"  # kube-proxy's healthz on dst
        return lc.node_exec(src, ["curl", "-s", "-o", "/dev/null", "-m", "4", url]).returncode == 0

    assert all(matrix().values())
    with lc.link_cut("node-1", "node-2"):
        cut = matrix()
        assert not cut[("node-1", "node-2")]
        assert not cut[("node-2", "node-1")]
        assert cut[("node-1", "node-3")]
        assert cut[("node-2", "node-3")]
        assert not node_to_node("node-1", "node-2")
        assert node_to_node("node-1", "node-3")
    assert all(matrix().values())
    assert node_to_node("node-1", "node-2")


def udp_delivered(lc: LocalCluster, src: str, dst: str) -> bool:
    """Does a UDP datagram from node ``src`` reach node ``dst`` (node IPs, port 9999)?"""
    recv = (
        "import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
        "s.bind(('0.0.0.0', 9999)); s.settimeout(4); print('ready', flush=True)\n"
        "try: print(s.recv(100).decode())\nexcept OSError: print('nothing')"
    )
    send = (
        "import socket, sys, time; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
        "for _ in range(20): s.sendto(b'hello', (sys.argv[1], 9999)); time.sleep(0.1)"
    )
    netns = f"kdc-{dst}"
    receiver = subprocess.Popen(
        ["nsenter", f"--net=/run/netns/{netns}", "--", "python3", "-c", recv],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert receiver.stdout is not None
        assert receiver.stdout.readline().strip() == "ready"
        lc.node_exec(src, ["python3", "-c", send, lc.node_ips[dst]])
        out, _ = receiver.communicate(timeout=30)
    finally:
        receiver.kill()
    return out.strip() == "hello"


def test_one_way_cut(local_cluster: LocalCluster) -> None:
    lc = local_cluster
    assert udp_delivered(lc, "node-1", "node-2")
    with lc.link_cut("node-1", "node-2", one_way=True):
        assert not udp_delivered(lc, "node-1", "node-2")
        assert udp_delivered(lc, "node-2", "node-1")
        assert udp_delivered(lc, "node-1", "node-3")
    assert udp_delivered(lc, "node-1", "node-2")


def test_loss_on_a_node(local_cluster: LocalCluster, servers: Servers) -> None:
    lc = local_cluster
    url = f"http://{servers.pod_ips['node-3']}:8080/"
    lc.set_loss("node-3", 100)
    try:
        got = fetch(lc, servers.namespace, servers.pods["node-1"], [url], timeout=2)
        assert got[url].startswith("ERR")
    finally:
        lc.clear_node_net("node-3")
    got = fetch(lc, servers.namespace, servers.pods["node-1"], [url], timeout=5)
    assert got[url] == servers.pods["node-3"]


def test_stopping_kube_proxy_breaks_services_on_that_node_only(
    local_cluster: LocalCluster, servers: Servers
) -> None:
    lc = local_cluster
    url = f"http://{servers.cluster_ips['node-1']}/"
    lc.stop_kube_proxy("node-3")
    try:
        broken = fetch(lc, servers.namespace, servers.pods["node-3"], [url], timeout=2)
        assert broken[url].startswith("ERR")
        fine = fetch(lc, servers.namespace, servers.pods["node-2"], [url], timeout=5)
        assert fine[url] == servers.pods["node-1"]
    finally:
        lc.start_kube_proxy("node-3")
    lc.wait_for(
        "node-3's kube-proxy to program Services again",
        lambda: fetch(lc, servers.namespace, servers.pods["node-3"], [url], timeout=5),
        lambda got: got[url] == servers.pods["node-1"],
        60,
    )


def test_node_not_ready_and_back(local_cluster: LocalCluster) -> None:
    lc = local_cluster
    kube = lc.kube()

    def ready(node: JSON) -> str:
        return next(c["status"] for c in node["status"]["conditions"] if c["type"] == "Ready")

    lc.set_node_ready("node-3", False)
    try:
        lc.wait_for(
            "node-3 NotReady",
            lambda: kube.get("/api/v1/nodes/node-3"),
            lambda n: ready(n) == "False",
            30,
        )
    finally:
        lc.set_node_ready("node-3", True)
    lc.wait_for(
        "node-3 Ready", lambda: kube.get("/api/v1/nodes/node-3"), lambda n: ready(n) == "True", 30
    )


def test_host_network_pod_uses_the_node_ip(
    local_cluster: LocalCluster, cluster_namespace: str
) -> None:
    lc, ns = local_cluster, cluster_namespace
    lc.kube().create(
        f"/api/v1/namespaces/{ns}/pods",
        {
            "metadata": {"name": "hostnet"},
            "spec": {
                "nodeName": "node-2",
                "hostNetwork": True,
                "terminationGracePeriodSeconds": 2,
                "containers": [
                    {
                        "name": "main",
                        "image": lc.images["python"],
                        "command": ["python3", "-m", "http.server", "18080"],
                        "readinessProbe": {"tcpSocket": {"port": 18080}, "periodSeconds": 1},
                    }
                ],
            },
        },
    )
    pod = lc.wait_pod(ns, "hostnet")
    assert pod["status"]["podIP"] == lc.node_ips["node-2"] == pod["status"]["hostIP"]
    url = f"http://{lc.node_ips['node-2']}:18080/"
    r = lc.node_exec(
        "node-1", ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-m", "5", url]
    )
    assert r.stdout == "200", r.stderr
    lc.kube().delete(f"/api/v1/namespaces/{ns}/pods/hostnet")


def test_unknown_image_fails_like_an_unpullable_image(
    local_cluster: LocalCluster, cluster_namespace: str
) -> None:
    lc, ns = local_cluster, cluster_namespace
    lc.run_pod(ns, "bad", [], image="docker.io/library/nginx:no-such-tag-kdoctor")
    seen: set[str] = set()

    def reason(pod: JSON) -> bool:
        for cs in pod.get("status", {}).get("containerStatuses") or []:
            r = cs.get("state", {}).get("waiting", {}).get("reason")
            if r:
                seen.add(r)
        return "ImagePullBackOff" in seen

    pod = lc.wait_pod(ns, "bad", reason, timeout=60)
    cs = pod["status"]["containerStatuses"][0]
    assert "ErrImagePull" in cs["state"]["waiting"]["message"]
    assert pod["status"]["phase"] == "Pending"
    events = lc.kube().get(f"/api/v1/namespaces/{ns}/events")["items"]
    msgs = [e["message"] for e in events if e["involvedObject"]["name"] == "bad"]
    assert any(
        'Failed to pull image "docker.io/library/nginx:no-such-tag-kdoctor"' in m for m in msgs
    ), msgs
    assert "Error: ErrImagePull" in msgs


def test_in_cluster_config_from_a_pod_lists_pods(
    local_cluster: LocalCluster, cluster_namespace: str
) -> None:
    lc, ns = local_cluster, cluster_namespace
    kube = lc.kube()
    kube.create(f"/api/v1/namespaces/{ns}/serviceaccounts", {"metadata": {"name": "lister"}})
    kube.create(
        f"/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/roles",
        {
            "metadata": {"name": "lister"},
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}],
        },
    )
    kube.create(
        f"/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings",
        {
            "metadata": {"name": "lister"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "lister"},
            "subjects": [{"kind": "ServiceAccount", "name": "lister", "namespace": ns}],
        },
    )
    script = (
        "import os\n"
        "from kubernetes import client, config\n"
        "config.load_incluster_config()\n"
        "ns = open('/var/run/secrets/kubernetes.io/serviceaccount/namespace').read()\n"
        "pods = client.CoreV1Api().list_namespaced_pod(ns).items\n"
        "print(os.environ['KUBERNETES_SERVICE_HOST'], ns, *sorted(p.metadata.name for p in pods))\n"
    )
    pod_body = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "incluster"},
        "spec": {
            "serviceAccountName": "lister",
            "restartPolicy": "Never",
            "containers": [
                {"name": "main", "image": lc.images["python"], "command": ["python3", "-c", script]}
            ],
        },
    }
    kube.create(f"/api/v1/namespaces/{ns}/pods", pod_body)
    pod = lc.wait_pod(
        ns, "incluster", lambda p: p.get("status", {}).get("phase") in ("Succeeded", "Failed")
    )
    logs = lc.pod_logs(ns, "incluster")
    assert pod["status"]["phase"] == "Succeeded", logs
    assert logs.split() == [lc.kubernetes_service_ip, ns, "incluster"]


def test_restricted_namespace_rejects_privileged_pod_and_runs_a_compliant_one(
    local_cluster: LocalCluster,
) -> None:
    lc = local_cluster
    ns = lc.restricted_namespace
    kube = lc.kube()
    name = f"priv-{uuid.uuid4().hex[:6]}"
    with pytest.raises(ApiError) as err:
        lc.run_pod(ns, name, ["sleep", "60"], securityContext={"privileged": True})
    assert err.value.status == 403
    assert 'violates PodSecurity "restricted:latest"' in err.value.message
    ok = f"restricted-{uuid.uuid4().hex[:6]}"
    body = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": ok},
        "spec": {
            "restartPolicy": "Never",
            "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [
                {
                    "name": "main",
                    "image": lc.images["python"],
                    "command": ["python3", "-c", "import os; print(os.getuid())"],
                    "securityContext": {
                        "runAsUser": 65532,
                        "allowPrivilegeEscalation": False,
                        "readOnlyRootFilesystem": True,
                        "capabilities": {"drop": ["ALL"]},
                    },
                }
            ],
        },
    }
    kube.create(f"/api/v1/namespaces/{ns}/pods", body)
    try:
        lc.wait_pod(ns, ok, "Succeeded")
        assert lc.pod_logs(ns, ok).strip() == "65532"
    finally:
        kube.delete(f"/api/v1/namespaces/{ns}/pods/{ok}")


def test_restricted_user_is_read_only(local_cluster: LocalCluster) -> None:
    lc = local_cluster
    kube = Kube(lc.kubeconfig, context=lc.restricted_context)
    ns = lc.rbac_namespace
    assert kube.get(f"/api/v1/namespaces/{ns}/pods")["kind"] == "PodList"
    assert len(kube.get("/api/v1/nodes")["items"]) == len(lc.nodes)
    with pytest.raises(ApiError) as err:
        kube.create(
            f"/apis/batch/v1/namespaces/{ns}/jobs",
            {"metadata": {"name": "nope"}, "spec": {"template": {"spec": {"containers": []}}}},
        )
    assert err.value.status == 403
    with pytest.raises(ApiError):
        kube.get("/api/v1/namespaces/default/pods")
    review = kube.create(
        "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
        {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SelfSubjectAccessReview",
            "spec": {
                "resourceAttributes": {
                    "namespace": ns,
                    "verb": "create",
                    "group": "batch",
                    "resource": "jobs",
                }
            },
        },
    )
    assert review["status"]["allowed"] is False


def test_restarts_back_off_and_probes(local_cluster: LocalCluster, cluster_namespace: str) -> None:
    lc, ns = local_cluster, cluster_namespace
    # exits 3 each time: restarted (OnFailure) with a growing back-off
    lc.run_pod(
        ns,
        "crash",
        ["sh", "-c", "echo boom; exit 3"],
        image=lc.images["shell"],
        restart_policy="OnFailure",
    )
    pod = lc.wait_pod(
        ns,
        "crash",
        lambda p: any(
            cs.get("restartCount", 0) >= 1
            and cs["state"].get("waiting", {}).get("reason") == "CrashLoopBackOff"
            for cs in p.get("status", {}).get("containerStatuses") or []
        ),
        timeout=90,
    )
    cs = pod["status"]["containerStatuses"][0]
    assert cs["lastState"]["terminated"]["exitCode"] == 3
    assert cs["lastState"]["terminated"]["reason"] == "Error"
    assert pod["status"]["phase"] == "Running"
    # never ready: a failing exec readiness probe keeps the pod out of Ready
    lc.run_pod(
        ns,
        "unready",
        ["sleep", "600"],
        image=lc.images["shell"],
        readinessProbe={"exec": {"command": ["false"]}, "periodSeconds": 1},
    )
    pod = lc.wait_pod(ns, "unready", lambda p: p.get("status", {}).get("phase") == "Running")
    time.sleep(3)
    pod = lc.kube().get(f"/api/v1/namespaces/{ns}/pods/unready")
    conds = {c["type"]: c["status"] for c in pod["status"]["conditions"]}
    assert conds["ContainersReady"] == "False"
    assert conds["Ready"] == "False"
    assert conds["Initialized"] == "True"
    # a failing liveness probe restarts the container
    lc.run_pod(
        ns,
        "unlive",
        ["sleep", "600"],
        image=lc.images["shell"],
        livenessProbe={"tcpSocket": {"port": 9}, "periodSeconds": 1, "failureThreshold": 2},
    )
    lc.wait_pod(
        ns,
        "unlive",
        lambda p: any(
            cs.get("restartCount", 0) >= 1
            for cs in p.get("status", {}).get("containerStatuses") or []
        ),
        timeout=60,
    )


def test_graceful_termination_delivers_sigterm(
    local_cluster: LocalCluster, cluster_namespace: str
) -> None:
    lc, ns = local_cluster, cluster_namespace
    script = "trap 'echo got TERM; exit 0' TERM; echo started; while true; do sleep 0.2; done"
    lc.run_pod(ns, "term", ["sh", "-c", script], image=lc.images["shell"], node="node-1")
    pod = lc.wait_pod(ns, "term")
    netns = pod_netns_name(pod["metadata"]["uid"])
    assert netns in lc.node_exec("node-1", ["ip", "netns", "list"]).stdout
    log_path = (
        lc.state_dir
        / "nodes"
        / "node-1"
        / "pods"
        / pod["metadata"]["uid"]
        / "containers"
        / "main"
        / "0.log"
    )
    lc.kube().delete(f"/api/v1/namespaces/{ns}/pods/term")
    lc.wait_for(
        "pod term to be gone",
        lambda: {
            "status": {
                "exists": lc.kube().get_or_none(f"/api/v1/namespaces/{ns}/pods/term") is not None
            }
        },
        lambda o: not o["status"]["exists"],
        30,
    )
    assert log_path.read_text().split() == ["started", "got", "TERM"]
    assert netns not in lc.node_exec("node-1", ["ip", "netns", "list"]).stdout


def test_env_volumes_and_downward_api(local_cluster: LocalCluster, cluster_namespace: str) -> None:
    lc, ns = local_cluster, cluster_namespace
    kube = lc.kube()
    kube.create(
        f"/api/v1/namespaces/{ns}/configmaps",
        {"metadata": {"name": "cm"}, "data": {"k": "v-cm", "f.txt": "file"}},
    )
    kube.create(
        f"/api/v1/namespaces/{ns}/secrets",
        {"metadata": {"name": "sec"}, "stringData": {"s": "v-sec"}},
    )
    script = (
        "import json, os, socket\n"
        "d = {k: os.environ.get(k) for k in ('CM', 'SEC', 'LBL', 'IP', 'HOSTIP', 'SA', 'EXP')}\n"
        "d['file'] = open('/cfg/f.txt').read()\n"
        "d['labels'] = open('/info/labels').read()\n"
        "open('/scratch/x', 'w').write('ok')\n"
        "d['scratch'] = open('/scratch/x').read()\n"
        "d['hostname'] = socket.gethostname()\n"
        "print(json.dumps(d))\n"
    )
    body = {
        "metadata": {"name": "envvol", "labels": {"tier": "gold"}},
        "spec": {
            "restartPolicy": "Never",
            "containers": [
                {
                    "name": "main",
                    "image": lc.images["python"],
                    "command": ["python3", "-c", script],
                    "env": [
                        {
                            "name": "CM",
                            "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "k"}},
                        },
                        {"name": "SEC", "valueFrom": {"secretKeyRef": {"name": "sec", "key": "s"}}},
                        {
                            "name": "LBL",
                            "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['tier']"}},
                        },
                        {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                        {
                            "name": "HOSTIP",
                            "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}},
                        },
                        {
                            "name": "SA",
                            "valueFrom": {"fieldRef": {"fieldPath": "spec.serviceAccountName"}},
                        },
                        {"name": "EXP", "value": "$(CM)-x"},
                    ],
                    "volumeMounts": [
                        {"name": "cfg", "mountPath": "/cfg"},
                        {"name": "info", "mountPath": "/info"},
                        {"name": "scratch", "mountPath": "/scratch"},
                    ],
                }
            ],
            "volumes": [
                {"name": "cfg", "configMap": {"name": "cm"}},
                {
                    "name": "info",
                    "downwardAPI": {
                        "items": [{"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]
                    },
                },
                {"name": "scratch", "emptyDir": {}},
            ],
        },
    }
    kube.create(f"/api/v1/namespaces/{ns}/pods", body)
    pod = lc.wait_pod(
        ns, "envvol", lambda p: p.get("status", {}).get("phase") in ("Succeeded", "Failed")
    )
    logs = lc.pod_logs(ns, "envvol")
    assert pod["status"]["phase"] == "Succeeded", logs
    d = json.loads(logs)
    assert d["CM"] == "v-cm" and d["SEC"] == "v-sec" and d["LBL"] == "gold"
    assert d["IP"] == pod["status"]["podIP"] and d["HOSTIP"] == pod["status"]["hostIP"]
    assert d["SA"] == "default" and d["EXP"] == "v-cm-x"
    assert d["file"] == "file" and d["labels"] == 'tier="gold"' and d["scratch"] == "ok"
    assert d["hostname"] == "envvol"


def test_agent_image_runs_from_the_repo_venv(
    local_cluster: LocalCluster, cluster_namespace: str
) -> None:
    from kubectl_kdoctor.images import AGENT_REPOSITORY

    lc, ns = local_cluster, cluster_namespace
    assert lc.images["agent"].startswith(AGENT_REPOSITORY + ":")
    script = (
        "import os, shutil, kubectl_kdoctor; "
        "print(os.getuid(), shutil.which('kubectl-kdoctor'), kubectl_kdoctor.__name__)"
    )
    lc.run_pod(
        ns, "agent", ["python", "-c", script], image=lc.images["agent"], restart_policy="Never"
    )
    pod = lc.wait_pod(
        ns, "agent", lambda p: p.get("status", {}).get("phase") in ("Succeeded", "Failed")
    )
    logs = lc.pod_logs(ns, "agent")
    assert pod["status"]["phase"] == "Succeeded", logs
    assert logs.split() == [
        "65532",
        str(REPO / ".venv" / "bin" / "kubectl-kdoctor"),
        "kubectl_kdoctor",
    ]
    cs = pod["status"]["containerStatuses"][0]
    assert cs["image"] == lc.images["agent"]
    assert cs["imageID"].startswith(f"{AGENT_REPOSITORY}@sha256:")


def _leftovers(lc: LocalCluster, pids: list[int]) -> list[str]:
    found = []
    netns = subprocess.run(
        ["ip", "netns", "list"], capture_output=True, text=True, check=False
    ).stdout
    found += [f"netns {ln.split()[0]}" for ln in netns.splitlines() if ln.startswith("kdc-")]
    links = json.loads(
        subprocess.run(["ip", "-j", "link"], capture_output=True, text=True, check=False).stdout
    )
    found += [
        f"link {link['ifname']}"
        for link in links
        if link["ifname"].startswith(("kdbr", "kdn", "kdm"))
    ]
    for fam in ("-4", "-6"):
        routes = subprocess.run(
            ["ip", fam, "route"], capture_output=True, text=True, check=False
        ).stdout
        found += [
            f"route {r}"
            for r in routes.splitlines()
            if r.removeprefix("unreachable ").startswith(
                ("10.244.", "10.96.", "172.30.", "fd00:10:", "fd00:172:30:")
            )
        ]
    ruleset = subprocess.run(
        ["nft", "list", "ruleset"], capture_output=True, text=True, check=False
    ).stdout
    found += [
        f"root nft rule {line.strip()}"
        for line in ruleset.splitlines()
        if "KUBE" in line or "kdfault" in line
    ]
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] != "Z":
                    found.append(f"process {pid}")
        except OSError:
            pass
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/cmdline", "rb") as f:
                    cmd = f.read().decode(errors="replace")
            except OSError:
                continue
            if str(lc.state_dir) in cmd:
                found.append(f"process {d}: {cmd.replace(chr(0), ' ')[:100]}")
    if lc.state_dir.exists():
        found.append(f"dir {lc.state_dir}")
    if os.path.exists(f"/sys/fs/cgroup/freezer/{CGROUP_NAME}"):
        found.append(f"cgroup freezer/{CGROUP_NAME}")
    return found


def test_up_twice_is_harmless_and_down_leaves_nothing(local_cluster: LocalCluster) -> None:
    """Runs last in this module: takes the cluster down, checks, and brings it back up."""
    lc = local_cluster
    others = other_sessions()
    if others:
        pytest.skip(f"other pytest sessions (pids {others}) use the cluster; not taking it down")
    state = lc.state_dir
    api_pid = (state / "pids" / "kube-apiserver").read_text().split()[0]
    again = subprocess.run(
        [str(REPO / "hack" / "cluster"), "up", "--nodes", str(len(lc.nodes))],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip().splitlines()[-1] == str(lc.kubeconfig)
    assert (state / "pids" / "kube-apiserver").read_text().split()[0] == api_pid
    # a running pod with a mount namespace, so down has pod processes and mounts to clean
    ns = f"kdt-down-{uuid.uuid4().hex[:6]}"
    lc.kube().create(
        "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}
    )
    kube = lc.kube()
    body = {
        "metadata": {"name": "sleeper", "labels": {"app": "sleeper"}},
        "spec": {
            "nodeName": "node-2",
            "containers": [
                {"name": "main", "image": lc.images["shell"], "command": ["sleep", "600"]}
            ],
        },
    }
    if lc.has_addons:  # a secondary interface, a LoadBalancer address and its route, an Ingress
        lc.create_nad(ns, "sec")
        body["metadata"]["annotations"] = {"k8s.v1.cni.cncf.io/networks": "sec"}
        kube.create(
            f"/api/v1/namespaces/{ns}/services",
            {
                "metadata": {"name": "lb"},
                "spec": {
                    "type": "LoadBalancer",
                    "ipFamilyPolicy": "PreferDualStack",
                    "selector": {"app": "sleeper"},
                    "ports": [{"port": 80}],
                },
            },
        )
        kube.create(
            f"/apis/networking.k8s.io/v1/namespaces/{ns}/ingresses",
            {"metadata": {"name": "web"}, "spec": {"defaultBackend": {"service": {
                "name": "lb", "port": {"number": 80}}}}},
        )  # fmt: skip
    kube.create(f"/api/v1/namespaces/{ns}/pods", body)
    lc.wait_pod(ns, "sleeper")
    if lc.has_addons:
        lb_ips = lc.wait_lb_ips(ns, "lb")
        lc.wait_for(
            "the LB route in the root netns",
            lambda: {"routes": subprocess.run(
                ["ip", "route", "show", "exact", f"{lb_ips[0]}/32"],
                capture_output=True, text=True, check=False,
            ).stdout},
            lambda r: "via" in r["routes"],
            30,
        )  # fmt: skip
        lc.wait_ingress_ips(ns, "web")
    lc.cut_link("node-1", "node-3")
    pids = [int(p.read_text().split()[0]) for p in (state / "pids").iterdir()]
    pids += [
        int(c.read_text().split()[1]) for c in state.glob("nodes/*/pods/*/containers/*/current")
    ]
    created = (state / "created-paths").read_text().split()  # mount points pods needed
    if CGROUP_NAME == "kdoctor-cluster":  # a second instance (own cgroup) finds it made
        assert "/etc/coredns" in created
    root_rules = subprocess.run(
        ["nft", "list", "ruleset"], capture_output=True, text=True, check=False
    ).stdout
    try:
        lc.down()
        assert _leftovers(lc, pids) == []
        assert (
            subprocess.run(
                ["nft", "list", "ruleset"], capture_output=True, text=True, check=False
            ).stdout
            == root_rules
        )
        assert [p for p in created if os.path.lexists(p)] == []
    finally:
        lc.up()  # later tests in the session get a fresh cluster
    assert lc.kube().get("/api/v1/nodes")["items"]
