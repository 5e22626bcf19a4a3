"""The local cluster's data paths beyond pod/ClusterIP/NodePort over IPv4 (hack/cluster):
dual stack, LoadBalancer addresses, Ingress through a real nginx, multus secondary
interfaces, the faults that break each of them, and the apiserver audit log."""

from __future__ import annotations

import contextlib
import ipaddress
import json
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from hack.localcluster.kube import JSON, ApiError, Kube
from tests.fixtures.cluster import LocalCluster

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

# An HTTP server on [::]:8080 (IPv4 and IPv6) answering every GET with its pod name.
SERVER = """
import http.server as h, os, socket
class S(h.ThreadingHTTPServer):
    address_family = socket.AF_INET6
class H(h.BaseHTTPRequestHandler):
    def do_GET(self):
        b = os.environ["HOSTNAME"].encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(b)))
        self.end_headers()
        self.wfile.write(b)
    def log_message(self, *a):
        pass
S(("::", 8080), H).serve_forever()
"""

# Fetch every URL in argv[1] (JSON list); print {url: body | "ERR ..." | "HTTP <code>"}.
CLIENT = """
import json, sys, urllib.error, urllib.request
out = {}
for url in json.loads(sys.argv[1]):
    try:
        out[url] = urllib.request.urlopen(url, timeout=float(sys.argv[2])).read().decode()
    except urllib.error.HTTPError as exc:
        out[url] = f"HTTP {exc.code}"
    except Exception as exc:
        out[url] = "ERR " + type(exc).__name__
print(json.dumps(out))
"""

NAD = "secnet"
SECONDARY_RANGE = "192.168.60.0/24"


def host(ip: str) -> str:
    return f"[{ip}]" if ":" in ip else ip


def fetch(lc: LocalCluster, ns: str, pod: str, urls: list[str], timeout: float = 3) -> JSON:
    proc = lc.pod_exec(ns, pod, ["python3", "-c", CLIENT, json.dumps(urls), str(timeout)])
    assert proc.returncode == 0, proc.stderr
    result: JSON = json.loads(proc.stdout)
    return result


