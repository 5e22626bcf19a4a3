"""Turn a command's raw parameters (and an optional ``-f`` task file) into a validated
``Task``, ``Placement``, ``RunControl`` and ``Access``. Every check happens here, before
anything touches a cluster; each failure is an ``InputError`` naming the flag."""

from __future__ import annotations

import dataclasses
import ipaddress
import os
from typing import Any

from kubectl_kdoctor import validate as v
from kubectl_kdoctor.engine.spec import DnsSpec, HttpSpec, Load, split_userinfo
from kubectl_kdoctor.errors import InputError
from kubectl_kdoctor.task import (
    DEFAULT_CLUSTER_DOMAIN,
    DNS,
    HTTP,
    IP_FAMILIES,
    MAX_DURATION,
    MAX_QPS,
    MAX_ROUNDS,
    MAX_TIMEOUT,
    MODES,
    NETREACH,
    NETREACH_PATHS,
    OUTPUTS,
    PULL_POLICIES,
    Access,
    Expect,
    Invocation,
    NetReachTargets,
    Placement,
    RunControl,
    Task,
)

FLAG_OF = {
    "nodes": "--node",
    "tolerations": "--tolerate",
    "headers": "--header",
    "file": "--filename",
    "as_user": "--as",
    "as_groups": "--as-group",
}

CLUSTER_ONLY = {
    "nodes": "--node",
    "require_all_nodes": "--require-all-nodes",
    "node_selector": "--node-selector",
    "tolerations": "--tolerate",
    "host_network": "--host-network",
    "mode": "--mode",
    "name": "--name",
    "image": "--image",
    "image_pull_policy": "--image-pull-policy",
    "start_timeout": "--start-timeout",
    "keep": "--keep",
    "no_wait": "--no-wait",
    "dry_run": "--dry-run",
}


MAX_HEADERS = 100
MAX_BODY_CLUSTER = 768 * 1024  # --data-file: the run's Secret holds it (1 MiB per object)
MAX_BODY_LOCAL = 64 * 1024 * 1024
MAX_SECRET_PAYLOAD = 900 * 1024  # body + CA + client certificate and key, in one Secret


def access(p: dict[str, Any]) -> Access:
    timeout = None
    if p.get("request_timeout") is not None:
        timeout = (
            v.duration(
                p["request_timeout"], "--request-timeout", allow_zero=True, maximum=MAX_TIMEOUT
            )
            or None
        )
    kubeconfig = p.get("kubeconfig")
    if kubeconfig is not None:
        v.regular_file(kubeconfig, "--kubeconfig")
    if p.get("namespace") is not None:
        v.namespace(p["namespace"], "--namespace")
    for key, flag in (("context", "--context"), ("cluster", "--cluster"), ("user", "--user")):
        if p.get(key) is not None:
            v.plain_text(p[key], flag)
    if p.get("as_user") is not None:
        v.plain_text(p["as_user"], "--as", header_safe=True)
    for g in p.get("as_groups") or ():
        v.plain_text(g, "--as-group", header_safe=True)
    groups = tuple(p.get("as_groups") or ())
    if groups and not p.get("as_user"):
        raise InputError("needs --as (a user to impersonate)", "--as-group")
    if len(groups) > 1:
        raise InputError("give at most one --as-group", "--as-group")
    return Access(
        kubeconfig=kubeconfig,
        context=p.get("context"),
        cluster=p.get("cluster"),
        user=p.get("user"),
        namespace=p.get("namespace"),
        request_timeout=timeout,
        as_user=p.get("as_user"),
        as_groups=groups,
    )


def _given(p: dict[str, Any], key: str) -> bool:
    value = p.get(key)
    return value is not None and value != () and value is not False


