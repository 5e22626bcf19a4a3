"""Job mode: the plugin's own agents, no controller needed.

preflight (nodes, permissions) -> create (the Job with parallelism 0 and a short deadline,
then its owned objects, then the start patch) -> watch (pods and reports, two watches, no
polling) -> collect -> clean up. Stuck agents (unschedulable, image pull errors, crash loops,
never ready) end the run with exit 3 within seconds, naming the node and the reason. Ctrl-C,
SIGTERM and SIGHUP delete what was created (exit 130); a CLI killed at any instant leaves the
Job's deadline and TTL to do it (the Job is never suspended, so both always run).
"""

from __future__ import annotations

import dataclasses
import math
import queue
import secrets
import time
from typing import Any

import yaml

from kubectl_kdoctor.engine.spec import REDACTED
from kubectl_kdoctor.errors import AgentStartError, ClusterError, InputError, Interrupted, NotFound
from kubectl_kdoctor.images import GET_IMAGE_DOC, default_image
from kubectl_kdoctor.kube import manifests as m
from kubectl_kdoctor.kube import objects
from kubectl_kdoctor.kube.client import Kube
from kubectl_kdoctor.kube.discovery import api_endpoints
from kubectl_kdoctor.kube.errors import api_errors
from kubectl_kdoctor.kube.preflight import eligible_nodes, job_mode_permissions, require_permissions
from kubectl_kdoctor.kube.watch import Watcher
from kubectl_kdoctor.report.kdoctor import node_from_dict
from kubectl_kdoctor.report.model import NodeResult, RunResult
from kubectl_kdoctor.runconfig import (
    SECRET_TOKEN,
    SERVICE_PATHS,
    AgentConfig,
    NodeInfo,
    decode_report,
    to_json,
    ttl_seconds,
)
from kubectl_kdoctor.runconfig import secret_data as runconfig_secret_data
from kubectl_kdoctor.sampling import choose_peers, peer_plan
from kubectl_kdoctor.spec_kdoctor import kdoctor_spec
from kubectl_kdoctor.task import DNS, NETREACH, Invocation, Task, guard_load
from kubectl_kdoctor.ui import UI

MAX_CONFIG_BYTES = 1_000_000  # a ConfigMap or Secret holds at most 1 MiB (with its metadata)


def start_window(start_timeout: float) -> int:
    """Seconds the Job may exist before its start patch (its first activeDeadlineSeconds): the
    time to create the run's objects, bounded like the agents' start (--start-timeout)."""
    return max(30, math.ceil(start_timeout))


STUCK_REASONS = {
    "ErrImagePull": "cannot pull the agent image",
    "ImagePullBackOff": "cannot pull the agent image",
    "InvalidImageName": "invalid agent image name",
    "ErrImageNeverPull": "image not present and --image-pull-policy Never",
    "CreateContainerConfigError": "cannot create the agent container",
    "CreateContainerError": "cannot create the agent container",
    "CrashLoopBackOff": "the agent crashes",
    "RunContainerError": "cannot start the agent container",
    "StartError": "cannot start the agent container",
    "ContainerCannotRun": "cannot start the agent container",
}


def targets_per_agent(paths: tuple[str, ...], families: tuple[str, ...], peers: int) -> int:
    """Targets one netreach agent drives: per peer (itself included) and family, one per
    per-node path; plus one LoadBalancer and one Ingress target per family."""
    per_peer = sum(1 for p in paths if p in ("pod", "clusterip", "nodeport", "multus"))
    shared = sum(1 for p in paths if p in ("loadbalancer", "ingress"))
    return len(families) * (per_peer * peers + shared)


