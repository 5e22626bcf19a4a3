"""The click command tree; ``main`` is the ``kubectl-kdoctor`` entry point.

Errors end here and only here (the one error boundary): ``KdoctorError`` and click's usage
errors become one line on stderr and the exit code of SPEC (0 pass, 1 expectation not met,
2 bad input, 3 could not run, 130 interrupted); any other exception is one line too, exit 3,
with its traceback only under ``-v``; a closed stdout (``| head``) ends quietly with 141.
"""

from __future__ import annotations

import os
import sys
import traceback
from typing import Any

import click

from kubectl_kdoctor import __version__
from kubectl_kdoctor.cli.manage import cleanup, delete, get, report, version
from kubectl_kdoctor.cli.options import access_options
from kubectl_kdoctor.cli.probe import dns, http, netreach
from kubectl_kdoctor.errors import (
    EXIT_BROKEN_PIPE,
    EXIT_CANNOT_RUN,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    KdoctorError,
)

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 110}
MAX_MESSAGE = 400  # characters of an unexpected error's message on its one line
MAX_KNOWN_MESSAGE = 4000  # a KdoctorError's (it may list every missing permission)


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


def _refuse_empty(param: click.Parameter) -> None:
    """An empty value (``--expect-p99 ""``, ``--targets ""``, ``DOMAIN ""``) is an error, never
    "the default": in CI an unset variable would otherwise silently drop a bound. Wraps the
    parameter's own callback, so it covers every option of every command, present or future."""
    if isinstance(param, click.Option) and (param.is_flag or param.count):
        return
    if getattr(param, "_refuses_empty", False):
        return
    inner = param.callback

    def check(ctx: click.Context, p: click.Parameter, value: Any) -> Any:
        values = value if isinstance(value, tuple) else (value,)
        if any(isinstance(x, str) and x == "" for x in values):
            name = max(p.opts, key=len) if isinstance(p, click.Option) else p.human_readable_name
            raise click.BadParameter(
                "must not be empty (leave the flag out for the default)"
                if isinstance(p, click.Option)
                else "must not be empty",
                ctx=ctx,
                param=p,
                param_hint=name,
            )
        return inner(ctx, p, value) if inner is not None else value

    param.callback = check
    param._refuses_empty = True  # type: ignore[attr-defined]


def guard_empty_values(command: click.Command) -> None:
    """Apply ``_refuse_empty`` to every parameter of ``command`` and of its subcommands."""
    for param in command.params:
        _refuse_empty(param)
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            guard_empty_values(sub)


guard_empty_values(cli)


def _agent_command() -> None:
    from kubectl_kdoctor.cli.agent import agent

    cli.add_command(agent)
    guard_empty_values(agent)


def prog_name(argv0: str) -> str:
    """``kubectl kdoctor`` when run as a kubectl plugin (krew best practice)."""
    base = os.path.basename(argv0)
    return "kubectl kdoctor" if base.startswith("kubectl-") or base == "__main__.py" else base


def verbose_requested(args: list[str]) -> bool:
    """``-v``/``--verbose`` (``-vv`` too) anywhere before ``--``.

    Read from argv, not from click, so it holds even when the failure is in parsing itself."""
    for a in args:
        if a == "--":
            return False
        if a == "--verbose" or (a.startswith("-v") and set(a[1:]) == {"v"}):
            return True
    return False


def one_line(text: str, limit: int = MAX_MESSAGE) -> str:
    """A message on one line (line breaks become spaces), at most ``limit`` characters."""
    flat = " ".join(part.strip() for part in text.splitlines() if part.strip())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def _say(line: str) -> None:
    """One line on stderr; a stderr that cannot be written (closed, a full disk) must not
    change the exit code."""
    try:
        click.echo(line, err=True)
    except (OSError, ValueError):
        pass


def _trace(exc: BaseException) -> None:
    try:
        traceback.print_exception(exc, file=sys.stderr)
    except (OSError, ValueError):
        pass


def _unexpected(exc: BaseException, verbose: bool) -> int:
    """The last resort: a bug or an unforeseen failure is one line and exit 3, never a
    traceback (which CI would read as exit 1, "the network failed")."""
    if verbose:
        _trace(exc)
    what = one_line(str(exc)) or "(no message)"
    hint = "" if verbose else " (run with -v for details)"
    _say(f"Error: unexpected {type(exc).__name__}: {what}{hint}")
    return EXIT_CANNOT_RUN


def _broken_pipe() -> int:
    """stdout was closed by its reader (``| head``): stop quietly, as ``cat`` would.

    Python would otherwise print an error when it flushes stdout at exit; point the file
    descriptor at /dev/null first (the recipe of the Python docs, "Note on SIGPIPE")."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass
    return EXIT_BROKEN_PIPE


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    # an agent's log is read after the fact: it always gets the traceback
    verbose = verbose_requested(args) or args[:1] == ["agent"]
    try:
        code = _main(args, verbose)
    except BrokenPipeError:
        code = _broken_pipe()
    except KeyboardInterrupt:
        code = EXIT_INTERRUPTED
    except Exception as exc:  # the one boundary: see the module docstring
        code = _unexpected(exc, verbose)
    sys.exit(code)


def _main(args: list[str], verbose: bool) -> int:
    if args[:1] == ["__complete"] or os.environ.get("_KUBECTL_KDOCTOR_COMPLETE"):
        from kubectl_kdoctor.cli.completion import complete  # shell completion, then exit

        sys.exit(complete(cli, args))
    if args[:1] == ["agent"]:
        _agent_command()
    try:
        code = cli.main(args=args, prog_name=prog_name(sys.argv[0]), standalone_mode=False)
    except SystemExit:
        # click catches EPIPE itself, wraps stdout and exits 1 ("expectation not met"):
        # make that the quiet broken-pipe exit instead.
        if type(sys.stdout).__name__ == "_PacifyFlushWrapper":
            return _broken_pipe()
        raise
    except click.exceptions.Exit as exc:
        code = exc.exit_code
    except click.UsageError as exc:
        msg = one_line(exc.format_message(), MAX_KNOWN_MESSAGE)
        if exc.ctx is not None and isinstance(exc, click.NoSuchOption | click.BadOptionUsage):
            msg += f" (see '{exc.ctx.command_path} --help')"
        _say(f"Error: {msg}")
        code = EXIT_USAGE
    except click.ClickException as exc:
        _say(f"Error: {one_line(exc.format_message(), MAX_KNOWN_MESSAGE)}")
        code = exc.exit_code
    except (KeyboardInterrupt, click.Abort):
        _say("Interrupted.")
        code = EXIT_INTERRUPTED
    except KdoctorError as exc:
        if verbose and exc.__cause__ is not None:
            _trace(exc.__cause__)
        _say(f"Error: {one_line(str(exc), MAX_KNOWN_MESSAGE)}")
        code = exc.exit_code
    return code if isinstance(code, int) else 0
