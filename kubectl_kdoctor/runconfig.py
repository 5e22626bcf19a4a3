"""The contract between the CLI and its agents: the run configuration the CLI hands to its
agents (ConfigMap ``<run>``, key ``task.json``), and back. Secret parts travel in the Secret
``<run>`` and are merged in by the agent; they never appear here: every header value but a
few harmless ones (``engine.spec.PUBLIC_HEADERS``), the request body, TLS files and the
token of the run's responders (``secret_data``)."""

from __future__ import annotations

import base64
import dataclasses
import gzip
import json
import os
from typing import Any

from kubectl_kdoctor.engine import spec as espec
from kubectl_kdoctor.engine.spec import DnsSpec, HttpSpec, Load
from kubectl_kdoctor.errors import InputError
from kubectl_kdoctor.task import Expect, NetReachTargets, Task

TTL_ENV = "KUBECTL_KDOCTOR_TTL_SECONDS"  # ttlSecondsAfterFinished of the run's Job
TTL_DEFAULT = 120
TTL_MAX = 7 * 24 * 3600


def ttl_seconds(default: int = TTL_DEFAULT) -> int:
    """``$KUBECTL_KDOCTOR_TTL_SECONDS`` (unset or empty: ``default``): an integer from 0 to a
    week; anything else is an InputError naming the variable."""
    text = os.environ.get(TTL_ENV, "").strip()
    if not text:
        return default
    if not text.isascii() or not text.isdigit() or len(text) > 7 or int(text) > TTL_MAX:
        shown = repr(text) if len(text) <= 40 else repr(text[:37] + "...")
        raise InputError(f"must be a number of seconds from 0 to {TTL_MAX} (got {shown})", TTL_ENV)
    return int(text)


SECRET_HEADER_PREFIX = "header."  # + the header's position in the list: header.0, header.1
SECRET_BODY = "body"
SECRET_TOKEN = "token"  # netreach: what probers send in TOKEN_HEADER and responders check
SECRET_CA, SECRET_CERT, SECRET_KEY = "ca.crt", "tls.crt", "tls.key"
TOKEN_HEADER = "X-Kdoctor-Token"
REPORT_KEY = "report.json.gz"


@dataclasses.dataclass(frozen=True)
class NodeInfo:
    name: str
    ipv4: tuple[str, ...] = ()
    ipv6: tuple[str, ...] = ()


SHARED_PATHS = ("loadbalancer", "ingress")  # netreach paths whose backends every agent probes
# netreach paths for which agents list the run's Services (and so may: the agents' Role)
SERVICE_PATHS = ("clusterip", "nodeport", "loadbalancer", "ingress")


@dataclasses.dataclass(frozen=True)
class AgentConfig:
    run: str
    namespace: str
    job_uid: str
    task: Task
    nodes: tuple[NodeInfo, ...]  # the nodes agents were placed on (one agent each)
    families: tuple[str, ...] = ("ipv4",)
    peers_wait: float = 120.0  # seconds to wait for every peer to be ready
    finish_wait: float = 60.0  # seconds to keep serving for peers after our own report
    secret: bool = False  # the Secret <run> exists
    token: str = ""  # the responders' token: read from the Secret, never in the ConfigMap
    peer_plan: dict[str, list[str]] = dataclasses.field(
        default_factory=dict
    )  # node -> peers (sampling)
    run_id: str = ""  # the run id label (manifests.RUN_ID) the agent puts on its report
    skipped: dict[str, str] = dataclasses.field(default_factory=dict)  # node -> why no agent

    @property
    def expected(self) -> int:
        return len(self.nodes)

    def must_see(self, node: str) -> set[str]:
        """The nodes whose agents ``node``'s agent waits for before probing: the peers it
        probes (all of them without sampling) and itself."""
        if self.peer_plan and node in self.peer_plan:
            return {node, *self.peer_plan[node]}
        return {n.name for n in self.nodes}

    def probed_by(self, node: str) -> set[str]:
        """The nodes whose agents probe ``node`` (so it keeps serving until they reported).
        Through the LoadBalancer (every agent behind it) and the Ingress (agent 0 behind it)
        every agent reaches agents it did not sample: with those paths, every node."""
        nr = self.task.netreach
        shared = nr is not None and any(p in SHARED_PATHS for p in nr.paths)
        if self.peer_plan and not shared:
            return {node} | {src for src, dsts in self.peer_plan.items() if node in dsts}
        return {n.name for n in self.nodes}

    def node(self, name: str) -> NodeInfo | None:
        return next((n for n in self.nodes if n.name == name), None)


@dataclasses.dataclass(frozen=True)
class Peer:
    index: int
    node: str
    pod: str
    ipv4: tuple[str, ...] = ()
    ipv6: tuple[str, ...] = ()
    multus: tuple[tuple[str, str], ...] = ()  # (interface, ip)


@dataclasses.dataclass(frozen=True)
class Endpoints:
    """What the agent discovered about the run's Services."""

    cluster_ips: dict[int, dict[str, str]]  # agent index -> family -> ClusterIP
    node_ports: dict[int, dict[str, int]]  # agent index -> family -> NodePort of <run>-<index>
    node_addresses: dict[str, dict[str, str]]  # node -> family -> address
    lb: dict[str, str] = dataclasses.field(default_factory=dict)  # family -> LB IP
    ingress_urls: dict[str, str] = dataclasses.field(default_factory=dict)  # family -> URL


