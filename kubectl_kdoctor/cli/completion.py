"""Shell completion, two ways in (docs/completion.md):

* click's own scripts for the ``kubectl-kdoctor`` command:
  ``eval "$(_KUBECTL_KDOCTOR_COMPLETE=bash_source kubectl-kdoctor)"`` (``zsh_source``,
  ``fish_source``). The program name is ``kubectl-kdoctor`` here, never the help text's
  ``kubectl kdoctor``, whose space would register the script for ``kubectl`` itself.
* kubectl's plugin completion (kubectl >= 1.26): for ``kubectl kdoctor <TAB>`` kubectl runs
  ``kubectl_complete-kdoctor ARG... WORD`` (WORD being the word under the cursor, maybe
  empty) and reads cobra's format: one candidate a line (``value<TAB>description``), then
  ``:<directive>``. ``kubectl_complete-kdoctor`` is a console script of this package, and
  ``kubectl-kdoctor __complete ARG... WORD`` answers the same for a single-file install.

Option values the commands take as plain strings (validated later, so errors name the flag)
get candidates here: output formats, modes, paths, DNS types, kubeconfig contexts, files.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence

import click
from click.shell_completion import CompletionItem, ShellComplete, shell_complete

from kubectl_kdoctor.engine.spec import DNS_QTYPES, DNS_RCODES
from kubectl_kdoctor.task import IP_FAMILIES, MODES, NETREACH_PATHS, OUTPUTS, PULL_POLICIES

COMPLETE_VAR = "_KUBECTL_KDOCTOR_COMPLETE"
PROG = "kubectl-kdoctor"

# cobra's ShellCompDirective bits, as kubectl reads them from a plugin's completer.
DIRECTIVE_DEFAULT = 0  # the shell completes file names
DIRECTIVE_NO_FILE = 4
DIRECTIVE_DIRS = 16

Completer = Callable[[click.Context, click.Parameter, str], list[CompletionItem]]


def _words(*values: str) -> Completer:
    def complete(
        ctx: click.Context, param: click.Parameter, incomplete: str
    ) -> list[CompletionItem]:
        return [CompletionItem(v) for v in values if v.startswith(incomplete)]

    return complete


def _comma_list(*values: str) -> Completer:
    """Candidates for ``a,b,c`` lists: the next element after what is already typed."""

    def complete(
        ctx: click.Context, param: click.Parameter, incomplete: str
    ) -> list[CompletionItem]:
        done, _, last = incomplete.rpartition(",")
        prefix = f"{done}," if done else ""
        taken = set(done.split(",")) if done else set()
        return [CompletionItem(prefix + v) for v in values if v.startswith(last) and v not in taken]

    return complete


def _files(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    return [CompletionItem(incomplete, type="file")]


def _contexts(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    """Context names of the kubeconfig the command line (or $KUBECONFIG) names."""
    import yaml

    root = ctx.find_root()
    given = ctx.params.get("kubeconfig") or root.params.get("kubeconfig")
    paths = given or os.environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")
    names: list[str] = []
    for path in paths.split(os.pathsep):
        if not os.path.isfile(path):  # a FIFO would block completion forever
            continue
        try:
            with open(path, encoding="utf-8") as f:
                doc = yaml.safe_load(f) or {}
        except (OSError, ValueError, RecursionError, yaml.YAMLError):  # also: not UTF-8
            continue
        if not isinstance(doc, dict) or not isinstance(doc.get("contexts") or [], list):
            continue
        for c in doc.get("contexts") or []:
            if isinstance(c, dict) and isinstance(c.get("name"), str) and c["name"] not in names:
                names.append(c["name"])
    return [CompletionItem(n) for n in names if n.startswith(incomplete)]


COMPLETERS: dict[str, Completer] = {
    "--output": _words(*OUTPUTS),
    "--mode": _words(*MODES),
    "--image-pull-policy": _words(*PULL_POLICIES),
    "--dry-run": _words("none", "client"),
    "--targets": _comma_list(*NETREACH_PATHS),
    "--ip-family": _words(*IP_FAMILIES),
    "--protocol": _words("udp", "tcp", "tls"),
    "--qtype": _words(*DNS_QTYPES),
    "--expect-rcode": _words(*DNS_RCODES),
    "--expect-status": _words("2xx", "3xx", "200", "204", "301", "302", "4xx", "5xx"),
    "--tolerate": _words("all"),
    "--context": _contexts,
    "--kubeconfig": _files,
    "--filename": _files,
    "--data-file": _files,
    "--cacert": _files,
    "--cert": _files,
    "--key": _files,
}
# Per-command overrides: `get -o` and `version -o` take their own formats.
OVERRIDES: dict[tuple[str, str], Completer] = {
    ("get", "--output"): _words("table", "json", "yaml", "name"),
    ("get", "kind"): _words("netreach", "apphttphealthy", "netdns", "run"),
    ("version", "--output"): _words("text", "json", "yaml"),
}


def install(cli: click.Group) -> None:
    """Attach the value completers to every command's options (they are plain strings)."""
    commands: list[click.Command] = [cli, *cli.commands.values()]
    for cmd in commands:
        for param in cmd.params:
            keys = [*param.opts, param.name or ""]
            completer = next(
                (OVERRIDES[(cmd.name or "", k)] for k in keys if (cmd.name or "", k) in OVERRIDES),
                None,
            ) or next((COMPLETERS[k] for k in keys if k in COMPLETERS), None)
            if completer is not None:
                param._custom_shell_complete = completer


def plugin_candidates(cli: click.Group, argv: Sequence[str]) -> tuple[list[str], int]:
    """What ``kubectl_complete-kdoctor ARG... WORD`` answers: candidate lines and the
    cobra directive (file completion for file-valued options, none elsewhere)."""
    args, incomplete = list(argv[:-1]), argv[-1] if argv else ""
    install(cli)
    comp = ShellComplete(cli, {}, PROG, COMPLETE_VAR)
    try:
        items = comp.get_completions(args, incomplete)
    except click.ClickException:
        return [], DIRECTIVE_NO_FILE
    if any(i.type == "file" for i in items):
        return [], DIRECTIVE_DEFAULT
    if any(i.type == "dir" for i in items):
        return [], DIRECTIVE_DIRS
    lines = []
    for item in items:
        help_text = " ".join(str(item.help or "").split())
        lines.append(f"{item.value}\t{help_text}" if help_text else str(item.value))
    return lines, DIRECTIVE_NO_FILE


def complete(cli: click.Group, args: Sequence[str]) -> int:
    """Answer a completion request (``__complete`` or the environment variable); the exit code."""
    if args[:1] == ["__complete"]:
        lines, directive = plugin_candidates(cli, args[1:])
        click.echo("".join(f"{line}\n" for line in lines) + f":{directive}")
        return 0
    install(cli)
    return shell_complete(cli, {}, PROG, COMPLETE_VAR, os.environ.get(COMPLETE_VAR, ""))


def kubectl_complete() -> None:
    """The ``kubectl_complete-kdoctor`` console script (kubectl's plugin completion)."""
    from kubectl_kdoctor.cli import cli

    sys.exit(complete(cli, ["__complete", *sys.argv[1:]]))
