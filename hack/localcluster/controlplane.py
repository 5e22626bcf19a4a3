"""etcd, kube-apiserver, kube-controller-manager and kube-scheduler, in the root netns."""

from __future__ import annotations

import ssl
import urllib.request
from pathlib import Path

from hack.localcluster import config, pki
from hack.localcluster.util import ClusterError, component_alive, spawn, tail, wait_for

CP_GROUP = "control-plane"


def _https_ok(url: str, ca: Path, cert: pki.Cert | None = None, timeout: float = 3) -> bool:
    ctx = ssl.create_default_context(cafile=str(ca))
    if cert:
        ctx.load_cert_chain(str(cert.crt), str(cert.key))
    with urllib.request.urlopen(url, context=ctx, timeout=timeout) as resp:
        return bool(resp.status == 200)


def _insecure_ok(url: str, timeout: float = 3) -> bool:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with urllib.request.urlopen(url, context=ctx, timeout=timeout) as resp:
        return bool(resp.status == 200)


def _http_ok(url: str, timeout: float = 3) -> bool:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return bool(resp.status == 200)


def _log(name: str) -> Path:
    return config.STATE_DIR / "logs" / f"{name}.log"


def _wait(name: str, what: str, probe: object, timeout: float) -> None:
    def check() -> bool:
        if not component_alive(name):
            raise ClusterError(f"{name} exited\n{tail(_log(name))}")
        return bool(probe())  # type: ignore[operator]

    wait_for(what, check, timeout, on_timeout=lambda: tail(_log(name)))


def api_url() -> str:
    return f"https://{config.BRIDGE_IP}:{config.API_PORT}"


def start_etcd(bin_dir: Path) -> None:
    data = config.STATE_DIR / "etcd"
    data.mkdir(parents=True, exist_ok=True)
    client = f"http://127.0.0.1:{config.ETCD_CLIENT_PORT}"
    peer = f"http://127.0.0.1:{config.ETCD_PEER_PORT}"
    spawn(
        "etcd",
        [
            str(bin_dir / "etcd"),
            "--name=kdoctor",
            f"--data-dir={data}",
            f"--listen-client-urls={client}",
            f"--advertise-client-urls={client}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=kdoctor={peer}",
            "--listen-metrics-urls=",
            "--unsafe-no-fsync=true",
            "--quota-backend-bytes=2147483648",
            "--log-level=warn",
        ],
        group=CP_GROUP,
    )
    _wait("etcd", "etcd /health", lambda: _http_ok(f"{client}/health"), 30)


def service_cidrs(dual: bool) -> str:
    return ",".join(
        str(c) for c in [config.SERVICE_CIDR, *([config.SERVICE_CIDR6] if dual else [])]
    )


def cluster_cidrs(dual: bool) -> str:
    return ",".join(str(c) for c in [config.POD_CIDR, *([config.POD_CIDR6] if dual else [])])


# The audit policy: Metadata for every request (one event per request: the RequestReceived
# stage is omitted; a watch logs ResponseStarted and, when it ends, ResponseComplete), minus
# noise nobody counts: health probes, the apiserver's own loopback traffic, and Lease
# renewals (node heartbeats, apiserver identity leases). Requests by the admin user, the CLI
# user and service accounts of non-system namespaces are all kept.
AUDIT_POLICY = {
    "apiVersion": "audit.k8s.io/v1",
    "kind": "Policy",
    "omitStages": ["RequestReceived"],
    "rules": [
        {"level": "None", "nonResourceURLs": ["/healthz*", "/livez*", "/readyz*"]},
        {"level": "None", "users": ["system:apiserver"]},
        {
            "level": "None",
            "verbs": ["get", "update", "patch"],
            "resources": [{"group": "coordination.k8s.io", "resources": ["leases"]}],
            "namespaces": ["kube-node-lease", "kube-system"],
        },
        {"level": "Metadata"},
    ],
}
AUDIT_MAX_SIZE_MB = 100  # per file; rotated into audit-<time>.log, at most AUDIT_MAX_BACKUPS
AUDIT_MAX_BACKUPS = 2


def audit_log() -> Path:
    return config.STATE_DIR / "audit" / "audit.log"


def write_audit_policy() -> Path:
    import yaml

    path = config.STATE_DIR / "audit" / "policy.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(AUDIT_POLICY, sort_keys=False))
    return path


