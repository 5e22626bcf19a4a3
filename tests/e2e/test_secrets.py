"""Secrets end to end on the local cluster: a job-mode run with a secret header, a URL's
user:password and a request body delivers them to a real server in the cluster, and leaves
none of them in any object of the namespace but the run's Secret (ConfigMaps, reports,
events, pods...), in the agents' logs, in the CLI's output or in the apiserver's audit log.
And the netreach agents' responder answers only its run's token."""

from __future__ import annotations

import base64
import gzip
import json
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.kd import kdoctor, namespace, wait_clean
from tests.fixtures.cluster import LocalCluster

pytestmark = pytest.mark.cluster

# The target: answers 200 only to a POST carrying exactly the three secrets (so a passing run
# proves they arrived), counts what it got at /count, and never prints a request.
ECHO = r"""
import base64, http.server, json, os
M = os.environ["MARK"]
WANT = {
    "x-vault-token": "s3cr3t-" + M,
    "authorization": "Basic " + base64.b64encode(("u-" + M + ":p-" + M).encode()).decode(),
}
BODY = ("secret-" + M).encode()
seen = {"good": 0, "bad": 0}
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a):
        pass
    def reply(self, code, body=b""):
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def do_GET(self):
        if self.path == "/count":
            return self.reply(200, json.dumps(seen).encode())
        seen["bad"] += 1
        self.reply(400)
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        ok = body == BODY and all(self.headers.get(k) == v for k, v in WANT.items())
        seen["good" if ok else "bad"] += 1
        self.reply(200 if ok else 400)
http.server.ThreadingHTTPServer(("0.0.0.0", 8080), H).serve_forever()
"""

RESTRICTED = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
}


def _echo_pod(cluster: LocalCluster, ns: str, mark: str) -> str:
    cluster.kube().create(
        f"/api/v1/namespaces/{ns}/pods",
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "echo"},
            "spec": {
                "securityContext": {
                    "runAsNonRoot": True,
                    "runAsUser": 1000,
                    "seccompProfile": {"type": "RuntimeDefault"},
                },
                "containers": [
                    {
                        "name": "echo",
                        "image": cluster.images["python"],
                        "command": ["python3", "-c", ECHO],
                        "env": [{"name": "MARK", "value": mark}],
                        "ports": [{"containerPort": 8080}],
                        "readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1},
                        "securityContext": RESTRICTED,
                    }
                ],
            },
        },
    )
    pod = cluster.wait_pod(ns, "echo")
    return str(pod["status"]["podIP"])


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def _namespace_text(cluster: LocalCluster, ns: str) -> str:
    """Every object of the namespace but Secrets, as JSON, with every ConfigMap's binaryData
    decoded (and gunzipped when it is gzip: the agents' reports), and every pod's log."""
    kube = cluster.kube()
    parts: list[str] = []
    for path in (
        "/api/v1/namespaces/{ns}/configmaps",
        "/api/v1/namespaces/{ns}/pods",
        "/api/v1/namespaces/{ns}/services",
        "/api/v1/namespaces/{ns}/serviceaccounts",
        "/api/v1/namespaces/{ns}/events",
        "/apis/events.k8s.io/v1/namespaces/{ns}/events",
        "/apis/batch/v1/namespaces/{ns}/jobs",
        "/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/roles",
        "/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings",
        "/apis/discovery.k8s.io/v1/namespaces/{ns}/endpointslices",
    ):
        items = kube.get(path.format(ns=ns)).get("items", [])
        parts.append(json.dumps(items))
        for item in items:
            for blob in (item.get("binaryData") or {}).values():
                raw = base64.b64decode(blob)
                parts.append((gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw).decode())
    pods = kube.get(f"/api/v1/namespaces/{ns}/pods").get("items", [])
    agents = [p["metadata"]["name"] for p in pods if p["metadata"]["name"] != "echo"]
    assert agents, "no agent pod kept to read the logs of"
    for name in agents:
        log = cluster.pod_logs(ns, name)
        assert "agent:" in log, log  # a real agent log, not an empty string
        parts.append(log)
    return "\n".join(parts)


