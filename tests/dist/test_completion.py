"""Shell completion (docs/completion.md), through the real shells and the real kubectl:
click's bash and zsh scripts for ``kubectl-kdoctor``, and kubectl's plugin completion
(``kubectl __complete kdoctor ...`` calls ``kubectl_complete-kdoctor``)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.dist.conftest import VENV_BIN, base_path, run

PLUGIN = VENV_BIN / "kubectl-kdoctor"
COMPLETER = VENV_BIN / "kubectl_complete-kdoctor"
COMMANDS = ["netreach", "http", "dns", "get", "report", "delete", "cleanup", "version"]


@pytest.fixture
def bin_dir(tmp_path: Path) -> Path:
    """A PATH directory with the venv's two executables (and nothing else of the venv)."""
    for exe in (PLUGIN, COMPLETER):
        if not exe.exists():
            pytest.fail(f"{exe} is missing: run hack/setup (pip install -e .)")
    d = tmp_path / "bin"
    d.mkdir()
    for exe in (PLUGIN, COMPLETER):
        (d / exe.name).symlink_to(exe)
    return d


def _env(bin_dir: Path, **extra: str) -> dict[str, str]:
    return {"PATH": base_path(bin_dir), "HOME": str(bin_dir.parent), **extra}


def _kubectl_complete(bin_dir: Path, *words: str, **env: str) -> list[str]:
    proc = run(["kubectl", "__complete", "kdoctor", *words], env=_env(bin_dir, **env))
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.splitlines()


def test_kubectl_completes_commands_options_and_values(bin_dir: Path) -> None:
    lines = _kubectl_complete(bin_dir, "")
    assert [line.split("\t")[0] for line in lines[:-1]] == COMMANDS
    assert lines[-1] == ":4"  # NoFileComp
    assert _kubectl_complete(bin_dir, "net") == [
        "netreach\tEvery node's agent reaches every other over pod IP, Services, Ingress, ...",
        ":4",
    ]
    assert [x.split("\t")[0] for x in _kubectl_complete(bin_dir, "netreach", "--ta")] == [
        "--targets",
        ":4",
    ]
    assert _kubectl_complete(bin_dir, "netreach", "-o", "") == [
        "table",
        "wide",
        "json",
        "yaml",
        "junit",
        "html",
        ":4",
    ]
    assert _kubectl_complete(bin_dir, "netreach", "--targets", "pod,cl") == [
        "pod,clusterip",
        ":4",
    ]
    assert _kubectl_complete(bin_dir, "dns", "--qtype", "S") == ["SRV", "SOA", ":4"]
    assert _kubectl_complete(bin_dir, "get", "-o", "") == ["table", "json", "yaml", "name", ":4"]
    assert _kubectl_complete(bin_dir, "version", "--output", "") == ["text", "json", "yaml", ":4"]
    # File-valued options hand over to the shell's file completion (directive 0).
    assert _kubectl_complete(bin_dir, "http", "--cacert", "") == [":0"]
    assert _kubectl_complete(bin_dir, "netreach", "-f", "ta") == [":0"]


def test_kubectl_completes_contexts_of_the_kubeconfig(bin_dir: Path, tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: prod-eu\n"
        "contexts:\n- name: prod-eu\n  context: {cluster: a, user: a}\n"
        "- name: prod-us\n  context: {cluster: b, user: b}\n- name: dev\n  context: {cluster: c, user: c}\n"
    )
    lines = _kubectl_complete(bin_dir, "netreach", "--context", "prod", KUBECONFIG=str(kubeconfig))
    assert lines == ["prod-eu", "prod-us", ":4"]
    lines = _kubectl_complete(
        bin_dir, "netreach", "--kubeconfig", str(kubeconfig), "--context", "d"
    )
    assert lines == ["dev", ":4"]


