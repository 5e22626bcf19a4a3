"""The agent's life: read the run config, serve peers, wait for them, run the rounds with
the engine, write the report into the API (a ConfigMap owned by the run's Job, so it
outlives the pod), keep serving until every peer has reported, exit 0.

Exit codes: 0 done (whatever the verdict: the verdict is in the report), 1 the agent itself
failed (configuration unreadable, report not writable).
"""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import resource
import secrets
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import anyio

from kubectl_kdoctor.agent.server import AgentServer
from kubectl_kdoctor.agent.targets import PlannedTarget, missing_paths, netreach_targets
from kubectl_kdoctor.agent.warmup import WARM_PATHS, wait_until_answering
from kubectl_kdoctor.engine.runner import Target, run_targets
from kubectl_kdoctor.engine.spec import HttpSpec
from kubectl_kdoctor.errors import KdoctorError
from kubectl_kdoctor.kube import discovery
from kubectl_kdoctor.kube import manifests as m
from kubectl_kdoctor.kube.client import Kube, connect_agent
from kubectl_kdoctor.kube.errors import api_errors
from kubectl_kdoctor.report.kdoctor import node_to_dict
from kubectl_kdoctor.report.model import NodeResult, TargetResult
from kubectl_kdoctor.report.verdict import judge
from kubectl_kdoctor.runconfig import (
    SECRET_BODY,
    SECRET_CA,
    SECRET_CERT,
    SECRET_HEADER_PREFIX,
    SECRET_KEY,
    SECRET_TOKEN,
    AgentConfig,
    encode_report,
    from_json,
)
from kubectl_kdoctor.task import DNS, HTTP, NETREACH, Task

T = TypeVar("T")
WARM_UP_LIMIT = 45.0  # seconds to wait for fresh Service paths to answer once (kube-proxy syncs)
ADDRESS_WAIT = 60.0  # seconds to wait for LoadBalancer / Ingress addresses


def fatal(msg: str) -> None:
    """Log, and leave the message where the kubelet reads a termination message."""
    log(msg)
    try:
        with open("/dev/termination-log", "w") as fh:
            fh.write(msg[:4000])
    except OSError:
        pass


async def _retry(fn: Callable[[], T], what: str, attempts: int = 5) -> T:
    """Run a blocking API call in a thread, retrying a few times a second apart."""
    for i in range(attempts):
        try:
            return await anyio.to_thread.run_sync(fn)
        except KdoctorError as exc:
            if i == attempts - 1:
                raise
            log(f"cannot {what} yet ({exc}); retrying")
            await anyio.sleep(1 + i)
    raise AssertionError("unreachable")


def log(msg: str) -> None:
    sys.stderr.write(f"{time.strftime('%H:%M:%S')} agent: {msg}\n")
    sys.stderr.flush()


def load_config(kube: Kube, run: str) -> AgentConfig:
    with api_errors(f"read ConfigMap {run}"):
        cm = kube.core.read_namespaced_config_map(run, kube.namespace, **kube.kw())
    cfg = from_json(cm.data["task.json"])
    if not cfg.secret:
        return cfg
    with api_errors(f"read Secret {run}"):
        sec = kube.core.read_namespaced_secret(run, kube.namespace, **kube.kw())
    data = {k: base64.b64decode(v) for k, v in (sec.data or {}).items()}
    return dataclasses.replace(
        cfg,
        task=merge_secret(cfg.task, data),
        token=data.get(SECRET_TOKEN, b"").decode("ascii", "replace"),
    )


def merge_secret(task: Task, data: dict[str, bytes]) -> Task:
    """Put the Secret's header values, body and TLS files back into the task (files are
    written, mode 0600, under a fresh temporary directory)."""
    files: dict[str, str] = {}
    tmp: Path | None = None
    for key, field in ((SECRET_CA, "cacert"), (SECRET_CERT, "cert"), (SECRET_KEY, "key")):
        if key in data:
            tmp = tmp or Path(tempfile.mkdtemp(prefix="kdoctor-"))
            path = tmp / key
            path.write_bytes(data[key])
            path.chmod(0o600)
            files[field] = str(path)
    if task.dns is not None and "cacert" in files:
        return dataclasses.replace(task, dns=dataclasses.replace(task.dns, cacert=files["cacert"]))
    if task.http is None:
        return task
    headers = tuple(
        (
            k,
            data[f"{SECRET_HEADER_PREFIX}{i}"].decode()
            if f"{SECRET_HEADER_PREFIX}{i}" in data
            else val,
        )
        for i, (k, val) in enumerate(task.http.headers)
    )
    http = dataclasses.replace(
        task.http,
        headers=headers,
        body=data.get(SECRET_BODY, task.http.body),
        cacert=files.get("cacert", task.http.cacert),
        cert=files.get("cert", task.http.cert),
        key=files.get("key", task.http.key),
    )
    return dataclasses.replace(task, http=http)