def fetch_here(url: str, timeout: float = 3) -> str:
    """From the test process (the root netns: outside the cluster)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return str(resp.read().decode())
    except urllib.error.HTTPError as exc:
        return f"HTTP {exc.code}"
    except (OSError, urllib.error.URLError) as exc:
        return f"ERR {type(exc).__name__}"


@dataclass
class Net:
    namespace: str
    pods: dict[str, str]  # node -> pod name
    ips4: dict[str, str]  # node -> pod IPv4
    ips6: dict[str, str]  # node -> pod IPv6 (empty on an IPv4-only cluster)
    svc4: dict[str, str]  # node -> ClusterIP (IPv4) of the dual-stack Service of that pod
    svc6: dict[str, str]
    dual: bool
    node_ports: dict[str, int]
    net1: dict[str, str]  # node -> the pod's secondary (multus) address
    status: dict[str, list[JSON]]  # node -> network-status


def _service(ns: str, name: str, selector: JSON, dual: bool, **spec: object) -> JSON:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "selector": selector,
            "ipFamilyPolicy": "RequireDualStack" if dual else "SingleStack",
            "ports": [{"port": 80, "targetPort": 8080, "protocol": "TCP", "name": "http"}],
            **spec,
        },
    }


@pytest.fixture(scope="module")
def net(local_cluster: LocalCluster) -> Iterator[Net]:
    """One server pod per node (with a multus net1 on the NAD ``secnet``), each behind a
    NodePort Service (dual stack unless the cluster is IPv4 only)."""
    lc = local_cluster
    if not lc.has_addons:
        pytest.skip("needs a cluster with add-ons (hack/cluster down; hack/cluster up)")
    dual = lc.dual_stack
    kube = lc.kube()
    ns = f"kdt-paths-{uuid.uuid4().hex[:6]}"
    kube.create("/api/v1/namespaces", {"metadata": {"name": ns}})
    lc.create_nad(ns, NAD, SECONDARY_RANGE)
    # the three ways multus accepts a selection
    selections = {
        "node-1": NAD,
        "node-2": f"{ns}/{NAD}@net1",
        "node-3": json.dumps([{"name": NAD, "interface": "net1"}]),
    }
    pods, svc4, svc6, nports = {}, {}, {}, {}
    for node in lc.nodes:
        name = f"srv-{node}"
        kube.create(
            f"/api/v1/namespaces/{ns}/pods",
            {
                "metadata": {
                    "name": name,
                    "labels": {"app": "srv", "srv": name},
                    "annotations": {"k8s.v1.cni.cncf.io/networks": selections[node]},
                },
                "spec": {
                    "nodeName": node,
                    "terminationGracePeriodSeconds": 2,
                    "containers": [
                        {
                            "name": "main",
                            "image": lc.images["python"],
                            "command": ["python3", "-c", SERVER],
                            "ports": [{"containerPort": 8080, "name": "http"}],
                            "readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1},
                        }
                    ],
                },
            },
        )
        svc = kube.create(
            f"/api/v1/namespaces/{ns}/services",
            _service(ns, name, {"srv": name}, dual, type="NodePort"),
        )
        pods[node] = name
        fams = dict(zip(svc["spec"]["ipFamilies"], svc["spec"]["clusterIPs"], strict=True))
        svc4[node] = fams["IPv4"]
        if dual:
            svc6[node] = fams["IPv6"]
        nports[node] = svc["spec"]["ports"][0]["nodePort"]
    ips4, ips6, net1, status = {}, {}, {}, {}
    for node, name in pods.items():
        pod = lc.wait_pod(ns, name)
        ips = [p["ip"] for p in pod["status"]["podIPs"]]
        ips4[node] = ips[0]
        if dual:
            ips6[node] = ips[1]
        status[node] = lc.network_status(pod)
        net1[node] = next(e["ips"][0] for e in status[node] if e["interface"] == "net1")
    urls = [f"http://{host(ip)}/" for n in lc.nodes for ip in (svc4[n], svc6.get(n)) if ip]
    for node in lc.nodes:  # kube-proxy on every node has programmed both families
        lc.wait_for(
            f"Services programmed on {node}",
            lambda node=node: fetch(lc, ns, pods[node], urls, timeout=2),
            lambda got: all(not v.startswith(("ERR", "HTTP")) for v in got.values()),
            60,
        )
    yield Net(ns, pods, ips4, ips6, svc4, svc6, dual, nports, net1, status)
    with contextlib.suppress(Exception):
        kube.delete(f"/api/v1/namespaces/{ns}")


# --- dual stack ------------------------------------------------------------------------------


def needs_dual(lc: LocalCluster) -> None:
    if not lc.dual_stack:
        pytest.skip("an IPv4-only cluster (hack/cluster up --ip-family ipv4)")


def test_nodes_pods_and_system_services_are_dual_stack(
    local_cluster: LocalCluster, net: Net
) -> None:
    lc = local_cluster
    needs_dual(lc)
    kube = lc.kube()
    for node in kube.get("/api/v1/nodes")["items"]:
        name = node["metadata"]["name"]
        internal = [a["address"] for a in node["status"]["addresses"] if a["type"] == "InternalIP"]
        assert internal == [lc.node_ips[name], lc.node_ips6[name]]
        assert node["spec"]["podCIDRs"] == [lc.pod_cidrs[name], lc.pod_cidrs6[name]]
    for node in lc.nodes:  # podIPs ordered IPv4, IPv6, each in the node's CIDR
        assert ipaddress.ip_address(net.ips4[node]) in ipaddress.ip_network(lc.pod_cidrs[node])
        assert ipaddress.ip_address(net.ips6[node]) in ipaddress.ip_network(lc.pod_cidrs6[node])
    k8s = kube.get("/api/v1/namespaces/default/services/kubernetes")
    assert k8s["spec"]["ipFamilies"] == ["IPv4"]
    assert k8s["spec"]["clusterIP"] == lc.kubernetes_service_ip
    dns = kube.get("/api/v1/namespaces/kube-system/services/kube-dns")
    assert dns["spec"]["clusterIPs"] == [lc.dns_ip, lc.dns_ip6]


def test_pods_on_other_nodes_reach_pods_services_and_node_ports_over_both_families(
    local_cluster: LocalCluster, net: Net
) -> None:
    lc = local_cluster
    needs_dual(lc)
    for client_node, client in net.pods.items():
        targets: dict[str, str] = {}
        for node, pod in net.pods.items():
            if node == client_node:
                continue
            targets[f"http://{net.ips4[node]}:8080/"] = pod
            targets[f"http://[{net.ips6[node]}]:8080/"] = pod
            targets[f"http://{net.svc4[node]}/"] = pod
            targets[f"http://[{net.svc6[node]}]/"] = pod
            targets[f"http://[{lc.node_ips6[node]}]:{net.node_ports[node]}/"] = pod
        got = fetch(lc, net.namespace, client, list(targets))
        wrong = {u: (got.get(u), want) for u, want in targets.items() if got.get(u) != want}
        assert not wrong, f"from {client} on {client_node}: {wrong}"
    # the root netns reaches IPv6 ClusterIPs too (routed via node-1, like IPv4)
    assert fetch_here(f"http://[{net.svc6['node-3']}]/") == net.pods["node-3"]


def test_dns_answers_aaaa_for_a_dual_stack_service(local_cluster: LocalCluster, net: Net) -> None:
    lc = local_cluster
    needs_dual(lc)
    fqdn = f"{net.pods['node-2']}.{net.namespace}.svc.{lc.cluster_domain}"
    script = (
        "import json, sys, dns.resolver\n"
        "r = dns.resolver.Resolver(configure=False)\n"
        "r.nameservers = [sys.argv[2]]\n"
        "print(json.dumps([x.address for x in r.resolve(sys.argv[1], 'AAAA')]))\n"
    )
    proc = lc.pod_exec(
        net.namespace, net.pods["node-1"], ["python3", "-c", script, fqdn, str(lc.dns_ip6)]
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == [net.svc6["node-2"]]


def test_ipv6_only_cut_keeps_ipv4_and_a_full_cut_breaks_both(
    local_cluster: LocalCluster, net: Net
) -> None:
    lc = local_cluster
    needs_dual(lc)
    src = net.pods["node-1"]
    urls = {
        "v4-n2": f"http://{net.ips4['node-2']}:8080/",
        "v6-n2": f"http://[{net.ips6['node-2']}]:8080/",
        "v6-n3": f"http://[{net.ips6['node-3']}]:8080/",
        "v6svc-n2": f"http://[{net.svc6['node-2']}]/",
    }

    def ok() -> dict[str, bool]:
        got = fetch(lc, net.namespace, src, list(urls.values()), timeout=2)
        return {k: got[u] in net.pods.values() for k, u in urls.items()}

    assert all(ok().values())
    with lc.link_cut("node-1", "node-2", family="ipv6"):
        assert ok() == {"v4-n2": True, "v6-n2": False, "v6-n3": True, "v6svc-n2": False}
    assert all(ok().values())
    with lc.link_cut("node-1", "node-2"):
        assert ok() == {"v4-n2": False, "v6-n2": False, "v6-n3": True, "v6svc-n2": False}
    lc.set_loss("node-3", 100)
    try:
        assert not ok()["v6-n3"]
    finally:
        lc.clear_node_net("node-3")
    assert all(ok().values())


# --- LoadBalancer ----------------------------------------------------------------------------


def _routes(ip: str) -> str:
    """The root netns' routes for exactly this address (the LB controller's /32 or /128)."""
    plen = 128 if ":" in ip else 32
    fam = "-6" if ":" in ip else "-4"
    cmd = ["ip", fam, "route", "show", "exact", f"{ip}/{plen}"]
    return subprocess.run(cmd, capture_output=True, text=True, check=False).stdout.strip()


def _route_via(ip: str) -> str:
    out = subprocess.run(["ip", "route", "get", ip], capture_output=True, text=True, check=False)
    words = out.stdout.split()
    return words[words.index("via") + 1] if "via" in words else out.stdout.strip()


def test_loadbalancer_service_gets_addresses_reachable_from_pods_and_outside(
    local_cluster: LocalCluster, net: Net
) -> None:
    lc = local_cluster
    kube = lc.kube()
    ns = net.namespace
    kube.create(
        f"/api/v1/namespaces/{ns}/services",
        _service(ns, "lb", {"srv": net.pods["node-2"]}, net.dual, type="LoadBalancer"),
    )
    ips = lc.wait_lb_ips(ns, "lb")
    svc = kube.get(f"/api/v1/namespaces/{ns}/services/lb")
    assert [i.get("ipMode") for i in svc["status"]["loadBalancer"]["ingress"]] == ["VIP"] * len(
        lc.lb_pools
    )
    assert len(ips) == len(lc.lb_pools)
    for ip, pool in zip(ips, lc.lb_pools, strict=True):  # IPv4 first, then IPv6
        assert ipaddress.ip_address(ip) in ipaddress.ip_network(pool)
    urls = [f"http://{host(ip)}/" for ip in ips]
    want = net.pods["node-2"]
    for node, pod in net.pods.items():  # kube-proxy short-circuits LB addresses in-cluster
        lc.wait_for(
            f"the LB addresses from {node}",
            lambda pod=pod: fetch(lc, ns, pod, urls, timeout=2),
            lambda got: all(v == want for v in got.values()),
            30,
        )
    for url in urls:  # and from outside (the root netns), through one node
        assert fetch_here(url) == want
    # externalTrafficPolicy Local: outside traffic goes to a node with an endpoint
    kube.create(
        f"/api/v1/namespaces/{ns}/services",
        _service(
            ns,
            "lb-local",
            {"srv": net.pods["node-3"]},
            net.dual,
            type="LoadBalancer",
            externalTrafficPolicy="Local",
        ),
    )
    local = lc.wait_lb_ips(ns, "lb-local")
    assert not set(local) & set(ips)
    node3 = [lc.node_ips["node-3"], *([lc.node_ips6["node-3"]] if net.dual else [])]
    lc.wait_for(
        "the Local LB route via node-3",
        lambda: {"via": [_route_via(ip) for ip in local]},
        lambda r: r["via"] == node3,
        30,
    )
    lc.wait_for(
        "the Local LB address from outside",
        lambda: {"body": fetch_here(f"http://{host(local[-1])}/")},
        lambda r: r["body"] == net.pods["node-3"],
        30,
    )
    # deleting the Service releases the addresses: no route, unreachable again
    kube.delete(f"/api/v1/namespaces/{ns}/services/lb")
    lc.wait_for(
        "the LB route to be withdrawn",
        lambda: {"routes": "".join(_routes(ip) for ip in ips)},
        lambda r: r["routes"] == "",
        30,
    )
    assert fetch_here(f"http://{ips[0]}/", timeout=2).startswith("ERR")


# --- Ingress ---------------------------------------------------------------------------------


def test_ingress_routes_to_its_backend_and_fails_while_the_proxy_is_stopped(
    local_cluster: LocalCluster, net: Net
) -> None:
    lc = local_cluster
    kube = lc.kube()
    ns = net.namespace
    path = f"/kdoctor/{ns}"
    kube.create(
        f"/apis/networking.k8s.io/v1/namespaces/{ns}/ingresses",
        {
            "metadata": {"name": "web"},
            "spec": {  # no ingressClassName: kdoctor-nginx is the default class
                "rules": [
                    {
                        "http": {
                            "paths": [
                                {
                                    "path": path,
                                    "pathType": "Prefix",
                                    "backend": {
                                        "service": {
                                            "name": net.pods["node-3"],
                                            "port": {"number": 80},
                                        }
                                    },
                                }
                            ]
                        }
                    }
                ]
            },
        },
    )
    ing = kube.get(f"/apis/networking.k8s.io/v1/namespaces/{ns}/ingresses/web")
    assert ing["spec"]["ingressClassName"] == lc.ingress_class
    assert lc.wait_ingress_ips(ns, "web") == lc.ingress_ips
    want = net.pods["node-3"]
    urls = [f"http://{host(ip)}{path}" for ip in lc.ingress_ips]
    lc.wait_for(
        "the Ingress to be served",
        lambda: {u: fetch_here(u) for u in urls},
        lambda got: all(v == want for v in got.values()),
        30,
    )
    v4 = lc.ingress_ips[0]
    assert fetch_here(f"http://{v4}{path}/deeper") == want  # Prefix: whole path elements
    assert fetch_here(f"http://{v4}{path}x") == "HTTP 404"  # ... not a string prefix
    got = fetch(lc, ns, net.pods["node-1"], urls)  # from a pod, over both families
    assert set(got.values()) == {want}
    with lc.ingress_proxy_stopped():
        assert fetch_here(urls[0], timeout=2).startswith("ERR")
        got = fetch(lc, ns, net.pods["node-1"], urls, timeout=2)
        assert all(v.startswith("ERR") for v in got.values()), got
    assert {fetch_here(u) for u in urls} == {want}
    # no ready endpoint: 503, as ingress-nginx answers
    kube.patch(
        f"/apis/networking.k8s.io/v1/namespaces/{ns}/ingresses/web",
        {"spec": {"rules": [{"http": {"paths": [{
            "path": path, "pathType": "Prefix",
            "backend": {"service": {"name": "no-such-service", "port": {"number": 80}}},
        }]}}]}},
    )  # fmt: skip
    lc.wait_for(
        "503 for a backend without endpoints",
        lambda: {"body": fetch_here(urls[0])},
        lambda r: r["body"] == "HTTP 503",
        30,
    )


# --- multus ----------------------------------------------------------------------------------


def test_multus_network_status_and_secondary_reachability(
    local_cluster: LocalCluster, net: Net
) -> None:
    lc = local_cluster
    ns = net.namespace
    for node in lc.nodes:
        default, sec = net.status[node]
        assert default["name"] == lc.multus_default_network
        assert default["interface"] == "eth0" and default["default"] is True
        assert default["ips"] == [net.ips4[node], *([net.ips6[node]] if net.dual else [])]
        assert sec["name"] == f"{ns}/{NAD}" and sec["interface"] == "net1"
        assert "default" not in sec
        assert ipaddress.ip_address(sec["ips"][0]) in ipaddress.ip_network(SECONDARY_RANGE)
        link = lc.pod_exec(ns, net.pods[node], ["ip", "-j", "addr", "show", "net1"])
        info = json.loads(link.stdout)[0]
        assert info["address"] == sec["mac"]
        assert f"{sec['ips'][0]}/24" in [
            f"{a['local']}/{a['prefixlen']}" for a in info["addr_info"]
        ]
    assert len(set(net.net1.values())) == len(lc.nodes)  # unique across the nodes
    urls = {n: f"http://{net.net1[n]}:8080/" for n in ("node-2", "node-3")}

    def from_node1() -> dict[str, str]:
        got = fetch(lc, ns, net.pods["node-1"], list(urls.values()), timeout=2)
        return {n: got[u] for n, u in urls.items()}

    assert from_node1() == {n: net.pods[n] for n in urls}
    with lc.pod_interface_down(ns, net.pods["node-2"], "net1"):
        got = from_node1()
        assert got["node-2"].startswith("ERR") and got["node-3"] == net.pods["node-3"]
    lc.wait_for(
        "net1 of node-2's pod to answer again",
        from_node1,
        lambda got: got == {n: net.pods[n] for n in urls},
        20,
    )


def test_pod_naming_a_missing_nad_waits_for_it_and_the_default_nad_works(
    local_cluster: LocalCluster, net: Net
) -> None:
    lc = local_cluster
    ns = net.namespace
    kube = lc.kube()
    kube.create(
        f"/api/v1/namespaces/{ns}/pods",
        {
            "metadata": {
                "name": "late",
                "annotations": {"k8s.v1.cni.cncf.io/networks": "later@sec9"},
            },
            "spec": {
                "nodeName": "node-2",
                "containers": [{"name": "main", "image": lc.images["pause"]}],
            },
        },
    )

    def sandbox_failed() -> JSON:
        return kube.get(f"/api/v1/namespaces/{ns}/events", fieldSelector="involvedObject.name=late")

    events = lc.wait_for(
        "FailedCreatePodSandBox",
        sandbox_failed,
        lambda ev: any(e["reason"] == "FailedCreatePodSandBox" for e in ev["items"]),
        30,
    )
    msg = next(e["message"] for e in events["items"] if e["reason"] == "FailedCreatePodSandBox")
    assert 'network-attachment-definitions.k8s.cni.cncf.io "later" not found' in msg
    assert kube.get(f"/api/v1/namespaces/{ns}/pods/late")["status"].get("phase") == "Pending"
    lc.create_nad(ns, "later")  # no IPAM range: the default secondary pool
    pod = lc.wait_pod(ns, "late", "Running", timeout=30)
    sec = lc.network_status(pod)[1]
    assert sec["interface"] == "sec9"
    assert ipaddress.ip_address(sec["ips"][0]) in ipaddress.ip_network(lc.secondary_pool)
    # the cluster's own NAD, named from another namespace
    kube.create(
        f"/api/v1/namespaces/{ns}/pods",
        {
            "metadata": {
                "name": "shared",
                "annotations": {"k8s.v1.cni.cncf.io/networks": lc.default_nad},
            },
            "spec": {"containers": [{"name": "main", "image": lc.images["pause"]}]},
        },
    )
    shared = lc.network_status(lc.wait_pod(ns, "shared", "Running", timeout=30))[1]
    assert shared["name"] == lc.default_nad and shared["interface"] == "net1"
    assert ipaddress.ip_address(shared["ips"][0]) in ipaddress.ip_network(lc.secondary_pool)
    assert shared["ips"] != sec["ips"]


# --- audit -----------------------------------------------------------------------------------


def test_audit_log_counts_the_requests_of_one_user_and_of_service_accounts(
    local_cluster: LocalCluster, cluster_namespace: str
) -> None:
    lc, ns = local_cluster, cluster_namespace
    since = time.time()
    cli = Kube(lc.kubeconfig, context=lc.cli_context)  # an admin of its own in the log
    cli.create(f"/api/v1/namespaces/{ns}/configmaps", {"metadata": {"name": "counted"}})
    for _ in range(3):
        cli.get(f"/api/v1/namespaces/{ns}/pods")
    cli.get(f"/api/v1/namespaces/{ns}/configmaps/counted")
    with pytest.raises(ApiError):
        cli.get(f"/api/v1/namespaces/{ns}/configmaps/missing")
    # a pod's service account: lists pods twice through in-cluster config
    kube = lc.kube()
    kube.create(f"/api/v1/namespaces/{ns}/serviceaccounts", {"metadata": {"name": "counter"}})
    kube.create(
        f"/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings",
        {
            "metadata": {"name": "counter"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                        "name": "view"},
            "subjects": [{"kind": "ServiceAccount", "name": "counter", "namespace": ns}],
        },
    )  # fmt: skip
    script = (
        "from kubernetes import client, config\n"
        "config.load_incluster_config()\n"
        "api = client.CoreV1Api()\n"
        f"api.list_namespaced_pod('{ns}'); api.list_namespaced_pod('{ns}')\n"
    )
    kube.create(
        f"/api/v1/namespaces/{ns}/pods",
        {
            "metadata": {"name": "sa-user"},
            "spec": {
                "serviceAccountName": "counter",
                "restartPolicy": "Never",
                "containers": [
                    {
                        "name": "main",
                        "image": lc.images["python"],
                        "command": ["python3", "-c", script],
                    }
                ],
            },
        },
    )
    pod = lc.wait_pod(
        ns, "sa-user", lambda p: p.get("status", {}).get("phase") in ("Succeeded", "Failed")
    )
    assert pod["status"]["phase"] == "Succeeded", lc.pod_logs(ns, "sa-user")
    counts = lc.api_request_counts(since=since, users=lc.cli_user)
    assert counts == {("create", "configmaps"): 1, ("list", "pods"): 3, ("get", "configmaps"): 2}
    events = lc.audit_events(since=since, user=lc.cli_user, verb="get")
    assert [e["responseStatus"]["code"] for e in events] == [200, 404]
    assert all(e["objectRef"]["namespace"] == ns for e in events)
    sa = lc.api_request_counts(since=since, users=f"system:serviceaccount:{ns}:*")
    assert sa == {("list", "pods"): 2}
    # the admin user's requests (this test's own setup) are counted apart
    admin = lc.api_request_counts(since=since, users=lc.admin_user, namespace=ns)
    assert admin[("create", "pods")] == 1 and ("list", "pods") not in admin