def test_kubectl_plugin_list_shows_no_warning(bin_dir: Path) -> None:
    proc = run(["kubectl", "plugin", "list"], env=_env(bin_dir))
    assert proc.returncode == 0, proc.stderr
    assert f"{bin_dir}/kubectl-kdoctor" in proc.stdout
    assert "kubectl_complete" not in proc.stdout  # not a plugin: kubectl does not list it
    assert "warning" not in (proc.stdout + proc.stderr).lower()


def test_single_file_installs_answer_dunder_complete(bin_dir: Path) -> None:
    proc = run(["kubectl-kdoctor", "__complete", "dns", "--protocol", "t"], env=_env(bin_dir))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["tcp", "tls", ":4"]


def test_bash_script_registers_kubectl_kdoctor_only(bin_dir: Path) -> None:
    proc = run(["kubectl-kdoctor"], env=_env(bin_dir, _KUBECTL_KDOCTOR_COMPLETE="bash_source"))
    assert proc.returncode == 0, proc.stderr
    assert "complete -o nosort -F _kubectl_kdoctor_completion kubectl-kdoctor" in proc.stdout
    # Never a completion for `kubectl` itself (the help's "kubectl kdoctor" has a space).
    assert "kubectl kdoctor" not in proc.stdout


def _bash(bin_dir: Path, line: str) -> list[str]:
    """COMPREPLY of click's bash completion function for the words of ``line``."""
    words = line.split(" ")
    script = (
        'eval "$(_KUBECTL_KDOCTOR_COMPLETE=bash_source kubectl-kdoctor)"\n'
        f"COMP_WORDS=({' '.join(repr(w) for w in words)})\n"
        f"COMP_CWORD={len(words) - 1}\n"
        '_kubectl_kdoctor_completion kubectl-kdoctor "${COMP_WORDS[COMP_CWORD]}"\n'
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    proc = run(["bash", "--norc", "--noprofile", "-c", script], env=_env(bin_dir))
    assert proc.returncode == 0, proc.stderr
    return [x for x in proc.stdout.splitlines() if x]


def test_bash_completes_through_the_script(bin_dir: Path) -> None:
    assert _bash(bin_dir, "kubectl-kdoctor net") == ["netreach"]
    assert _bash(bin_dir, "kubectl-kdoctor dns --protocol ") == ["udp", "tcp", "tls"]
    assert _bash(bin_dir, "kubectl-kdoctor netreach --ip-") == ["--ip-family"]
    assert _bash(bin_dir, "kubectl-kdoctor netreach --ip-family ") == ["ipv4", "ipv6", "dual"]


def test_zsh_script_loads_and_completes(bin_dir: Path) -> None:
    zsh = shutil.which("zsh", path="/usr/bin:/bin")
    if zsh is None:
        pytest.skip("zsh is not installed (hack/setup installs it)")
    script = (
        "autoload -U compinit && compinit -u -D\n"
        'eval "$(_KUBECTL_KDOCTOR_COMPLETE=zsh_source kubectl-kdoctor)"\n'
        'print -r -- "$_comps[kubectl-kdoctor]"\n'
    )
    proc = run([zsh, "-f", "-c", script], env=_env(bin_dir))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "_kubectl_kdoctor_completion"
    # What the zsh function asks the program for, and the program's answer (type, value, help).
    proc = run(
        ["kubectl-kdoctor"],
        env=_env(
            bin_dir,
            _KUBECTL_KDOCTOR_COMPLETE="zsh_complete",
            COMP_WORDS="kubectl-kdoctor dns --protocol ",
            COMP_CWORD="3",
        ),
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "plain",
        "udp",
        "_",
        "plain",
        "tcp",
        "_",
        "plain",
        "tls",
        "_",
    ]


def test_completion_env_var_does_not_leak_into_normal_runs(bin_dir: Path) -> None:
    env = _env(bin_dir)
    assert "_KUBECTL_KDOCTOR_COMPLETE" not in env
    proc = run(["kubectl-kdoctor", "version", "--client"], env=env)
    assert proc.returncode == 0
    assert proc.stdout.startswith("kubectl-kdoctor ")
    assert os.environ.get("_KUBECTL_KDOCTOR_COMPLETE") is None