def build(kind: str, p: dict[str, Any]) -> Invocation:
    """Validate everything for one of netreach/http/dns. ``p`` holds click's raw values."""
    base: Task | None = None
    notes: tuple[str, ...] = ()
    document: dict[str, Any] | None = None
    file_placement: Placement | None = None
    file_name: str | None = None
    if p.get("file"):
        from kubectl_kdoctor.manifest import load_task_file

        loaded = load_task_file(p["file"], kind)
        base, file_placement, notes = loaded.task, loaded.placement, loaded.ignored
        document, file_name = loaded.document, loaded.name
    local = bool(p.get("local"))
    # The file's metadata.name names the run in a cluster (unless --name is given); with
    # --local nothing is named, so a real kdoctor manifest runs as it is.
    if file_name is not None and not local and p.get("name") is None:
        v.run_name(file_name, f"--filename: {p['file']}: metadata.name (or give --name)")
    else:
        file_name = None

    if local:
        for key, flag in CLUSTER_ONLY.items():
            if _given(p, key):
                raise InputError("cannot be used with --local (it needs a cluster)", flag)

    # --- load and verdict -------------------------------------------------------------
    bl = base.load if base else Load(qps=10, duration=10.0, timeout=1.0)
    qps = v.positive_int(p["qps"], "--qps", maximum=MAX_QPS) if p.get("qps") is not None else bl.qps
    duration = (
        v.duration(p["duration"], "--duration", maximum=MAX_DURATION)
        if p.get("duration") is not None
        else bl.duration
    )
    timeout = (
        v.duration(p["timeout"], "--timeout", maximum=MAX_TIMEOUT)
        if p.get("timeout") is not None
        else bl.timeout
    )
    load = Load(qps=qps, duration=duration, timeout=timeout)
    if load.planned < 1:
        flag = "--duration" if p.get("duration") is not None else "--qps"
        raise InputError(
            f"{p.get('duration') or f'{duration:g}s'} at --qps {qps} sends no request; "
            "give a longer --duration or a higher --qps",
            flag,
        )
    rounds = (
        v.positive_int(p["rounds"], "--rounds", maximum=MAX_ROUNDS)
        if p.get("rounds") is not None
        else (base.rounds if base else 1)
    )
    interval = (
        v.duration(p["interval"], "--interval", allow_zero=True, maximum=MAX_DURATION)
        if p.get("interval") is not None
        else (base.interval if base else 0.0)
    )
    if p.get("interval") is not None and rounds == 1:
        raise InputError("needs --rounds greater than 1", "--interval")
    if interval and interval < duration:
        raise InputError(
            f"must be at least --duration ({p.get('duration') or duration}s): rounds never overlap",
            "--interval",
        )
    be = base.expect if base else Expect()
    expect = Expect(
        success_rate=v.success_rate(p["expect_success_rate"])
        if p.get("expect_success_rate") is not None
        else be.success_rate,
        mean_delay=v.duration(p["expect_mean_delay"], "--expect-mean-delay")
        if p.get("expect_mean_delay") is not None
        else be.mean_delay,
        p99=v.duration(p["expect_p99"], "--expect-p99")
        if p.get("expect_p99") is not None
        else be.p99,
        all_nodes=bool(p.get("require_all_nodes")) or be.all_nodes,
    )

    # --- the kind's target -------------------------------------------------------------
    task: Task
    if kind == HTTP:
        task = Task(HTTP, load, expect, rounds, interval, http=_http(p, base, local))
    elif kind == DNS:
        task = Task(DNS, load, expect, rounds, interval, dns=_dns(p, base, local))
    else:
        task = Task(NETREACH, load, expect, rounds, interval, netreach=_netreach(p, base))

    # --- placement and run control ------------------------------------------------------
    fp = file_placement or Placement()
    placement = Placement(
        nodes=tuple(dict.fromkeys(v.node_name(n) for n in p.get("nodes") or ())) or fp.nodes,
        node_selector=v.selector(p["node_selector"])
        if p.get("node_selector") is not None
        else fp.node_selector,
        tolerations=tuple(v.toleration(t) for t in p.get("tolerations") or ()) or fp.tolerations,
        host_network=bool(p.get("host_network")) or fp.host_network,
    )
    if file_name is not None:
        p = {**p, "name": file_name}
    control = run_control(p, local)
    if control.dry_run and control.no_wait:
        raise InputError(
            "--no-wait has no meaning with --dry-run (nothing is created)", "--dry-run"
        )
    if control.dry_run and control.keep:
        raise InputError("--keep has no meaning with --dry-run (nothing is created)", "--dry-run")
    given = frozenset(
        FLAG_OF.get(k, "--" + k.replace("_", "-")) for k, val in p.items() if _given(p, k)
    )
    return Invocation(task, placement, control, access(p), notes, given, document)


