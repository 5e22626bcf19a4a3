"""One pod on a simulated node: sandbox (netns + IP), volumes, container processes, restarts
with back-off, probes, truthful status, graceful termination. One thread per pod, like the
kubelet's pod workers; process exits and probe results wake it up."""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import TYPE_CHECKING

from hack.localcluster import config, images, network
from hack.localcluster.kube import JSON, ApiError
from hack.localcluster.node import multus, podenv
from hack.localcluster.node.probes import ProbeWorker, run_probe
from hack.localcluster.node.volumes import PodContext, VolumeError, VolumeManager

if TYPE_CHECKING:
    from hack.localcluster.node.agent import Agent

LAUNCH = str(Path(__file__).with_name("launch.py"))
MAX_BACKOFF = 300.0
INITIAL_BACKOFF = 10.0
BACKOFF_RESET = 600.0  # a container that ran this long starts its back-off afresh
VOLUME_RESYNC = 60.0


def now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class Container:
    def __init__(self, spec: JSON, init: bool, bin_dir: str) -> None:
        self.spec = spec
        self.name: str = spec["name"]
        self.init = init
        self.sidecar = init and spec.get("restartPolicy") == "Always"
        self.image: str = spec.get("image", "")
        self.image_spec = images.resolve(self.image, bin_dir)
        self.proc: subprocess.Popen[bytes] | None = None
        self.exit: tuple[int, float] | None = None  # set by the reaper thread
        self.state: JSON = {"waiting": {"reason": "ContainerCreating"}}
        self.last_state: JSON = {}
        self.restart_count = 0
        self.ever_started = False
        self.ready = False
        self.started = False
        self.container_id = ""
        self.started_at = ""
        self.started_mono = 0.0
        self.next_start = 0.0
        self.backoff = 0.0
        self.pull_failures = 0
        self.pull_backoff_at = 0.0
        self.done = False  # terminated for good
        self.kill_reason = ""
        self.probes: list[ProbeWorker] = []
        self.startup_gate = threading.Event()
        self.launch_spec: JSON | None = None
        self.error_file: Path | None = None

    @property
    def running(self) -> bool:
        return "running" in self.state

    @property
    def succeeded(self) -> bool:
        return self.done and self.state.get("terminated", {}).get("exitCode") == 0


