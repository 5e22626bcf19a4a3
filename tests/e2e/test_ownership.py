"""Ownership and every exit path, on the local cluster (real kube-apiserver, controllers,
garbage collector): ``delete``/``cleanup`` never touch a user's same-named objects; a failure
while creating a run (name collision, ResourceQuota, admission policy) is one line, exit 3,
and leaves nothing; a CLI killed or terminated at any stage of creation leaves nothing."""

from __future__ import annotations

import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hack.localcluster.kube import ApiError
from tests.e2e.kd import MANAGED, kdoctor, leftovers, wait_clean
from tests.fixtures.cluster import LocalCluster
from tests.fixtures.kdoctor_controller import StandIn

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[2]
PYTHON = str(REPO / ".venv" / "bin" / "python")
KILLAT = str(Path(__file__).with_name("killat.py"))
BRIDGE_IP = "172.30.0.1"
FAST = ["--qps", "2", "--duration", "1s", "--timeout", "500ms"]
NETREACH = ["netreach", "--mode", "job", *FAST]


def uniq(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:5]}"


def one_line(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1, err
    return lines[0]


def users_job(cluster: LocalCluster, ns: str, name: str, labels: dict[str, str]) -> dict[str, Any]:
    """A user's Job (suspended: it only has to exist)."""
    return cluster.kube().create(
        f"/apis/batch/v1/namespaces/{ns}/jobs",
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": name, "labels": labels},
            "spec": {
                "suspend": True,
                "template": {
                    "spec": {
                        "restartPolicy": "Never",
                        "containers": [
                            {"name": "c", "image": cluster.images["pause"], "command": ["true"]}
                        ],
                    }
                },
            },
        },
    )


def users_service(cluster: LocalCluster, ns: str, name: str) -> dict[str, Any]:
    return cluster.kube().create(
        f"/api/v1/namespaces/{ns}/services",
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name},
            "spec": {"selector": {"app": name}, "ports": [{"port": 80}]},
        },
    )


def users_config_map(cluster: LocalCluster, ns: str, name: str) -> dict[str, Any]:
    return cluster.kube().create(
        f"/api/v1/namespaces/{ns}/configmaps",
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"a": "b"}},
    )


def uid_of(cluster: LocalCluster, path: str) -> str | None:
    obj = cluster.kube().get_or_none(path)
    if obj is None or obj["metadata"].get("deletionTimestamp"):
        return None
    return str(obj["metadata"]["uid"])


@pytest.fixture
def ns2(local_cluster: LocalCluster) -> Iterator[str]:
    """A second namespace (privileged: agents need nothing more)."""
    name = f"kdo-{uuid.uuid4().hex[:6]}"
    local_cluster.kube().create(
        "/api/v1/namespaces",
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}},
    )
    yield name
    local_cluster.kube().delete(f"/api/v1/namespaces/{name}")


# --- ownership -------------------------------------------------------------------------------


def test_delete_and_cleanup_refuse_a_users_same_named_objects(
    local_cluster: LocalCluster, ns: str
) -> None:
    job = users_job(local_cluster, ns, "nightly-backup", {})
    # A look-alike: the managed-by label alone does not make a Job the plugin's.
    fake = users_job(
        local_cluster,
        ns,
        "lookalike",
        {"app.kubernetes.io/managed-by": "kubectl-kdoctor", "kdoctor.io/role": "run"},
    )
    svc = users_service(local_cluster, ns, "nightly-backup")
    for name in ("nightly-backup", "lookalike"):
        what = f"Job {ns}/{name}"
        proc = kdoctor(local_cluster, "delete", name, "-n", ns)
        assert proc.returncode == 2, proc.stderr
        line = one_line(proc.stderr)
        assert what in line and "not created by kubectl-kdoctor" in line, line
        rep = kdoctor(local_cluster, "report", name, "-n", ns)
        assert rep.returncode == 2 and what in one_line(rep.stderr), rep.stderr
    for args in (["-n", ns], ["-n", ns, "--all"], ["-A", "--all", "--dry-run"], ["-A", "--all"]):
        proc = kdoctor(local_cluster, "cleanup", *args)
        assert proc.returncode == 0, proc.stderr
        assert "nightly-backup" not in proc.stdout + proc.stderr
        assert "lookalike" not in proc.stdout + proc.stderr
    jobs = f"/apis/batch/v1/namespaces/{ns}/jobs"
    assert uid_of(local_cluster, f"{jobs}/nightly-backup") == job["metadata"]["uid"]
    assert uid_of(local_cluster, f"{jobs}/lookalike") == fake["metadata"]["uid"]
    assert (
        uid_of(local_cluster, f"/api/v1/namespaces/{ns}/services/nightly-backup")
        == svc["metadata"]["uid"]
    )