def run_control(p: dict[str, Any], local: bool) -> RunControl:
    output = p.get("output") or "table"
    if output not in OUTPUTS:
        raise InputError(f"must be one of {', '.join(OUTPUTS)} (got {output!r})", "--output")
    mode = p.get("mode") or "auto"
    if mode not in MODES:
        raise InputError(f"must be one of {', '.join(MODES)} (got {mode!r})", "--mode")
    policy = p.get("image_pull_policy")
    if policy is not None and policy not in PULL_POLICIES:
        raise InputError(
            f"must be one of {', '.join(PULL_POLICIES)} (got {policy!r})", "--image-pull-policy"
        )
    dry = p.get("dry_run")
    if dry is not None and dry not in ("none", "client"):
        hint = " (server-side dry run is not supported)" if dry == "server" else ""
        raise InputError(f"must be 'client' or 'none' (got {dry!r}){hint}", "--dry-run")
    image = p.get("image")
    if image is not None:
        _image(image, "--image")
    if not local:
        from kubectl_kdoctor.images import IMAGE_ENV
        from kubectl_kdoctor.runconfig import ttl_seconds

        if os.environ.get(IMAGE_ENV):
            _image(os.environ[IMAGE_ENV], IMAGE_ENV)
        ttl_seconds()  # KUBECTL_KDOCTOR_TTL_SECONDS, checked before anything is created
    return RunControl(
        name=v.run_name(p["name"]) if p.get("name") is not None else None,
        image=image,
        image_pull_policy=policy,
        start_timeout=v.duration(p["start_timeout"], "--start-timeout", maximum=MAX_TIMEOUT)
        if p.get("start_timeout") is not None
        else 120.0,
        keep=bool(p.get("keep")),
        no_wait=bool(p.get("no_wait")),
        dry_run=dry == "client",
        output=output,
        mode=mode,
        local=local,
        force=bool(p.get("force")),
    )


def _image(image: str, flag: str) -> None:
    """An image reference: no whitespace or control characters, at most 4096 characters."""
    if (
        not image
        or len(image) > 4096
        or any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in image)
    ):
        raise InputError(f"must be an image reference (got {v.short_repr(image)})", flag)