def task_to_dict(task: Task) -> dict[str, Any]:
    """The task as the ConfigMap carries it: secret values blanked (see ``secret_data``)."""
    out: dict[str, Any] = {
        "kind": task.kind,
        "load": dataclasses.asdict(task.load),
        "expect": dataclasses.asdict(task.expect),
        "rounds": task.rounds,
        "interval": task.interval,
    }
    if task.http:
        plain = espec.without_userinfo(task.http)  # as secret_data numbers the headers
        h = espec.to_dict(plain)
        h["headers"] = [[k, "" if espec.secret_header(k) else val] for k, val in plain.headers]
        h["body"] = ""  # in the Secret
        for f in ("cacert", "cert", "key"):
            h[f] = None  # files travel in the Secret
        out["http"] = h
    if task.dns:
        out["dns"] = espec.to_dict(task.dns)
        out["dns"]["cacert"] = None  # in the Secret
    if task.netreach:
        out["netreach"] = {
            "paths": list(task.netreach.paths),
            "ipFamily": task.netreach.ip_family,
            "ingressClass": task.netreach.ingress_class,
            "peers": task.netreach.peers,
        }
    return out


def secret_data(task: Task) -> dict[str, bytes]:
    """What goes in the run's Secret: every secret header value (by position), the body and
    the TLS files (read here; OSError when one cannot be read)."""
    out: dict[str, bytes] = {}
    files: tuple[tuple[str | None, str], ...] = ()
    if task.http:
        h = espec.without_userinfo(task.http)
        for i, (k, val) in enumerate(h.headers):
            if espec.secret_header(k):
                out[f"{SECRET_HEADER_PREFIX}{i}"] = val.encode()
        if h.body:
            out[SECRET_BODY] = h.body
        files = ((h.cacert, SECRET_CA), (h.cert, SECRET_CERT), (h.key, SECRET_KEY))
    if task.dns:
        files = ((task.dns.cacert, SECRET_CA),)
    for path, key in files:
        if path:
            with open(path, "rb") as fh:
                out[key] = fh.read()
    return out


def task_from_dict(d: dict[str, Any]) -> Task:
    nr = d.get("netreach")
    return Task(
        kind=d["kind"],
        load=Load(**d["load"]),
        expect=Expect(**d["expect"]),
        rounds=int(d.get("rounds", 1)),
        interval=float(d.get("interval", 0.0)),
        http=espec.from_dict(HttpSpec, d["http"]) if d.get("http") else None,
        dns=espec.from_dict(DnsSpec, d["dns"]) if d.get("dns") else None,
        netreach=NetReachTargets(
            paths=tuple(nr["paths"]),
            ip_family=nr.get("ipFamily"),
            ingress_class=nr.get("ingressClass"),
            peers=int(nr.get("peers") or 0),
        )
        if nr
        else None,
    )


def to_json(cfg: AgentConfig) -> str:
    return json.dumps(
        {
            "run": cfg.run,
            "namespace": cfg.namespace,
            "jobUid": cfg.job_uid,
            "task": task_to_dict(cfg.task),
            "nodes": [
                {"name": n.name, "ipv4": list(n.ipv4), "ipv6": list(n.ipv6)} for n in cfg.nodes
            ],
            "families": list(cfg.families),
            "peersWait": cfg.peers_wait,
            "finishWait": cfg.finish_wait,
            "secret": cfg.secret,
            "peerPlan": cfg.peer_plan,
            "runId": cfg.run_id,
            "skippedNodes": cfg.skipped,
        },
        indent=1,
    )


def from_json(text: str) -> AgentConfig:
    d = json.loads(text)
    return AgentConfig(
        run=d["run"],
        namespace=d["namespace"],
        job_uid=d["jobUid"],
        task=task_from_dict(d["task"]),
        nodes=tuple(
            NodeInfo(n["name"], tuple(n.get("ipv4") or ()), tuple(n.get("ipv6") or ()))
            for n in d["nodes"]
        ),
        families=tuple(d.get("families") or ("ipv4",)),
        peers_wait=float(d.get("peersWait", 120.0)),
        finish_wait=float(d.get("finishWait", 60.0)),
        secret=bool(d.get("secret")),
        peer_plan={k: list(v) for k, v in (d.get("peerPlan") or {}).items()},
        run_id=str(d.get("runId") or ""),
        skipped={str(k): str(v) for k, v in (d.get("skippedNodes") or {}).items()},
    )


def encode_report(payload: dict[str, Any]) -> str:
    """An agent's report payload as stored in its ConfigMap (gzip + base64)."""
    return base64.b64encode(gzip.compress(json.dumps(payload).encode())).decode()


def decode_report(binary_data: dict[str, str]) -> dict[str, Any]:
    raw = gzip.decompress(base64.b64decode(binary_data[REPORT_KEY]))
    data: dict[str, Any] = json.loads(raw)
    return data