def test_a_uid_precondition_spares_a_same_named_successor(
    local_cluster: LocalCluster, ns: str
) -> None:
    from kubectl_kdoctor.kube import objects
    from kubectl_kdoctor.kube.client import Kube

    kube = Kube(local_cluster.api_client(), ns, None)
    users_config_map(local_cluster, ns, "cfg")
    old = objects.read(kube, "ConfigMap", ns, "cfg")
    assert old is not None
    local_cluster.kube().delete(f"/api/v1/namespaces/{ns}/configmaps/cfg")
    new = users_config_map(local_cluster, ns, "cfg")
    assert objects.delete(kube, old) is False
    assert (
        uid_of(local_cluster, f"/api/v1/namespaces/{ns}/configmaps/cfg") == new["metadata"]["uid"]
    )
    assert objects.delete(kube, objects.read(kube, "ConfigMap", ns, "cfg")) is True  # type: ignore[arg-type]


def test_cleanup_is_namespaced_spares_runs_in_progress_and_has_a_dry_run(
    local_cluster: LocalCluster, ns: str, ns2: str
) -> None:
    done, busy, other = uniq("done"), uniq("busy"), uniq("other")
    kept = kdoctor(local_cluster, *NETREACH, "-n", ns, "--name", done, "--keep", "-o", "json")
    assert kept.returncode == 0, kept.stderr
    running = kdoctor(
        local_cluster, *NETREACH, "-n", ns, "--name", busy, "--duration", "120s", "--no-wait"
    )
    assert running.returncode == 0, running.stderr
    elsewhere = kdoctor(local_cluster, *NETREACH, "-n", ns2, "--name", other, "--keep")
    assert elsewhere.returncode == 0, elsewhere.stderr
    users_job(local_cluster, ns, "users-own", {})
    jobs = f"/apis/batch/v1/namespaces/{ns}/jobs"

    dry = kdoctor(local_cluster, "cleanup", "-n", ns, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.splitlines() == [f"would delete run {ns}/{done} (Complete)"], dry.stdout
    assert f"spared run {ns}/{busy}" in dry.stderr and "--all" in dry.stderr
    assert uid_of(local_cluster, f"{jobs}/{done}")  # nothing deleted

    swept = kdoctor(local_cluster, "cleanup", "-n", ns)
    assert swept.returncode == 0, swept.stderr
    assert swept.stdout.splitlines() == [f"deleted run {ns}/{done} (Complete)"], swept.stdout
    assert uid_of(local_cluster, f"{jobs}/{done}") is None
    assert uid_of(local_cluster, f"{jobs}/{busy}")  # in progress: spared
    assert uid_of(local_cluster, f"/apis/batch/v1/namespaces/{ns2}/jobs/{other}")  # namespaced

    everything = kdoctor(local_cluster, "cleanup", "-n", ns, "--all")
    assert everything.returncode == 0, everything.stderr
    assert f"deleted run {ns}/{busy} (Running)" in everything.stdout
    assert wait_clean(local_cluster, ns) == []
    assert uid_of(local_cluster, f"{jobs}/users-own")
    assert uid_of(local_cluster, f"/apis/batch/v1/namespaces/{ns2}/jobs/{other}")

    # Leftovers whose Job is gone (here: orphaned on purpose) are swept too, by -A.
    local_cluster.kube().delete(
        f"/apis/batch/v1/namespaces/{ns2}/jobs/{other}", {"propagationPolicy": "Orphan"}
    )
    assert leftovers(local_cluster, ns2)
    sweep_all = kdoctor(local_cluster, "cleanup", "-A")
    assert sweep_all.returncode == 0, sweep_all.stderr
    assert f"configmap {ns2}/{other} (left over by run {other})" in sweep_all.stdout
    assert wait_clean(local_cluster, ns2) == []


# --- creation failures ----------------------------------------------------------------------


def test_a_name_collision_is_one_line_exit_3_and_leaves_nothing(
    local_cluster: LocalCluster, ns: str
) -> None:
    cm = users_config_map(local_cluster, ns, "coll")
    svc = users_service(local_cluster, ns, "coll2-1")
    job = users_job(local_cluster, ns, "nightly-backup", {})
    for name, what in (
        ("coll", "ConfigMap coll"),
        ("coll2", "Service coll2-1"),
        ("nightly-backup", "Job nightly-backup"),
    ):
        proc = kdoctor(local_cluster, *NETREACH, "-n", ns, "--name", name)
        assert proc.returncode == 3, proc.stderr
        line = _error_line(proc.stderr)
        assert what in line and "already exists" in line and "nothing" in line, line
        assert leftovers(local_cluster, ns) == []
    assert (
        uid_of(local_cluster, f"/api/v1/namespaces/{ns}/configmaps/coll") == cm["metadata"]["uid"]
    )
    assert (
        uid_of(local_cluster, f"/apis/batch/v1/namespaces/{ns}/jobs/nightly-backup")
        == job["metadata"]["uid"]
    )
    assert (
        uid_of(local_cluster, f"/api/v1/namespaces/{ns}/services/coll2-1") == svc["metadata"]["uid"]
    )


def _error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("Error")]
    assert len(lines) == 1, err
    return lines[0]