def _http(p: dict[str, Any], base: Task | None, local: bool) -> HttpSpec:
    b = base.http if base and base.http else None
    basic: str | None = None  # a URL's user:password, as an Authorization: Basic value
    if p.get("url") is not None:
        # userinfo comes off first, so no error message can repeat the password
        raw, basic = split_userinfo(p["url"])
        url = v.url(raw)
    elif b:
        url, basic = split_userinfo(b.url)
    else:
        raise InputError(
            "missing: give the URL to load, e.g. https://my-app.my-ns:8443/healthz", "URL"
        )
    method = (p.get("method") or (b.method if b else "GET")).upper()
    if method not in ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"):
        raise InputError(
            f"must be one of GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS (got {p.get('method')!r})",
            "--method",
        )
    if len(p.get("headers") or ()) > MAX_HEADERS:
        raise InputError(f"give at most {MAX_HEADERS} headers", "--header")
    headers = tuple(v.header(h) for h in p.get("headers") or ()) or (b.headers if b else ())
    if basic is not None:
        if any(k.lower() == "authorization" for k, _ in headers):
            raise InputError(
                "has user:password and an Authorization header is given too: give one", "URL"
            )
        headers = (*headers, ("Authorization", basic))
    if p.get("data") is not None and p.get("data_file"):
        raise InputError("give either --data or --data-file, not both", "--data")
    body = b.body if b else b""
    if p.get("data") is not None:
        body = p["data"].encode("utf-8", "surrogateescape")  # the bytes given, even non-UTF-8
    elif p.get("data_file"):
        limit = MAX_BODY_LOCAL if local else MAX_BODY_CLUSTER
        what = "request body" if local else "request body (it travels in the run's Secret)"
        body = v.read_file(p["data_file"], "--data-file", limit, what)
    if body and method in ("GET", "HEAD") and not p.get("method"):
        method = "POST"
    cacert = (
        v.pem_file(p["cacert"], "--cacert", "certificate")
        if p.get("cacert")
        else (b.cacert if b else None)
    )
    cert = (
        v.pem_file(p["cert"], "--cert", "certificate") if p.get("cert") else (b.cert if b else None)
    )
    key = v.pem_file(p["key"], "--key", "private key") if p.get("key") else (b.key if b else None)
    if cert and not key:
        raise InputError("needs --key (the client certificate's private key)", "--cert")
    if key and not cert:
        raise InputError("needs --cert (the client certificate)", "--key")
    insecure = bool(p.get("insecure")) or (b.insecure if b else False)
    if insecure and p.get("cacert"):
        raise InputError(
            "contradicts --cacert: verification is either off or against that CA", "--insecure"
        )
    http2 = bool(p.get("http2")) or (b.http2 if b else False)
    if http2 and not url.startswith("https://"):
        raise InputError("needs an https:// URL (HTTP/2 is negotiated over TLS)", "--http2")
    tls_flag = next(
        (
            f
            for f, k in (("--cacert", "cacert"), ("--cert", "cert"), ("--insecure", "insecure"))
            if p.get(k)
        ),
        None,
    )
    if tls_flag and not url.startswith("https://"):
        raise InputError("needs an https:// URL", tls_flag)
    expect_status = (
        v.status(p["expect_status"]) if p.get("expect_status") else (b.expect_status if b else None)
    )
    if not local:
        carried = len(body) + sum(os.path.getsize(f) for f in (cacert, cert, key) if f)
        if carried > MAX_SECRET_PAYLOAD:
            flag = "--data-file" if body else "--cacert"
            raise InputError(
                f"the request body and TLS files add up to {carried // 1024} KiB; the run's "
                f"Secret carries at most {MAX_SECRET_PAYLOAD // 1024} KiB",
                flag,
            )
    spec = HttpSpec(
        url=url,
        method=method,
        headers=headers,
        body=body,
        http2=http2,
        insecure=insecure,
        cacert=cacert,
        cert=cert,
        key=key,
    )
    return dataclasses.replace(spec, expect_status=expect_status) if expect_status else spec


