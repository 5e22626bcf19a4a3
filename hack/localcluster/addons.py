"""The cluster's add-ons process (test tooling, not product): what a cloud or an installed
add-on would provide, as small controllers over the real API.

* **LoadBalancer controller** (like MetalLB in L2 mode): Services of type LoadBalancer
  without a ``loadBalancerClass`` (or with ``kdoctor.io/test-lb``) get one address per IP
  family of the Service from the pools (172.30.1.0/24, fd00:172:30:1::/112), written to
  ``status.loadBalancer.ingress[].ip`` with ``ipMode: VIP``; ``spec.loadBalancerIP`` is
  honoured when it is free and in a pool; addresses are released when the Service goes or
  stops being a LoadBalancer. kube-proxy on every node then programs them as on a cloud
  (pods and nodes reach them locally). The root netns (the "outside") reaches each address
  through ONE node, as an L2 announcement would: a /32 (/128) route via a Ready node chosen
  by a stable hash, for ``externalTrafficPolicy: Local`` only among nodes with a ready
  endpoint of the Service.
* **Ingress controller**: nginx in netns ``kdc-ingress`` (172.30.0.5, fd00:172:30::5) serves
  the Ingresses of the IngressClass ``kdoctor-nginx`` (controller
  ``kdoctor.io/test-ingress-nginx``, the default class); see ``ingress.py``.

Runs in the root netns as ``python -m hack.localcluster.addons`` (started by ``hack/cluster
up``) with its own identity (``kdoctor:cluster-addons``), so its API requests stand apart
from the admin user's in the audit log.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import ipaddress
import json
import signal
import sys
import threading
import time
import traceback

from hack.localcluster import config
from hack.localcluster.kube import JSON, ApiError, Kube
from hack.localcluster.util import run

RESOURCES = {
    "services": "/api/v1/services",
    "endpointslices": "/apis/discovery.k8s.io/v1/endpointslices",
    "nodes": "/api/v1/nodes",
    "ingresses": "/apis/networking.k8s.io/v1/ingresses",
    "ingressclasses": "/apis/networking.k8s.io/v1/ingressclasses",
}


def log(msg: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} addons: {msg}", file=sys.stderr, flush=True)


def key_of(obj: JSON) -> str:
    md = obj["metadata"]
    return f"{md.get('namespace', '')}/{md['name']}"


class Cache:
    """List+watch caches of the resources the controllers read (one thread each)."""

    def __init__(self, kube: Kube, stop: threading.Event) -> None:
        self.kube = kube
        self.stop = stop
        self.objs: dict[str, dict[str, JSON]] = {r: {} for r in RESOURCES}
        self.synced: set[str] = set()
        self.lock = threading.Lock()
        self.changed = threading.Event()

    def start(self) -> None:
        for name, path in RESOURCES.items():
            threading.Thread(target=self._run, args=(name, path), daemon=True).start()

    def _run(self, name: str, path: str) -> None:
        for etype, obj in self.kube.list_and_watch(path, stop=self.stop):
            with self.lock:
                if etype == "SYNC":
                    self.objs[name] = {key_of(o): o for o in obj.get("items") or []}
                    self.synced.add(name)
                elif etype == "DELETED":
                    self.objs[name].pop(key_of(obj), None)
                else:
                    self.objs[name][key_of(obj)] = obj
            self.changed.set()

    def ready(self) -> bool:
        with self.lock:
            return self.synced >= set(RESOURCES)

    def list(self, name: str) -> list[JSON]:
        with self.lock:
            return list(self.objs[name].values())

    def get(self, name: str, key: str) -> JSON | None:
        with self.lock:
            return self.objs[name].get(key)


def node_ready(node: JSON) -> bool:
    return any(
        c["type"] == "Ready" and c["status"] == "True"
        for c in node.get("status", {}).get("conditions") or []
    )


def node_ip(node: JSON, version: int) -> str | None:
    for a in node.get("status", {}).get("addresses") or []:
        if a["type"] == "InternalIP" and ipaddress.ip_address(a["address"]).version == version:
            return str(a["address"])
    return None


def service_slices(cache: Cache, namespace: str, name: str) -> list[JSON]:
    return [
        s
        for s in cache.list("endpointslices")
        if s["metadata"].get("namespace") == namespace
        and (s["metadata"].get("labels") or {}).get("kubernetes.io/service-name") == name
    ]


def ready_endpoints(slices: list[JSON]) -> list[JSON]:
    return [
        ep
        for s in slices
        for ep in s.get("endpoints") or []
        if (ep.get("conditions") or {}).get("ready") is not False
    ]


class LoadBalancers:
    def __init__(self, kube: Kube, cache: Cache, dual: bool) -> None:
        self.kube = kube
        self.cache = cache
        self.pools = {4: config.LB_POOL}
        if dual:
            self.pools[6] = config.LB_POOL6
        self.assigned: dict[str, dict[int, str]] = {}  # svc key -> version -> ip
        self.adopted = False
        self.routes: dict[str, str] | None = None  # ip -> via, as programmed

    @staticmethod
    def ours(svc: JSON) -> bool:
        spec = svc.get("spec") or {}
        return spec.get("type") == "LoadBalancer" and spec.get("loadBalancerClass") in (
            None,
            config.LB_CLASS,
        )

    def in_pool(self, ip: str) -> int | None:
        with contextlib.suppress(ValueError):
            addr = ipaddress.ip_address(ip)
            pool = self.pools.get(addr.version)
            if pool is not None and addr in pool and addr != pool.network_address:
                return addr.version
        return None

    def _taken(self) -> set[str]:
        return {ip for by in self.assigned.values() for ip in by.values()}

    def _allocate(self, svc: JSON, version: int) -> str | None:
        taken = self._taken()
        want = (svc.get("spec") or {}).get("loadBalancerIP")
        if want and self.in_pool(want) == version and want not in taken:
            return str(want)
        pool = self.pools[version]
        for n in range(1, min(pool.num_addresses - 1, 65535)):
            ip = str(pool.network_address + n)
            if ip not in taken:
                return ip
        return None

    def reconcile(self) -> None:
        services = self.cache.list("services")
        mine = {key_of(s): s for s in services if self.ours(s)}
        if not self.adopted:  # after a restart: keep what is already published
            for key, s in sorted(mine.items()):
                for ing in (s.get("status", {}).get("loadBalancer") or {}).get("ingress") or []:
                    v = self.in_pool(ing.get("ip", ""))
                    if v and ing["ip"] not in self._taken():
                        self.assigned.setdefault(key, {})[v] = ing["ip"]
            self.adopted = True
        for key in [k for k in self.assigned if k not in mine]:
            log(f"released {sorted(self.assigned[key].values())} of {key}")
            del self.assigned[key]
        routes: dict[str, str] = {}
        for key, svc in sorted(mine.items()):
            families = svc["spec"].get("ipFamilies") or ["IPv4"]
            by = self.assigned.setdefault(key, {})
            ips = []
            for fam in families:
                v = 6 if fam == "IPv6" else 4
                if v not in self.pools:
                    continue
                if v not in by:
                    ip = self._allocate(svc, v)
                    if ip is None:
                        log(f"pool {self.pools[v]} exhausted; {key} gets no IPv{v} address")
                        continue
                    by[v] = ip
                    log(f"assigned {ip} to {key}")
                ips.append(by[v])
            want = [{"ip": ip, "ipMode": "VIP"} for ip in ips]
            have = (svc.get("status", {}).get("loadBalancer") or {}).get("ingress") or []
            if have != want:
                self._patch_status(svc, {"ingress": want})
            for ip in ips:
                via = self._announcer(svc, ip)
                if via:
                    routes[ip] = via
        for svc in services:  # no longer a LoadBalancer: withdraw the published addresses
            spec = svc.get("spec") or {}
            ing = (svc.get("status", {}).get("loadBalancer") or {}).get("ingress") or []
            if spec.get("type") != "LoadBalancer" and any(
                self.in_pool(i.get("ip", "")) for i in ing
            ):
                self._patch_status(svc, None)
        self._program(routes)

    def _patch_status(self, svc: JSON, lb: JSON | None) -> None:
        md = svc["metadata"]
        path = f"/api/v1/namespaces/{md['namespace']}/services/{md['name']}/status"
        body = {"status": {"loadBalancer": lb if lb else {"ingress": None}}}
        try:
            self.kube.patch(path, body)
        except ApiError as exc:
            if exc.status != 404:
                raise

    def _announcer(self, svc: JSON, ip: str) -> str | None:
        """The node the root netns sends ``ip``'s traffic to (MetalLB L2 style)."""
        version = ipaddress.ip_address(ip).version
        nodes = {
            n["metadata"]["name"]: n
            for n in self.cache.list("nodes")
            if node_ready(n)
            and "node.kubernetes.io/exclude-from-external-load-balancers"
            not in (n["metadata"].get("labels") or {})
        }
        if svc["spec"].get("externalTrafficPolicy") == "Local":
            md = svc["metadata"]
            eps = ready_endpoints(service_slices(self.cache, md["namespace"], md["name"]))
            local = {ep.get("nodeName") for ep in eps}
            nodes = {k: v for k, v in nodes.items() if k in local}
        if not nodes:
            return None
        best = min(nodes, key=lambda n: hashlib.sha256(f"{n}#{ip}".encode()).hexdigest())
        return node_ip(nodes[best], version)

    def _program(self, routes: dict[str, str]) -> None:
        if self.routes is None:  # first pass: whatever an earlier process left
            self.routes = {}
            for fam, pool in (("-4", config.LB_POOL), ("-6", config.LB_POOL6)):
                out = run(["ip", fam, "-j", "route", "show"], check=False).stdout or "[]"
                for r in json.loads(out):
                    with contextlib.suppress(ValueError, KeyError):
                        net = ipaddress.ip_network(r["dst"])
                        if r.get("type") in (None, "unicast") and net.subnet_of(pool):  # type: ignore[arg-type]
                            self.routes[str(net.network_address)] = r.get("gateway", "")
        for ip, via in routes.items():
            if self.routes.get(ip) != via:
                plen = 128 if ":" in ip else 32
                run(["ip", "route", "replace", f"{ip}/{plen}", "via", via, "dev", config.BRIDGE])
                log(f"route {ip} via {via}")
                self.routes[ip] = via
        for ip in [ip for ip in self.routes if ip not in routes]:
            plen = 128 if ":" in ip else 32
            run(["ip", "route", "del", f"{ip}/{plen}"], check=False)
            log(f"route {ip} withdrawn")
            del self.routes[ip]


