"""The click command tree; ``main`` is the ``kubectl-kdoctor`` entry point.

Errors end here and only here: ``KdoctorError`` and click's usage errors become one line on
stderr and the exit code of SPEC (0 pass, 1 expectation not met, 2 bad input, 3 could not
run, 130 interrupted).
"""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from kubectl_kdoctor import __version__
from kubectl_kdoctor.cli.manage import cleanup, delete, get, report, version
from kubectl_kdoctor.cli.options import access_options
from kubectl_kdoctor.cli.probe import dns, http, netreach
from kubectl_kdoctor.errors import EXIT_INTERRUPTED, EXIT_USAGE, KdoctorError

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 110}


class _Group(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        order = ["netreach", "http", "dns", "get", "report", "delete", "cleanup", "version"]
        return [c for c in order if c in self.commands] + sorted(set(self.commands) - set(order))


@click.group(cls=_Group, context_settings=CONTEXT, invoke_without_command=True)
@click.version_option(__version__, "--version", message="kubectl-kdoctor %(version)s")
@access_options
@click.pass_context
def cli(ctx: click.Context, /, **access: Any) -> None:
    """Probe a Kubernetes data plane under load: node x node x path reachability, HTTP
    and DNS, with latency percentiles and a verdict a CI job can act on.

    \b
    Exit codes: 0 pass, 1 an expectation was not met, 2 bad input,
                3 could not run, 130 interrupted (what was created is removed).
    """
    ctx.obj = {k: v for k, v in access.items() if v not in (None, ())}
    if ctx.invoked_subcommand is None:
        click.echo(ctx.get_help())


for _cmd in (netreach, http, dns, get, report, delete, cleanup, version):
    cli.add_command(_cmd)


def _agent_command() -> None:
    from kubectl_kdoctor.cli.agent import agent

    cli.add_command(agent)


def prog_name(argv0: str) -> str:
    """``kubectl kdoctor`` when run as a kubectl plugin (krew best practice)."""
    base = os.path.basename(argv0)
    return "kubectl kdoctor" if base.startswith("kubectl-") or base == "__main__.py" else base


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["__complete"] or os.environ.get("_KUBECTL_KDOCTOR_COMPLETE"):
        from kubectl_kdoctor.cli.completion import complete  # shell completion, then exit

        sys.exit(complete(cli, args))
    if args[:1] == ["agent"]:
        _agent_command()
    try:
        code = cli.main(args=args, prog_name=prog_name(sys.argv[0]), standalone_mode=False)
    except click.exceptions.Exit as exc:
        code = exc.exit_code
    except click.UsageError as exc:
        msg = exc.format_message()
        if exc.ctx is not None and isinstance(exc, click.NoSuchOption | click.BadOptionUsage):
            msg += f" (see '{exc.ctx.command_path} --help')"
        click.echo(f"Error: {msg}", err=True)
        code = EXIT_USAGE
    except click.ClickException as exc:
        click.echo(f"Error: {exc.format_message()}", err=True)
        code = exc.exit_code
    except (KeyboardInterrupt, click.Abort):
        click.echo("Interrupted.", err=True)
        code = EXIT_INTERRUPTED
    except KdoctorError as exc:
        click.echo(f"Error: {exc}", err=True)
        code = exc.exit_code
    sys.exit(code if isinstance(code, int) else 0)