@dataclasses.dataclass
class Plan:
    """Everything a run will create, built before anything is created."""

    name: str
    namespace: str
    task: Task
    nodes: list[NodeInfo]
    skipped: dict[str, str]
    families: tuple[str, ...]
    image: str
    config: AgentConfig
    secret_data: dict[str, bytes]
    job: dict[str, Any]
    per_agent: int = 1
    run_id: str = ""

    def owned(self, job_uid: str) -> list[dict[str, Any]]:
        """The objects the Job owns, in creation order, each with the run id label."""
        return [m.with_run_id(o, self.run_id) for o in self._owned(job_uid)]

    def _owned(self, job_uid: str) -> list[dict[str, Any]]:
        own = m.owner(self.name, job_uid)
        kind, ns, run = self.task.kind, self.namespace, self.name
        cfg = dataclasses.replace(self.config, job_uid=job_uid)
        objs = [
            m.service_account(run, kind, ns, own),
            m.role(
                run,
                kind,
                ns,
                own,
                secret=bool(self.secret_data),
                ingress="ingress" in (self.task.netreach.paths if self.task.netreach else ()),
                services=bool(
                    self.task.netreach and set(self.task.netreach.paths) & set(SERVICE_PATHS)
                ),
            ),
            m.role_binding(run, kind, ns, own),
            m.config_map(run, kind, ns, own, to_json(cfg)),
        ]
        if self.secret_data:
            objs.append(m.secret(run, kind, ns, own, self.secret_data))
        if self.task.kind == NETREACH:
            assert self.task.netreach is not None
            paths = set(self.task.netreach.paths)
            fams = list(self.families)
            if paths & {"clusterip", "nodeport", "ingress"}:
                node_port = "nodeport" in paths
                objs += [
                    m.index_service(run, kind, ns, own, i, fams, node_port)
                    for i in range(len(self.nodes))
                ]
            if "loadbalancer" in paths:
                objs.append(m.load_balancer_service(run, kind, ns, own, fams))
            if "ingress" in paths:
                objs.append(m.ingress(run, kind, ns, own, self.task.netreach.ingress_class))
        return objs


def cluster_families(nodes: list[NodeInfo]) -> tuple[str, ...]:
    """What the cluster has: the IP families every selected node has an address in."""
    fams = [
        f
        for f, has in (("ipv4", all(n.ipv4 for n in nodes)), ("ipv6", all(n.ipv6 for n in nodes)))
        if has
    ]
    return tuple(fams) or ("ipv4",)


def cluster_dns(kube: Kube) -> str:
    with api_errors("read the cluster DNS Service kube-system/kube-dns"):
        svc = kube.core.read_namespaced_service("kube-dns", "kube-system", **kube.kw())
    ip = svc.spec.cluster_ip
    if not ip or ip == "None":
        raise ClusterError(
            "the cluster DNS Service kube-system/kube-dns has no ClusterIP; give --server"
        )
    return str(ip)


def cluster_dns_hints(kube: Kube, task: Task, run: RunResult) -> None:
    """A failed run against the cluster DNS: say when its Service has no ready endpoints."""
    if task.kind != DNS or task.dns is None or task.dns.server or run.passed:
        return
    from kubectl_kdoctor.kube.discovery import ready_endpoints

    found = ready_endpoints(kube, "kube-system", "kube-dns")
    if found is not None and found[0] == 0:
        total = found[1]
        run.cluster_hints.append(
            "the kube-dns Service (kube-system) has no ready endpoints"
            + (f" ({total} not ready)" if total else "")
            + " - the cluster DNS (CoreDNS) is down or scaled to zero"
        )