def _dns(p: dict[str, Any], base: Task | None, local: bool) -> DnsSpec:
    b = base.dns if base and base.dns else None
    protocol = (p.get("protocol") or (b.protocol if b else "udp")).lower()
    if protocol not in ("udp", "tcp", "tls"):
        raise InputError(f"must be udp, tcp or tls (got {p.get('protocol')!r})", "--protocol")
    default_port = 853 if protocol == "tls" else 53
    if p.get("domain") is not None:
        domain = v.domain(p["domain"])
    elif b:
        domain = b.domain
    elif local:
        raise InputError(
            "missing: --local has no cluster domain to default to; give the name to query", "DOMAIN"
        )
    else:
        domain = DEFAULT_CLUSTER_DOMAIN + "."
    server, port = "", default_port
    if p.get("server") is not None:
        server, port = v.server(p["server"], default_port)
    elif b and b.server:
        server, port = b.server, (b.port if not p.get("protocol") else default_port)
    elif local:
        from kubectl_kdoctor.engine.resolvconf import default_nameserver

        found = default_nameserver()
        if not found:
            raise InputError(
                "missing: /etc/resolv.conf names no nameserver; give --server HOST[:PORT]",
                "--server",
            )
        server = found
    qtype = v.qtype(p["qtype"]) if p.get("qtype") else (b.qtype if b else "A")
    rcode = (
        v.rcode(p["expect_rcode"])
        if p.get("expect_rcode")
        else (b.expect_rcode if b else "NOERROR")
    )
    tc_fallback = bool(p.get("tc_fallback")) or (b.tc_fallback if b else False)
    if p.get("tc_fallback") and protocol != "udp":
        raise InputError(
            f"needs --protocol udp (TC is a UDP matter; got {protocol})", "--tc-fallback"
        )
    cacert = (
        v.pem_file(p["cacert"], "--cacert", "certificate") if p.get("cacert") is not None else None
    )
    tls_name = (
        _tls_server_name(p["tls_server_name"]) if p.get("tls_server_name") is not None else None
    )
    insecure = bool(p.get("insecure"))
    for flag, given in (("--cacert", cacert), ("--tls-server-name", tls_name), ("-k", insecure)):
        if given and protocol != "tls":
            raise InputError(
                "needs --protocol tls (it is about the DNS server's certificate)", flag
            )
    if insecure and cacert:
        raise InputError(
            "contradicts --cacert: verification is either off or against that CA", "--insecure"
        )
    return DnsSpec(
        server=server,
        domain=domain,
        port=port,
        protocol=protocol,
        qtype=qtype,
        expect_rcode=rcode,
        insecure=insecure or (b.insecure if b and not cacert else False),
        cacert=cacert or (b.cacert if b else None),
        tls_name=tls_name or (b.tls_name if b else None),
        tc_fallback=tc_fallback,
    )


def _tls_server_name(text: str) -> str:
    """``--tls-server-name``: a host name or an IP address the certificate must carry."""
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        pass
    try:
        return v.node_name(text.rstrip(".").lower(), "--tls-server-name")
    except InputError:
        raise InputError(
            f"must be a host name or IP address (got {text!r})", "--tls-server-name"
        ) from None


def _netreach(p: dict[str, Any], base: Task | None) -> NetReachTargets:
    b = base.netreach if base and base.netreach else NetReachTargets()
    paths = b.paths
    if p.get("targets"):
        items = [t.strip().lower() for t in p["targets"].split(",") if t.strip()]
        bad = [t for t in items if t not in NETREACH_PATHS]
        if bad or not items:
            raise InputError(
                f"must be a comma list of {','.join(NETREACH_PATHS)} (got {p['targets']!r})",
                "--targets",
            )
        paths = tuple(dict.fromkeys(items))
    family = b.ip_family
    if p.get("ip_family"):
        family = p["ip_family"].lower()
        if family not in IP_FAMILIES:
            raise InputError(f"must be ipv4, ipv6 or dual (got {p['ip_family']!r})", "--ip-family")
    ingress_class = p.get("ingress_class") or b.ingress_class
    if p.get("ingress_class") and "ingress" not in paths:
        raise InputError("needs 'ingress' in --targets", "--ingress-class")
    if ingress_class is not None:
        v.node_name(ingress_class, "--ingress-class")
    peers = (
        v.positive_int(p["peers"], "--peers", maximum=100_000)
        if p.get("peers") is not None
        else b.peers
    )
    networks = b.networks
    if p.get("multus_networks") is not None:
        networks = v.multus_networks(p["multus_networks"])
        if "multus" not in paths:
            raise InputError("needs 'multus' in --targets", "--multus-networks")
    return NetReachTargets(paths, family, ingress_class, peers, networks)
