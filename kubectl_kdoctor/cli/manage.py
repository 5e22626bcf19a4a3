"""``get``, ``report``, ``delete``, ``cleanup`` and ``version``."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import click
import yaml

from kubectl_kdoctor.cli.build import access
from kubectl_kdoctor.cli.options import access_options
from kubectl_kdoctor.errors import InputError
from kubectl_kdoctor.task import OUTPUTS


def _access(params: dict[str, Any]) -> Any:
    ctx = click.get_current_context()
    merged = dict(ctx.obj or {})
    merged.update({k: v for k, v in params.items() if v not in (None, ())})
    return access(merged)


KIND_ALIASES = {
    "netreach": "NetReach",
    "netreaches": "NetReach",
    "nr": "NetReach",
    "apphttphealthy": "AppHttpHealthy",
    "apphttphealthies": "AppHttpHealthy",
    "ahh": "AppHttpHealthy",
    "http": "AppHttpHealthy",
    "netdns": "Netdns",
    "netdnses": "Netdns",
    "dns": "Netdns",
    "run": "run",
    "runs": "run",
}


@click.command("get", short_help="List kdoctor tasks and the plugin's runs.")
@click.argument("kind", required=False)
@click.option(
    "-o", "--output", metavar="table|json|yaml|name", help="Output format. [default: table]"
)
@click.option("-A", "--all-namespaces", is_flag=True, help="Runs in every namespace.")
@access_options
def get(kind: str | None, output: str | None, all_namespaces: bool, **params: Any) -> int:
    """List kdoctor tasks (NetReach, AppHttpHealthy, Netdns) and the plugin's own runs.

    KIND narrows the list: netreach|nr, apphttphealthy|ahh|http, netdns|dns, run.
    """
    if kind is not None and kind.lower() not in KIND_ALIASES:
        raise InputError(
            f"must be one of netreach, apphttphealthy, netdns, run (got {kind!r})", "KIND"
        )
    if output is not None and output not in ("table", "json", "yaml", "name"):
        raise InputError(f"must be table, json, yaml or name (got {output!r})", "--output")
    acc = _access(params)
    from kubectl_kdoctor.manage import list_runs

    rows = list_runs(acc, KIND_ALIASES[kind.lower()] if kind else None, all_namespaces)
    fmt = output or "table"
    if fmt == "name":
        for r in rows:
            click.echo(f"{r.kind.lower()}/{r.name}")
    elif fmt == "json":
        click.echo(json.dumps([dataclasses.asdict(r) for r in rows], indent=2))
    elif fmt == "yaml":
        click.echo(yaml.safe_dump([dataclasses.asdict(r) for r in rows], sort_keys=False), nl=False)
    elif not rows:
        click.echo("No kdoctor tasks or runs found.", err=True)
    else:
        from tabulate import tabulate

        table = [
            [r.kind, r.name, r.namespace or "-", r.status, r.detail, _age(r.age)] for r in rows
        ]
        headers = ["KIND", "NAME", "NAMESPACE", "STATUS", "PROGRESS", "AGE"]
        click.echo(tabulate(table, headers=headers, tablefmt="plain"))
    return 0


@click.command("report", short_help="Print the report of a task or run.")
@click.argument("name")
@click.option("-o", "--output", metavar="|".join(OUTPUTS), help="Report format. [default: table]")
@access_options
def report(name: str, output: str | None, **params: Any) -> int:
    """Print the report of a run or kdoctor task NAME (optionally KIND/NAME)."""
    if output is not None and output not in OUTPUTS:
        raise InputError(f"must be one of {', '.join(OUTPUTS)} (got {output!r})", "--output")
    kind, name = _split_kind(name)
    acc = _access(params)
    from kubectl_kdoctor.manage import report_of
    from kubectl_kdoctor.report.render import render

    run = report_of(acc, kind, name)
    click.echo(render(run, output or "table"), nl=False)
    return 0 if run.passed else 1


@click.command("delete", short_help="Delete a run or kdoctor task and all it created.")
@click.argument("name")
@access_options
def delete(name: str, **params: Any) -> int:
    """Delete the run or kdoctor task NAME (optionally KIND/NAME) and everything it owns."""
    kind, name = _split_kind(name)
    acc = _access(params)
    from kubectl_kdoctor.manage import delete as delete_fn

    for what in delete_fn(acc, kind, name):
        click.echo(f"deleted {what}")
    return 0


@click.command("cleanup", short_help="Remove the plugin's finished runs and leftovers.")
@click.option(
    "-A", "--all-namespaces", is_flag=True, help="Sweep every namespace, not only the current one."
)
@click.option(
    "--all", "everything", is_flag=True, help="Delete runs and tasks still in progress too."
)
@click.option("--dry-run", is_flag=True, help="List what would be deleted; delete nothing.")
@access_options
def cleanup(all_namespaces: bool, everything: bool, dry_run: bool, **params: Any) -> int:
    """Delete the plugin's finished runs, what they left over, and the kdoctor tasks it made,
    in the namespace (-n, or the context's) or everywhere (-A).

    Only objects labelled app.kubernetes.io/managed-by=kubectl-kdoctor with a run id are
    touched, each by UID. Runs and tasks still in progress are listed and spared unless --all.
    kdoctor tasks (cluster-scoped) belong to the namespace the plugin was run in.
    """
    acc = _access(params)
    from kubectl_kdoctor.manage import cleanup as cleanup_fn

    done = cleanup_fn(acc, all_namespaces, everything=everything, dry_run=dry_run, say=click.echo)
    for line in done.spared:
        click.echo(f"spared {line} (--all deletes it too)", err=True)
    for note in done.notes:
        click.echo(f"warning: {note}", err=True)
    if not done.delete and not done.spared:
        click.echo("nothing to clean up", err=True)
    return 0


@click.command("version", short_help="Plugin, agent image, server version, kdoctor controller.")
@click.option("--client", is_flag=True, help="Only the plugin's own version (no cluster access).")
@click.option("-o", "--output", metavar="text|json|yaml", help="Output format. [default: text]")
@access_options
def version(client: bool, output: str | None, **params: Any) -> int:
    """Print the plugin version, the agent image, and (unless --client) the server version and
    whether a kdoctor controller answers."""
    if output is not None and output not in ("text", "json", "yaml"):
        raise InputError(f"must be text, json or yaml (got {output!r})", "--output")
    acc = _access(params)
    from kubectl_kdoctor.manage import version_info

    info = version_info(acc, client)
    if output == "json":
        click.echo(json.dumps(info, indent=2))
    elif output == "yaml":
        click.echo(yaml.safe_dump(info, sort_keys=False), nl=False)
    else:
        click.echo(f"kubectl-kdoctor {info['plugin']} (python {info['python']})")
        click.echo(f"agent image: {info['agentImage']}")
        if "server" in info:
            click.echo(f"server: {info['server']}")
        if "kdoctorController" in info:
            detail = info["kdoctorControllerDetail"]
            click.echo(f"kdoctor controller: {info['kdoctorController']} ({detail})")
    return 0


def _split_kind(text: str) -> tuple[str | None, str]:
    """``NAME`` or ``KIND/NAME``; NAME is a Kubernetes object name (checked here, exit 2)."""
    from kubectl_kdoctor.validate import object_name

    if "/" in text:
        kind, _, name = text.partition("/")
        if kind.lower() not in KIND_ALIASES or not name:
            raise InputError(f"expected NAME or KIND/NAME (got {text!r})", "NAME")
        return KIND_ALIASES[kind.lower()], object_name(name, "NAME")
    if not text:
        raise InputError("must not be empty", "NAME")
    return None, object_name(text, "NAME")


def _age(seconds: float) -> str:
    s = int(seconds)
    if s < 120:
        return f"{s}s"
    if s < 7200:
        return f"{s // 60}m"
    if s < 172800:
        return f"{s // 3600}h"
    return f"{s // 86400}d"