def test_a_resource_quota_is_one_line_exit_3_and_leaves_nothing(
    local_cluster: LocalCluster, ns: str
) -> None:
    local_cluster.kube().create(
        f"/api/v1/namespaces/{ns}/resourcequotas",
        {
            "apiVersion": "v1",
            "kind": "ResourceQuota",
            "metadata": {"name": "few-services"},
            "spec": {"hard": {"services": "1"}},
        },
    )
    deadline = time.monotonic() + 30  # the quota controller fills .status.hard first
    while time.monotonic() < deadline:
        q = local_cluster.kube().get(f"/api/v1/namespaces/{ns}/resourcequotas/few-services")
        if (q.get("status") or {}).get("hard"):
            break
        time.sleep(0.5)
    proc = kdoctor(local_cluster, *NETREACH, "-n", ns)
    assert proc.returncode == 3, proc.stderr
    line = _error_line(proc.stderr)
    assert "exceeded quota" in line and "nothing" in line, line
    assert "Traceback" not in proc.stderr
    assert leftovers(local_cluster, ns) == []


def test_an_admission_policy_denial_is_one_line_exit_3_and_leaves_nothing(
    local_cluster: LocalCluster, ns: str
) -> None:
    kube = local_cluster.kube()
    policy, binding = uniq("no-rolebindings"), uniq("no-rolebindings-b")
    kube.create(
        "/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicies",
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingAdmissionPolicy",
            "metadata": {"name": policy},
            "spec": {
                "failurePolicy": "Fail",
                "matchConstraints": {
                    "resourceRules": [
                        {
                            "apiGroups": ["rbac.authorization.k8s.io"],
                            "apiVersions": ["*"],
                            "operations": ["CREATE"],
                            "resources": ["rolebindings"],
                        }
                    ]
                },
                "validations": [
                    {
                        "expression": "false",
                        "message": "RoleBindings are reviewed by the platform team",
                    }
                ],
            },
        },
    )
    kube.create(
        "/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicybindings",
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingAdmissionPolicyBinding",
            "metadata": {"name": binding},
            "spec": {
                "policyName": policy,
                "validationActions": ["Deny"],
                "matchResources": {
                    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}}
                },
            },
        },
    )
    try:
        probe = {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "probe"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "x"},
            "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": ns}],
        }
        deadline = time.monotonic() + 30  # the policy takes a moment to be enforced
        while time.monotonic() < deadline:
            try:
                kube.create(
                    f"/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings",
                    probe,
                    dryRun="All",
                )
            except ApiError:
                break
            time.sleep(0.5)
        proc = kdoctor(local_cluster, *NETREACH, "-n", ns)
        assert proc.returncode == 3, proc.stderr
        line = _error_line(proc.stderr)
        assert "reviewed by the platform team" in line and "nothing" in line, line
        assert leftovers(local_cluster, ns) == []
    finally:
        kube.delete(
            f"/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicybindings/{binding}"
        )
        kube.delete(f"/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicies/{policy}")


