"""The three probes: ``netreach``, ``http URL`` and ``dns [DOMAIN]``. Each parses and
validates (``build.py``) and hands one ``Invocation`` to ``run.execute``."""

from __future__ import annotations

from typing import Any

import click

from kubectl_kdoctor.cli.build import build
from kubectl_kdoctor.cli.options import (
    access_options,
    load_options,
    local_option,
    placement_options,
    run_options,
)
from kubectl_kdoctor.task import DNS, HTTP, NETREACH


def _execute(kind: str, params: dict[str, Any]) -> int:
    ctx = click.get_current_context()
    merged = dict(ctx.obj or {})
    merged.update({k: val for k, val in params.items() if val not in (None, ())})
    inv = build(kind, merged)
    from kubectl_kdoctor.run import execute
    from kubectl_kdoctor.ui import UI

    return execute(inv, UI(out=lambda s: click.echo(s, nl=False)))


@click.command(
    "netreach",
    short_help="Every node's agent reaches every other over pod IP, Services, Ingress, ...",
)
@click.option(
    "--targets",
    metavar="PATHS",
    help="Comma list of pod,clusterip,nodeport,loadbalancer,ingress,multus. [default: pod,clusterip,nodeport]",
)
@click.option(
    "--ip-family",
    metavar="ipv4|ipv6|dual",
    help="IP families to probe. [default: what the cluster has]",
)
@click.option("--ingress-class", metavar="CLASS", help="IngressClass of the Ingress path.")
@click.option(
    "--peers", metavar="K", help="Probe K peers per node instead of the full mesh (large clusters)."
)
@click.option(
    "--multus-networks",
    metavar="NET[,NET]",
    help="Secondary networks for the agents (k8s.v1.cni.cncf.io/networks), e.g. ns/macvlan-net.",
)
@load_options
@placement_options
@run_options
@access_options
def netreach(**params: Any) -> int:
    """Probe every selected node's agent from every other one over each enabled path and
    print the node x node x path matrix.

    \b
    Examples:
      kubectl kdoctor netreach
      kubectl kdoctor netreach --targets pod,clusterip,nodeport --ip-family dual -o wide
      kubectl kdoctor netreach --node-selector pool=edge --qps 20 --expect-p99 50ms
    """
    return _execute(NETREACH, params)


@click.command("http", short_help="Load one HTTP(S) URL from agents on the selected nodes.")
@click.argument("url", required=False)
@click.option(
    "-X", "--method", metavar="METHOD", help="HTTP method. [default: GET, or POST with a body]"
)
@click.option(
    "-H",
    "--header",
    "headers",
    metavar="'K: V'",
    multiple=True,
    help="Request header (repeatable).",
)
@click.option("-d", "--data", metavar="BODY", help="Request body.")
@click.option("--data-file", metavar="FILE", help="Request body from a file.")
@click.option("--cacert", metavar="FILE", help="CA certificate(s) to verify the server with.")
@click.option("--cert", metavar="FILE", help="Client certificate (PEM), with --key.")
@click.option("--key", metavar="FILE", help="Client private key (PEM), with --cert.")
@click.option(
    "-k", "--insecure", is_flag=True, default=None, help="Do not verify the server certificate."
)
@click.option("--http2", is_flag=True, default=None, help="Use HTTP/2 (negotiated over TLS).")
@click.option(
    "--expect-status",
    metavar="CODE|CLASS",
    help="Expected status, e.g. 200 or 2xx. [default: 2xx or 3xx]",
)
@local_option
@load_options
@placement_options
@run_options
@access_options
def http(**params: Any) -> int:
    """Send constant-rate HTTP(S) load to URL and judge success rate and latency.

    \b
    Examples:
      kubectl kdoctor http --local https://example.internal/healthz --qps 200 --duration 5s
      kubectl kdoctor http http://my-svc.my-ns:8080/ --qps 50 --expect-p99 100ms
      kubectl kdoctor http https://api.my-ns/ -H 'Authorization: Bearer $T' --cacert ca.pem
    """
    return _execute(HTTP, params)


@click.command("dns", short_help="Query a DNS server (default: the cluster DNS) under load.")
@click.argument("domain", required=False)
@click.option(
    "--server", metavar="HOST[:PORT]", help="DNS server. [default: the cluster DNS Service]"
)
@click.option("--protocol", metavar="udp|tcp|tls", help="Transport. [default: udp]")
@click.option(
    "--qtype", metavar="TYPE", help="A, AAAA, CNAME, SRV, TXT, MX, NS, PTR or SOA. [default: A]"
)
@click.option("--expect-rcode", metavar="NAME", help="Expected response code. [default: NOERROR]")
@click.option(
    "--cacert", metavar="FILE", help="DNS over TLS: CA certificate(s) to verify the server with."
)
@click.option(
    "--tls-server-name",
    metavar="NAME",
    help="DNS over TLS: name the server certificate must be valid for. [default: the server]",
)
@click.option(
    "-k",
    "--insecure",
    is_flag=True,
    default=None,
    help="DNS over TLS: do not verify the server certificate.",
)
@click.option(
    "--tc-fallback",
    is_flag=True,
    default=None,
    help="Retry a truncated (TC=1) UDP reply over TCP, as a resolver does, and count that "
    "answer. [default: a truncated reply is a failure, 'truncated (TC)']",
)
@local_option
@load_options
@placement_options
@run_options
@access_options
def dns(**params: Any) -> int:
    """Send constant-rate DNS queries for DOMAIN and judge rcode, success rate and latency.

    DOMAIN defaults to kubernetes.default.svc.cluster.local in a cluster.

    \b
    Examples:
      kubectl kdoctor dns --local example.org --server 127.0.0.1 --qps 1000
      kubectl kdoctor dns kubernetes.default.svc.cluster.local --protocol tcp
      kubectl kdoctor dns example.org --server 10.0.0.53 --protocol tls --cacert ca.pem
    """
    return _execute(DNS, params)