def plan(kube: Kube, inv: Invocation, name: str) -> Plan:
    task = inv.task
    tolerations = [t.to_k8s() for t in inv.placement.tolerations]
    nodes, skipped, _ = eligible_nodes(kube, inv.placement, tolerations)
    if not nodes:
        why = (
            "; ".join(f"{k}: {v}" for k, v in sorted(skipped.items())) or "the cluster has no nodes"
        )
        raise AgentStartError(f"no eligible node ({why})")
    families: tuple[str, ...] = ("ipv4",)
    if task.kind == NETREACH:
        assert task.netreach is not None
        fam = task.netreach.ip_family
        have = cluster_families(nodes)
        families = have if fam is None else ("ipv4", "ipv6") if fam == "dual" else (fam,)
        lacking = [f for f in families if f not in have]
        if lacking:
            raise ClusterError(
                f"--ip-family {fam}: not every selected node has an {' and '.join(lacking)} address "
                f"(they have {'/'.join(have)})"
            )
    if task.kind == DNS:
        assert task.dns is not None
        if not task.dns.server:
            server = cluster_dns(kube)
            task = dataclasses.replace(task, dns=dataclasses.replace(task.dns, server=server))
    try:
        secret_data = runconfig_secret_data(task)
    except OSError as exc:  # a file given was removed or made unreadable since it was checked
        spec = task.http or task.dns
        flag = next(
            (f"--{f}" for f in ("cacert", "cert", "key") if getattr(spec, f, None) == exc.filename),
            "--cacert",
        )
        raise InputError(f"cannot read {exc.filename}: {exc.strerror}", flag) from None
    if task.kind == NETREACH:  # the responders answer only probes of this run
        secret_data[SECRET_TOKEN] = secrets.token_urlsafe(24).encode()
    plan_of_peers: dict[str, list[str]] = {}
    per_agent = 1
    if task.kind == NETREACH:
        assert task.netreach is not None
        peers = choose_peers(len(nodes), task.netreach.peers)
        if peers < len(nodes) - 1:
            plan_of_peers = peer_plan([n.name for n in nodes], peers)
        per_agent = targets_per_agent(task.netreach.paths, families, peers + 1)
    guard_load(task.load.qps, len(nodes), per_agent, task.load.duration, inv.control.force)
    load_time = task.rounds * max(task.interval, task.load.duration + task.load.timeout)
    peers_wait = inv.control.start_timeout + 30
    deadline = math.ceil(inv.control.start_timeout + peers_wait + load_time + 120)
    run_id = secrets.token_hex(6)
    config = AgentConfig(
        run=name,
        namespace=kube.namespace,
        job_uid="",
        task=task,
        nodes=tuple(nodes),
        families=families,
        peers_wait=peers_wait,
        finish_wait=max(60.0, load_time + 30),
        secret=bool(secret_data),
        peer_plan=plan_of_peers,
        run_id=run_id,
        skipped=dict(skipped),
    )
    config_size = len(to_json(config).encode()) + sum(len(v) for v in secret_data.values())
    if config_size > MAX_CONFIG_BYTES:
        raise InputError(
            f"the run's configuration is {config_size:,} bytes, above the {MAX_CONFIG_BYTES:,} a "
            "ConfigMap or Secret holds: send a smaller body or fewer/shorter headers",
            "--data/--data-file",
        )
    job = m.job(
        run=name,
        kind=task.kind,
        namespace=kube.namespace,
        nodes=[n.name for n in nodes],
        image=inv.control.image or default_image(),
        pull_policy=inv.control.image_pull_policy,
        tolerations=tolerations,
        host_network=inv.placement.host_network,
        active_deadline=deadline,
        networks=task.netreach.networks if task.netreach else None,
        api_endpoints=api_endpoints(kube),
        ttl=ttl_seconds(m.TTL_AFTER_FINISHED),
        start_window=start_window(inv.control.start_timeout),
    )
    m.with_run_id(job, run_id)
    return Plan(
        name,
        kube.namespace,
        task,
        nodes,
        skipped,
        families,
        job["spec"]["template"]["spec"]["containers"][0]["image"],
        config,
        secret_data,
        job,
        per_agent,
        run_id,
    )


def dry_run_yaml(p: Plan) -> str:
    objs = [p.job, *p.owned("<uid of Job " + p.name + ">")]
    for o in objs:
        if o["kind"] == "Secret":
            o["data"] = dict.fromkeys(o["data"], REDACTED)
    return yaml.safe_dump_all(objs, sort_keys=False)


# --- create --------------------------------------------------------------------------------


def create(kube: Kube, p: Plan) -> objects.Ref:
    """Create the run; return its Job. The Job comes first with ``parallelism: 0`` and the
    short deadline of ``start_window`` (so a CLI killed from here on leaves a Job that fails
    by its deadline and goes by its TTL, taking what it owns along); then every object it owns;
    then one patch starts the agents and sets the run's real deadline. On any failure or
    interrupt, what was created is deleted (by UID) before the error goes on."""
    t0 = time.monotonic()
    job: objects.Ref | None = None
    made: list[objects.Ref] = []
    try:
        job = objects.create(kube, p.job)
        for obj in p.owned(job.uid):
            made.append(objects.create(kube, obj))
        ann = p.job["metadata"]["annotations"]
        deadline = int(ann[m.START_DEADLINE]) + math.ceil(time.monotonic() - t0)
        with api_errors(f"start Job {p.name}"):
            started = kube.batch.patch_namespaced_job(
                p.name,
                p.namespace,
                {
                    "metadata": {"uid": job.uid},  # a precondition: this Job, not a successor
                    "spec": {
                        "parallelism": int(ann[m.START_PARALLELISM]),
                        "activeDeadlineSeconds": deadline,
                    },
                },
                **kube.kw(),
            )
        if any(
            c.type == "Failed" and c.status == "True"
            for c in ((started.status.conditions if started.status else None) or [])
        ):
            raise ClusterError(
                f"creating the objects of run {p.name} took longer than the "
                f"{p.job['spec']['activeDeadlineSeconds']}s allowed (--start-timeout); "
                "the API server is slow"
            )
    except BaseException as exc:
        _remove(kube, p, job, made)
        if isinstance(exc, ClusterError):
            raise _created_error(exc, p) from exc
        raise
    return job