def start_apiserver(bin_dir: Path, p: pki.ClusterPKI, dual: bool = False) -> None:
    policy = write_audit_policy()
    spawn(
        "kube-apiserver",
        [
            str(bin_dir / "kube-apiserver"),
            f"--etcd-servers=http://127.0.0.1:{config.ETCD_CLIENT_PORT}",
            f"--bind-address={config.BRIDGE_IP}",
            f"--advertise-address={config.BRIDGE_IP}",
            f"--secure-port={config.API_PORT}",
            f"--tls-cert-file={p.apiserver.crt}",
            f"--tls-private-key-file={p.apiserver.key}",
            f"--client-ca-file={p.ca.crt}",
            "--authorization-mode=Node,RBAC",
            "--enable-admission-plugins=NodeRestriction",
            f"--service-cluster-ip-range={service_cidrs(dual)}",
            f"--service-node-port-range={config.NODE_PORT_RANGE}",
            f"--service-account-issuer=https://kubernetes.default.svc.{config.CLUSTER_DOMAIN}",
            f"--service-account-key-file={p.sa_pub}",
            f"--service-account-signing-key-file={p.sa_key}",
            "--allow-privileged=true",
            f"--kubelet-client-certificate={p.apiserver_kubelet_client.crt}",
            f"--kubelet-client-key={p.apiserver_kubelet_client.key}",
            f"--kubelet-certificate-authority={p.ca.crt}",
            "--kubelet-preferred-address-types=InternalIP",
            # Aggregation layer (front proxy), so APIServices can be registered later.
            f"--requestheader-client-ca-file={p.front_proxy_ca.crt}",
            f"--proxy-client-cert-file={p.front_proxy_client.crt}",
            f"--proxy-client-key-file={p.front_proxy_client.key}",
            "--requestheader-allowed-names=front-proxy-client",
            "--requestheader-username-headers=X-Remote-User",
            "--requestheader-group-headers=X-Remote-Group",
            "--requestheader-extra-headers-prefix=X-Remote-Extra-",
            # The root netns has no kube-proxy: reach aggregated APIs/webhooks by endpoint IP.
            "--enable-aggregator-routing=true",
            # Audit log (JSON lines; LocalCluster.audit_events reads it), size-capped.
            f"--audit-policy-file={policy}",
            f"--audit-log-path={audit_log()}",
            "--audit-log-format=json",
            f"--audit-log-maxsize={AUDIT_MAX_SIZE_MB}",
            f"--audit-log-maxbackup={AUDIT_MAX_BACKUPS}",
            "--audit-log-maxage=1",
            "--profiling=false",
            "--event-ttl=1h",
            "--v=1",
        ],
        group=CP_GROUP,
    )
    _wait(
        "kube-apiserver",
        "kube-apiserver /readyz",
        lambda: _https_ok(f"{api_url()}/readyz", p.ca.crt, p.addons),
        120,
    )


def component_kubeconfig(name: str, cert: pki.Cert, p: pki.ClusterPKI) -> Path:
    path = config.STATE_DIR / "kubeconfigs" / f"{name}.kubeconfig"
    path.parent.mkdir(parents=True, exist_ok=True)
    pki.write_kubeconfig(path, api_url(), p.ca.crt, [(name, cert, None)], name, embed=False)
    return path


def start_controller_manager(bin_dir: Path, p: pki.ClusterPKI, dual: bool = False) -> None:
    kc = component_kubeconfig("kube-controller-manager", p.controller_manager, p)
    spawn(
        "kube-controller-manager",
        [
            str(bin_dir / "kube-controller-manager"),
            f"--kubeconfig={kc}",
            f"--authentication-kubeconfig={kc}",
            f"--authorization-kubeconfig={kc}",
            "--bind-address=127.0.0.1",
            f"--secure-port={config.KCM_PORT}",
            "--leader-elect=false",
            "--controllers=*",
            "--use-service-account-credentials=true",
            f"--service-account-private-key-file={p.sa_key}",
            f"--root-ca-file={p.ca.crt}",
            f"--cluster-signing-cert-file={p.ca.crt}",
            f"--cluster-signing-key-file={p.ca.key}",
            f"--service-cluster-ip-range={service_cidrs(dual)}",
            f"--cluster-cidr={cluster_cidrs(dual)}",
            "--node-cidr-mask-size-ipv4=24",
            *(["--node-cidr-mask-size-ipv6=64"] if dual else []),
            "--allocate-node-cidrs=false",  # nodes register with their podCIDRs
            "--profiling=false",
            "--v=1",
        ],
        group=CP_GROUP,
    )
    _wait(
        "kube-controller-manager",
        "kube-controller-manager /healthz",
        lambda: _insecure_ok(f"https://127.0.0.1:{config.KCM_PORT}/healthz"),
        60,
    )


def start_scheduler(bin_dir: Path, p: pki.ClusterPKI) -> None:
    kc = component_kubeconfig("kube-scheduler", p.scheduler, p)
    spawn(
        "kube-scheduler",
        [
            str(bin_dir / "kube-scheduler"),
            f"--kubeconfig={kc}",
            f"--authentication-kubeconfig={kc}",
            f"--authorization-kubeconfig={kc}",
            "--bind-address=127.0.0.1",
            f"--secure-port={config.SCHEDULER_PORT}",
            "--leader-elect=false",
            "--profiling=false",
            "--v=1",
        ],
        group=CP_GROUP,
    )
    _wait(
        "kube-scheduler",
        "kube-scheduler /healthz",
        lambda: _insecure_ok(f"https://127.0.0.1:{config.SCHEDULER_PORT}/healthz"),
        60,
    )


def healthy() -> dict[str, bool]:
    p = pki.ClusterPKI.paths()
    who = p.addons if p.addons.crt.exists() else p.admin  # older clusters: no addons cert
    checks: dict[str, object] = {
        "etcd": lambda: _http_ok(f"http://127.0.0.1:{config.ETCD_CLIENT_PORT}/health"),
        "kube-apiserver": lambda: _https_ok(f"{api_url()}/readyz", p.ca.crt, who),
        "kube-controller-manager": lambda: _insecure_ok(
            f"https://127.0.0.1:{config.KCM_PORT}/healthz"
        ),
        "kube-scheduler": lambda: _insecure_ok(
            f"https://127.0.0.1:{config.SCHEDULER_PORT}/healthz"
        ),
    }
    out: dict[str, bool] = {}
    for name, check in checks.items():
        try:
            out[name] = component_alive(name) and bool(check())  # type: ignore[operator]
        except Exception:
            out[name] = False
    return out
