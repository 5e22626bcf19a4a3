"""up / down / status of the whole local cluster."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hack.localcluster import bootstrap, config, controlplane, ingress, network, nodes, pki
from hack.localcluster.kube import ApiError, Kube
from hack.localcluster.util import (
    ClusterError,
    cgroup_dir,
    cgroup_pids,
    component_alive,
    kill_and_wait,
    log,
    pid_alive,
    process_name,
    pss_kib,
    recorded_pid,
    spawn,
    tail,
    wait_for,
)


@contextlib.contextmanager
def locked() -> Iterator[None]:
    """Serialize up/down/faults between processes (e.g. two pytest sessions)."""
    config.LOCK_FILE.parent.mkdir(parents=True, exist_ok=True)
    with config.LOCK_FILE.open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def build_bins() -> Path:
    proc = subprocess.run(
        [str(config.REPO / "hack" / "build-bins")], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise ClusterError(f"hack/build-bins failed:\n{proc.stderr[-3000:]}")
    return Path(proc.stdout.strip().splitlines()[-1])


def stage_bins(cache: Path) -> Path:
    """Hard-link (or copy) the binaries into the state dir: the cache lives under /root,
    which pod processes running as non-root users (CoreDNS, the agent) cannot traverse."""
    dst = config.STATE_DIR / "bin"
    dst.mkdir(parents=True, exist_ok=True)
    dst.chmod(0o755)
    config.STATE_DIR.chmod(0o755)
    for f in cache.iterdir():
        if f.name.startswith("."):
            continue
        target = dst / f.name
        target.unlink(missing_ok=True)
        try:
            os.link(f, target)
        except OSError:
            shutil.copy2(f, target)
    return dst


def kube_version(bin_dir: Path) -> str:
    out = subprocess.run(
        [str(bin_dir / "kube-apiserver"), "--version"], capture_output=True, text=True, check=True
    ).stdout
    return out.split()[-1]


def admin() -> Kube:
    """The tooling's own client: identity kdoctor:cluster-addons (system:masters), so the
    tooling's requests are not mistaken for the admin user's (the CLI's) in the audit log.
    Clusters older than that identity: the admin context."""
    kc = addons_kubeconfig()
    if kc.exists():
        return Kube(kc)
    return Kube(config.kubeconfig_path(), context=config.ADMIN_CONTEXT)


def addons_kubeconfig() -> Path:
    return config.STATE_DIR / "kubeconfigs" / "addons.kubeconfig"


ADDONS = "addons"
ADDONS_GROUP = "addons"


# --- health ------------------------------------------------------------------------------------


def is_running(state: config.ClusterState | None) -> bool:
    if state is None:
        return False
    health = controlplane.healthy()
    if not all(health.values()):
        return False
    return all(component_alive(nodes.agent_name(n)) for n in state.nodes)


# --- up ----------------------------------------------------------------------------------------


def up(n_nodes: int, ip_family: str | None = None) -> config.ClusterState:
    """Start a cluster (or reuse the running one). ``ip_family`` None: reuse whatever runs,
    else start dual stack (the default)."""
    if n_nodes < 1 or n_nodes > 200:
        raise ClusterError("--nodes must be between 1 and 200")
    if ip_family not in (None, *config.IP_FAMILIES):
        raise ClusterError(f"--ip-family must be one of {', '.join(config.IP_FAMILIES)}")
    with locked():
        state = config.ClusterState.load()
        if is_running(state):
            assert state is not None
            if len(state.nodes) != n_nodes:
                raise ClusterError(
                    f"a cluster with {len(state.nodes)} nodes is already running; "
                    f"run `hack/cluster down` first to get {n_nodes}"
                )
            if ip_family and ip_family != state.ip_family:
                raise ClusterError(
                    f"a cluster with --ip-family {state.ip_family} is already running; "
                    f"run `hack/cluster down` first to get {ip_family}"
                )
            if state.addons:
                ensure_addons(state)
            log("cluster already running")
            return state
        if state is not None or config.STATE_DIR.exists():
            log("cleaning up the state of an earlier cluster that is not running")
        _down_unlocked(save_logs=None, quiet=True)
        try:
            return _up(n_nodes, ip_family or config.DEFAULT_IP_FAMILY)
        except BaseException:
            log(f"up failed; logs are in {config.STATE_DIR / 'logs'} (kept until `down`)")
            raise


def _up(n_nodes: int, ip_family: str) -> config.ClusterState:
    t0 = time.monotonic()
    dual = ip_family == "dual"
    started_at = time.time()
    cache = build_bins()
    config.STATE_DIR.mkdir(parents=True, exist_ok=True)
    bin_dir = stage_bins(cache)
    version = kube_version(bin_dir)
    log(f"binaries: {cache} (Kubernetes {version})")
    node_list = [config.NodeInfo.make(i, dual) for i in range(1, n_nodes + 1)]
    state = config.ClusterState(
        bin_dir=str(bin_dir),
        nodes=node_list,
        kubeconfig=str(config.kubeconfig_path()),
        api_server=controlplane.api_url(),
        started_at=started_at,
        ip_family=ip_family,
        addons=True,
    )
    state.save()
    p = pki.make_all(node_list)
    pki.write_kubeconfig(
        config.kubeconfig_path(),
        controlplane.api_url(),
        p.ca.crt,
        [
            (config.ADMIN_CONTEXT, p.admin, "default"),
            (config.RESTRICTED_CONTEXT, p.restricted, config.RBAC_NAMESPACE),
            (config.CLI_CONTEXT, p.cli, "default"),
        ],
        config.ADMIN_CONTEXT,
    )
    controlplane.component_kubeconfig("addons", p.addons, p)
    network.size_neighbour_tables(len(node_list))
    network.setup_root(dual)
    for node in node_list:
        network.setup_node(node, node_list)
    network.setup_ingress(node_list, dual)
    network.setup_service_route(node_list[0])
    log(f"network ready ({time.monotonic() - t0:.1f}s)")
    controlplane.start_etcd(bin_dir)
    controlplane.start_apiserver(bin_dir, p, dual)
    log(f"kube-apiserver ready ({time.monotonic() - t0:.1f}s)")
    kube = admin()
    bootstrap.apply_all(kube, n_nodes, dual)
    controlplane.start_controller_manager(bin_dir, p, dual)
    controlplane.start_scheduler(bin_dir, p)
    for node in node_list:
        nodes.start_agent(node, bin_dir, version)
        nodes.start_proxy(node, bin_dir)
    ingress.write_initial(dual)
    start_ingress_proxy()
    start_addons(dual)
    log(f"control plane, {n_nodes} node(s) and add-ons started ({time.monotonic() - t0:.1f}s)")
    wait_ready(kube, state, timeout=180)
    state.ready_at = time.time()
    state.save()
    log(f"cluster ready in {time.monotonic() - t0:.1f}s")
    return state


def start_addons(dual: bool) -> int:
    env = {
        "PATH": nodes.SYSTEM_PATH,
        "PYTHONPATH": str(config.REPO),
        "PYTHONUNBUFFERED": "1",
        "KDOCTOR_CLUSTER_DIR": str(config.STATE_DIR),
        "LANG": "C.UTF-8",
    }
    argv = [str(config.PYTHON), "-m", "hack.localcluster.addons"]
    argv += ["--kubeconfig", str(addons_kubeconfig()), *(["--dual"] if dual else [])]
    return spawn(ADDONS, argv, group=ADDONS_GROUP, env=env, cwd=config.REPO)


def start_ingress_proxy() -> int:
    """nginx in the ingress netns, with the config the controller last wrote."""
    return spawn(
        ingress.COMPONENT,
        ingress.nginx_argv(),
        group=ADDONS_GROUP,
        netns=config.INGRESS_NETNS,
        env={"PATH": nodes.SYSTEM_PATH},
    )


def ensure_addons(state: config.ClusterState) -> None:
    """`up` on a running cluster: restart the add-ons process if it died (not nginx: a
    stopped ingress proxy may be a fault someone injected)."""
    if not component_alive(ADDONS):
        log("the add-ons process is not running; restarting it")
        start_addons(state.dual)


def _diagnose(state: config.ClusterState) -> str:
    parts = [
        tail(config.STATE_DIR / "logs" / f"{nodes.agent_name(n)}.log", 15) for n in state.nodes
    ]
    return "\n".join(parts)


def wait_ready(kube: Kube, state: config.ClusterState, timeout: float) -> None:
    deadline = time.monotonic() + timeout

    def left() -> float:
        return max(1.0, deadline - time.monotonic())

    def nodes_ready() -> bool:
        items = kube.get("/api/v1/nodes")["items"]
        # Ready, and the node lifecycle controller has lifted its not-ready taint (at 60 nodes
        # that lags Ready by seconds, and a run started then skips those nodes as tainted).
        ready = {
            n["metadata"]["name"]
            for n in items
            for c in n.get("status", {}).get("conditions") or []
            if c["type"] == "Ready"
            and c["status"] == "True"
            and not any(
                t["key"] in ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable")
                for t in n.get("spec", {}).get("taints") or []
            )
        }
        return ready >= set(state.node_names)

    wait_for(
        "all nodes Ready and untainted", nodes_ready, left(), on_timeout=lambda: _diagnose(state)
    )

    def proxies_healthy() -> bool:
        for node in state.nodes:
            r = subprocess.run(
                [
                    "curl",
                    "-sf",
                    "-m",
                    "2",
                    f"http://{node.ip}:{config.KUBE_PROXY_HEALTHZ_PORT}/healthz",
                ],
                capture_output=True,
                check=False,
            )
            if r.returncode != 0:
                return False
        return True

    wait_for("kube-proxy healthz on every node", proxies_healthy, left())
    wait_for(
        "the default ServiceAccount (kube-controller-manager working)",
        lambda: kube.get_or_none("/api/v1/namespaces/default/serviceaccounts/default"),
        left(),
    )

    def dns_ready() -> bool:
        d = kube.get("/apis/apps/v1/namespaces/kube-system/deployments/coredns")
        want = d["spec"]["replicas"]
        return bool(d.get("status", {}).get("readyReplicas", 0) >= want)

    wait_for("CoreDNS ready", dns_ready, left(), on_timeout=lambda: _coredns_diag(kube))
    if state.addons:

        def addons_ready() -> bool:
            if not component_alive(ADDONS):
                raise ClusterError(f"the add-ons process exited\n{tail(_logs(ADDONS))}")
            return (config.STATE_DIR / "addons" / "ready").exists()

        wait_for("the add-ons (LB and ingress controllers)", addons_ready, left())

        def ingress_answers() -> bool:  # the default backend's 404
            url = f"http://{config.INGRESS_IP}/"
            r = subprocess.run(
                ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-m", "2", url],
                capture_output=True,
                text=True,
                check=False,
            )
            return r.stdout == "404"

        wait_for(
            "nginx (ingress) on 172.30.0.5:80",
            ingress_answers,
            left(),
            on_timeout=lambda: tail(_logs(ingress.COMPONENT)),
        )


def _logs(name: str) -> Path:
    return config.STATE_DIR / "logs" / f"{name}.log"


def _coredns_diag(kube: Kube) -> str:
    try:
        pods = kube.get("/api/v1/namespaces/kube-system/pods", labelSelector="k8s-app=kube-dns")
        return json.dumps([p.get("status") for p in pods["items"]], indent=1)[-4000:]
    except Exception as exc:
        return str(exc)


# --- down --------------------------------------------------------------------------------------


def netns_inodes() -> set[int]:
    out = set()
    for ns in network.list_netns():
        if ns.startswith(config.NETNS_PREFIX):
            with contextlib.suppress(OSError):
                out.add(os.stat(f"/run/netns/{ns}").st_ino)
    return out


def pids_in_our_netns() -> list[int]:
    inodes = netns_inodes()
    if not inodes:
        return []
    found = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            link = os.readlink(d / "ns" / "net")
        except OSError:
            continue
        if link.startswith("net:[") and int(link[5:-1]) in inodes:
            found.append(int(d.name))
    return found


def kill_everything() -> int:
    """Kill every process of the cluster: the freezer cgroup (race-free: freeze, kill, thaw),
    recorded pids, and anything still living in one of the cluster's network namespaces."""
    killed = 0
    root = cgroup_dir()
    if root.exists():
        groups = [root, *[d for d in root.rglob("*") if d.is_dir()]]
        for g in groups:
            with contextlib.suppress(OSError):
                (g / "freezer.state").write_text("FROZEN")
        pids = cgroup_pids()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        killed += len(pids)
        for g in groups:
            with contextlib.suppress(OSError):
                (g / "freezer.state").write_text("THAWED")
    pid_dir = config.STATE_DIR / "pids"
    if pid_dir.exists():
        for f in pid_dir.iterdir():
            rec = recorded_pid(f.name)
            if rec and pid_alive(rec[0], rec[1] or None):
                kill_and_wait([rec[0]], timeout=0.5)
                killed += 1
    stray = [p for p in pids_in_our_netns() if p != os.getpid()]
    if stray:
        kill_and_wait(stray, timeout=0.5)
        killed += len(stray)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and (cgroup_pids() or pids_in_our_netns()):
        time.sleep(0.1)
    if root.exists():
        for g in sorted((d for d in root.rglob("*") if d.is_dir()), key=lambda d: -len(d.parts)):
            with contextlib.suppress(OSError):
                g.rmdir()
        with contextlib.suppress(OSError):
            root.rmdir()
    return killed


def remove_created_paths() -> None:
    """Mount points the pods' mount namespaces needed (e.g. /run/secrets/...), if empty."""
    f = config.STATE_DIR / "created-paths"
    if not f.exists():
        return
    paths = sorted(set(f.read_text().split("\n")) - {""}, key=lambda p: -p.count("/"))
    for p in paths:
        path = Path(p)
        with contextlib.suppress(OSError):
            if path.is_dir() and not path.is_symlink():
                path.rmdir()
            elif path.is_file() and path.stat().st_size == 0:
                path.unlink()


def down(save_logs: Path | None = None) -> None:
    with locked():
        _down_unlocked(save_logs, quiet=False)
        config.LOCK_FILE.unlink(missing_ok=True)  # still held: a waiter just proceeds


def _down_unlocked(save_logs: Path | None, quiet: bool) -> None:
    killed = kill_everything()
    if killed and not quiet:
        log(f"killed {killed} process(es)")
    network.teardown_all()
    remove_created_paths()
    if save_logs and config.STATE_DIR.exists():
        save_logs.mkdir(parents=True, exist_ok=True)
        logs = config.STATE_DIR / "logs"
        if logs.exists():
            shutil.copytree(logs, save_logs / "components", dirs_exist_ok=True)
        for node_dir in (config.STATE_DIR / "nodes").glob("*"):
            for log_file in node_dir.glob("pods/*/containers/*/*.log"):
                rel = log_file.relative_to(config.STATE_DIR)
                (save_logs / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(log_file, save_logs / rel)
        log(f"logs saved to {save_logs}")
    if config.STATE_DIR.exists():
        shutil.rmtree(config.STATE_DIR, ignore_errors=True)
    if not quiet:
        log("cluster removed")


# --- status ------------------------------------------------------------------------------------


def memory_report(state: config.ClusterState) -> dict[str, Any]:
    """PSS (MiB) per group: the control plane, and each node (agent + kube-proxy + pods)."""
    groups: dict[str, Any] = {}
    names = ["control-plane", *state.node_names, *([ADDONS_GROUP] if state.addons else [])]
    for g in names:
        procs: dict[str, int] = {}
        for pid in cgroup_pids(g):
            name = process_name(pid)
            procs[name] = procs.get(name, 0) + pss_kib(pid)
        groups[g] = {
            "total_mib": round(sum(procs.values()) / 1024, 1),
            "by_process_mib": {k: round(v / 1024, 1) for k, v in sorted(procs.items())},
        }
    return groups


def status() -> dict[str, Any]:
    state = config.ClusterState.load()
    if state is None:
        return {"running": False, "state_dir": str(config.STATE_DIR)}
    health = controlplane.healthy()
    comps: dict[str, Any] = {}
    for name, ok in health.items():
        rec = recorded_pid(name)
        comps[name] = {"pid": rec[0] if rec else None, "healthy": ok}
    node_info: dict[str, Any] = {}
    ready: dict[str, str] = {}
    with contextlib.suppress(Exception):
        for n in admin().get("/api/v1/nodes")["items"]:
            for c in n.get("status", {}).get("conditions") or []:
                if c["type"] == "Ready":
                    ready[n["metadata"]["name"]] = c["status"]
    for node in state.nodes:
        node_info[node.name] = {
            "ip": node.ip,
            "ips": node.ips,
            "pod_cidr": node.pod_cidr,
            "pod_cidrs": node.pod_cidrs,
            "netns": node.netns,
            "agent": component_alive(nodes.agent_name(node)),
            "kube-proxy": component_alive(nodes.proxy_name(node)),
            "ready": ready.get(node.name, "Unknown"),
        }
    return {
        "running": is_running(state),
        "state_dir": str(config.STATE_DIR),
        "kubeconfig": state.kubeconfig,
        "api_server": state.api_server,
        "bin_dir": state.bin_dir,
        "up_seconds": round(state.ready_at - state.started_at, 1) if state.ready_at else None,
        "ip_family": state.ip_family,
        "components": comps,
        "addons": {
            "controllers": component_alive(ADDONS),
            "ingress-nginx": ingress.nginx_pid() is not None,
            "ingress_ips": ingress.addresses(state.dual),
            "ingress_class": config.INGRESS_CLASS,
            "lb_pools": [str(config.LB_POOL), *([str(config.LB_POOL6)] if state.dual else [])],
        }
        if state.addons
        else None,
        "nodes": node_info,
        "faults": state.faults,
        "memory": memory_report(state),
    }


def ensure_api() -> Kube:
    kube = admin()
    try:
        kube.get("/version")
    except (ApiError, OSError) as exc:
        raise ClusterError(f"the cluster's API is not reachable: {exc}") from exc
    return kube