def _created_error(exc: ClusterError, p: Plan) -> ClusterError:
    """The creation error, one line, saying that nothing was left (and why on a collision)."""
    from kubectl_kdoctor.errors import Conflict

    msg = str(exc)
    if isinstance(exc, Conflict) and "already exists" in msg:
        msg += f" (not this run's: choose another --name than {p.name})"
    return type(exc)(
        f"{msg}; nothing of run {p.name} was left", status=exc.status, reason=exc.reason
    )


def _remove(kube: Kube, p: Plan, job: objects.Ref | None, made: list[objects.Ref]) -> None:
    """Delete what ``create`` made, newest first, each by its UID; when the Job's create was
    interrupted before its answer came, find it by this run's id label. Best effort: what
    cannot be deleted now goes by the Job's deadline and TTL (or with the Job, by garbage
    collection)."""
    if job is None:
        try:
            found = objects.read(kube, "Job", p.namespace, p.name)
        except (ClusterError, KeyboardInterrupt):
            found = None
        if found is not None and found.labels.get(m.RUN_ID) == p.run_id:
            job = found
    for ref in [*reversed(made), *([job] if job is not None else [])]:
        try:  # each on its own: one refused delete (RBAC) must not keep the Job
            objects.delete(kube, ref)
        except (ClusterError, KeyboardInterrupt):
            pass


def delete_run(kube: Kube, job: objects.Ref) -> bool:
    """Delete the run's Job (by UID); garbage collection removes everything it owns."""
    return objects.delete(kube, job)


# --- watch ---------------------------------------------------------------------------------


PULL_REASONS = ("ErrImagePull", "ImagePullBackOff", "ErrImageNeverPull")


def _pull_error(image: str, node: str, reason: str, msg: str) -> str:
    """One line: the image, the node, the pull error, and how to get the image there."""
    return (
        f"node {node} cannot pull the agent image {image}: {reason}"
        + (f": {msg}" if msg else "")
        + "; load it onto the nodes (make image; ctr/kind/k3s import) or copy it to a registry"
        + f" they reach and pass --image, see {GET_IMAGE_DOC}"
    )


def _waiting_reason(pod: Any) -> tuple[str, str] | None:
    """A container state that means the agent cannot start: (reason, first message line)."""
    for cs in (pod.status.container_statuses if pod.status else None) or []:
        state = cs.state
        for st in (state.waiting, state.terminated) if state else ():
            if st is not None and st.reason in STUCK_REASONS:
                msg = (st.message or "").strip()
                return st.reason, msg.splitlines()[0] if msg else ""
    return None


def _unschedulable(pod: Any) -> str | None:
    for c in (pod.status.conditions if pod.status else None) or []:
        if c.type == "PodScheduled" and c.status == "False" and c.reason == "Unschedulable":
            return str(c.message or "unschedulable")
    return None


def _ready(pod: Any) -> bool:
    return any(
        c.type == "Ready" and c.status == "True"
        for c in ((pod.status.conditions if pod.status else None) or [])
    )


def _exit_info(pod: Any) -> str:
    for cs in (pod.status.container_statuses if pod.status else None) or []:
        t = cs.state.terminated if cs.state else None
        if t:
            return f"exit code {t.exit_code}" + (f" ({t.reason})" if t.reason else "")
    return pod.status.reason or "failed" if pod.status else "failed"


def check_host_network(kube: Kube, namespace: str) -> None:
    """--host-network needs a namespace whose PodSecurity level allows host namespaces."""
    from kubectl_kdoctor.errors import Forbidden

    try:
        with api_errors(f"read namespace {namespace}"):
            ns = kube.core.read_namespace(namespace, **kube.kw())
    except (Forbidden, NotFound):
        return  # cannot tell: the API will refuse the pods if it must, and we report that
    level = (ns.metadata.labels or {}).get("pod-security.kubernetes.io/enforce", "privileged")
    if level in ("baseline", "restricted"):
        raise ClusterError(
            f"--host-network: namespace {namespace} enforces PodSecurity {level!r}, which forbids "
            "host networking; use a namespace labelled pod-security.kubernetes.io/enforce=privileged"
        )