class PodWorker(threading.Thread):
    def __init__(self, agent: Agent, pod: JSON) -> None:
        md = pod["metadata"]
        super().__init__(daemon=True, name=f"pod-{md['namespace']}/{md['name']}")
        self.agent = agent
        self.pod = pod
        self.uid: str = md["uid"]
        self.ns: str = md["namespace"]
        self.pod_name: str = md["name"]
        self.key = f"{self.ns}/{self.pod_name}"
        self.dir = agent.node_dir / "pods" / self.uid
        self.lock = threading.Lock()
        self.wake = threading.Event()
        self.api_deleted = False
        spec = pod["spec"]
        self.host_network = bool(spec.get("hostNetwork"))
        self.restart_policy: str = spec.get("restartPolicy", "Always")
        bd = agent.bin_dir
        self.init_containers = [Container(c, True, bd) for c in spec.get("initContainers") or []]
        self.containers = [Container(c, False, bd) for c in spec.get("containers") or []]
        for c in self.containers:
            if self.init_containers:
                c.state = {"waiting": {"reason": "PodInitializing"}}
        self.sandbox = False
        self.netns: str | None = None
        self.pod_ips: list[str] = []
        self.network_status: str | None = None  # multus' annotation, until written
        self.network_status_written = False
        self.secondary_done = False
        self.start_time = ""
        self.start_mono = 0.0
        self.volumes: VolumeManager | None = None
        self.volume_error = ""
        self.retry_at = 0.0
        self.next_volume_sync = 0.0
        self.terminal = False
        self.phase = "Pending"
        self.reason = ""
        self.message = ""
        self.conditions: dict[str, JSON] = {}
        self.last_status: str = ""
        self.hostname = (spec.get("hostname") or self.pod_name)[:63]
        if self.host_network:
            self.hostname = agent.node.name

    # --- called from other threads ----------------------------------------------------------
    def update(self, pod: JSON) -> None:
        with self.lock:
            self.pod = pod
        self.wake.set()

    def deleted(self) -> None:
        with self.lock:
            self.api_deleted = True
        self.wake.set()

    def all_containers(self) -> list[Container]:
        return self.init_containers + self.containers

    # --- main loop ---------------------------------------------------------------------------
    def run(self) -> None:
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            meta = {"namespace": self.ns, "name": self.pod_name, "uid": self.uid}
            (self.dir / "meta.json").write_text(json.dumps(meta))
            while True:
                with self.lock:
                    pod = self.pod
                    gone = self.api_deleted
                if gone:
                    self.kill_all(grace=2)
                    self.teardown(remove_volumes=True)
                    return
                if pod["metadata"].get("deletionTimestamp"):
                    self.terminate(pod)
                    return
                if not self.terminal:
                    try:
                        self.sync(pod)
                    except Exception:  # e.g. the API unreachable: retry, keep the pod running
                        self.agent.log(f"{self.key}: sync failed:\n{traceback.format_exc()}")
                        self.retry_at = time.monotonic() + 2.0
                        self.wake.wait(2.0)
                self.wake.wait(self.next_wait())
                self.wake.clear()
        except Exception:
            self.agent.log(f"pod worker {self.key} crashed:\n{traceback.format_exc()}")
            with contextlib.suppress(Exception):
                self.kill_all(grace=0)
                self.teardown(remove_volumes=False)
        finally:
            self.agent.worker_finished(self)

    def next_wait(self) -> float:
        if self.terminal:
            return 30.0
        deadlines = [self.next_volume_sync, self.retry_at]
        for c in self.all_containers():
            if not c.running and not c.done:
                deadlines += [c.next_start, c.pull_backoff_at]
        now = time.monotonic()
        future = [d - now for d in deadlines if d > now]
        return max(0.05, min([5.0, *future]))

    # --- sync ----------------------------------------------------------------------------
    def sync(self, pod: JSON) -> None:
        if self.volumes:
            self.volumes.update_pod(pod)
        if not self.sandbox:
            if time.monotonic() < self.retry_at:
                self.push_status()
                return
            if not self.start_time:
                self.start_time = now_iso()
                self.start_mono = time.monotonic()
            if not self.setup_sandbox(pod):
                self.push_status()
                return
        if self.deadline_exceeded(pod):
            return
        if self.volumes and (
            time.monotonic() >= self.next_volume_sync or time.time() >= self.volumes.token_due
        ):
            self.refresh_volumes()
        for c in self.all_containers():
            self.reap(c)
            if c.kill_reason and c.running:
                self.kill_container_async(c, c.kill_reason)
                c.kill_reason = ""
            if c.pull_backoff_at and time.monotonic() >= c.pull_backoff_at and not c.running:
                c.pull_backoff_at = 0.0
                msg = c.state.get("waiting", {}).get("message", "")
                c.state = {
                    "waiting": {
                        "reason": "ImagePullBackOff",
                        "message": f'Back-off pulling image "{c.image}": ErrImagePull: {msg}',
                    }
                }
                self.event(c, "Normal", "BackOff", f'Back-off pulling image "{c.image}"')
        init_done, init_failed = self.sync_init()
        if init_done and not init_failed:
            for c in self.containers:
                if not c.running and not c.done and time.monotonic() >= c.next_start:
                    self.start_container(c)
        self.compute_phase(init_done, init_failed)
        if self.phase in ("Succeeded", "Failed"):
            self.kill_all(grace=self.grace(pod))
            for c in self.all_containers():
                self.reap(c, final=True)
            self.teardown(remove_volumes=False)
            self.terminal = True
        self.push_status()

    def sync_init(self) -> tuple[bool, bool]:
        """Advance init containers; returns (all done, failed for good)."""
        for c in self.init_containers:
            if c.sidecar:
                if not c.running and not c.done and time.monotonic() >= c.next_start:
                    self.start_container(c)
                if not c.started:
                    return False, False
                continue
            if c.succeeded:
                continue
            if c.done:  # failed and not restarted (restartPolicy Never)
                return False, True
            if not c.running and time.monotonic() >= c.next_start:
                self.start_container(c)
            return False, False
        return True, False

    def compute_phase(self, init_done: bool, init_failed: bool) -> None:
        if init_failed:
            self.phase = "Failed"
            return
        if not init_done:
            self.phase = "Pending"
            return
        regular = self.containers
        if any(c.running for c in regular):
            self.phase = "Running"
        elif all(c.done for c in regular):
            self.phase = "Succeeded" if all(c.succeeded for c in regular) else "Failed"
        elif any(c.ever_started for c in regular):
            self.phase = "Running"  # restarting after an exit
        else:
            self.phase = "Pending"

    def deadline_exceeded(self, pod: JSON) -> bool:
        ads = pod["spec"].get("activeDeadlineSeconds")
        if ads is None or time.monotonic() - self.start_mono < float(ads):
            return False
        self.agent.event_pod(
            pod,
            "Normal",
            "DeadlineExceeded",
            "Pod was active on the node longer than the specified deadline",
        )
        self.kill_all(grace=self.grace(pod))
        for c in self.all_containers():
            self.reap(c, final=True)
        self.phase, self.reason = "Failed", "DeadlineExceeded"
        self.message = "Pod was active on the node longer than the specified deadline"
        self.teardown(remove_volumes=False)
        self.terminal = True
        self.push_status()
        return True

    # --- sandbox and volumes -----------------------------------------------------------------
    def setup_sandbox(self, pod: JSON) -> bool:
        node = self.agent.node
        try:
            if not self.pod_ips:
                if self.host_network:
                    self.pod_ips = list(node.ips)
                else:
                    # multus resolves every requested network before anything is created
                    wanted = self.resolve_networks(pod)
                    ips = self.agent.allocate_ips(self.uid)
                    gws = [network.pod_gateway(c) for c in node.pod_cidrs]
                    try:
                        self.netns = network.setup_pod(self.uid, ips, gws)
                        self.attach_networks(wanted, ips)
                    except Exception:
                        with contextlib.suppress(Exception):
                            multus.Ipam().release(self.uid)
                        raise
                    self.pod_ips = ips
            ctx = PodContext(pod, list(node.ips), self.pod_ips, self.agent.allocatable)
            self.volumes = VolumeManager(self.agent.kube, pod, self.dir / "volumes", ctx)
            self.volumes.setup()
        except VolumeError as exc:
            msg = f"MountVolume.SetUp failed: {exc}"
            if msg != self.volume_error:
                self.agent.event_pod(pod, "Warning", "FailedMount", msg)
            self.volume_error = msg
            self.retry_at = time.monotonic() + 2.0
            return False
        except Exception as exc:
            msg = f"Failed to create pod sandbox: {exc}"
            self.agent.log(f"{self.key}: {msg}")
            if msg != self.volume_error:
                self.agent.event_pod(pod, "Warning", "FailedCreatePodSandBox", msg)
            self.volume_error = msg
            self.retry_at = time.monotonic() + 5.0
            return False
        self.volume_error = ""
        self.next_volume_sync = time.monotonic() + VOLUME_RESYNC
        etc = self.dir / "etc"
        etc.mkdir(exist_ok=True)
        (etc / "hosts").write_text(podenv.hosts_file(pod, self.pod_ips, self.hostname))
        resolv = podenv.resolv_conf(pod)
        if resolv is not None:
            (etc / "resolv.conf").write_text(resolv)
        (etc / "hostname").write_text(self.hostname + "\n")
        self.sandbox = True
        return True

    def resolve_networks(self, pod: JSON) -> list[tuple[multus.Selection, JSON]]:
        value = (pod["metadata"].get("annotations") or {}).get(multus.NETWORKS, "")
        out = []
        for sel in multus.parse_selection(value, self.ns):
            nad = self.agent.kube.get_or_none(
                multus.NAD_PATH.format(ns=sel.namespace, name=sel.name)
            )
            if nad is None:
                raise multus.MultusError(
                    f'plugin type="multus" name="multus-cni-network" failed (add): '
                    f"Multus: [{self.ns}/{self.pod_name}/{self.uid}]: error loading k8s "
                    f"delegates k8s args: TryLoadPodDelegates: error in getting k8s network for "
                    f"pod: GetNetworkDelegates: failed getting the delegate: getKubernetesDelegate: "
                    f"cannot find a network-attachment-definition ({sel.name}) in namespace "
                    f"({sel.namespace}): network-attachment-definitions.k8s.cni.cncf.io "
                    f'"{sel.name}" not found'
                )
            out.append((sel, nad))
        return out

    def attach_networks(self, wanted: list[tuple[multus.Selection, JSON]], ips: list[str]) -> None:
        assert self.netns is not None
        eth0 = network.pod_mac(self.netns, "eth0")
        entries = [multus.status_entry(config.MULTUS_DEFAULT_NETWORK, "eth0", ips, eth0, True)]
        ipam = multus.Ipam()
        for i, (sel, nad) in enumerate(wanted, 1):
            cfg = multus.plugin_config(nad)
            ranges, static, routes = multus.ipam_plan(cfg)
            cidrs = static or ipam.allocate(
                self.uid, self.agent.node.name, sel.interface, ranges, sel.ips
            )
            mac = network.setup_secondary(
                self.uid, self.netns, i, sel.interface, cidrs, sel.mac, routes
            )
            ips = [c.split("/")[0] for c in cidrs]
            entries.append(multus.status_entry(sel.key, sel.interface, ips, mac))
        self.network_status = json.dumps(entries, indent=4)

    def refresh_volumes(self) -> None:
        assert self.volumes is not None
        self.next_volume_sync = time.monotonic() + VOLUME_RESYNC
        try:
            self.volumes.setup()
        except VolumeError as exc:
            self.agent.log(f"{self.key}: volume refresh: {exc}")
        except Exception as exc:  # the API unreachable for a while: keep the pod, retry soon
            self.agent.log(f"{self.key}: volume refresh failed, retrying: {exc}")
            self.next_volume_sync = time.monotonic() + 5.0

    # --- containers ----------------------------------------------------------------------------
    def event(self, c: Container, etype: str, reason: str, message: str) -> None:
        kind = "initContainers" if c.init else "containers"
        self.agent.event_pod(self.pod, etype, reason, message, f"spec.{kind}{{{c.name}}}")

    def start_container(self, c: Container) -> None:
        pod = self.pod
        now = time.monotonic()
        if c.image_spec is None:
            c.pull_failures += 1
            delay = min(INITIAL_BACKOFF * 2 ** (c.pull_failures - 1), MAX_BACKOFF)
            msg = images.pull_error(c.image)
            c.state = {"waiting": {"reason": "ErrImagePull", "message": msg}}
            c.next_start = now + delay
            c.pull_backoff_at = now + 2.0
            self.event(c, "Normal", "Pulling", f'Pulling image "{c.image}"')
            self.event(c, "Warning", "Failed", msg)
            self.event(c, "Warning", "Failed", "Error: ErrImagePull")
            return
        try:
            spec = self.launch_spec(c, pod)
        except VolumeError as exc:
            msg = str(exc)
            c.state = {"waiting": {"reason": "CreateContainerConfigError", "message": msg}}
            c.next_start = now + 5.0
            self.event(c, "Warning", "Failed", f"Error: {msg}")
            return
        if c.ever_started:
            c.restart_count += 1
        cdir = self.dir / "containers" / c.name
        cdir.mkdir(parents=True, exist_ok=True)
        c.error_file = cdir / "start-error"
        c.error_file.unlink(missing_ok=True)
        spec["error_file"] = str(c.error_file)
        c.launch_spec = spec
        spec_path = cdir / "spec.json"
        spec_path.write_text(json.dumps(spec))
        log_path = cdir / f"{c.restart_count}.log"
        if not c.ever_started:
            self.event(
                c, "Normal", "Pulled", f'Container image "{c.image}" already present on machine'
            )
        with log_path.open("ab") as out:
            proc = subprocess.Popen(
                [sys.executable, "-I", LAUNCH, str(spec_path)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                start_new_session=True,
                close_fds=True,
            )
        c.proc = proc
        c.ever_started = True
        c.started_mono = now
        c.started_at = now_iso()
        digest = hashlib.sha256(f"{self.uid}/{c.name}/{c.restart_count}".encode()).hexdigest()
        c.container_id = f"kdoctor://{digest}"
        c.state = {"running": {"startedAt": c.started_at}}
        c.ready = False
        c.started = False
        c.startup_gate = threading.Event()
        (cdir / "current").write_text(f"{c.restart_count} {proc.pid}\n")
        threading.Thread(target=self._reaper, args=(c, proc), daemon=True).start()
        self.event(c, "Normal", "Created", f"Created container: {c.name}")
        self.event(c, "Normal", "Started", f"Started container {c.name}")
        self.start_probes(c)

    def launch_spec(self, c: Container, pod: JSON) -> JSON:
        assert c.image_spec is not None and self.volumes is not None
        img = c.image_spec
        spec = pod["spec"]
        psc = spec.get("securityContext") or {}
        csc = c.spec.get("securityContext") or {}
        uid = csc.get("runAsUser", psc.get("runAsUser", img.user))
        gid = csc.get("runAsGroup", psc.get("runAsGroup", img.user if uid == img.user else 0))
        if csc.get("runAsNonRoot", psc.get("runAsNonRoot")) and int(uid) == 0:
            raise VolumeError(
                "container has runAsNonRoot and image will run as root "
                f'(pod: "{self.pod_name}_{self.ns}({self.uid})", container: {c.name})'
            )
        groups = list(psc.get("supplementalGroups") or [])
        if psc.get("fsGroup") is not None:
            groups.append(psc["fsGroup"])
        ctx = self.volumes.ctx
        env = podenv.container_env(
            self.agent.kube,
            pod,
            c.spec,
            ctx,
            self.agent.services_in(self.ns),
            img.env,
            self.hostname,
        )
        command = [podenv.expand(a, env) for a in c.spec.get("command") or []]
        args = [podenv.expand(a, env) for a in c.spec.get("args") or []]
        argv = images.argv_for(img, command, args)
        mounts = self.volumes.mounts(c.spec)
        etc = self.dir / "etc"
        if not self.host_network:
            mounts.append({"src": str(etc / "hosts"), "dst": "/etc/hosts", "ro": False})
            mounts.append({"src": str(etc / "hostname"), "dst": "/etc/hostname", "ro": False})
        if (etc / "resolv.conf").exists():
            mounts.append({"src": str(etc / "resolv.conf"), "dst": "/etc/resolv.conf", "ro": False})
        env.setdefault("HOME", "/root" if int(uid) == 0 else "/")
        return {
            "netns": f"/run/netns/{self.netns}" if self.netns else None,
            "hostname": self.hostname,
            "masks": self.agent.masks,
            "mounts": mounts,
            "image_paths": self.agent.image_paths,
            "env": env,
            "argv": argv,
            "cwd": c.spec.get("workingDir") or img.workdir,
            "uid": int(uid),
            "gid": int(gid),
            "groups": [int(g) for g in groups],
            "created_log": str(self.agent.created_log),
        }

    def _reaper(self, c: Container, proc: subprocess.Popen[bytes]) -> None:
        rc = proc.wait()
        with self.lock:
            if c.proc is proc:
                c.exit = (rc, time.time())
        self.wake.set()

    def reap(self, c: Container, final: bool = False) -> None:
        with self.lock:
            ex, c.exit = c.exit, None
        if ex is None:
            return
        rc, finished = ex
        proc = c.proc
        if proc is not None:  # like a container's PID 1 exiting: the rest goes too
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
        c.proc = None
        for p in c.probes:
            p.stop()
        c.probes = []
        code = rc if rc >= 0 else 128 - rc
        reason = "Completed" if code == 0 else "Error"
        message = ""
        if c.error_file and c.error_file.exists() and c.error_file.stat().st_size:
            reason, message = "StartError", c.error_file.read_text().strip()
            code = 128
        elif code != 0 and c.spec.get("terminationMessagePolicy") == "FallbackToLogsOnError":
            message = self.tail_log(c, 80, 2048)
        term: JSON = {
            "exitCode": code,
            "reason": reason,
            "startedAt": c.started_at,
            "finishedAt": dt.datetime.fromtimestamp(finished, dt.timezone.utc).strftime(
                "%Y-%m-%dT%H:%M:%SZ"
            ),
            "containerID": c.container_id,
        }
        if rc < 0:
            term["signal"] = -rc
        if message:
            term["message"] = message
        c.state = {"terminated": term}
        c.ready = False
        c.started = False
        if final or self.terminal:
            c.done = True
            return
        if c.init and not c.sidecar:
            restart = code != 0 and self.restart_policy != "Never"
        elif c.sidecar or self.restart_policy == "Always":
            restart = True
        else:
            restart = self.restart_policy == "OnFailure" and code != 0
        if not restart:
            c.done = True
            return
        c.last_state = {"terminated": term}
        if time.monotonic() - c.started_mono > BACKOFF_RESET:
            c.backoff = 0.0
        delay = c.backoff
        c.backoff = min(max(INITIAL_BACKOFF, c.backoff * 2), MAX_BACKOFF)
        c.next_start = time.monotonic() + delay
        if delay > 0:
            c.state = {
                "waiting": {
                    "reason": "CrashLoopBackOff",
                    "message": f"back-off {int(delay)}s restarting failed container={c.name} "
                    f"pod={self.pod_name}_{self.ns}({self.uid})",
                }
            }
            self.event(c, "Warning", "BackOff", "Back-off restarting failed container "
                       f"{c.name} in pod {self.pod_name}_{self.ns}({self.uid})")  # fmt: skip

    def tail_log(self, c: Container, lines: int, limit: int) -> str:
        path = self.dir / "containers" / c.name / f"{c.restart_count}.log"
        try:
            data = path.read_bytes()[-limit * 4 :].decode(errors="replace")
        except OSError:
            return ""
        return "\n".join(data.splitlines()[-lines:])[-limit:]

    # --- probes --------------------------------------------------------------------------------
    def run_exec(self, c: Container, argv: list[str], timeout: float) -> tuple[int, str]:
        if c.launch_spec is None:
            return 1, "container not started"
        spec = dict(c.launch_spec)
        spec["argv"] = argv
        spec["error_file"] = None
        path = self.dir / "containers" / c.name / f"exec-{threading.get_ident()}.json"
        path.write_text(json.dumps(spec))
        try:
            proc = subprocess.run(
                [sys.executable, "-I", LAUNCH, str(path)],
                capture_output=True,
                timeout=timeout,
                check=False,
            )
        finally:
            path.unlink(missing_ok=True)
        return proc.returncode, (proc.stdout + proc.stderr).decode(errors="replace")

    def start_probes(self, c: Container) -> None:
        host = self.pod_ips[0]
        startup = c.spec.get("startupProbe")
        if startup is None:
            c.started = True
            c.startup_gate.set()
        if c.spec.get("readinessProbe") is None and not c.init:
            c.ready = True
        if c.sidecar and c.spec.get("readinessProbe") is None:
            c.ready = True

        def on_result(kind: str, ok: bool, msg: str, changed: bool, c: Container = c) -> None:
            self.on_probe(c, kind, ok, msg, changed)

        def run_exec(argv: list[str], timeout: float, c: Container = c) -> tuple[int, str]:
            return self.run_exec(c, argv, timeout)

        for kind in ("startup", "liveness", "readiness"):
            probe = c.spec.get(f"{kind}Probe")
            if probe is None:
                continue
            gate = None if kind == "startup" else c.startup_gate
            w = ProbeWorker(kind, probe, host, c.spec, run_exec, on_result, gate)
            c.probes.append(w)
            w.start()

    def on_probe(self, c: Container, kind: str, ok: bool, msg: str, changed: bool) -> None:
        if not changed:
            self.event(c, "Warning", "Unhealthy", f"{kind.capitalize()} probe failed: {msg}")
            return
        with self.lock:
            if kind == "startup":
                if ok:
                    c.started = True
                    c.startup_gate.set()
                else:
                    c.kill_reason = "startup"
            elif kind == "readiness":
                c.ready = ok
            elif kind == "liveness" and not ok:
                c.kill_reason = "liveness"
        self.wake.set()

    # --- killing ---------------------------------------------------------------------------------
    def grace(self, pod: JSON) -> float:
        md = pod["metadata"]
        g = md.get("deletionGracePeriodSeconds")
        if g is None:
            g = pod["spec"].get("terminationGracePeriodSeconds", 30)
        return float(g)

    def kill_container_async(self, c: Container, why: str) -> None:
        proc = c.proc
        if proc is None:
            return
        self.event(
            c, "Normal", "Killing", f"Container {c.name} failed {why} probe, will be restarted"
        )
        grace = self.grace(self.pod)
        threading.Thread(target=self._kill, args=(proc, grace), daemon=True).start()

    @staticmethod
    def _kill(proc: subprocess.Popen[bytes], grace: float) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(proc.pid, signal.SIGTERM)  # like a runtime: SIGTERM to PID 1 only
        try:
            proc.wait(timeout=max(grace, 0.1))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)

    def kill_all(self, grace: float) -> None:
        procs = [(c, c.proc) for c in self.all_containers() if c.proc is not None]
        for c, _ in procs:
            for p in c.probes:
                p.stop()
        for c, proc in procs:
            assert proc is not None
            if grace > 0:
                self.event(c, "Normal", "Killing", f"Stopping container {c.name}")
            with contextlib.suppress(ProcessLookupError, PermissionError):
                if grace > 0:  # like a runtime: SIGTERM to PID 1 only, SIGKILL to all
                    os.kill(proc.pid, signal.SIGTERM)
                else:
                    os.killpg(proc.pid, signal.SIGKILL)
        deadline = time.monotonic() + grace
        for _, proc in procs:
            assert proc is not None
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        for _, proc in procs:
            assert proc is not None
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
        time.sleep(0.05)  # let the reapers record the exits

    def run_pre_stop(self, pod: JSON, deadline: float) -> None:
        threads = []
        for c in self.all_containers():
            hook = (c.spec.get("lifecycle") or {}).get("preStop")
            if not hook or not c.running:
                continue

            def run(c: Container = c, hook: JSON = hook) -> None:
                timeout = max(0.1, deadline - time.monotonic())
                if "exec" in hook:
                    with contextlib.suppress(Exception):
                        self.run_exec(c, list(hook["exec"]["command"]), timeout)
                elif "httpGet" in hook:
                    probe = {"httpGet": hook["httpGet"], "timeoutSeconds": timeout}
                    run_probe(probe, self.pod_ips[0], c.spec, lambda a, t: (1, ""))
                elif "sleep" in hook:
                    time.sleep(min(float(hook["sleep"]["seconds"]), timeout))

            t = threading.Thread(target=run, daemon=True)
            t.start()
            threads.append(t)
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))

    def terminate(self, pod: JSON) -> None:
        """Graceful deletion: preStop, SIGTERM, wait, SIGKILL, final status, delete (grace 0)."""
        grace = self.grace(pod)
        if not self.terminal:
            deadline = time.monotonic() + grace
            self.run_pre_stop(pod, deadline)
            self.kill_all(grace=max(0.0, deadline - time.monotonic()))
            for c in self.all_containers():
                self.reap(c, final=True)
                if not c.done and "terminated" not in c.state:
                    c.done = True
            if self.sandbox:
                regular = self.containers
                ok = all(c.state.get("terminated", {}).get("exitCode") == 0 for c in regular)
                self.phase = "Succeeded" if ok and regular else "Failed"
            self.terminal = True
            self.push_status()
        self.teardown(remove_volumes=True)
        body = {
            "apiVersion": "v1",
            "kind": "DeleteOptions",
            "gracePeriodSeconds": 0,
            "preconditions": {"uid": self.uid},
        }
        try:
            self.agent.kube.delete(f"/api/v1/namespaces/{self.ns}/pods/{self.pod_name}", body)
        except ApiError as exc:
            if exc.status != 409:  # 409: the uid changed, a new pod of that name
                self.agent.log(f"{self.key}: final delete: {exc}")

    def teardown(self, remove_volumes: bool) -> None:
        for c in self.all_containers():
            for p in c.probes:
                p.stop()
            c.probes = []
        if self.netns:
            network.teardown_pod(self.uid)
            self.netns = None
        if self.pod_ips and not self.host_network:
            self.agent.release_ips(self.uid)
            with contextlib.suppress(Exception):
                multus.Ipam().release(self.uid)
        if remove_volumes:
            import shutil

            shutil.rmtree(self.dir / "volumes", ignore_errors=True)

    # --- status ----------------------------------------------------------------------------------
    def container_status(self, c: Container) -> JSON:
        st: JSON = {
            "name": c.name,
            "image": images.normalize(c.image) if c.image_spec else c.image,
            "imageID": images.image_id(c.image) if c.image_spec and c.ever_started else "",
            "ready": bool(c.ready and c.running) or (c.init and not c.sidecar and c.succeeded),
            "restartCount": c.restart_count,
            "started": bool(c.started and c.running),
            "state": c.state,
            "lastState": c.last_state,
        }
        if c.container_id:
            st["containerID"] = c.container_id
        return st

    def _cond(self, ctype: str, ok: bool, reason: str = "", message: str = "") -> JSON:
        status = "True" if ok else "False"
        prev = self.conditions.get(ctype)
        ts = prev["lastTransitionTime"] if prev and prev["status"] == status else now_iso()
        cond: JSON = {
            "type": ctype,
            "status": status,
            "lastProbeTime": None,
            "lastTransitionTime": ts,
        }
        if reason:
            cond["reason"] = reason
        if message:
            cond["message"] = message
        self.conditions[ctype] = cond
        return cond

    def build_status(self) -> JSON:
        pod = self.pod
        terminal = self.phase in ("Succeeded", "Failed")
        init_pending = [
            c.name for c in self.init_containers if not (c.succeeded or (c.sidecar and c.started))
        ]
        unready = [c.name for c in self.containers if not (c.ready and c.running)]
        conds = [self._cond("PodReadyToStartContainers", self.sandbox and not terminal)]
        if init_pending and not terminal:
            msg = f"containers with incomplete status: [{' '.join(init_pending)}]"
            conds.append(self._cond("Initialized", False, "ContainersNotInitialized", msg))
        else:
            conds.append(self._cond("Initialized", True))
        gates = [g["conditionType"] for g in pod["spec"].get("readinessGates") or []]
        existing = {c["type"]: c for c in pod.get("status", {}).get("conditions") or []}
        gates_ok = all(existing.get(g, {}).get("status") == "True" for g in gates)
        if terminal:
            conds.append(self._cond("ContainersReady", False, "PodCompleted"))
            conds.append(self._cond("Ready", False, "PodCompleted"))
        elif unready:
            msg = f"containers with unready status: [{' '.join(unready)}]"
            conds.append(self._cond("ContainersReady", False, "ContainersNotReady", msg))
            conds.append(self._cond("Ready", False, "ContainersNotReady", msg))
        else:
            conds.append(self._cond("ContainersReady", True))
            if gates_ok:
                conds.append(self._cond("Ready", True))
            else:
                msg = "corresponding condition of pod readiness gate is not true"
                conds.append(self._cond("Ready", False, "ReadinessGatesNotReady", msg))
        node = self.agent.node
        status: JSON = {
            "phase": self.phase,
            "conditions": conds,
            "hostIP": node.ips[0],
            "hostIPs": [{"ip": ip} for ip in node.ips],
            "containerStatuses": [self.container_status(c) for c in self.containers],
        }
        if self.start_time:
            status["startTime"] = self.start_time
        if self.pod_ips:
            status["podIP"] = self.pod_ips[0]
            status["podIPs"] = [{"ip": ip} for ip in self.pod_ips]
        if self.init_containers:
            status["initContainerStatuses"] = [
                self.container_status(c) for c in self.init_containers
            ]
        if self.reason:
            status["reason"] = self.reason
            status["message"] = self.message
        return status

    def push_status(self) -> None:
        status = self.build_status()
        fingerprint = json.dumps(status, sort_keys=True)
        pending = self.network_status if not self.network_status_written else None
        if fingerprint == self.last_status and pending is None:
            return
        meta: JSON = {"uid": self.uid}
        if pending is not None:  # as multus does: through the status subresource
            meta["annotations"] = {multus.NETWORK_STATUS: pending}
        try:
            self.agent.kube.patch(
                f"/api/v1/namespaces/{self.ns}/pods/{self.pod_name}/status",
                {"metadata": meta, "status": status},
                kind="strategic",
            )
            self.last_status = fingerprint
            self.network_status_written = pending is not None or self.network_status_written
        except ApiError as exc:
            if exc.status == 404:
                self.deleted()
            else:
                self.agent.log(f"{self.key}: status update failed: {exc}")
                self.retry_at = time.monotonic() + 1.0
        except Exception as exc:
            self.agent.log(f"{self.key}: status update failed: {exc}")
