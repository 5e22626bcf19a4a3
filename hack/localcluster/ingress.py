"""The test cluster's ingress controller: Debian's nginx, in its own netns ``kdc-ingress`` on
the bridge (172.30.0.5 and, dual stack, fd00:172:30::5, port 80), configured from the
Ingress objects of the IngressClass ``kdoctor-nginx`` (controller
``kdoctor.io/test-ingress-nginx``; the default class, so Ingresses without a class get it).

Like ingress-nginx: nginx proxies straight to the ready endpoints of the backend Service
(EndpointSlices of the Service's primary IP family; no kube-proxy on the way), ``Prefix``
paths match whole path elements, ``Exact`` paths the exact path, ``ImplementationSpecific``
is treated as ``Prefix``; when two Ingresses claim the same host and path the older one wins;
a backend without ready endpoints answers 503, a request no rule matches 404 (``default
backend - 404``). An Ingress's ``defaultBackend`` serves the paths its hosts do not match.
The served Ingresses get ``status.loadBalancer.ingress[].ip`` = the proxy's addresses.
The config is re-rendered on every change of Ingresses, Services or EndpointSlices and nginx
reloaded (SIGHUP) when it differs; a stopped nginx (fault ``hack/cluster ingress stop``)
stays stopped. Not done: TLS (``spec.tls`` is ignored: HTTP only), annotations.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import signal
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

from hack.localcluster import config
from hack.localcluster.kube import JSON, ApiError, Kube
from hack.localcluster.util import netns_prefix

if TYPE_CHECKING:
    from hack.localcluster.addons import Cache

NGINX = "nginx"
COMPONENT = "ingress-nginx"
DEFAULT_CLASS_ANNOTATION = "ingressclass.kubernetes.io/is-default-class"
LEGACY_CLASS_ANNOTATION = "kubernetes.io/ingress.class"


def ingress_dir() -> Path:
    return config.STATE_DIR / "ingress"


def conf_path() -> Path:
    return ingress_dir() / "nginx.conf"


def pid_path() -> Path:
    return ingress_dir() / "nginx.pid"


def addresses(dual: bool) -> list[str]:
    return [config.INGRESS_IP, *([config.INGRESS_IP6] if dual else [])]


def nginx_argv() -> list[str]:
    return [NGINX, "-p", str(ingress_dir()), "-c", str(conf_path()), "-g", "daemon off;"]


def _q(s: str) -> str:
    """An nginx string literal."""
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _upstream_name(ns: str, svc: str, port: str) -> str:
    base = re.sub(r"[^A-Za-z0-9_]", "_", f"{ns}_{svc}_{port}")[:60]
    return f"u_{base}_{hashlib.sha256(f'{ns}/{svc}/{port}'.encode()).hexdigest()[:6]}"


def _ready_servers(slices: list[JSON], family: str, port_name: str) -> list[str]:
    out: list[str] = []
    for sl in slices:
        if sl.get("addressType") != family:
            continue
        port = next(
            (
                p.get("port")
                for p in sl.get("ports") or []
                if (p.get("name") or "") == port_name and p.get("protocol", "TCP") == "TCP"
            ),
            None,
        )
        if not port:
            continue
        for ep in sl.get("endpoints") or []:
            cond = ep.get("conditions") or {}
            if cond.get("ready") is False or cond.get("terminating"):
                continue
            for addr in ep.get("addresses") or []:
                out.append(f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}")
    return sorted(set(out))


class Model:
    """What nginx should serve: host -> location -> upstream name (None = 503)."""

    def __init__(self) -> None:
        self.servers: dict[str, dict[str, str | None]] = {}  # host ("" = any) -> loc -> up
        self.upstreams: dict[str, list[str]] = {}

    def add(self, host: str, locs: list[str], upstream: str | None) -> None:
        server = self.servers.setdefault(host, {})
        for loc in locs:
            server.setdefault(loc, upstream)  # claimed by an older Ingress: it keeps it


def locations(path: str, path_type: str) -> list[str]:
    """nginx location specs for one Ingress path (Kubernetes matching rules)."""
    if path_type == "Exact":
        return [f"= {_q(path)}"]
    p = path.rstrip("/") or "/"
    if p == "/":
        return [f"{_q('/')}"]
    return [f"= {_q(p)}", f"^~ {_q(p + '/')}"]


def build_model(ingresses: list[JSON], services: dict[str, JSON], cache: Cache) -> Model:
    from hack.localcluster.addons import service_slices

    model = Model()

    def upstream(ns: str, backend: JSON | None) -> str | None:
        svc_ref = (backend or {}).get("service")
        if not svc_ref:
            return None  # resource backends are not supported
        svc = services.get(f"{ns}/{svc_ref['name']}")
        if svc is None or svc["spec"].get("type") == "ExternalName":
            return None
        want = svc_ref.get("port") or {}
        sport = next(
            (
                p
                for p in svc["spec"].get("ports") or []
                if ("number" in want and p.get("port") == want["number"])
                or ("name" in want and p.get("name") == want["name"])
            ),
            None,
        )
        if sport is None:
            return None
        family = (svc["spec"].get("ipFamilies") or ["IPv4"])[0]
        servers = _ready_servers(
            service_slices(cache, ns, svc_ref["name"]), family, sport.get("name") or ""
        )
        if not servers:
            return None
        name = _upstream_name(ns, svc_ref["name"], str(sport.get("port")))
        model.upstreams[name] = servers
        return name

    for ing in ingresses:
        ns = ing["metadata"]["namespace"]
        spec = ing.get("spec") or {}
        hosts: set[str] = set()
        for rule in spec.get("rules") or []:
            host = rule.get("host") or ""
            hosts.add(host)
            for p in (rule.get("http") or {}).get("paths") or []:
                locs = locations(p.get("path") or "/", p.get("pathType") or "Prefix")
                model.add(host, locs, upstream(ns, p.get("backend")))
        if spec.get("defaultBackend"):
            up = upstream(ns, spec["defaultBackend"])
            for host in hosts | {""}:
                model.add(host, locations("/", "Prefix"), up)
    return model


def render(model: Model, dual: bool) -> str:
    d = ingress_dir()
    listen = [f"{config.INGRESS_IP}:80"] + ([f"[{config.INGRESS_IP6}]:80"] if dual else [])
    out = [
        "# Generated by hack/localcluster/ingress.py from the cluster's Ingresses.",
        "worker_processes 1;",
        "worker_rlimit_nofile 16384;",
        "error_log stderr warn;",
        f"pid {pid_path()};",
        "events { worker_connections 8192; }",
        "http {",
        "  access_log off;",
        f"  client_body_temp_path {d}/body; proxy_temp_path {d}/proxy;",
        f"  fastcgi_temp_path {d}/fastcgi; uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;",
        "  server_names_hash_bucket_size 128;",
        "  proxy_http_version 1.1;",
        '  proxy_set_header Connection "";',
        "  proxy_set_header Host $host;",
        "  proxy_set_header X-Real-IP $remote_addr;",
        "  proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
        "  proxy_set_header X-Forwarded-Host $host;",
        "  proxy_set_header X-Forwarded-Proto $scheme;",
        "  proxy_connect_timeout 5s;",
        "  proxy_read_timeout 60s;",
        "  proxy_next_upstream error timeout;",
    ]
    for name, servers in sorted(model.upstreams.items()):
        out.append(f"  upstream {name} {{")
        out += [f"    server {s} max_fails=0;" for s in servers]
        out += ["    keepalive 32;", "  }"]
    servers = dict(model.servers)
    servers.setdefault("", {})
    for host in sorted(servers, key=lambda h: (h != "", h)):
        out.append("  server {")
        for addr in listen:
            out.append(f"    listen {addr}{' default_server' if host == '' else ''};")
        out.append(f"    server_name {_q(host) if host else '_'};")
        locs = servers[host]
        for loc, up in sorted(locs.items()):
            body = f"proxy_pass http://{up};" if up else "return 503;"
            out.append(f"    location {loc} {{ {body} }}")
        if '"/"' not in locs:
            out.append('    location / { return 404 "default backend - 404\\n"; }')
        out.append("  }")
    out.append("}")
    return "\n".join(out) + "\n"


def write_initial(dual: bool) -> None:
    """The config nginx starts with, before the controller has seen any Ingress."""
    ingress_dir().mkdir(parents=True, exist_ok=True)
    conf_path().write_text(render(Model(), dual))


def nginx_pid() -> int | None:
    """The running nginx master's pid (from its pid file), if it is alive."""
    try:
        pid = int(pid_path().read_text().split()[0])
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
    except (OSError, ValueError, IndexError):
        return None
    return pid if comm == "nginx" else None


