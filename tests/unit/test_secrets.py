"""What is secret and where it goes: every header value but a harmless few, the request body
and a URL's user:password travel in the run's Secret and nowhere else (ConfigMap, task spec,
dry run, report); crd mode refuses them; the agent gets them back exactly; the agents' Role
reads only its own run's objects."""

from __future__ import annotations

import base64
import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubectl_kdoctor import crdmode
from kubectl_kdoctor.agent.main import merge_secret
from kubectl_kdoctor.cli import main
from kubectl_kdoctor.cli.build import build
from kubectl_kdoctor.engine.spec import (
    REDACTED,
    DnsSpec,
    HttpSpec,
    secret_header,
    split_userinfo,
    without_userinfo,
)
from kubectl_kdoctor.errors import InputError
from kubectl_kdoctor.jobmode import Plan, dry_run_yaml
from kubectl_kdoctor.kube import manifests as m
from kubectl_kdoctor.runconfig import (
    SECRET_BODY,
    SECRET_CA,
    AgentConfig,
    NodeInfo,
    from_json,
    secret_data,
    to_json,
)
from kubectl_kdoctor.spec_kdoctor import kdoctor_spec
from kubectl_kdoctor.task import DNS, HTTP, NETREACH, Invocation, Task

SECRETS = ("s3cr3t", "hunter2", "tok-123", "bodysecret", "cookie-v", "pr1v")
BASIC = "Basic " + base64.b64encode(b"user:hunter2").decode()


def _http_inv(**extra: object) -> Invocation:
    p: dict[str, object] = {
        "url": "https://user:hunter2@app.example.com:8443/x?q=1",
        "headers": (
            "X-Vault-Token: s3cr3t",
            "Private-Token: tok-123",
            "Cookie: a=cookie-v",
            "accept: application/json",
            "User-Agent: probe/1",
            "Content-Type: text/plain",
            "X-Custom: pr1v",
        ),
        "data": "bodysecret",
    }
    p.update(extra)
    return build(HTTP, p)


@pytest.mark.parametrize(
    ("url", "stripped", "auth"),
    [
        ("http://u:p@host/x", "http://host/x", "Basic " + base64.b64encode(b"u:p").decode()),
        ("https://u:p@h:8443", "https://h:8443", "Basic " + base64.b64encode(b"u:p").decode()),
        (
            "http://a%40b:p%3Aq%2F@h/",
            "http://h/",
            "Basic " + base64.b64encode(b"a@b:p:q/").decode(),
        ),
        ("http://only@h/", "http://h/", "Basic " + base64.b64encode(b"only:").decode()),
        ("http://u:p@[::1]:80/", "http://[::1]:80/", "Basic " + base64.b64encode(b"u:p").decode()),
        ("http://x:y@z@h/", "http://h/", "Basic " + base64.b64encode(b"x:y@z").decode()),
        ("http://@h/", "http://h/", None),
        ("http://h/a@b?c=d@e#f@g", "http://h/a@b?c=d@e#f@g", None),
        ("http://h?x=u:p@y", "http://h?x=u:p@y", None),
        ("no-scheme@host", "no-scheme@host", None),
    ],
)
def test_split_userinfo(url: str, stripped: str, auth: str | None) -> None:
    assert split_userinfo(url) == (stripped, auth)


def test_only_a_few_harmless_headers_are_public() -> None:
    for name in ("Accept", "accept-encoding", "User-Agent", "Content-Type", "Host", " Pragma "):
        assert not secret_header(name)
    for name in ("Authorization", "X-Vault-Token", "Private-Token", "Cookie", "X-Anything", ""):
        assert secret_header(name)


def test_url_user_password_becomes_basic_auth_and_leaves_the_url() -> None:
    inv = _http_inv()
    h = inv.task.http
    assert h is not None
    assert h.url == "https://app.example.com:8443/x?q=1"
    assert ("Authorization", BASIC) in h.headers
    assert "Authorization" in inv.task.secret_headers
    assert h.body == b"bodysecret" and h.method == "POST"


def test_user_password_and_an_authorization_header_conflict() -> None:
    with pytest.raises(InputError) as exc:
        _http_inv(headers=("Authorization: Bearer x",))
    assert exc.value.flag == "URL" and "hunter2" not in str(exc.value)


def test_engine_sends_user_password_given_directly() -> None:
    spec = without_userinfo(HttpSpec("http://user:hunter2@h/"))
    assert spec.url == "http://h/" and spec.headers == (("Authorization", BASIC),)
    given = HttpSpec("http://user:hunter2@h/", headers=(("authorization", "Bearer t"),))
    assert without_userinfo(given).headers == (("authorization", "Bearer t"),)


def _config(task: Task, secret: bool = True) -> AgentConfig:
    return AgentConfig("r1", "ns", "uid", task, (NodeInfo("n1", ("10.0.0.1",)),), secret=secret)