def main(argv: list[str] | None = None) -> None:
    from hack.localcluster import ingress

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--kubeconfig", required=True)
    ap.add_argument("--dual", action="store_true")
    args = ap.parse_args(argv)
    stop = threading.Event()
    kube = Kube(args.kubeconfig)
    cache = Cache(kube, stop)

    def on_term(signum: int, frame: object) -> None:
        stop.set()
        cache.changed.set()

    signal.signal(signal.SIGTERM, on_term)
    lbs = LoadBalancers(kube, cache, args.dual)
    ing = ingress.IngressController(kube, cache, args.dual)
    cache.start()
    ready_file = config.STATE_DIR / "addons" / "ready"
    ready_file.parent.mkdir(parents=True, exist_ok=True)
    while not stop.is_set():
        cache.changed.wait(30)  # a periodic full pass also retries what failed
        if stop.is_set() or not cache.ready():
            continue
        time.sleep(0.05)  # let a burst of events land together
        cache.changed.clear()
        for name, ctl in (("loadbalancer", lbs.reconcile), ("ingress", ing.reconcile)):
            try:
                ctl()
            except Exception:
                log(f"{name} reconcile failed:\n{traceback.format_exc()}")
                cache.changed.set()  # retry soon
                stop.wait(1)
        if not ready_file.exists():
            ready_file.write_text(str(time.time()))
            log("synced and reconciled")
    ready_file.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
