"""kdoctor task manifests as -f files: every mapped field, and the ignored ones named."""

from __future__ import annotations

from kubectl_kdoctor.cli.build import build
from kubectl_kdoctor.manifest import from_document

SEED = {
    "apiVersion": "kdoctor.io/v1beta1",
    "kind": "NetReach",
    "metadata": {"name": "mesh-check"},
    "spec": {
        "schedule": {"schedule": "0 1", "roundNumber": 2, "roundTimeoutMinute": 1},
        "request": {"durationInSecond": 10, "qps": 10, "perRequestTimeoutInMS": 1500},
        "expect": {"successRate": 1, "meanAccessDelayInMs": 1500},
        "target": {
            "endpoint": True,
            "clusterIP": True,
            "nodePort": False,
            "ipv4": True,
            "ipv6": True,
        },
        "agentSpec": {
            "hostNetwork": False,
            "kind": "DaemonSet",
            "affinity": {
                "nodeAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": {
                        "nodeSelectorTerms": [
                            {
                                "matchExpressions": [
                                    {
                                        "key": "kubernetes.io/hostname",
                                        "operator": "In",
                                        "values": ["n1", "n2"],
                                    }
                                ]
                            }
                        ]
                    }
                }
            },
        },
    },
}


def test_netreach_file_maps_fields() -> None:
    lt = from_document(SEED, "NetReach")
    t = lt.task
    assert t.load.qps == 10 and t.load.duration == 10 and t.load.timeout == 1.5
    assert t.rounds == 2 and t.interval == 60
    assert t.expect.success_rate == 1 and t.expect.mean_delay == 1.5
    assert (
        t.netreach is not None
        and t.netreach.paths == ("pod", "clusterip")
        and t.netreach.ip_family == "dual"
    )
    assert lt.placement.nodes == ("n1", "n2")
    assert any("agentSpec.kind" in i for i in lt.ignored)
    assert any("roundTimeoutMinute" in i for i in lt.ignored)


def test_flags_override_the_file(tmp_path) -> None:
    import yaml

    f = tmp_path / "nr.yaml"
    f.write_text(yaml.safe_dump(SEED))
    inv = build("NetReach", {"file": str(f), "qps": "5", "targets": "pod"})
    assert inv.task.load.qps == 5 and inv.task.load.duration == 10
    assert inv.task.netreach is not None and inv.task.netreach.paths == ("pod",)


def test_http_and_dns_files() -> None:
    http = from_document(
        {
            "apiVersion": "kdoctor.io/v1beta1",
            "kind": "AppHttpHealthy",
            "metadata": {"name": "a"},
            "spec": {
                "target": {
                    "host": "my-svc.ns:8080/x",
                    "method": "PUT",
                    "header": ["X-A: 1"],
                    "bodyConfigmapName": "b",
                    "bodyConfigmapNamespace": "ns",
                },
                "expect": {"statusCode": 204},
            },
        },
        "AppHttpHealthy",
    )
    assert http.task.http is not None and http.task.http.url == "http://my-svc.ns:8080/x"
    assert http.task.http.method == "PUT" and http.task.http.headers == (("X-A", "1"),)
    assert http.task.http.expect_status(204) and not http.task.http.expect_status(200)
    assert any("bodyConfigmapName" in i for i in http.ignored)
    dns = from_document(
        {
            "apiVersion": "kdoctor.io/v1beta1",
            "kind": "Netdns",
            "metadata": {"name": "d"},
            "spec": {
                "target": {"targetUser": {"server": "10.0.0.10", "port": 5353}},
                "request": {"domain": "example.org", "protocol": "tcp-tls"},
            },
        },
        "Netdns",
    )
    assert dns.task.dns is not None
    assert (dns.task.dns.server, dns.task.dns.port, dns.task.dns.protocol, dns.task.dns.domain) == (
        "10.0.0.10",
        5353,
        "tls",
        "example.org.",
    )
