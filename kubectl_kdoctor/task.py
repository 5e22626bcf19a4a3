"""A validated request to run one probe: what to load, how hard, where, and what passes.

The CLI (flags or a kdoctor task file) builds a ``Task``; the local runner, the job-mode
orchestrator and the kdoctor CR mode all consume the same object, so a flag means the same
thing everywhere.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from kubectl_kdoctor.engine.spec import DnsSpec, HttpSpec, Load, secret_header_names
from kubectl_kdoctor.errors import InputError

NETREACH = "NetReach"
HTTP = "AppHttpHealthy"
DNS = "Netdns"
KINDS = (NETREACH, HTTP, DNS)
COMMAND_OF_KIND = {NETREACH: "netreach", HTTP: "http", DNS: "dns"}

NETREACH_PATHS = ("pod", "clusterip", "nodeport", "loadbalancer", "ingress", "multus")
DEFAULT_NETREACH_PATHS = ("pod", "clusterip", "nodeport")
IP_FAMILIES = ("ipv4", "ipv6", "dual")
OUTPUTS = ("table", "wide", "json", "yaml", "junit", "html")
MODES = ("auto", "crd", "job")
PULL_POLICIES = ("Always", "IfNotPresent", "Never")

DEFAULT_CLUSTER_DOMAIN = "kubernetes.default.svc.cluster.local"

# Upper bounds of the load flags (and of the same fields in -f task files): far above any
# sensible run, low enough that no number overflows or plans an endless run.
MAX_QPS = 1_000_000  # per agent and target: far above what one agent can send
MAX_ROUNDS = 10_000
MAX_DURATION = 24 * 3600.0  # one round's --duration, and --interval (use --rounds for longer)
MAX_TIMEOUT = 3600.0  # --timeout, --start-timeout, --request-timeout

MAX_TOTAL_QPS = 20_000  # requests/s over every agent and target; above needs --force


def guard_load(qps: int, agents: int, per_agent: int, duration: float, force: bool) -> int:
    """The total request rate of a run; InputError above MAX_TOTAL_QPS without --force, so a
    typo cannot flood a production cluster (job mode) or spin this machine (``--local``)."""
    total = qps * agents * per_agent
    if total > MAX_TOTAL_QPS and not force:
        if agents == 1 and per_agent == 1:
            what, fix = f"{qps:,} requests/s", "lower --qps or add --force"
        else:
            what = (
                f"total load {qps} qps x {agents} agents x {per_agent} targets = "
                f"{total:,} requests/s"
            )
            fix = "lower --qps, sample with --peers, or add --force"
        raise InputError(f"{what} is above {MAX_TOTAL_QPS:,}/s; {fix}", "--qps")
    return total


@dataclasses.dataclass(frozen=True)
class Access:
    """Kubernetes access flags, as kubectl takes them."""

    kubeconfig: str | None = None
    context: str | None = None
    cluster: str | None = None
    user: str | None = None
    namespace: str | None = None
    request_timeout: float | None = None
    as_user: str | None = None
    as_groups: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class Expect:
    """What makes a target pass (SPEC: Verdicts)."""

    success_rate: float = 1.0
    mean_delay: float | None = None  # seconds
    p99: float | None = None  # seconds
    all_nodes: bool = False  # --require-all-nodes: a skipped node fails the run


@dataclasses.dataclass(frozen=True)
class Toleration:
    operator: str = "Exists"  # Exists | Equal
    key: str | None = None
    value: str | None = None
    effect: str | None = None

    def to_k8s(self) -> dict[str, str]:
        out = {"operator": self.operator}
        if self.key:
            out["key"] = self.key
        if self.value is not None:
            out["value"] = self.value
        if self.effect:
            out["effect"] = self.effect
        return out


@dataclasses.dataclass(frozen=True)
class Placement:
    nodes: tuple[str, ...] = ()
    node_selector: str | None = None
    tolerations: tuple[Toleration, ...] = ()
    host_network: bool = False


@dataclasses.dataclass(frozen=True)
class NetReachTargets:
    paths: tuple[str, ...] = DEFAULT_NETREACH_PATHS
    ip_family: str | None = None  # None: what the cluster has
    ingress_class: str | None = None
    peers: int = 0  # 0 = full mesh
    networks: str | None = None  # multus: the k8s.v1.cni.cncf.io/networks request for agents


@dataclasses.dataclass(frozen=True)
class RunControl:
    name: str | None = None
    image: str | None = None
    image_pull_policy: str | None = None
    start_timeout: float = 120.0
    keep: bool = False
    no_wait: bool = False
    dry_run: bool = False
    output: str = "table"
    mode: str = "auto"
    local: bool = False
    force: bool = False


@dataclasses.dataclass(frozen=True)
class Task:
    """One probe: kind, load plan, expectations and the kind's own target."""

    kind: str
    load: Load
    expect: Expect = Expect()
    rounds: int = 1
    interval: float = 0.0  # seconds between round starts (0: back to back)
    http: HttpSpec | None = None
    dns: DnsSpec | None = None  # server "" = the cluster DNS Service
    netreach: NetReachTargets | None = None

    @property
    def command(self) -> str:
        return COMMAND_OF_KIND[self.kind]

    @property
    def secret_headers(self) -> tuple[str, ...]:
        """Names of the headers whose values are secret: all but a few harmless ones."""
        return secret_header_names(self.http.headers) if self.http else ()


@dataclasses.dataclass(frozen=True)
class Invocation:
    """Everything one netreach/http/dns command was asked to do, validated."""

    task: Task
    placement: Placement
    control: RunControl
    access: Access
    file_notes: tuple[str, ...] = ()  # task-file fields that have no meaning here
    given: frozenset[str] = frozenset()  # flags given on the command line, e.g. "--qps"
    document: dict[str, Any] | None = None  # the -f task file, as read