def test_config_map_holds_no_secret_and_the_agent_gets_everything_back() -> None:
    task = _http_inv().task
    text = to_json(_config(task))
    for s in (*SECRETS, BASIC.split()[1]):
        assert s not in text
    data = secret_data(task)
    cfg = from_json(text)
    assert cfg.task.http is not None and cfg.task.http.body == b""
    assert dict(cfg.task.http.headers)["accept"] == "application/json"
    back = merge_secret(cfg.task, data)
    assert back.http == task.http  # headers in order, values, body: exactly what was asked


def test_binary_body_survives_the_secret(tmp_path: Path) -> None:
    blob = bytes(range(256)) * 4
    (tmp_path / "b.bin").write_bytes(blob)
    task = build(HTTP, {"url": "http://h/", "data_file": str(tmp_path / "b.bin")}).task
    data = secret_data(task)
    assert data[SECRET_BODY] == blob
    obj = m.secret("r1", HTTP, "ns", None, data)
    decoded = {k: base64.b64decode(v) for k, v in obj["data"].items()}
    assert merge_secret(from_json(to_json(_config(task))).task, decoded).http == task.http


def test_task_spec_and_report_redact() -> None:
    spec = kdoctor_spec(_http_inv().task)
    text = json.dumps(spec)
    for s in (*SECRETS, BASIC.split()[1]):
        assert s not in text
    headers = spec["target"]["header"]
    assert f"X-Vault-Token: {REDACTED}" in headers and f"Authorization: {REDACTED}" in headers
    assert "accept: application/json" in headers and "User-Agent: probe/1" in headers
    assert spec["target"]["host"] == "https://app.example.com:8443/x?q=1"


def test_job_mode_dry_run_redacts_the_secret_and_config() -> None:
    inv = _http_inv()
    task = inv.task
    cfg = _config(task)
    job = m.job(
        run="r1",
        kind=HTTP,
        namespace="ns",
        nodes=["n1"],
        image="img",
        pull_policy=None,
        tolerations=[],
        host_network=False,
        active_deadline=60,
    )
    plan = Plan(
        "r1", "ns", task, [NodeInfo("n1")], {}, ("ipv4",), "img", cfg, secret_data(task), job
    )
    out = dry_run_yaml(plan)
    for s in (*SECRETS, BASIC.split()[1]):
        assert s not in out
    docs = list(yaml.safe_load_all(out))
    sec = next(d for d in docs if d["kind"] == "Secret")
    assert sec["data"] and set(sec["data"].values()) == {REDACTED}


