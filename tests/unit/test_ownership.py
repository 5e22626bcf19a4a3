"""The ownership rule, the run id on every object, one-line API errors, the start window, and
SIGTERM/SIGHUP as Ctrl-C (pure logic; the cluster side is tests/e2e/test_ownership.py)."""

from __future__ import annotations

import json
import os
import signal

import pytest

from kubectl_kdoctor.cli.build import build
from kubectl_kdoctor.crdmode import task_object
from kubectl_kdoctor.interrupts import as_interrupt
from kubectl_kdoctor.jobmode import Plan, start_window
from kubectl_kdoctor.kube import manifests as m
from kubectl_kdoctor.kube.errors import translate
from kubectl_kdoctor.runconfig import AgentConfig, NodeInfo, from_json

OURS = {m.MANAGED_BY: m.MANAGER, m.RUN: "r1", m.RUN_ID: "abc123"}


@pytest.mark.parametrize(
    ("labels", "run", "expected"),
    [
        (OURS, "r1", True),
        (OURS, None, True),
        (OURS, "r2", False),  # another run's object
        ({**OURS, m.MANAGED_BY: "helm"}, "r1", False),
        ({k: v for k, v in OURS.items() if k != m.RUN_ID}, "r1", False),  # look-alike
        ({k: v for k, v in OURS.items() if k != m.RUN}, None, False),
        ({**OURS, m.RUN_ID: ""}, "r1", False),
        ({}, "r1", False),
        (None, None, False),
    ],
)
def test_is_ours_needs_the_managed_by_label_a_run_and_a_run_id(
    labels: dict[str, str] | None, run: str | None, expected: bool
) -> None:
    assert m.is_ours(labels, run) is expected


def _plan() -> Plan:
    inv = build("NetReach", {"mode": "job", "targets": "pod,clusterip,nodeport,ingress"})
    nodes = [NodeInfo("a", ("10.0.0.1",)), NodeInfo("b", ("10.0.0.2",))]
    cfg = AgentConfig(
        run="r1", namespace="ns", job_uid="", task=inv.task, nodes=tuple(nodes), run_id="abc123"
    )
    job = m.with_run_id(
        m.job(
            run="r1",
            kind="NetReach",
            namespace="ns",
            nodes=["a", "b"],
            image="img:1",
            pull_policy=None,
            tolerations=[],
            host_network=False,
            active_deadline=600,
            start_window=45,
        ),
        "abc123",
    )
    return Plan("r1", "ns", inv.task, nodes, {}, ("ipv4",), "img:1", cfg, {}, job, 1, "abc123")


def test_every_object_of_a_run_carries_its_run_id_and_is_ours() -> None:
    p = _plan()
    objs = [p.job, *p.owned("uid-1")]
    assert {o["kind"] for o in objs} >= {"Job", "ServiceAccount", "Role", "ConfigMap", "Ingress"}
    for o in objs:
        assert m.is_ours(o["metadata"]["labels"], "r1"), o["kind"]
        assert o["metadata"]["labels"][m.RUN_ID] == "abc123"
    assert p.job["spec"]["template"]["metadata"]["labels"][m.RUN_ID] == "abc123"  # agent pods
    assert p.job["spec"]["activeDeadlineSeconds"] == 45 and p.job["spec"]["parallelism"] == 0
    cm = next(o for o in objs if o["kind"] == "ConfigMap")
    cfg = from_json(cm["data"]["task.json"])
    assert cfg.run_id == "abc123" and cfg.job_uid == "uid-1"  # the agent labels its report
    report = m.with_run_id(
        m.report_config_map("r1", "NetReach", "ns", m.owner("r1", "uid-1"), 0, "a", ""),
        cfg.run_id,
    )
    assert m.is_ours(report["metadata"]["labels"], "r1")


def test_a_crd_task_carries_the_run_label() -> None:
    obj = task_object(build("NetReach", {"mode": "crd"}), "t1")
    assert obj["metadata"]["labels"] == {m.MANAGED_BY: m.MANAGER, m.RUN: "t1"}


@pytest.mark.parametrize(("start_timeout", "window"), [(0.5, 30), (30, 30), (120, 120), (90.2, 91)])
def test_the_start_window_follows_start_timeout_with_a_floor(
    start_timeout: float, window: int
) -> None:
    assert start_window(start_timeout) == window


def test_api_messages_become_one_line() -> None:
    from kubernetes.client.exceptions import ApiException

    exc = ApiException(status=403, reason="Forbidden")
    exc.body = json.dumps(
        {"message": 'admission webhook "policy.example" denied the request:\n  no\n\tRoleBindings'}
    )
    err = translate(exc, "create RoleBinding r1")
    assert str(err) == (
        'create RoleBinding r1: admission webhook "policy.example" denied the request: no RoleBindings'
    )
    assert err.exit_code == 3


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_and_sighup_become_ctrl_c_once_then_are_ignored(sig: signal.Signals) -> None:
    before = signal.getsignal(sig)
    seen = []
    with as_interrupt():
        try:
            os.kill(os.getpid(), sig)
            for _ in range(1000):  # the handler runs between bytecodes
                pass
        except KeyboardInterrupt:
            seen.append("first")
            os.kill(os.getpid(), sig)  # a second one during the cleanup: ignored
            for _ in range(1000):
                pass
            seen.append("cleanup finished")
    assert seen == ["first", "cleanup finished"]
    assert signal.getsignal(sig) is before
