"""A container's environment, resolv.conf and /etc/hosts, computed as the kubelet does."""

from __future__ import annotations

import base64
import re
from typing import Any

from hack.localcluster import config
from hack.localcluster.kube import JSON, ApiError, Kube
from hack.localcluster.node.volumes import PodContext, VolumeError

_VAR_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


def expand(value: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion: defined vars are substituted, $$ escapes a $, undefined
    references stay as written."""

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group(1)
        return env.get(name, m.group(0))

    return _VAR_REF.sub(sub, value)


def service_env(services: list[JSON]) -> dict[str, str]:
    """Docker-link style variables for the Services of the pod's namespace."""
    env: dict[str, str] = {}
    for svc in services:
        spec = svc.get("spec", {})
        ip = spec.get("clusterIP")
        if not ip or ip == "None":
            continue
        name = svc["metadata"]["name"].upper().replace("-", "_")
        ports = spec.get("ports") or []
        if not ports:
            continue
        env[f"{name}_SERVICE_HOST"] = ip
        env[f"{name}_SERVICE_PORT"] = str(ports[0]["port"])
        for p in ports:
            if p.get("name"):
                env[f"{name}_SERVICE_PORT_{p['name'].upper().replace('-', '_')}"] = str(p["port"])
        first = ports[0]
        env[f"{name}_PORT"] = f"{first.get('protocol', 'TCP').lower()}://{ip}:{first['port']}"
        for p in ports:
            proto = p.get("protocol", "TCP")
            prefix = f"{name}_PORT_{p['port']}_{proto}"
            env[prefix] = f"{proto.lower()}://{ip}:{p['port']}"
            env[f"{prefix}_PROTO"] = proto.lower()
            env[f"{prefix}_PORT"] = str(p["port"])
            env[f"{prefix}_ADDR"] = ip
    return env


def kubernetes_env() -> dict[str, str]:
    ip, port = config.KUBERNETES_SERVICE_IP, "443"
    return {
        "KUBERNETES_SERVICE_HOST": ip,
        "KUBERNETES_SERVICE_PORT": port,
        "KUBERNETES_SERVICE_PORT_HTTPS": port,
        "KUBERNETES_PORT": f"tcp://{ip}:{port}",
        "KUBERNETES_PORT_443_TCP": f"tcp://{ip}:{port}",
        "KUBERNETES_PORT_443_TCP_PROTO": "tcp",
        "KUBERNETES_PORT_443_TCP_PORT": port,
        "KUBERNETES_PORT_443_TCP_ADDR": ip,
    }


def _source(kube: Kube, ns: str, kind: str, name: str, optional: bool) -> dict[str, str] | None:
    try:
        obj = kube.get(f"/api/v1/namespaces/{ns}/{kind}/{name}")
    except ApiError as exc:
        if exc.status == 404:
            if optional:
                return None
            raise VolumeError(f'{kind[:-1]} "{name}" not found') from exc
        raise VolumeError(f"{kind}/{name}: {exc.message}") from exc
    data = obj.get("data") or {}
    if kind == "secrets":
        return {k: base64.b64decode(v).decode(errors="replace") for k, v in data.items()}
    return dict(data)


def container_env(
    kube: Kube,
    pod: JSON,
    container: JSON,
    ctx: PodContext,
    services: list[JSON],
    image_env: dict[str, str],
    hostname: str,
) -> dict[str, str]:
    """Raises VolumeError (reported as CreateContainerConfigError) for missing references."""
    ns = pod["metadata"]["namespace"]
    env: dict[str, str] = {"HOSTNAME": hostname}
    env.update(image_env)
    if pod["spec"].get("enableServiceLinks", True):
        env.update(service_env(services))
    env.update(kubernetes_env())
    for ef in container.get("envFrom") or []:
        prefix = ef.get("prefix", "")
        if "configMapRef" in ef:
            ref = ef["configMapRef"]
            data = _source(kube, ns, "configmaps", ref["name"], bool(ref.get("optional")))
        else:
            ref = ef["secretRef"]
            data = _source(kube, ns, "secrets", ref["name"], bool(ref.get("optional")))
        for k, v in (data or {}).items():
            env[prefix + k] = v
    for e in container.get("env") or []:
        name = e["name"]
        if "value" in e or "valueFrom" not in e:
            env[name] = expand(e.get("value", ""), env)
            continue
        vf: dict[str, Any] = e["valueFrom"]
        if "fieldRef" in vf:
            env[name] = ctx.field(vf["fieldRef"]["fieldPath"])
        elif "resourceFieldRef" in vf:
            env[name] = ctx.resource(vf["resourceFieldRef"], container["name"])
        elif "configMapKeyRef" in vf or "secretKeyRef" in vf:
            kind = "configmaps" if "configMapKeyRef" in vf else "secrets"
            ref = vf.get("configMapKeyRef") or vf["secretKeyRef"]
            optional = bool(ref.get("optional"))
            data = _source(kube, ns, kind, ref["name"], optional)
            if data is None:
                continue
            if ref["key"] not in data:
                if optional:
                    continue
                what = "configmap" if kind == "configmaps" else "secret"
                raise VolumeError(f"couldn't find key {ref['key']} in {what} {ns}/{ref['name']}")
            env[name] = data[ref["key"]]
    return env


def resolv_conf(pod: JSON) -> str | None:
    """The pod's resolv.conf, or None to use the node's (the host's) file."""
    spec = pod["spec"]
    policy = spec.get("dnsPolicy", "ClusterFirst")
    host_net = bool(spec.get("hostNetwork"))
    ns = pod["metadata"]["namespace"]
    dom = config.CLUSTER_DOMAIN
    nameservers: list[str] = []
    searches: list[str] = []
    options: dict[str, str | None] = {}
    if policy == "ClusterFirstWithHostNet" or (policy == "ClusterFirst" and not host_net):
        nameservers = [config.DNS_SERVICE_IP]
        searches = [f"{ns}.svc.{dom}", f"svc.{dom}", dom]
        options = {"ndots": "5"}
    elif policy != "None":
        if not spec.get("dnsConfig"):
            return None
        nameservers, searches = _host_resolv()
    dc = spec.get("dnsConfig") or {}
    nameservers += [n for n in dc.get("nameservers", []) if n not in nameservers]
    searches += [s for s in dc.get("searches", []) if s not in searches]
    for o in dc.get("options", []):
        options[o["name"]] = o.get("value")
    lines = [f"search {' '.join(searches)}"] if searches else []
    lines += [f"nameserver {n}" for n in nameservers[:3]]
    if options:
        opts = " ".join(k if v is None else f"{k}:{v}" for k, v in options.items())
        lines.append(f"options {opts}")
    return "\n".join(lines) + "\n"


def _host_resolv() -> tuple[list[str], list[str]]:
    ns: list[str] = []
    search: list[str] = []
    try:
        with open("/etc/resolv.conf") as f:
            for line in f:
                parts = line.split()
                if parts and parts[0] == "nameserver":
                    ns += parts[1:2]
                elif parts and parts[0] == "search":
                    search += parts[1:]
    except OSError:
        pass
    return ns, search


def hosts_file(pod: JSON, pod_ips: list[str], hostname: str) -> str:
    spec = pod["spec"]
    lines = [
        "# Kubernetes-managed hosts file.",
        "127.0.0.1\tlocalhost",
        "::1\tlocalhost ip6-localhost ip6-loopback",
        "fe00::0\tip6-localnet",
        "fe00::0\tip6-mcastprefix",
        "fe00::1\tip6-allnodes",
        "fe00::2\tip6-allrouters",
    ]
    names = hostname
    if spec.get("subdomain"):
        ns = pod["metadata"]["namespace"]
        fqdn = f"{hostname}.{spec['subdomain']}.{ns}.svc.{config.CLUSTER_DOMAIN}"
        names = f"{fqdn}\t{hostname}"
    lines += [f"{ip}\t{names}" for ip in pod_ips]
    for alias in spec.get("hostAliases") or []:
        lines.append(
            f"\n# Entries added by HostAliases.\n{alias['ip']}\t" + "\t".join(alias["hostnames"])
        )
    return "\n".join(lines) + "\n"
