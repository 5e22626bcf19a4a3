"""kdoctor task manifests (NetReach, AppHttpHealthy, Netdns) as ``Task``s, for ``-f FILE``.

Every field that has a meaning without a kdoctor controller is mapped; the others are
named in ``LoadedTask.ignored`` so the CLI can say what it did not use.

A task file is untrusted input: a regular file of at most 1 MiB, UTF-8, YAML without
anchors, aliases (an alias bomb grows to gigabytes) or duplicate keys, nested at most
``MAX_DEPTH`` deep; then checked against kdoctor's CRD schema (``taskschema``: unknown
fields, types, ranges, finiteness) before any field is read.
"""

from __future__ import annotations

import codecs
import dataclasses
import re
from collections.abc import Mapping
from typing import Any

import yaml

from kubectl_kdoctor import validate as v
from kubectl_kdoctor.engine.spec import DnsSpec, HttpSpec, Load, StatusExpectation
from kubectl_kdoctor.errors import InputError
from kubectl_kdoctor.task import (
    COMMAND_OF_KIND,
    DEFAULT_CLUSTER_DOMAIN,
    DNS,
    HTTP,
    KINDS,
    MAX_DURATION,
    MAX_QPS,
    MAX_ROUNDS,
    MAX_TIMEOUT,
    NETREACH,
    Expect,
    NetReachTargets,
    Placement,
    Task,
)
from kubectl_kdoctor.taskschema import SchemaError, check_document

FLAG = "--filename"
GROUP = "kdoctor.io/v1beta1"
MAX_FILE_BYTES = 1024 * 1024
MAX_HEADERS = 100
MAX_DEPTH = 64  # nested mappings/lists: a kdoctor task needs about 12


class _Refused(yaml.MarkedYAMLError):
    pass


