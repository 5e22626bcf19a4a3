"""The cluster's PKI (EC P-256 keys, made with the openssl CLI) and kubeconfig files."""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass
from pathlib import Path

import yaml

from hack.localcluster import config
from hack.localcluster.util import run

DAYS = "3650"


@dataclass(frozen=True)
class Cert:
    crt: Path
    key: Path


def pki_dir() -> Path:
    return config.STATE_DIR / "pki"


def _key(path: Path) -> None:
    run(["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-out", str(path)])  # fmt: skip
    path.chmod(0o600)


def make_ca(name: str, cn: str) -> Cert:
    d = pki_dir()
    d.mkdir(parents=True, exist_ok=True)
    cert = Cert(d / f"{name}.crt", d / f"{name}.key")
    _key(cert.key)
    run(["openssl", "req", "-x509", "-new", "-key", str(cert.key), "-out", str(cert.crt),
         "-days", DAYS, "-subj", f"/CN={cn}",
         "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign,digitalSignature"])  # fmt: skip
    return cert


def make_cert(
    ca: Cert,
    name: str,
    cn: str,
    orgs: tuple[str, ...] = (),
    *,
    server: bool = False,
    client: bool = True,
    ips: tuple[str, ...] = (),
    dns: tuple[str, ...] = (),
) -> Cert:
    d = pki_dir()
    cert = Cert(d / f"{name}.crt", d / f"{name}.key")
    _key(cert.key)
    subj = "".join(f"/O={o}" for o in orgs) + f"/CN={cn}"
    csr = d / f"{name}.csr"
    run(["openssl", "req", "-new", "-key", str(cert.key), "-out", str(csr), "-subj", subj])
    usages = [u for u, on in (("serverAuth", server), ("clientAuth", client)) if on]
    ext = [
        "basicConstraints=critical,CA:FALSE",
        "keyUsage=critical,digitalSignature,keyEncipherment",
        f"extendedKeyUsage={','.join(usages)}",
    ]
    sans = [f"IP:{i}" for i in ips] + [f"DNS:{n}" for n in dns]
    if sans:
        ext.append(f"subjectAltName={','.join(sans)}")
    extfile = d / f"{name}.ext"
    extfile.write_text("\n".join(ext) + "\n")
    run(["openssl", "x509", "-req", "-in", str(csr), "-CA", str(ca.crt), "-CAkey", str(ca.key),
         "-CAcreateserial", "-out", str(cert.crt), "-days", DAYS, "-sha256",
         "-extfile", str(extfile)])  # fmt: skip
    csr.unlink()
    extfile.unlink()
    return cert


def make_sa_keypair() -> tuple[Path, Path]:
    d = pki_dir()
    key, pub = d / "sa.key", d / "sa.pub"
    _key(key)
    run(["openssl", "pkey", "-in", str(key), "-pubout", "-out", str(pub)])
    return key, pub


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def write_kubeconfig(
    path: Path,
    server: str,
    ca: Path,
    users: list[tuple[str, Cert, str | None]],
    current: str,
    embed: bool = True,
) -> None:
    """``users`` = (context/user name, client cert, default namespace). The first context that
    matches ``current`` becomes current-context."""
    cluster: dict[str, object] = {"server": server}
    if embed:
        cluster["certificate-authority-data"] = _b64(ca)
    else:
        cluster["certificate-authority"] = str(ca)
    user_entries = []
    contexts = []
    for name, cert, ns in users:
        u: dict[str, str] = (
            {"client-certificate-data": _b64(cert.crt), "client-key-data": _b64(cert.key)}
            if embed
            else {"client-certificate": str(cert.crt), "client-key": str(cert.key)}
        )
        user_entries.append({"name": name, "user": u})
        ctx: dict[str, str] = {"cluster": "kdoctor-local", "user": name}
        if ns:
            ctx["namespace"] = ns
        contexts.append({"name": name, "context": ctx})
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "kdoctor-local", "cluster": cluster}],
        "users": user_entries,
        "contexts": contexts,
        "current-context": current,
        "preferences": {},
    }
    # Atomically: a component starting now may be reading the previous copy (every node's
    # kube-proxy shares one kubeconfig, rewritten as each node starts).
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(yaml.safe_dump(doc, sort_keys=False))
    tmp.chmod(0o600)
    os.replace(tmp, path)


@dataclass
class ClusterPKI:
    ca: Cert
    front_proxy_ca: Cert
    apiserver: Cert
    apiserver_kubelet_client: Cert
    front_proxy_client: Cert
    admin: Cert
    cli: Cert
    addons: Cert
    restricted: Cert
    controller_manager: Cert
    scheduler: Cert
    kube_proxy: Cert
    sa_key: Path
    sa_pub: Path

    @classmethod
    def paths(cls) -> ClusterPKI:
        d = pki_dir()

        def c(n: str) -> Cert:
            return Cert(d / f"{n}.crt", d / f"{n}.key")

        return cls(
            ca=c("ca"),
            front_proxy_ca=c("front-proxy-ca"),
            apiserver=c("apiserver"),
            apiserver_kubelet_client=c("apiserver-kubelet-client"),
            front_proxy_client=c("front-proxy-client"),
            admin=c("admin"),
            cli=c("cli"),
            addons=c("addons"),
            restricted=c("restricted"),
            controller_manager=c("controller-manager"),
            scheduler=c("scheduler"),
            kube_proxy=c("kube-proxy"),
            sa_key=d / "sa.key",
            sa_pub=d / "sa.pub",
        )


def node_client(node: config.NodeInfo) -> Cert:
    return Cert(pki_dir() / f"{node.name}.crt", pki_dir() / f"{node.name}.key")


def node_serving(node: config.NodeInfo) -> Cert:
    return Cert(pki_dir() / f"{node.name}-serving.crt", pki_dir() / f"{node.name}-serving.key")


def make_all(nodes: list[config.NodeInfo]) -> ClusterPKI:
    ca = make_ca("ca", "kdoctor-local-ca")
    fpca = make_ca("front-proxy-ca", "kdoctor-local-front-proxy-ca")
    apiserver_dns = (
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        f"kubernetes.default.svc.{config.CLUSTER_DOMAIN}",
        "localhost",
    )
    make_cert(ca, "apiserver", "kube-apiserver", server=True, client=False,
              ips=(config.BRIDGE_IP, "127.0.0.1", config.KUBERNETES_SERVICE_IP),
              dns=apiserver_dns)  # fmt: skip
    make_cert(ca, "apiserver-kubelet-client", "kube-apiserver-kubelet-client",
              ("kubeadm:cluster-admins",))  # fmt: skip
    make_cert(fpca, "front-proxy-client", "front-proxy-client")
    make_cert(ca, "admin", config.ADMIN_USER, ("system:masters",))
    make_cert(ca, "cli", config.CLI_USER, ("system:masters",))
    make_cert(ca, "addons", config.ADDONS_USER, ("system:masters",))
    make_cert(ca, "restricted", config.RESTRICTED_USER)
    make_cert(ca, "controller-manager", "system:kube-controller-manager")
    make_cert(ca, "scheduler", "system:kube-scheduler")
    make_cert(ca, "kube-proxy", "system:kube-proxy")
    for node in nodes:
        make_cert(ca, node.name, f"system:node:{node.name}", ("system:nodes",))
        make_cert(ca, f"{node.name}-serving", f"system:node:{node.name}", ("system:nodes",),
                  server=True, client=False, ips=tuple(node.ips), dns=(node.name,))  # fmt: skip
    make_sa_keypair()
    return ClusterPKI.paths()