def job_events(kube: Kube, namespace: str, name: str) -> str | None:
    """Why the Job controller could not create the agent pods (its FailedCreate event)."""
    from kubectl_kdoctor.errors import ClusterError as _ClusterError

    try:
        with api_errors(f"list events of Job {name}"):
            events = kube.core.list_namespaced_event(
                namespace,
                field_selector=f"involvedObject.kind=Job,involvedObject.name={name},reason=FailedCreate",
                **kube.kw(),
            ).items
    except _ClusterError:
        return None
    return str(events[-1].message) if events else None


def _await_addresses(kube: Kube, p: Plan, wanted: set[str], late: bool) -> set[str]:
    """The paths among LoadBalancer/Ingress whose address has not appeared yet; when ``late``
    (past --start-timeout) a missing one ends the run with a message saying what to check."""
    from kubectl_kdoctor.kube.discovery import ingress_addresses, load_balancer_addresses

    left = set(wanted)
    if "loadbalancer" in left and load_balancer_addresses(kube, p.namespace, p.name):
        left.discard("loadbalancer")
    if "ingress" in left and ingress_addresses(kube, p.namespace, p.name):
        left.discard("ingress")
    if left and late:
        why = {
            "loadbalancer": f"Service {p.name}-lb got no LoadBalancer address: is a load-balancer controller installed?",
            "ingress": f"Ingress {p.name} got no address: is an ingress controller serving "
            + (
                f"class {p.task.netreach.ingress_class}"
                if p.task.netreach and p.task.netreach.ingress_class
                else "the default class"
            )
            + "?",
        }
        raise AgentStartError(f"within --start-timeout: {'; '.join(why[w] for w in sorted(left))}")
    return left