def test_secrets_reach_the_target_and_nothing_else(local_cluster: LocalCluster, ns: str) -> None:
    mark = uuid.uuid4().hex[:10]
    secrets = {
        "token": f"s3cr3t-{mark}",
        "user": f"u-{mark}",
        "password": f"p-{mark}",
        "body": f"secret-{mark}",
    }
    basic = base64.b64encode(f"u-{mark}:p-{mark}".encode()).decode()
    needles = [*secrets.values(), basic] + [
        base64.b64encode(s.encode()).decode() for s in secrets.values()
    ]
    ip = _echo_pod(local_cluster, ns, mark)
    since = time.time()
    run = f"sec-{mark[:6]}"
    proc = kdoctor(
        local_cluster,
        "http",
        f"http://u-{mark}:p-{mark}@{ip}:8080/echo",
        "-H",
        f"X-Vault-Token: s3cr3t-{mark}",
        "-H",
        "Accept: application/json",
        "-d",
        f"secret-{mark}",
        "-n",
        ns,
        "--mode",
        "job",
        "--name",
        run,
        "--keep",
        "--qps",
        "5",
        "--duration",
        "2s",
        "-o",
        "json",
    )
    # The target received every secret: it answers 200 only then, and counted them.
    assert proc.returncode == 0, proc.stderr[-2000:] + proc.stdout[-2000:]
    status, body = _get(f"http://{ip}:8080/count")
    counts = json.loads(body)
    assert status == 200 and counts["bad"] == 0
    assert counts["good"] == 10 * len(local_cluster.nodes), counts

    # The Secret holds them (so the searches below would have found them elsewhere).
    sec = local_cluster.kube().get(f"/api/v1/namespaces/{ns}/secrets/{run}")
    held = b"".join(base64.b64decode(v) for v in sec["data"].values()).decode()
    assert secrets["token"] in held and secrets["body"] in held and f"Basic {basic}" in held

    doc = json.loads(proc.stdout)
    headers = doc["task"]["spec"]["appHttpHealthy"]["target"]["header"]
    assert "X-Vault-Token: <redacted>" in headers and "Authorization: <redacted>" in headers
    assert "Accept: application/json" in headers
    assert doc["task"]["spec"]["appHttpHealthy"]["target"]["host"] == f"http://{ip}:8080/echo"

    rep = kdoctor(local_cluster, "report", run, "-n", ns, "-o", "json")
    assert rep.returncode == 0, rep.stderr
    wide = kdoctor(local_cluster, "report", run, "-n", ns, "-o", "wide")
    dry = kdoctor(
        local_cluster,
        "http",
        f"http://u-{mark}:p-{mark}@{ip}:8080/echo",
        "-H",
        f"X-Vault-Token: s3cr3t-{mark}",
        "-d",
        f"secret-{mark}",
        "-n",
        ns,
        "--mode",
        "job",
        "--dry-run=client",
    )
    assert dry.returncode == 0, dry.stderr
    assert "kind: Secret" in dry.stdout and "<redacted>" in dry.stdout
    # Positive control: the search reads gzipped binaryData (as the agents' reports are).
    canary = f"canary-{mark}"
    local_cluster.kube().create(
        f"/api/v1/namespaces/{ns}/configmaps",
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "control"},
            "binaryData": {"x": base64.b64encode(gzip.compress(canary.encode())).decode()},
        },
    )
    text = _namespace_text(local_cluster, ns)
    assert canary in text
    outputs = "\n".join(p.stdout + p.stderr for p in (proc, rep, wide, dry))
    events = local_cluster.audit_events(since=since - 1)
    assert any((ev.get("objectRef") or {}).get("namespace") == ns for ev in events)
    audit = json.dumps(events)
    for needle in needles:
        assert needle not in text, f"{needle!r} found in the namespace's objects or logs"
        assert needle not in outputs, f"{needle!r} found in the CLI's output"
        assert needle not in audit, f"{needle!r} found in the audit log"

    gone = kdoctor(local_cluster, "delete", run, "-n", ns)
    assert gone.returncode == 0, gone.stderr
    assert wait_clean(local_cluster, ns) == []