class _StrictLoader(yaml.SafeLoader):
    """``SafeLoader`` that refuses anchors and aliases, duplicate keys and deep nesting."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        event: Any = self.peek_event()  # type: ignore[no-untyped-call]
        mark: Any = event.start_mark
        if isinstance(event, yaml.AliasEvent):
            raise _Refused(
                problem=f"YAML aliases (*{event.anchor}) are not accepted", problem_mark=mark
            )
        anchor = getattr(event, "anchor", None)
        if anchor is not None:
            raise _Refused(
                problem=f"YAML anchors (&{anchor}) are not accepted",
                problem_mark=event.start_mark,
            )
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise _Refused(
                    problem=f"nested more than {MAX_DEPTH} levels deep",
                    problem_mark=event.start_mark,
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        seen: set[str] = set()
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode):
                if key_node.value == "<<" and key_node.tag == "tag:yaml.org,2002:merge":
                    raise _Refused(
                        problem="YAML merge keys (<<) are not accepted",
                        problem_mark=key_node.start_mark,
                    )
                if key_node.value in seen:
                    raise _Refused(
                        problem=f"duplicate key {key_node.value!r}",
                        problem_mark=key_node.start_mark,
                    )
                seen.add(key_node.value)
        return super().construct_mapping(node, deep=deep)


def _decode(data: bytes, path: str) -> str:
    """UTF-8 text (a UTF-8 BOM is dropped); UTF-16/32 and other encodings named."""
    for bom, name in (
        (codecs.BOM_UTF32_LE, "UTF-32"),
        (codecs.BOM_UTF32_BE, "UTF-32"),
        (codecs.BOM_UTF16_LE, "UTF-16"),
        (codecs.BOM_UTF16_BE, "UTF-16"),
    ):
        if data.startswith(bom):
            raise InputError(f"{path} is {name} text; save it as UTF-8", FLAG)
    if b"\x00" in data:
        raise InputError(
            f"{path} holds NUL bytes (UTF-16 text, or not text); save it as UTF-8", FLAG
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise InputError(
            f"{path} is not UTF-8 text (byte 0x{data[exc.start]:02x} on line {line}; "
            "Latin-1?); save it as UTF-8",
            FLAG,
        ) from None
    return text.removeprefix("\ufeff")


def parse_task_yaml(text: str, path: str) -> list[Any]:
    """The non-empty YAML documents of ``text``, loaded strictly (see ``_StrictLoader``)."""
    try:
        return [d for d in yaml.load_all(text, Loader=_StrictLoader) if d is not None]
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        problem = getattr(exc, "problem", None)
        why = f": {problem}" if problem else ""
        raise InputError(f"{path} is not valid YAML{where}{why}", FLAG) from None
    except RecursionError:
        raise InputError(f"{path}: nested too deeply", FLAG) from None


@dataclasses.dataclass(frozen=True)
class LoadedTask:
    task: Task
    placement: Placement
    name: str | None
    ignored: tuple[str, ...]
    document: dict[str, Any]


def load_task_file(path: str, kind: str) -> LoadedTask:
    """Read ``path`` (``-`` for stdin is not supported) and map it; InputError on any problem."""
    if path == "-":
        raise InputError(
            "reading the task file from stdin ('-') is not supported; give a path", FLAG
        )
    data = v.read_file(path, FLAG, MAX_FILE_BYTES, "task file")
    docs = parse_task_yaml(_decode(data, path), path)
    if len(docs) != 1 or not isinstance(docs[0], dict):
        raise InputError(f"{path} must hold exactly one {kind} object", FLAG)
    return from_document(docs[0], kind, path)


def from_document(doc: Mapping[str, Any], kind: str, path: str = "the task file") -> LoadedTask:
    got = doc.get("kind")
    if not isinstance(got, str) or got not in KINDS:
        raise InputError(
            f"{path}: kind must be NetReach, AppHttpHealthy or Netdns (got {got!r})", FLAG
        )
    if got != kind:
        raise InputError(
            f"{path} holds a {got}; use 'kubectl kdoctor {COMMAND_OF_KIND[got]} -f'", FLAG
        )
    api = doc.get("apiVersion")
    if api != GROUP:
        raise InputError(f"{path}: apiVersion must be {GROUP} (got {api!r})", FLAG)
    spec = doc.get("spec")
    if spec is None:
        raise InputError(f"{path}: spec is missing", FLAG)
    if not isinstance(spec, Mapping):
        raise InputError(f"{path}: spec must be a mapping (got {type(spec).__name__})", FLAG)
    try:
        check_document(dict(doc), kind)
    except SchemaError as exc:
        raise InputError(f"{path}: {exc}", FLAG) from None
    name = (doc.get("metadata") or {}).get("name")
    ignored: list[str] = []
    m = _Mapper(path, spec, ignored)
    load, rounds, interval = m.schedule_and_request(kind)
    expect = m.expect(kind)
    placement = m.agent_spec()
    if kind == NETREACH:
        task = Task(NETREACH, load, expect, rounds, interval, netreach=m.netreach())
    elif kind == HTTP:
        http, status = m.http()
        task = Task(HTTP, load, expect, rounds, interval, http=http)
        if status is not None:
            task = dataclasses.replace(task, http=dataclasses.replace(http, expect_status=status))
    else:
        task = Task(DNS, load, expect, rounds, interval, dns=m.dns())
    return LoadedTask(task, placement, name, tuple(ignored), dict(doc))


class _Mapper:
    def __init__(self, path: str, spec: Mapping[str, Any], ignored: list[str]) -> None:
        self.path, self.spec, self.ignored = path, spec, ignored

    def bad(self, field: str, expected: str) -> InputError:
        return InputError(f"{self.path}: spec.{field} must be {expected}", FLAG)

    def flag(self, field: str) -> str:
        """The "flag" a validator names for a field: ``--filename: FILE: spec.FIELD``."""
        return f"{FLAG}: {self.path}: spec.{field}"

    def num(
        self,
        block: Mapping[str, Any],
        key: str,
        field: str,
        minimum: float = 1,
        maximum: float | None = None,
    ) -> float | None:
        if key not in block or block[key] is None:
            return None
        val = block[key]
        if isinstance(val, bool) or not isinstance(val, (int, float)) or val < minimum:
            raise self.bad(field, f"a number >= {minimum:g}")
        if maximum is not None and val > maximum:
            raise self.bad(field, f"at most {maximum:,.0f} here (got {val})")
        return float(val)

    def schedule_and_request(self, kind: str) -> tuple[Load, int, float]:
        req = self.spec.get("request") or {}
        qps = self.num(req, "qps", "request.qps", maximum=MAX_QPS)
        dur = self.num(req, "durationInSecond", "request.durationInSecond", maximum=MAX_DURATION)
        tmo = self.num(
            req,
            "perRequestTimeoutInMS",
            "request.perRequestTimeoutInMS",
            maximum=MAX_TIMEOUT * 1000,
        )
        load = Load(
            qps=int(qps) if qps else 10,
            duration=dur if dur else 10.0,
            timeout=tmo / 1000 if tmo else 1.0,
        )
        sched = self.spec.get("schedule") or {}
        rounds_f = self.num(
            sched, "roundNumber", "schedule.roundNumber", minimum=-1, maximum=MAX_ROUNDS
        )
        rounds = int(rounds_f) if rounds_f is not None else 1
        if rounds <= 0:
            raise self.bad(
                "schedule.roundNumber", "at least 1 here (infinite tasks need --mode crd)"
            )
        interval = 0.0
        text = sched.get("schedule")
        if text is not None:
            fields = str(text).split(" ")
            if re.fullmatch(r"[0-9]{1,6} [0-9]{1,6}", str(text)):
                if int(fields[0]):
                    self.ignored.append(f"schedule.schedule start delay ({fields[0]} min)")
                if rounds > 1:
                    interval = int(fields[1]) * 60.0
                    if interval > MAX_DURATION:
                        raise self.bad(
                            "schedule.schedule", f"an interval of at most {MAX_DURATION / 60:g} min"
                        )
            elif len(fields) == 5 and all(f and f.isascii() and f.isprintable() for f in fields):
                self.ignored.append("schedule.schedule (cron: rounds run back to back here)")
            else:
                raise self.bad("schedule.schedule", "'M N' (two integers) or a 5-field cron line")
        if "roundTimeoutMinute" in sched:
            self.ignored.append("schedule.roundTimeoutMinute")
        return load, rounds, interval

    def expect(self, kind: str) -> Expect:
        exp = self.spec.get("expect") or {}
        rate = exp.get("successRate", 1.0)
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate <= 1:
            raise self.bad("expect.successRate", "a number from 0 to 1")
        mean = self.num(exp, "meanAccessDelayInMs", "expect.meanAccessDelayInMs")
        if "statusCode" in exp and kind != HTTP:
            self.ignored.append("expect.statusCode (kdoctor ignores it for this kind too)")
        return Expect(float(rate), mean / 1000 if mean else None, None)

    def agent_spec(self) -> Placement:
        agent = self.spec.get("agentSpec") or {}
        for key in (
            "annotation",
            "kind",
            "deploymentReplicas",
            "env",
            "resources",
            "terminationGracePeriodMinutes",
        ):
            if key in agent:
                self.ignored.append(f"agentSpec.{key}")
        nodes: tuple[str, ...] = ()
        selector = None
        affinity = agent.get("affinity")
        if affinity:
            nodes, selector = _affinity_nodes(affinity)
            field = "agentSpec.affinity.nodeAffinity"
            nodes = tuple(v.node_name(n, self.flag(field)) for n in nodes)
            if selector is not None:
                selector = v.selector(selector, self.flag(field))
            if not nodes and not selector:
                self.ignored.append(
                    "agentSpec.affinity (only required node affinity on labels is used)"
                )
        return Placement(
            nodes=nodes, node_selector=selector, host_network=bool(agent.get("hostNetwork"))
        )

    def netreach(self) -> NetReachTargets:
        t = self.spec.get("target") or {}
        paths = []
        for key, path, default in (
            ("endpoint", "pod", True),
            ("clusterIP", "clusterip", True),
            ("nodePort", "nodeport", True),
            ("loadBalancer", "loadbalancer", False),
            ("ingress", "ingress", False),
        ):
            if t.get(key, default):
                paths.append(path)
        if t.get("multusInterface"):
            paths.append("multus")
        if not paths:
            raise self.bad(
                "target",
                "enabling at least one of endpoint, clusterIP, nodePort, loadBalancer, ingress",
            )
        v4, v6 = t.get("ipv4", True), t.get("ipv6", False)
        family = "dual" if v4 and v6 else "ipv6" if v6 else "ipv4"
        if "enableLatencyMetric" in t:
            self.ignored.append(
                "target.enableLatencyMetric (latency percentiles are always measured)"
            )
        return NetReachTargets(paths=tuple(paths), ip_family=family)

    def http(self) -> tuple[HttpSpec, StatusExpectation | None]:
        t = self.spec.get("target") or {}
        host = t.get("host")
        if not host or not isinstance(host, str):
            raise self.bad("target.host", "a URL")
        if "://" not in host:  # kdoctor's rule: no scheme means http://
            host = "http://" + host
        url = v.url(host, self.flag("target.host"))
        method = str(t.get("method") or "GET").upper()
        if method not in ("GET", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "HEAD"):
            raise self.bad("target.method", "GET, POST, PUT, DELETE, OPTIONS, PATCH or HEAD")
        headers = []
        if len(t.get("header") or []) > MAX_HEADERS:
            raise self.bad("target.header", f"at most {MAX_HEADERS} headers")
        for i, h in enumerate(t.get("header") or []):
            headers.append(v.header(str(h), self.flag(f"target.header[{i}]")))
        for key in (
            "bodyConfigmapName",
            "bodyConfigmapNamespace",
            "tlsSecretName",
            "tlsSecretNamespace",
        ):
            if t.get(key):
                self.ignored.append(
                    f"target.{key} (give --data-file / --cacert --cert --key instead)"
                )
        if "enableLatencyMetric" in t:
            self.ignored.append(
                "target.enableLatencyMetric (latency percentiles are always measured)"
            )
        status = None
        code = (self.spec.get("expect") or {}).get("statusCode")
        if code is not None:
            if not isinstance(code, int) or not 100 <= code <= 599:
                raise self.bad("expect.statusCode", "an integer from 100 to 599")
            status = StatusExpectation(codes=(code,), classes=())
        return HttpSpec(
            url=url, method=method, headers=tuple(headers), http2=bool(t.get("http2"))
        ), status

    def dns(self) -> DnsSpec:
        t = self.spec.get("target") or {}
        req = self.spec.get("request") or {}
        user, cluster = t.get("targetUser"), t.get("targetDns")
        if user and cluster:
            raise self.bad("target", "either targetUser or targetDns, not both")
        proto = str(req.get("protocol") or "udp")
        protocol = {"udp": "udp", "tcp": "tcp", "tcp-tls": "tls"}.get(proto)
        if protocol is None:
            raise self.bad("request.protocol", "udp, tcp or tcp-tls")
        domain = v.domain(
            str(req.get("domain") or DEFAULT_CLUSTER_DOMAIN), self.flag("request.domain")
        )
        server, port, qtype = "", 53, "A"
        if user:
            server = str(user.get("server") or "")
            if not server:
                raise self.bad("target.targetUser.server", "a DNS server address")
            port = int(user.get("port") or 53)
            if not 0 < port < 65536:
                raise self.bad("target.targetUser.port", f"a port from 1 to 65535 (got {port})")
            server, port = v.server(
                f"[{server}]:{port}" if ":" in server else f"{server}:{port}",
                53,
                self.flag("target.targetUser.server"),
            )
            qtype = "A" if "." in server and server.replace(".", "").isdigit() else "AAAA"
        elif cluster:
            if cluster.get("serviceName"):
                self.ignored.append(
                    "target.targetDns.serviceName (the cluster DNS Service is used)"
                )
            if cluster.get("testIPv6") and not cluster.get("testIPv4", True):
                qtype = "AAAA"
        if "sourceAgentNodeSelector" in self.spec:
            self.ignored.append("sourceAgentNodeSelector (kdoctor never used it)")
        if "enableLatencyMetric" in t:
            self.ignored.append(
                "target.enableLatencyMetric (latency percentiles are always measured)"
            )
        return DnsSpec(server=server, domain=domain, port=port, protocol=protocol, qtype=qtype)


def _affinity_nodes(affinity: Mapping[str, Any]) -> tuple[tuple[str, ...], str | None]:
    """Nodes or a selector from required node affinity (one term, In/NotIn/Exists)."""
    terms = (
        (affinity.get("nodeAffinity") or {}).get("requiredDuringSchedulingIgnoredDuringExecution")
        or {}
    ).get("nodeSelectorTerms") or []
    if len(terms) != 1:
        return (), None
    reqs = terms[0].get("matchExpressions") or []
    parts: list[str] = []
    for r in reqs:
        key, op, values = r.get("key"), r.get("operator"), r.get("values") or []
        if key == "kubernetes.io/hostname" and op == "In" and len(reqs) == 1:
            return tuple(values), None
        if op == "In":
            parts.append(f"{key} in ({','.join(values)})")
        elif op == "NotIn":
            parts.append(f"{key} notin ({','.join(values)})")
        elif op == "Exists":
            parts.append(str(key))
        elif op == "DoesNotExist":
            parts.append(f"!{key}")
        else:
            return (), None
    return (), ",".join(parts) or None