def watch_run(kube: Kube, p: Plan, ui: UI, start_timeout: float) -> RunResult:
    """Follow the run until every agent reported or failed; raise AgentStartError when
    agents cannot start."""
    events: queue.Queue[tuple[str, str, Any]] = queue.Queue()
    sel = f"{m.RUN}={p.name}"
    watchers = [
        Watcher(
            "pods", kube.core.list_namespaced_pod, p.namespace, f"{sel},{m.ROLE}=agent", events
        ),
        Watcher(
            "reports",
            kube.core.list_namespaced_config_map,
            p.namespace,
            f"{sel},{m.ROLE}=report",
            events,
        ),
    ]
    for w in watchers:
        w.start()
    expected = [n.name for n in p.nodes]
    run = RunResult(
        kind=p.task.kind,
        name=p.name,
        created=time.time(),
        spec=kdoctor_spec(p.task),
        expect=p.task.expect,
        rounds_expected=p.task.rounds,
        expected_nodes=expected,
        skipped_nodes=dict(p.skipped),
        mode="job",
    )
    if p.config.peer_plan:
        run.peer_plan = dict(p.config.peer_plan)
        k = len(next(iter(p.config.peer_plan.values())))
        run.notes.append(
            f"sampled: each node probed itself and {k} of {len(p.nodes) - 1} peers (status.sampledPeers)"
        )
    pods: dict[str, Any] = {}
    reported: dict[str, list[NodeResult]] = {}
    failed: dict[str, str] = {}
    started = time.monotonic()
    load_time = p.task.rounds * max(p.task.interval, p.task.load.duration + p.task.load.timeout)
    all_ready_at: float | None = None
    ever_ready: set[str] = set()
    last_progress = ""
    paths = set(p.task.netreach.paths) if p.task.netreach else set()
    wanted = paths & {"loadbalancer", "ingress"}
    next_address_check = 0.0
    next_event_check = 0.0
    try:
        while True:
            try:
                tag, kind, obj = events.get(timeout=0.5)
            except queue.Empty:
                tag, kind, obj = "", "TICK", None
            if kind == "ERROR":
                raise obj
            if tag == "pods" and obj is not None:
                if kind == "DELETED":
                    pods.pop(obj.metadata.name, None)
                    ever_ready.discard(obj.metadata.name)
                else:
                    pods[obj.metadata.name] = obj
                    if _ready(obj):  # a later readiness flap on a busy node is not "not ready"
                        ever_ready.add(obj.metadata.name)
            elif tag == "reports" and kind in ("ADDED", "MODIFIED") and obj is not None:
                node, rounds = node_results(
                    p.task.kind, decode_report(obj.binary_data or {}), p.task.expect
                )
                reported[node] = rounds
            for pod in pods.values():
                node = pod.spec.node_name or "(unscheduled)"
                if node in reported or node in failed:
                    continue
                why = _unschedulable(pod)
                if why:
                    raise AgentStartError(
                        f"agent pod {pod.metadata.name} cannot be scheduled: {why}"
                    )
                stuck = _waiting_reason(pod)
                if stuck:
                    reason, msg = stuck
                    if reason in PULL_REASONS:
                        raise AgentStartError(_pull_error(p.image, node, reason, msg))
                    raise AgentStartError(
                        f"agent on node {node}: {reason}: {STUCK_REASONS[reason]}"
                        + (f" ({msg})" if msg else "")
                        + (f"; image {p.image}" if "Image" in reason else "")
                    )
                if pod.status and pod.status.phase == "Failed":
                    failed[node] = (
                        f"agent pod {pod.metadata.name} failed before reporting: {_exit_info(pod)}"
                    )
            n = len(expected)
            scheduled = sum(1 for x in pods.values() if x.spec.node_name)
            running = sum(
                1 for x in pods.values() if x.status and x.status.phase in ("Running", "Succeeded")
            )
            ready = len(ever_ready)
            line = f"agents: {scheduled}/{n} scheduled, {running}/{n} running, {ready}/{n} ready, {len(reported)}/{n} reported"
            if line != last_progress:
                ui.progress(line)
                last_progress = line
            if ready + len(reported) + len(failed) >= n and all_ready_at is None and ready:
                all_ready_at = time.monotonic()
            if len(reported) + len(failed) >= n:
                break
            now = time.monotonic()
            if not pods and now - started > 5 and now >= next_event_check:
                next_event_check = now + 5.0
                why = job_events(kube, p.namespace, p.name)
                if why:
                    raise AgentStartError(f"the Job cannot create agent pods: {why}")
            if all_ready_at is None and now - started > start_timeout:
                not_ready = [
                    f"{x.spec.node_name or x.metadata.name}: {x.status.phase if x.status else 'Pending'}"
                    for x in pods.values()
                    if x.metadata.name not in ever_ready and (x.spec.node_name not in reported)
                ] or ["no agent pod was created"]
                raise AgentStartError(
                    f"agents not ready within --start-timeout {start_timeout:g}s: {', '.join(sorted(not_ready))}"
                )
            if wanted and now >= next_address_check:
                next_address_check = now + 2.0
                wanted = _await_addresses(kube, p, wanted, now - started > start_timeout)
            if all_ready_at is not None and now - all_ready_at > load_time + start_timeout + 90:
                break  # the rest never reported; named as such in the report
    finally:
        for w in watchers:
            w.stop()
        # Joined, briefly: a watch thread still unwinding its stream while the interpreter
        # shuts down can abort the process (SIGABRT) after the report was printed.
        for w in watchers:
            w.join(timeout=2)
    notes = [f"{node}: {why}" for node, why in failed.items()]
    return assemble(run, reported, notes)


def node_results(kind: str, payload: dict[str, Any], expect: Any) -> tuple[str, list[NodeResult]]:
    """(node, its rounds) from one agent's report payload; the payload can then be dropped."""
    rounds = [node_from_dict(kind, entry, expect) for entry in payload.get("rounds") or []]
    return str(payload["node"]), rounds


def assemble(run: RunResult, reported: dict[str, list[NodeResult]], notes: list[str]) -> RunResult:
    """Fill ``run`` from the agents' rounds (by node); expected nodes without one are missing."""
    for rounds in reported.values():
        run.nodes.extend(rounds)
    run.notes.extend(notes)
    run.nodes.sort(key=lambda x: (x.round, x.node))
    missing = sorted(set(run.expected_nodes) - set(reported))
    if missing:
        for r in range(1, run.rounds_expected + 1):
            run.missing[r] = missing
    return run