@pytest.fixture
def privileged_ns(local_cluster: LocalCluster) -> Iterator[str]:
    """A namespace whose PodSecurity level allows host networking."""
    with namespace(local_cluster, "kdh", enforce="privileged") as name:
        yield name


@pytest.mark.parametrize("host_network", [False, True], ids=["pod-network", "host-network"])
def test_netreach_responders_answer_only_their_run(
    local_cluster: LocalCluster, request: pytest.FixtureRequest, host_network: bool
) -> None:
    ns = request.getfixturevalue("privileged_ns" if host_network else "ns")
    run = f"tok-{uuid.uuid4().hex[:6]}"
    proc = kdoctor(
        local_cluster,
        "netreach",
        *(["--host-network"] if host_network else []),
        "-n",
        ns,
        "--mode",
        "job",
        "--name",
        run,
        "--targets",
        "pod" if host_network else "pod,clusterip,nodeport",  # pod alone: no Services listed
        "--qps",
        "5",
        "--duration",
        "20s",
        "--no-wait",
    )
    assert proc.returncode == 0, proc.stderr
    kube = local_cluster.kube()
    deadline = time.monotonic() + 120
    pods: list[dict] = []  # type: ignore[type-arg]
    while time.monotonic() < deadline:
        pods = kube.get(f"/api/v1/namespaces/{ns}/pods", labelSelector=f"kdoctor.io/run={run}").get(
            "items", []
        )
        ready = [
            p
            for p in pods
            if any(
                c["type"] == "Ready" and c["status"] == "True"
                for c in p.get("status", {}).get("conditions") or []
            )
        ]
        if pods and len(ready) == len(local_cluster.nodes):
            break
        time.sleep(1)
    else:
        raise AssertionError(f"agents not ready: {[p.get('status') for p in pods]}")
    sec = kube.get(f"/api/v1/namespaces/{ns}/secrets/{run}")
    token = base64.b64decode(sec["data"]["token"]).decode()
    assert len(token) >= 24
    cm = kube.get(f"/api/v1/namespaces/{ns}/configmaps/{run}")
    assert token not in json.dumps(cm)
    for pod in ready:
        ip = pod["status"]["podIP"]
        if host_network:  # the responder listens on the node's own address
            assert ip == pod["status"]["hostIP"], pod["status"]
        status, body = _get(f"http://{ip}:8080/")
        assert status == 403 and pod["metadata"]["name"].encode() not in body, (status, body)
        status, _ = _get(f"http://{ip}:8080/", {"X-Kdoctor-Token": token + "x"})
        assert status == 403
        status, body = _get(f"http://{ip}:8080/", {"X-Kdoctor-Token": token})
        assert status == 200 and json.loads(body)["serverName"] == pod["metadata"]["name"]
        status, _ = _get(f"http://{ip}:8080/readyz")
        assert status == 200
    # The run itself still passes: its probes carry the token.
    deadline = time.monotonic() + 180
    doc: dict = {}  # type: ignore[type-arg]
    while time.monotonic() < deadline:
        rep = kdoctor(local_cluster, "report", run, "-n", ns, "-o", "json")
        doc = json.loads(rep.stdout) if rep.stdout.startswith("{") else {}
        if doc and doc["status"]["status"] == "Finished":
            break
        time.sleep(2)
    assert doc and doc["status"]["status"] == "Finished", doc
    assert rep.returncode == 0, rep.stdout[-3000:]
    kdoctor(local_cluster, "delete", run, "-n", ns)
    assert wait_clean(local_cluster, ns) == []