def test_dns_ca_goes_to_the_secret(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    inv = build(
        DNS,
        {
            "domain": "example.org",
            "server": "10.0.0.53",
            "protocol": "tls",
            "cacert": str(ca),
            "tls_server_name": "DNS.Example.org.",
        },
    )
    d = inv.task.dns
    assert d is not None and not d.insecure and d.tls_name == "dns.example.org"
    data = secret_data(inv.task)
    assert data == {SECRET_CA: ca.read_bytes()}
    cfg = from_json(to_json(_config(inv.task)))
    assert cfg.task.dns is not None and cfg.task.dns.cacert is None
    back = merge_secret(cfg.task, data)
    assert back.dns is not None and Path(back.dns.cacert or "").read_bytes() == ca.read_bytes()
    assert dataclasses.replace(back.dns, cacert=d.cacert) == d


def test_dot_verifies_by_default() -> None:
    assert DnsSpec("1.1.1.1", "x.").insecure is False
    d = build(DNS, {"domain": "x", "server": "10.0.0.53", "protocol": "tls"}).task.dns
    assert d is not None and not d.insecure and d.cacert is None and d.port == 853
    k = build(DNS, {"domain": "x", "server": "10.0.0.53", "protocol": "tls", "insecure": True})
    assert k.task.dns is not None and k.task.dns.insecure


@pytest.mark.parametrize(
    ("params", "flag"),
    [
        ({"headers": ("X-Vault-Token: s3cr3t",)}, "--header"),
        ({"url": "http://u:hunter2@app.example.com/"}, "URL"),
    ],
)
def test_crd_mode_refuses_secret_headers(params: dict[str, object], flag: str) -> None:
    inv = build(HTTP, {"url": "http://app.example.com/", "mode": "crd", **params})
    with pytest.raises(InputError) as exc:
        crdmode.refuse_inexpressible(inv, set(inv.given))
    assert exc.value.flag == flag and "--mode job" in str(exc.value)
    assert "s3cr3t" not in str(exc.value) and "hunter2" not in str(exc.value)


def test_crd_mode_takes_harmless_headers() -> None:
    inv = build(
        HTTP,
        {"url": "http://app.example.com/", "headers": ("Accept: text/html", "User-Agent: x")},
    )
    crdmode.refuse_inexpressible(inv, set(inv.given))
    obj = crdmode.task_object(inv, "t1")
    assert obj["spec"]["target"]["header"] == ["Accept: text/html", "User-Agent: x"]


def test_crd_mode_dot_needs_insecure_and_refuses_cacert(tmp_path: Path) -> None:
    base = {"domain": "x", "server": "10.0.0.53", "protocol": "tls", "mode": "crd"}
    inv = build(DNS, base)
    with pytest.raises(InputError) as exc:
        crdmode.refuse_inexpressible(inv, set(inv.given))
    assert exc.value.flag == "--protocol"
    inv = build(DNS, {**base, "insecure": True})
    crdmode.refuse_inexpressible(inv, set(inv.given))
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    inv = build(DNS, {**base, "cacert": str(ca)})
    with pytest.raises(InputError) as exc:
        crdmode.refuse_inexpressible(inv, set(inv.given))
    assert exc.value.flag == "--cacert"


def _rules(kind: str, **kw: bool) -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = m.role("r1", kind, "ns", None, **kw)["rules"]
    return rules


def test_agent_role_reads_only_its_own_run() -> None:
    for kind in (HTTP, DNS, NETREACH):
        for rule in _rules(kind, secret=True, ingress=kind == NETREACH, services=True):
            verbs = set(rule["verbs"])
            assert not verbs & {"update", "patch", "delete", "deletecollection", "*"}
            if "get" in verbs:  # get is narrowed to the run's own objects, always
                assert rule.get("resourceNames") == ["r1"], rule
            assert rule["resources"] != ["secrets"] or verbs == {"get"}
    http = _rules(HTTP, secret=True)
    assert {r["resources"][0] for r in http} == {"configmaps", "secrets"}
    assert not any({"list", "watch"} & set(r["verbs"]) for r in http)
    nr = _rules(NETREACH, secret=True, services=False)
    assert {r["resources"][0] for r in nr if "list" in r["verbs"]} == {"pods", "configmaps"}
    nr = _rules(NETREACH, secret=True, services=True)
    assert {r["resources"][0] for r in nr if "list" in r["verbs"]} == {
        "pods",
        "configmaps",
        "services",
    }


def test_the_responder_token_never_reaches_the_config_map() -> None:
    from kubectl_kdoctor.runconfig import SECRET_TOKEN

    task = build(NETREACH, {}).task
    cfg = dataclasses.replace(_config(task), token="tok-only-in-the-secret")
    text = to_json(cfg)
    assert "tok-only-in-the-secret" not in text
    assert from_json(text).token == ""  # the agent reads it from the Secret
    assert SECRET_TOKEN not in secret_data(task)  # the plan adds a fresh one per run


@pytest.fixture
def _unreachable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    kc = tmp_path / "kubeconfig"
    kc.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        "clusters: [{name: c, cluster: {server: 'https://127.0.0.1:1'}}]\n"
        "users: [{name: u, user: {token: t}}]\n"
        "contexts: [{name: c, context: {cluster: c, user: u}}]\n"
    )
    monkeypatch.setenv("KUBECONFIG", str(kc))
    monkeypatch.chdir(tmp_path)


@pytest.mark.usefixtures("_unreachable")
@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        (["http", "http://h/", "-H", "X-Vault-Token: s3cr3t", "--mode", "crd"], "--header"),
        (["http", "http://u:hunter2@h/", "--mode", "crd", "--dry-run=client"], "URL"),
        (["http", "ftp://u:hunter2@h/"], "URL"),
        (["http", "http://u:hunter2@bad host/"], "URL"),
        (["http", "http://u:hunter2@h/", "-H", "Authorization: Bearer s3cr3t"], "URL"),
        (["dns", "x", "--cacert", "ca.pem"], "--cacert"),
        (["dns", "x", "--server", "10.0.0.1", "--tls-server-name", "a.b"], "--tls-server-name"),
        (["dns", "x", "--protocol", "tls", "--tls-server-name", "bad name"], "--tls-server-name"),
        (["dns", "x", "--protocol", "udp", "-k"], "-k"),
        (["dns", "x", "--protocol", "tls", "--mode", "crd", "--server", "10.0.0.1"], "--protocol"),
    ],
)
def test_refusals_are_one_line_exit_2_and_never_repeat_a_secret(
    argv: list[str], flag: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    (tmp_path / "ca.pem").write_text(
        "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    )
    with pytest.raises(SystemExit) as exc:
        main(argv)
    out, err = capsys.readouterr()
    assert exc.value.code == 2, err
    assert flag in err and len(err.strip().splitlines()) == 1, err
    assert "s3cr3t" not in out + err and "hunter2" not in out + err


@pytest.mark.usefixtures("_unreachable")
def test_crd_dry_run_of_harmless_headers_needs_no_cluster(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["http", "http://h.example.com/", "-H", "Accept: x/y", "--mode", "crd", "--dry-run"])
    out, err = capsys.readouterr()
    assert exc.value.code == 0, err
    assert "Accept: x/y" in out