def load_run(kube: Kube, namespace: str, name: str) -> RunResult:
    """A run that still exists (``--keep``, ``--no-wait``, or not yet expired), from the API."""
    from kubectl_kdoctor.runconfig import from_json

    with api_errors(f"read Job {name}"):
        job = kube.batch.read_namespaced_job(name, namespace, **kube.kw())
    if not m.is_ours(job.metadata.labels, name):
        raise not_ours(f"Job {namespace}/{name}")
    with api_errors(f"read ConfigMap {name}"):
        cm = kube.core.read_namespaced_config_map(name, namespace, **kube.kw())
    cfg = from_json(cm.data["task.json"])
    with api_errors("list reports"):
        reports = kube.core.list_namespaced_config_map(
            namespace, label_selector=f"{m.RUN}={name},{m.ROLE}=report", **kube.kw()
        ).items
    done = any(
        c.type in ("Complete", "Failed") and c.status == "True"
        for c in (job.status.conditions or [])
    )
    run = RunResult(
        kind=cfg.task.kind,
        name=name,
        created=job.metadata.creation_timestamp.timestamp()
        if job.metadata.creation_timestamp
        else time.time(),
        spec=kdoctor_spec(cfg.task),
        expect=cfg.task.expect,
        rounds_expected=cfg.task.rounds,
        expected_nodes=[n.name for n in cfg.nodes],
        skipped_nodes=dict(cfg.skipped),
        mode="job",
        finished=done or len(reports) >= len(cfg.nodes),
    )
    reported = dict(
        node_results(cfg.task.kind, decode_report(r.binary_data or {}), cfg.task.expect)
        for r in reports
    )
    if not run.finished:
        run.notes.append(f"still running: {len(reported)}/{len(cfg.nodes)} agents reported")
        run.expected_nodes = sorted(reported)
    return assemble(run, reported, [])


def run_job_mode(kube: Kube, inv: Invocation, name: str, ui: UI) -> RunResult | None:
    """Run in job mode; None when nothing was waited for (--dry-run, --no-wait)."""
    p = plan(kube, inv, name)
    if inv.control.dry_run:
        ui.out(dry_run_yaml(p))
        return None
    for node, why in sorted(p.skipped.items()):
        ui.info(f"skipping node {node}: {why}")
    if inv.placement.host_network:
        check_host_network(kube, p.namespace)
    require_permissions(
        kube,
        p.namespace,
        job_mode_permissions(
            secret=bool(p.secret_data),
            ingress=p.task.kind == NETREACH
            and "ingress" in (p.task.netreach.paths if p.task.netreach else ()),
            cluster_dns=False,
        ),
    )
    total = p.task.load.qps * len(p.nodes) * p.per_agent
    ui.info(
        f"run {p.name}: {len(p.nodes)} agent(s) x {p.per_agent} target(s) x {p.task.load.qps} qps"
        f" = {total:,} requests/s for {p.task.load.duration:g}s, namespace {p.namespace}, image {p.image}"
    )
    if p.config.peer_plan:
        k = len(next(iter(p.config.peer_plan.values())))
        ui.info(
            f"sampling: each node probes {k} of {len(p.nodes) - 1} peers (and itself); --peers to change"
        )
    job: objects.Ref | None = None
    try:
        job = create(kube, p)
        if inv.control.no_wait:
            ui.out(
                f"run {p.name} created in namespace {p.namespace}; see: kubectl kdoctor report {p.name}\n"
            )
            return None
        result = watch_run(kube, p, ui, inv.control.start_timeout)
        cluster_dns_hints(kube, inv.task, result)
        return result
    except KeyboardInterrupt:
        if job is None:  # interrupted while creating: create() removed what it had made,
            _remove(kube, p, None, [])  # and a Job created just before the signal goes too
            raise Interrupted(f"interrupted; run {p.name} deleted (it was being created)") from None
        if inv.control.keep:
            raise Interrupted(f"interrupted; run {p.name} kept (--keep)") from None
        delete_run(kube, job)
        job = None
        raise Interrupted(f"interrupted; run {p.name} deleted") from None
    finally:
        if job is not None and not inv.control.keep and not inv.control.no_wait:
            try:
                delete_run(kube, job)
            except ClusterError as exc:
                ui.warn(f"could not delete run {p.name}: {exc}; its TTL removes it")


def not_ours(what: str) -> InputError:
    """The refusal of ``report``/``delete`` for a same-named object the plugin did not make."""
    return InputError(
        f"{what} was not created by kubectl-kdoctor (it lacks the labels {m.MANAGED_BY}="
        f"{m.MANAGER} and {m.RUN_ID}); it is left alone",
        "NAME",
    )