UNBOUND_CONF = """
server:
  verbosity: 0
  num-threads: 1
  interface: 0.0.0.0@8853
  tls-port: 8853
  tls-service-key: "/cfg/tls.key"
  tls-service-pem: "/cfg/tls.crt"
  do-ip6: no
  do-daemonize: no
  username: ""
  chroot: ""
  directory: "/tmp"
  pidfile: "/tmp/unbound.pid"
  use-syslog: no
  access-control: 0.0.0.0/0 allow
  module-config: "iterator"
  local-zone: "kdoctor.test." static
  local-data: "a.kdoctor.test. 300 IN A 10.0.0.1"
remote-control:
  control-enable: no
"""


def test_dot_in_job_mode_verifies_with_the_ca_from_the_secret(
    local_cluster: LocalCluster, ns: str, tmp_path: Path
) -> None:
    """A DoT server in the cluster with a self-signed CN=evil.invalid certificate: agents
    refuse it by default (the reason in the report), accept it with its CA (carried to the
    agents in the run's Secret) and the matching --tls-server-name, or with -k."""
    key, crt = tmp_path / "evil.key", tmp_path / "evil.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key)),
            *("-out", str(crt), "-days", "2", "-subj", "/CN=evil.invalid"),
            *("-addext", "subjectAltName=DNS:evil.invalid"),
        ],
        check=True,
        capture_output=True,
    )
    kube = local_cluster.kube()
    kube.create(
        f"/api/v1/namespaces/{ns}/secrets",
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "dot"},
            "stringData": {
                "tls.key": key.read_text(),
                "tls.crt": crt.read_text(),
                "unbound.conf": UNBOUND_CONF,
            },
        },
    )
    kube.create(
        f"/api/v1/namespaces/{ns}/pods",
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "dot"},
            "spec": {
                "securityContext": {
                    "runAsNonRoot": True,
                    "runAsUser": 1000,
                    "seccompProfile": {"type": "RuntimeDefault"},
                },
                "containers": [
                    {
                        "name": "unbound",
                        "image": local_cluster.images["shell"],
                        "command": ["/usr/sbin/unbound", "-d", "-c", "/cfg/unbound.conf"],
                        "readinessProbe": {"tcpSocket": {"port": 8853}, "periodSeconds": 1},
                        "volumeMounts": [{"name": "cfg", "mountPath": "/cfg"}],
                        "securityContext": RESTRICTED,
                    }
                ],
                "volumes": [{"name": "cfg", "secret": {"secretName": "dot"}}],
            },
        },
    )
    ip = local_cluster.wait_pod(ns, "dot")["status"]["podIP"]
    base = [
        *("dns", "a.kdoctor.test", "--server", f"{ip}:8853", "--protocol", "tls", "-n", ns),
        *("--mode", "job", "--qps", "5", "--duration", "1s", "-o", "wide"),
    ]
    refused = kdoctor(local_cluster, *base)
    assert refused.returncode == 1, refused.stderr[-2000:]
    assert "self-signed certificate" in refused.stdout, refused.stdout
    verified = kdoctor(
        local_cluster, *base, "--cacert", str(crt), "--tls-server-name", "evil.invalid"
    )
    assert verified.returncode == 0, verified.stdout[-2000:] + verified.stderr[-2000:]
    wrong = kdoctor(local_cluster, *base, "--cacert", str(crt), "--tls-server-name", "good.test")
    assert wrong.returncode == 1 and "Hostname mismatch" in wrong.stdout, wrong.stdout
    insecure = kdoctor(local_cluster, *base, "-k")
    assert insecure.returncode == 0, insecure.stdout[-2000:] + insecure.stderr[-2000:]
    assert wait_clean(local_cluster, ns) == []
