"""A ``Task`` as the spec of the matching kdoctor task kind (NetReach, AppHttpHealthy,
Netdns): used for the report's ``task.spec`` and, in crd mode, for the CR itself. Secret
header values are shown as ``<redacted>`` (crd mode refuses them: ``crdmode``)."""

from __future__ import annotations

import math
from typing import Any

from kubectl_kdoctor.engine.spec import REDACTED, secret_header, without_userinfo
from kubectl_kdoctor.task import DNS, HTTP, NETREACH, Task


def kdoctor_spec(task: Task) -> dict[str, Any]:
    """The kdoctor spec with every block explicit (kdoctor's admission needs that)."""
    rounds = task.rounds
    interval_min = max(1, math.ceil(task.interval / 60)) if task.interval else 1
    timeout_min = max(
        1, min(interval_min, math.ceil((task.load.duration + task.load.timeout + 30) / 60))
    )
    spec: dict[str, Any] = {
        "schedule": {
            "schedule": f"0 {max(interval_min, timeout_min)}",
            "roundNumber": rounds,
            "roundTimeoutMinute": timeout_min,
        },
        "request": {
            "durationInSecond": max(1, math.ceil(task.load.duration)),
            "qps": task.load.qps,
            "perRequestTimeoutInMS": max(1, round(task.load.timeout * 1000)),
        },
        "expect": {"successRate": task.expect.success_rate},
    }
    if task.expect.mean_delay is not None:
        spec["expect"]["meanAccessDelayInMs"] = max(1, math.ceil(task.expect.mean_delay * 1000))
    if task.kind == NETREACH:
        assert task.netreach is not None
        paths = set(task.netreach.paths)
        fam = task.netreach.ip_family or "ipv4"
        spec["target"] = {
            "endpoint": "pod" in paths or "multus" in paths,
            "clusterIP": "clusterip" in paths,
            "nodePort": "nodeport" in paths,
            "loadBalancer": "loadbalancer" in paths,
            "ingress": "ingress" in paths,
            "multusInterface": "multus" in paths,
            "ipv4": fam in ("ipv4", "dual"),
            "ipv6": fam in ("ipv6", "dual"),
            "enableLatencyMetric": True,
        }
    elif task.kind == HTTP:
        assert task.http is not None
        h = without_userinfo(task.http)
        target: dict[str, Any] = {
            "host": h.url,
            "method": h.method,
            "http2": h.http2,
            "enableLatencyMetric": True,
        }
        if h.headers:
            target["header"] = [
                f"{k}: {REDACTED if secret_header(k) else val}" for k, val in h.headers
            ]
        spec["target"] = target
        if (
            h.expect_status.codes
            and len(h.expect_status.codes) == 1
            and not h.expect_status.classes
        ):
            spec["expect"]["statusCode"] = h.expect_status.codes[0]
    elif task.kind == DNS:
        assert task.dns is not None
        d = task.dns
        spec["request"]["domain"] = d.domain.rstrip(".") if d.domain != "." else "."
        spec["request"]["protocol"] = {"tls": "tcp-tls"}.get(d.protocol, d.protocol)
        if d.server:
            spec["target"] = {
                "targetUser": {"server": d.server, "port": d.port},
                "enableLatencyMetric": True,
            }
        else:
            spec["target"] = {
                "targetDns": {"testIPv4": d.qtype != "AAAA", "testIPv6": d.qtype == "AAAA"},
                "enableLatencyMetric": True,
            }
    return spec