class IngressController:
    def __init__(self, kube: Kube, cache: Cache, dual: bool) -> None:
        self.kube = kube
        self.cache = cache
        self.dual = dual
        self.last_conf = ""
        self.last_routes: dict[str, str] = {}

    def classes(self) -> tuple[set[str], bool]:
        mine = [
            c
            for c in self.cache.list("ingressclasses")
            if (c.get("spec") or {}).get("controller") == config.INGRESS_CONTROLLER
        ]
        default = any(
            (c["metadata"].get("annotations") or {}).get(DEFAULT_CLASS_ANNOTATION) == "true"
            for c in mine
        )
        return {c["metadata"]["name"] for c in mine}, default

    def served(self) -> list[JSON]:
        names, default = self.classes()
        out = []
        for ing in self.cache.list("ingresses"):
            cls = (ing.get("spec") or {}).get("ingressClassName") or (
                ing["metadata"].get("annotations") or {}
            ).get(LEGACY_CLASS_ANNOTATION)
            if cls in names or (cls is None and default):
                out.append(ing)
        return sorted(
            out,
            key=lambda i: (
                i["metadata"].get("creationTimestamp", ""),
                i["metadata"]["namespace"],
                i["metadata"]["name"],
            ),
        )

    def reconcile(self) -> None:
        ingresses = self.served()
        services = {
            f"{s['metadata']['namespace']}/{s['metadata']['name']}": s
            for s in self.cache.list("services")
        }
        model = build_model(ingresses, services, self.cache)
        conf = render(model, self.dual)
        if conf != self.last_conf:
            self.apply(conf)
            self.last_conf = conf
            self._log_routes(model)
        self.publish(ingresses)

    def _log_routes(self, model: Model) -> None:
        """Log the routes whose backends changed (what a request to each gets now)."""
        from hack.localcluster.addons import log

        routes = {
            f"{host or '*'}{loc}": ", ".join(model.upstreams[up]) if up else "503"
            for host, locs in model.servers.items()
            for loc, up in locs.items()
        }
        for route, to in sorted(routes.items()):
            if self.last_routes.get(route) != to:
                log(f"ingress: {route} -> {to}")
        for route in sorted(set(self.last_routes) - set(routes)):
            log(f"ingress: {route} removed")
        self.last_routes = routes

    def apply(self, conf: str) -> None:
        ingress_dir().mkdir(parents=True, exist_ok=True)
        new = conf_path().with_suffix(".new")
        new.write_text(conf)
        # nginx -t binds the listen addresses: test inside the proxy's netns
        test = [*netns_prefix(config.INGRESS_NETNS), NGINX, "-t", "-q"]
        test += ["-p", str(ingress_dir()), "-c", str(new)]
        r = subprocess.run(test, capture_output=True, text=True, check=False, timeout=30)
        if r.returncode != 0:
            from hack.localcluster.addons import log

            log(f"nginx rejected the new config, keeping the old one:\n{r.stderr}")
            return
        new.replace(conf_path())
        pid = nginx_pid()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGHUP)

    def publish(self, served: list[JSON]) -> None:
        want = [{"ip": ip} for ip in addresses(self.dual)]
        served_keys = set()
        for ing in served:
            md = ing["metadata"]
            served_keys.add((md["namespace"], md["name"]))
            have = (ing.get("status", {}).get("loadBalancer") or {}).get("ingress") or []
            if have != want:
                self._patch(md["namespace"], md["name"], {"ingress": want})
        for ing in self.cache.list("ingresses"):  # left our class: withdraw our addresses
            md = ing["metadata"]
            have = (ing.get("status", {}).get("loadBalancer") or {}).get("ingress") or []
            if (md["namespace"], md["name"]) not in served_keys and have == want:
                self._patch(md["namespace"], md["name"], {"ingress": None})

    def _patch(self, ns: str, name: str, lb: JSON) -> None:
        path = f"/apis/networking.k8s.io/v1/namespaces/{ns}/ingresses/{name}/status"
        try:
            self.kube.patch(path, {"status": {"loadBalancer": lb}})
        except ApiError as exc:
            if exc.status != 404:
                raise
