"""The node agent: a kubelet stand-in for one simulated node (test tooling, not product).

Runs inside its node's netns (started by ``hack/cluster up`` via nsenter) with the node's
own client certificate (user system:node:<name>, so the real Node authorizer and
NodeRestriction admission apply). It registers the Node, keeps its Lease and Ready
condition, watches the pods bound to it and runs each through a PodWorker, and serves
container logs on :10250.

Faults: ``nodes/<name>/control.json`` {"ready": bool, "heartbeat": bool}, re-read on SIGUSR1.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import ipaddress
import json
import os
import platform
import queue
import signal
import sys
import threading
import time
import traceback
import uuid
from pathlib import Path
from typing import Any

from hack.localcluster import config
from hack.localcluster.kube import JSON, ApiError, Kube
from hack.localcluster.node import logserver, multus
from hack.localcluster.node.pod import PodWorker, now_iso

LEASE_DURATION = 40
LEASE_RENEW = 10.0
STATUS_REPORT = 60.0


def micro_now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def image_paths() -> list[str]:
    """What the agent and python "images" are made of: the Python installation and this
    repository (its .venv, with the package installed editable from the source tree). The
    pods' volumes never hide them (node/launch.py binds them back in), wherever the checkout
    lives (under /tmp, where the agent mounts an emptyDir, say)."""
    return sorted({str(Path(sys.base_prefix).resolve()), str(config.REPO.resolve())})


def private_dir_masks(paths: list[str]) -> list[dict[str, Any]]:
    """Containers get the host's userland, but the project's Python (or checkout) may live
    under a private directory (here /root/.pyenv, /root is 0700): containers see that
    directory as an empty tmpfs with only those paths bound back in, so non-root users can
    run them and nobody sees the rest of it."""
    masks: dict[str, list[str]] = {}
    for p in paths:
        for anc in reversed(Path(p).parents):
            if anc != Path("/") and not anc.stat().st_mode & 0o001:
                masks.setdefault(str(anc), []).append(p)
                break
    return [{"dir": d, "keep": keep} for d, keep in masks.items()]


class Agent:
    def __init__(self, settings: JSON) -> None:
        self.settings = settings
        self.node = config.NodeInfo(**settings["node"])
        self.node_dir = Path(settings["node_dir"])
        self.bin_dir: str = settings["bin_dir"]
        self.kube_version: str = settings["kube_version"]
        self.created_log = Path(settings["created_log"])
        self.kube = Kube(settings["kubeconfig"])
        self.stop = threading.Event()
        self.control_changed = threading.Event()
        self.workers: dict[str, PodWorker] = {}  # by uid
        self.workers_lock = threading.Lock()
        self.services: dict[str, dict[str, JSON]] = {}  # ns -> name -> svc
        self.services_lock = threading.Lock()
        self.ip_lock = threading.Lock()
        self.ips_by_uid: dict[str, list[str]] = {}
        self.next_host = 2
        self.events: queue.Queue[tuple[JSON, str, str, str, str]] = queue.Queue()
        self.event_cache: dict[tuple[str, str, str, str], tuple[str, int]] = {}
        self.boot_id = str(uuid.uuid4())
        self.ready = True
        self.heartbeat = True
        self.node_uid = ""
        self._transitions: dict[str, tuple[str, str]] = {}
        mem_kib = 0
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    mem_kib = int(line.split()[1])
        disk = os.statvfs("/")
        self.capacity = {
            "cpu": str(os.cpu_count() or 1),
            "memory": f"{mem_kib}Ki",
            "pods": "110",
            "ephemeral-storage": f"{disk.f_blocks * disk.f_frsize // 1024}Ki",
            "hugepages-1Gi": "0",
            "hugepages-2Mi": "0",
        }
        self.allocatable = dict(self.capacity)
        self.image_paths = image_paths()
        self.masks = private_dir_masks(self.image_paths)

    # --- small services ------------------------------------------------------------------------
    def log(self, msg: str) -> None:
        ts = time.strftime("%H:%M:%S")
        print(f"{ts} {self.node.name}: {msg}", file=sys.stderr, flush=True)

    def allocate_ips(self, uid: str) -> list[str]:
        """One address per pod CIDR, with the same host number in each (10.244.1.7 and
        fd00:10:244:1::7), handed out round-robin like host-local IPAM."""
        with self.ip_lock:
            if uid in self.ips_by_uid:
                return self.ips_by_uid[uid]
            used = {ip for ips in self.ips_by_uid.values() for ip in ips}
            nets = [ipaddress.ip_network(c) for c in self.node.pod_cidrs]
            size = min(min(n.num_addresses for n in nets) - 2, 65000)
            for _ in range(size):
                host = self.next_host
                self.next_host = host + 1 if host < size else 2
                ips = [str(n.network_address + host) for n in nets]
                if not used.intersection(ips):
                    self.ips_by_uid[uid] = ips
                    return ips
            raise RuntimeError(f"no free pod IP in {', '.join(self.node.pod_cidrs)}")

    def release_ips(self, uid: str) -> None:
        with self.ip_lock:
            self.ips_by_uid.pop(uid, None)

    def services_in(self, ns: str) -> list[JSON]:
        with self.services_lock:
            return list(self.services.get(ns, {}).values())

    def event_pod(
        self, pod: JSON, etype: str, reason: str, message: str, field_path: str = ""
    ) -> None:
        self.events.put((pod, etype, reason, message, field_path))

    def _event_loop(self) -> None:
        while not self.stop.is_set():
            try:
                pod, etype, reason, message, field_path = self.events.get(timeout=1)
            except queue.Empty:
                continue
            try:
                self._post_event(pod, etype, reason, message, field_path)
            except Exception as exc:
                self.log(f"event {reason} failed: {exc}")

    def _post_event(self, pod: JSON, etype: str, reason: str, message: str, fp: str) -> None:
        md = pod["metadata"]
        ns = md["namespace"]
        key = (md["uid"], fp, reason, message)
        now = now_iso()
        cached = self.event_cache.get(key)
        if cached:
            name, count = cached
            with contextlib.suppress(ApiError):
                self.kube.patch(
                    f"/api/v1/namespaces/{ns}/events/{name}",
                    {"count": count + 1, "lastTimestamp": now},
                )
                self.event_cache[key] = (name, count + 1)
                return
        involved: JSON = {
            "apiVersion": "v1",
            "kind": "Pod",
            "name": md["name"],
            "namespace": ns,
            "uid": md["uid"],
        }
        if fp:
            involved["fieldPath"] = fp
        name = f"{md['name']}.{time.time_ns():x}"
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": name, "namespace": ns},
            "involvedObject": involved,
            "reason": reason,
            "message": message,
            "type": etype,
            "source": {"component": "kubelet", "host": self.node.name},
            "reportingComponent": "kubelet",
            "reportingInstance": self.node.name,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        self.kube.create(f"/api/v1/namespaces/{ns}/events", body)
        self.event_cache[key] = (name, 1)

    # --- the Node and its Lease -----------------------------------------------------------------
    def node_status(self) -> JSON:
        now = now_iso()
        ready = self.ready

        def cond(ctype: str, status: str, reason: str, msg: str) -> JSON:
            return {
                "type": ctype,
                "status": status,
                "reason": reason,
                "message": msg,
                "lastHeartbeatTime": now,
                "lastTransitionTime": self._transition(ctype, status, now),
            }

        os_image = "Linux"
        with contextlib.suppress(OSError):
            for line in Path("/etc/os-release").read_text().splitlines():
                if line.startswith("PRETTY_NAME="):
                    os_image = line.split("=", 1)[1].strip('"')
        arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
        machine = uuid.uuid5(uuid.NAMESPACE_DNS, f"{self.node.name}.kdoctor.local").hex
        return {
            "capacity": self.capacity,
            "allocatable": self.allocatable,
            "conditions": [
                cond(
                    "MemoryPressure",
                    "False",
                    "KubeletHasSufficientMemory",
                    "kubelet has sufficient memory available",
                ),
                cond(
                    "DiskPressure",
                    "False",
                    "KubeletHasNoDiskPressure",
                    "kubelet has no disk pressure",
                ),
                cond(
                    "PIDPressure",
                    "False",
                    "KubeletHasSufficientPID",
                    "kubelet has sufficient PID available",
                ),
                cond("Ready", "True", "KubeletReady", "kubelet is posting ready status")
                if ready
                else cond(
                    "Ready",
                    "False",
                    "KubeletNotReady",
                    "container runtime status check may not have completed yet "
                    "(fault injected by hack/cluster node notready)",
                ),
            ],
            # The list's merge key (type) is not unique with two InternalIPs: replace it
            # whole, as the kubelet does (fixupPatchForNodeStatusAddresses).
            "addresses": [{"$patch": "replace"}]
            + [{"type": "InternalIP", "address": ip} for ip in self.node.ips]
            + [{"type": "Hostname", "address": self.node.name}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": config.KUBELET_PORT}},
            "nodeInfo": {
                "machineID": machine,
                "systemUUID": str(uuid.UUID(machine)),
                "bootID": self.boot_id,
                "kernelVersion": platform.release(),
                "osImage": os_image,
                "containerRuntimeVersion": "kdoctor-sim://0.1.0",
                "kubeletVersion": self.kube_version,
                "kubeProxyVersion": "",
                "operatingSystem": "linux",
                "architecture": arch,
            },
        }

    def _transition(self, ctype: str, status: str, now: str) -> str:
        prev = self._transitions.get(ctype)
        if prev and prev[0] == status:
            return prev[1]
        self._transitions[ctype] = (status, now)
        return now

    def register(self) -> None:
        arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
        body = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": self.node.name,
                "labels": {
                    "kubernetes.io/hostname": self.node.name,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": arch,
                    "beta.kubernetes.io/os": "linux",
                    "beta.kubernetes.io/arch": arch,
                },
                "annotations": {"node.alpha.kubernetes.io/ttl": "0"},
            },
            "spec": {"podCIDR": self.node.pod_cidrs[0], "podCIDRs": self.node.pod_cidrs},
        }
        while not self.stop.is_set():
            try:
                try:
                    node = self.kube.create("/api/v1/nodes", body)
                except ApiError as exc:
                    if exc.status != 409:
                        raise
                    node = self.kube.get(f"/api/v1/nodes/{self.node.name}")
                self.node_uid = node["metadata"]["uid"]
                self.post_node_status()
                self.log(f"registered node {self.node.name} (uid {self.node_uid})")
                return
            except Exception as exc:
                self.log(f"registering node failed, retrying: {exc}")
                self.stop.wait(1)

    def post_node_status(self) -> None:
        self.kube.patch(
            f"/api/v1/nodes/{self.node.name}/status",
            {"status": self.node_status()},
            kind="strategic",
        )

    def renew_lease(self) -> None:
        path = f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{self.node.name}"
        spec = {
            "holderIdentity": self.node.name,
            "leaseDurationSeconds": LEASE_DURATION,
            "renewTime": micro_now(),
        }
        try:
            self.kube.patch(path, {"spec": spec})
        except ApiError as exc:
            if exc.status != 404:
                raise
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {
                    "name": self.node.name,
                    "namespace": "kube-node-lease",
                    "ownerReferences": [
                        {
                            "apiVersion": "v1",
                            "kind": "Node",
                            "name": self.node.name,
                            "uid": self.node_uid,
                        }
                    ],
                },
                "spec": spec,
            }
            self.kube.create("/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases", body)

    def read_control(self) -> None:
        try:
            ctl = json.loads((self.node_dir / "control.json").read_text())
        except (OSError, ValueError):
            ctl = {}
        self.ready = bool(ctl.get("ready", True))
        self.heartbeat = bool(ctl.get("heartbeat", True))

    def _heartbeat_loop(self) -> None:
        last_status = time.monotonic()
        last_ready = self.ready
        while not self.stop.is_set():
            changed = self.control_changed.wait(LEASE_RENEW)
            if changed:
                self.control_changed.clear()
                self.read_control()
            if not self.heartbeat:
                continue
            try:
                self.renew_lease()
                if (
                    changed
                    or self.ready != last_ready
                    or time.monotonic() - last_status > STATUS_REPORT
                ):
                    self.post_node_status()
                    last_status = time.monotonic()
                    last_ready = self.ready
            except Exception as exc:
                self.log(f"heartbeat failed: {exc}")

    # --- pods ------------------------------------------------------------------------------------
    def _pod_loop(self) -> None:
        selector = f"spec.nodeName={self.node.name}"
        for etype, obj in self.kube.list_and_watch(
            "/api/v1/pods", stop=self.stop, fieldSelector=selector
        ):
            try:
                if etype == "SYNC":
                    seen = set()
                    for pod in obj.get("items") or []:
                        seen.add(pod["metadata"]["uid"])
                        self.handle_pod(pod)
                    with self.workers_lock:
                        gone = [w for uid, w in self.workers.items() if uid not in seen]
                    for w in gone:
                        w.deleted()
                    with contextlib.suppress(Exception):
                        multus.Ipam().gc(self.node.name, seen)
                elif etype in ("ADDED", "MODIFIED"):
                    self.handle_pod(obj)
                elif etype == "DELETED":
                    with self.workers_lock:
                        worker = self.workers.get(obj["metadata"]["uid"])
                    if worker:
                        worker.deleted()
            except Exception:
                self.log(f"pod event failed:\n{traceback.format_exc()}")

    def handle_pod(self, pod: JSON) -> None:
        uid = pod["metadata"]["uid"]
        with self.workers_lock:
            w = self.workers.get(uid)
            if w is None:
                phase = pod.get("status", {}).get("phase")
                if phase in ("Succeeded", "Failed") and not pod["metadata"].get(
                    "deletionTimestamp"
                ):
                    return  # finished before this agent started; nothing to run
                w = PodWorker(self, pod)
                self.workers[uid] = w
                w.start()
                return
        w.update(pod)

    def worker_finished(self, w: PodWorker) -> None:
        with self.workers_lock:
            if self.workers.get(w.uid) is w:
                del self.workers[w.uid]

    def _service_loop(self) -> None:
        for etype, obj in self.kube.list_and_watch("/api/v1/services", stop=self.stop):
            with self.services_lock:
                if etype == "SYNC":
                    self.services = {}
                    for svc in obj.get("items") or []:
                        md = svc["metadata"]
                        self.services.setdefault(md["namespace"], {})[md["name"]] = svc
                elif etype == "DELETED":
                    md = obj["metadata"]
                    self.services.get(md["namespace"], {}).pop(md["name"], None)
                else:
                    md = obj["metadata"]
                    self.services.setdefault(md["namespace"], {})[md["name"]] = obj

    # --- lifecycle -------------------------------------------------------------------------------
    def cleanup_leftovers(self) -> None:
        """Pod netns of this node left by an earlier agent process (crash): remove them."""
        from hack.localcluster import network
        from hack.localcluster.util import run

        prefix = f"{config.NETNS_PREFIX}p-"
        for ns in network.list_netns():
            if not ns.startswith(prefix):
                continue
            veth = config.POD_VETH_PREFIX + ns[len(prefix) :]
            if network.link_exists(veth):
                run(["ip", "netns", "del", ns], check=False)
                run(["ip", "link", "del", veth], check=False)

    def shutdown(self) -> None:
        self.stop.set()
        with self.workers_lock:
            workers = list(self.workers.values())
        for w in workers:
            with contextlib.suppress(Exception):
                w.kill_all(grace=0)
                w.teardown(remove_volumes=False)

    def run(self) -> None:
        self.node_dir.mkdir(parents=True, exist_ok=True)
        self.read_control()
        self.cleanup_leftovers()
        serving = self.settings["serving"]
        logserver.serve(
            self, "0.0.0.0", config.KUBELET_PORT, Path(serving[0]), Path(serving[1]),
            Path(self.settings["ca"]),
        )  # fmt: skip
        self.register()
        self.renew_lease()
        for target, name in (
            (self._heartbeat_loop, "heartbeat"),
            (self._event_loop, "events"),
            (self._service_loop, "services"),
            (self._pod_loop, "pods"),
        ):
            threading.Thread(target=target, name=name, daemon=True).start()
        while not self.stop.wait(1):
            pass


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--settings", required=True, help="JSON written by hack/cluster up")
    args = ap.parse_args(argv)
    settings: dict[str, Any] = json.loads(Path(args.settings).read_text())
    agent = Agent(settings)

    def on_term(signum: int, frame: object) -> None:
        agent.log("shutting down")
        agent.shutdown()
        os._exit(0)

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    signal.signal(signal.SIGUSR1, lambda s, f: agent.control_changed.set())
    agent.run()


if __name__ == "__main__":
    main()