class _Usage:
    """CPU and memory of this process, sampled once a second (kdoctor's systemResource)."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self._last = (time.monotonic(), time.process_time())

    def sample(self) -> None:
        now, cpu = time.monotonic(), time.process_time()
        dt = now - self._last[0]
        if dt > 0:
            self.samples.append(100.0 * (cpu - self._last[1]) / dt)
        self._last = (now, cpu)

    def as_dict(self) -> dict[str, str]:
        rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        mx = max(self.samples, default=0.0)
        mean = sum(self.samples) / len(self.samples) if self.samples else 0.0
        return {"maxCPU": f"{mx:.3f}%", "meanCPU": f"{mean:.3f}%", "maxMemory": f"{rss_mb:.2f}MB"}


async def run_agent(run: str) -> int:
    node = os.environ.get("NODE_NAME", "")
    pod = os.environ.get("POD_NAME", "")
    namespace = os.environ.get("POD_NAMESPACE") or None
    pod_ip = os.environ.get("POD_IP", "")
    # Serve first (the kubelet's readiness probe); Ready once the run's token is known, so
    # no peer probes it before it can tell the run's probes from anyone else's.
    ready = {"v": False}
    server = AgentServer(node, pod, lambda: ready["v"])
    tls = None
    try:
        from kubectl_kdoctor.agent.certs import self_signed_context

        tls = self_signed_context([pod or "kdoctor-agent", f"{run}.{namespace}.svc"], [pod_ip])
    except Exception as exc:  # HTTPS is best effort: HTTP is what peers probe
        log(f"HTTPS disabled: {exc}")
    await server.start(None, m.HTTP_PORT, m.HTTPS_PORT, tls)
    try:

        def start() -> tuple[Kube, AgentConfig]:
            k = connect_agent(namespace)
            return k, load_config(k, run)

        kube, cfg = await _retry(start, f"reach the API server and read ConfigMap {run}")
    except KdoctorError as exc:
        fatal(f"cannot start: {exc}")
        await server.close()
        return 1
    # netreach: the run's token, which its probers send. http and dns agents are probed by
    # no one: a token nobody knows, so (with --host-network, on a node address) they answer
    # nothing but the kubelet's /readyz.
    server.token = cfg.token or ("" if cfg.task.kind == NETREACH else secrets.token_urlsafe(24))
    ready["v"] = True
    task = cfg.task
    log(f"serving on :{m.HTTP_PORT} and :{m.HTTPS_PORT} as {pod} on {node}")

    usage = _Usage()
    results: list[NodeResult] = []
    async with anyio.create_task_group() as tg:

        async def sampler() -> None:
            while True:
                await anyio.sleep(1)
                usage.sample()

        tg.start_soon(sampler)
        try:
            planned, setup_error = await _plan(kube, cfg, node)
        except Exception as exc:  # report it: a node that cannot plan still reports why
            log(f"cannot build targets: {type(exc).__name__}: {exc}")
            planned, setup_error = [], f"agent error: {type(exc).__name__}: {exc}"
        warm = [
            p.target.spec.url
            for p in planned
            if p.path in WARM_PATHS and isinstance(p.target.spec, HttpSpec)
        ]
        if warm:
            ready_after = await wait_until_answering(
                warm, time.monotonic() + WARM_UP_LIMIT, token=cfg.token
            )
            slow = max(ready_after.values(), default=0.0)
            log(
                f"{len(ready_after)}/{len(set(warm))} service paths answered (slowest after {slow:.1f}s)"
            )
        t0 = time.monotonic()
        for r in range(1, task.rounds + 1):
            delay = t0 + (r - 1) * task.interval - time.monotonic()
            if delay > 0:
                await anyio.sleep(delay)
            log(
                f"round {r}/{task.rounds}: {len(planned)} target(s) at {task.load.qps} qps for {task.load.duration:g}s"
            )
            begin = time.time()
            stats = await run_targets([p.target for p in planned]) if planned else []
            nr = NodeResult(
                node=node, pod=pod, round=r, start=begin, end=time.time(), error=setup_error
            )
            nr.targets = [
                TargetResult(s, judge(s, task.expect), p.path, p.family, p.target_node)
                for s, p in zip(stats, planned, strict=True)
            ]
            usage.sample()
            nr.system = usage.as_dict()
            results.append(nr)
        try:
            await _retry(lambda: write_report(kube, cfg, node, pod, results), "write the report")
        except KdoctorError as exc:
            log(f"cannot write the report: {exc}")
            tg.cancel_scope.cancel()
            await server.close()
            return 1
        print(
            json.dumps(
                {"run": run, "node": node, "rounds": [node_to_dict(task.kind, n) for n in results]}
            )
        )
        sys.stdout.flush()
        if task.kind == NETREACH:
            # Keep serving until every agent that probes this one reported (or the deadline):
            # with sampling those are not the agents this one probes and waited for, and a
            # prober that is late to start still probes this one when it comes.
            awaited = cfg.probed_by(node)
            deadline = time.monotonic() + cfg.finish_wait
            got = await anyio.to_thread.run_sync(
                discovery.wait_for_reports, kube, cfg, awaited, deadline
            )
            log(
                f"{got}/{len(awaited)} reports of the agents probing it seen;"
                f" {server.requests} requests served"
            )
        tg.cancel_scope.cancel()
    await server.close()
    return 0


async def _plan(kube: Kube, cfg: AgentConfig, node: str) -> tuple[list[PlannedTarget], str | None]:
    """Targets for this agent and an agent-level error if a path cannot be probed."""
    task = cfg.task
    if task.kind == HTTP:
        assert task.http is not None
        return (
            [
                PlannedTarget(
                    Target("HttpAppHealthy target", task.http, task.load), "http", "", None
                )
            ],
            None,
        )
    if task.kind == DNS:
        assert task.dns is not None
        d = task.dns
        name = f"type{d.qtype}_{d.server_address}_{d.domain}"
        return [PlannedTarget(Target(name, d, task.load), "dns", "", None)], None
    assert task.netreach is not None
    deadline = time.monotonic() + cfg.peers_wait
    wanted = cfg.must_see(node)
    peers = await anyio.to_thread.run_sync(discovery.wait_for_peers, kube, cfg, wanted, deadline)
    eps = await anyio.to_thread.run_sync(discovery.endpoints, kube, cfg)
    until = time.monotonic() + ADDRESS_WAIT
    while missing_paths(task.netreach.paths, cfg.families, eps) and time.monotonic() < until:
        await anyio.sleep(1)  # a load balancer or ingress controller publishes its address late
        eps = await anyio.to_thread.run_sync(discovery.endpoints, kube, cfg)
    error = None
    absent = wanted - {p.node for p in peers}
    if absent:
        error = (
            f"only {len(wanted) - len(absent)}/{len(wanted)} agents it probes became ready"
            f" within {cfg.peers_wait:g}s (not {', '.join(sorted(absent)[:5])}"
            f"{' ...' if len(absent) > 5 else ''})"
        )
    gaps = missing_paths(task.netreach.paths, cfg.families, eps)
    if gaps:
        error = "; ".join(([error] if error else []) + gaps)
    planned = netreach_targets(
        me=node,
        peers=peers,
        endpoints=eps,
        paths=task.netreach.paths,
        families=cfg.families,
        load=task.load,
        plan=cfg.peer_plan.get(node) if cfg.peer_plan else None,
        token=cfg.token,
    )
    if "multus" in task.netreach.paths and not any(p.path == "multus" for p in planned):
        gap = "no agent has a secondary (multus) interface: give --multus-networks NET"
        error = f"{error}; {gap}" if error else gap
    if not planned and not error:
        error = "nothing to probe: no peer and no path address was found"
    return planned, error


def write_report(
    kube: Kube, cfg: AgentConfig, node: str, pod: str, results: list[NodeResult]
) -> None:
    index = int(os.environ.get("JOB_COMPLETION_INDEX", "0"))
    payload = {
        "run": cfg.run,
        "node": node,
        "pod": pod,
        "index": index,
        "rounds": [node_to_dict(cfg.task.kind, n) for n in results],
    }
    blob = encode_report(payload)
    body = m.report_config_map(
        cfg.run, cfg.task.kind, cfg.namespace, m.owner(cfg.run, cfg.job_uid), index, node, blob
    )
    if cfg.run_id:
        m.with_run_id(body, cfg.run_id)
    from kubectl_kdoctor.errors import Conflict

    try:
        with api_errors(f"create report of {node}"):
            kube.core.create_namespaced_config_map(cfg.namespace, body, **kube.kw())
    except Conflict:
        # Each index runs once (restartPolicy Never, backoffLimitPerIndex 0), so the report
        # exists because an earlier attempt's create succeeded after its answer timed out (seen
        # on a loaded 100-node cluster); agents may not update ConfigMaps, nor need to.
        log(f"report {body['metadata']['name']} already written by an earlier attempt")


def main(run: str) -> int:
    from kubectl_kdoctor.engine.runner import ensure_std_fds

    ensure_std_fds()  # uvloop aborts when it closes fd 0-2 that the loop was handed
    try:
        import uvloop  # noqa: F401

        backend_options = {"use_uvloop": True}
    except ImportError:  # pragma: no cover
        backend_options = {}
    return int(anyio.run(run_agent, run, backend_options=backend_options))