def test_a_run_configuration_too_large_for_a_config_map_is_refused_before_anything(
    local_cluster: LocalCluster, ns: str, tmp_path: Path
) -> None:
    big = tmp_path / "body.bin"
    big.write_bytes(b"x" * 1_100_000)
    proc = kdoctor(
        local_cluster,
        "http",
        "http://web.invalid/",
        "--mode",
        "job",
        "-n",
        ns,
        "-X",
        "POST",
        "--data-file",
        str(big),
        *FAST,
    )
    assert proc.returncode == 2, proc.stderr
    assert "--data" in _error_line(proc.stderr)
    assert leftovers(local_cluster, ns) == []


def test_a_user_who_may_not_list_runs_gets_one_line_from_cleanup(
    local_cluster: LocalCluster,
) -> None:
    proc = kdoctor(
        local_cluster,
        "cleanup",
        "-n",
        local_cluster.rbac_namespace,
        "--context",
        local_cluster.restricted_context,
    )
    assert proc.returncode == 3, proc.stderr
    line = one_line(proc.stderr)
    assert "forbidden" in line and "jobs" in line, line


# --- killed or terminated while creating ------------------------------------------------------


def _at(
    cluster: LocalCluster, sig: str, stage: str, *args: str, env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [PYTHON, KILLAT, sig, stage, *args],
        env={**cluster.env(), **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )


def test_sigkill_at_every_stage_of_creation_leaves_nothing_after_the_ttl(
    local_cluster: LocalCluster, ns: str
) -> None:
    n_objects = 5 + len(local_cluster.nodes)  # Job, SA, Role, RoleBinding, ConfigMap, Services
    stages = ["create:1", "create:3", "create:5", f"create:{n_objects}", "start"]
    procs = {
        stage: _at(
            local_cluster,
            "SIGKILL",
            stage,
            *NETREACH,
            "-n",
            ns,
            "--name",
            f"k{i}",
            "--start-timeout",
            "1s",
            env={"KUBECTL_KDOCTOR_TTL_SECONDS": "2"},
        )
        for i, stage in enumerate(stages)
    }
    for stage, proc in procs.items():
        proc.communicate(timeout=120)
        assert proc.returncode == -signal.SIGKILL, (stage, proc.returncode)
    kube = local_cluster.kube()
    jobs = kube.get(f"/apis/batch/v1/namespaces/{ns}/jobs", labelSelector=MANAGED)["items"]
    assert sorted(j["metadata"]["name"] for j in jobs) == [f"k{i}" for i in range(len(stages))]
    for j in jobs:
        started = j["metadata"]["name"] == f"k{len(stages) - 1}"
        # Never suspended (a suspended Job has neither deadline nor TTL); no agent before the
        # start patch, and a deadline as short as the start window until then.
        assert not j["spec"].get("suspend")
        assert j["spec"]["parallelism"] == (len(local_cluster.nodes) if started else 0), j["spec"]
        if not started:
            assert j["spec"]["activeDeadlineSeconds"] == 30
    listed = kdoctor(local_cluster, "get", "run", "-n", ns).stdout.splitlines()
    creating = sorted(line.split()[1] for line in listed if " Creating " in line)
    assert creating == [f"k{i}" for i in range(len(stages) - 1)], listed
    t0 = time.monotonic()
    assert wait_clean(local_cluster, ns, timeout=150) == []
    print(f"killed runs gone {time.monotonic() - t0:.0f}s after the last kill")


@pytest.mark.parametrize("keep", [False, True])
def test_sigterm_while_creating_deletes_what_was_made_and_says_so(
    local_cluster: LocalCluster, ns: str, keep: bool
) -> None:
    proc = _at(
        local_cluster,
        "SIGTERM",
        "create:4",
        *NETREACH,
        "-n",
        ns,
        "--name",
        "term",
        *(["--keep"] if keep else []),
    )
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    line = _error_line(err)
    assert "deleted" in line and "kept" not in line, err
    assert leftovers(local_cluster, ns) == []  # removed before the CLI exited, not by GC


def test_sighup_after_start_deletes_the_run(local_cluster: LocalCluster, ns: str) -> None:
    proc = _at(local_cluster, "SIGHUP", "start", *NETREACH, "-n", ns, "--name", "hup")
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "interrupted; run hup deleted" in err
    assert wait_clean(local_cluster, ns, timeout=60) == []


# --- CRD mode ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def standin(local_cluster: LocalCluster) -> Iterator[StandIn]:
    s = StandIn(local_cluster.kube(), local_cluster.nodes, BRIDGE_IP)
    s.start()
    yield s
    s.stop()


def _task(cluster: LocalCluster, name: str) -> dict[str, Any] | None:
    obj = cluster.kube().get_or_none(f"/apis/kdoctor.io/v1beta1/netreaches/{name}")
    return None if obj is None or obj["metadata"].get("deletionTimestamp") else obj


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_crd_mode_sigterm_and_sighup_remove_the_task(
    local_cluster: LocalCluster, standin: StandIn, sig: signal.Signals
) -> None:
    name = uniq("crdsig")
    proc = subprocess.Popen(
        [
            PYTHON,
            "-m",
            "kubectl_kdoctor",
            "netreach",
            "--mode",
            "crd",
            "--name",
            name,
            "--rounds",
            "5",
            "--interval",
            "5m",
        ],
        env=local_cluster.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    deadline = time.monotonic() + 60
    while _task(local_cluster, name) is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _task(local_cluster, name) is not None
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert f"NetReach {name} deleted" in err
    assert _task(local_cluster, name) is None


def test_delete_and_cleanup_leave_a_users_kdoctor_task(
    local_cluster: LocalCluster, standin: StandIn, ns: str, ns2: str
) -> None:
    kube = local_cluster.kube()
    users = uniq("users-task")
    from kubectl_kdoctor.cli.build import build
    from kubectl_kdoctor.crdmode import task_object

    obj = task_object(build("NetReach", {"mode": "crd", "duration": "1s"}), users)
    obj["metadata"]["labels"] = {"team": "a"}  # made with kubectl, not by the plugin
    kube.create("/apis/kdoctor.io/v1beta1/netreaches", obj)
    ours, theirs = uniq("ours"), uniq("theirs")
    for name, where in ((ours, ns), (theirs, ns2)):
        made = kdoctor(
            local_cluster, "netreach", "--mode", "crd", "-n", where, "--name", name, "--no-wait"
        )
        assert made.returncode == 0, made.stderr
        labels = _task(local_cluster, name)["metadata"]["labels"]  # type: ignore[index]
        assert labels["kdoctor.io/namespace"] == where and labels["kdoctor.io/run-id"]
    uid = _task(local_cluster, users)["metadata"]["uid"]  # type: ignore[index]
    taken = kdoctor(local_cluster, "netreach", "--mode", "crd", "--name", users)
    assert taken.returncode == 3 and "already exists" in _error_line(taken.stderr), taken.stderr
    assert _task(local_cluster, users)["metadata"]["uid"] == uid  # type: ignore[index]
    refused = kdoctor(local_cluster, "delete", users, "-n", ns)
    assert refused.returncode == 2, refused.stderr
    assert f"NetReach {users}" in one_line(refused.stderr)
    rep = kdoctor(local_cluster, "report", users, "-n", ns)  # reading any task is fine
    assert rep.returncode in (0, 1), rep.stderr
    deadline = time.monotonic() + 60  # the stand-in controller finishes the tasks
    while time.monotonic() < deadline and not all(
        (_task(local_cluster, n) or {}).get("status", {}).get("finish") for n in (ours, theirs)
    ):
        time.sleep(0.5)
    swept = kdoctor(local_cluster, "cleanup", "-n", ns)
    assert swept.returncode == 0, swept.stderr
    assert swept.stdout.splitlines() == [f"deleted netreach {ours}"], swept.stdout
    assert _task(local_cluster, ours) is None
    assert _task(local_cluster, theirs) is not None  # made from another namespace
    everything = kdoctor(local_cluster, "cleanup", "-A", "--all")
    assert f"deleted netreach {theirs}" in everything.stdout
    assert users not in everything.stdout
    assert _task(local_cluster, users) is not None
    kube.delete(f"/apis/kdoctor.io/v1beta1/netreaches/{users}")
