"""Shared click options: Kubernetes access (every command), load and verdict, placement,
run control and output (netreach, http, dns). Values are kept as given here and parsed by
``kubectl_kdoctor.validate`` in ``build.py``, so one code path names the flag in errors."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from kubectl_kdoctor.task import MODES, OUTPUTS, PULL_POLICIES

F = TypeVar("F", bound=Callable[..., Any])


def _stack(*decorators: Callable[[F], F]) -> Callable[[F], F]:
    def apply(f: F) -> F:
        for d in reversed(decorators):
            f = d(f)
        return f

    return apply


ACCESS_OPTIONS = (
    "kubeconfig",
    "context",
    "cluster",
    "user",
    "namespace",
    "request_timeout",
    "as_user",
    "as_groups",
)

access_options = _stack(
    click.option("--kubeconfig", metavar="PATH", help="Path to the kubeconfig file."),
    click.option("--context", metavar="NAME", help="The kubeconfig context to use."),
    click.option("--cluster", metavar="NAME", help="The kubeconfig cluster to use."),
    click.option("--user", metavar="NAME", help="The kubeconfig user to use."),
    click.option("-n", "--namespace", metavar="NS", help="Namespace for the run's objects."),
    click.option(
        "--request-timeout",
        metavar="D",
        help="Timeout of each API request (e.g. 30s; 0 = none).",
    ),
    click.option("--as", "as_user", metavar="USER", help="Impersonate this user."),
    click.option(
        "--as-group",
        "as_groups",
        metavar="GROUP",
        multiple=True,
        help="Impersonate this group (repeatable).",
    ),
    # Read by the error boundary in cli.main (from argv, so it also works when parsing
    # fails); declared here so every command accepts it and --help shows it.
    click.option(
        "-v",
        "--verbose",
        count=True,
        expose_value=False,
        help="On an unexpected error, print its traceback.",
    ),
)

load_options = _stack(
    click.option(
        "--qps",
        metavar="N",
        help="Requests per second, per agent (and per target for netreach). [default: 10]",
    ),
    click.option("--duration", metavar="D", help="How long each round sends load. [default: 10s]"),
    click.option("--timeout", metavar="D", help="Per-request timeout. [default: 1s]"),
    click.option("--rounds", metavar="N", help="Number of rounds. [default: 1]"),
    click.option(
        "--interval", metavar="D", help="Time between round starts. [default: back to back]"
    ),
    click.option(
        "--expect-success-rate", metavar="R", help="Minimum success rate, 0..1. [default: 1]"
    ),
    click.option("--expect-mean-delay", metavar="D", help="Maximum mean latency (e.g. 50ms)."),
    click.option("--expect-p99", metavar="D", help="Maximum p99 latency (e.g. 100ms)."),
    click.option(
        "--require-all-nodes",
        is_flag=True,
        default=None,
        help="Fail (exit 1) when a node is skipped (NotReady, cordoned, tainted, ...).",
    ),
)

placement_options = _stack(
    click.option(
        "--node",
        "nodes",
        metavar="NAME",
        multiple=True,
        help="Run an agent on this node (repeatable).",
    ),
    click.option(
        "--node-selector",
        metavar="SELECTOR",
        help="Run agents on nodes matching this label selector.",
    ),
    click.option(
        "--tolerate",
        "tolerations",
        metavar="all|KEY[=VALUE][:EFFECT]",
        multiple=True,
        help="Tolerate a taint (repeatable); 'all' tolerates every taint.",
    ),
    click.option(
        "--host-network",
        is_flag=True,
        default=None,
        help="Run agents in the host network namespace (their responder on node addresses "
        "answers only the run's own probes).",
    ),
)

run_options = _stack(
    click.option(
        "-f",
        "--filename",
        "file",
        metavar="FILE",
        help="A kdoctor task manifest of the matching kind.",
    ),
    click.option(
        "--mode",
        metavar="|".join(MODES),
        help="crd: kdoctor controller; job: the plugin's own agents; auto: crd when installed. [default: auto]",
    ),
    click.option("--name", metavar="NAME", help="Name of the run (default: generated)."),
    click.option(
        "--image",
        metavar="IMAGE",
        help="Agent image (default: derived from the version; env KUBECTL_KDOCTOR_IMAGE).",
    ),
    click.option(
        "--image-pull-policy", metavar="|".join(PULL_POLICIES), help="Agent image pull policy."
    ),
    click.option(
        "--start-timeout", metavar="D", help="Agents must be running by then. [default: 2m]"
    ),
    click.option(
        "--keep", is_flag=True, default=None, help="Leave the run's objects in the cluster."
    ),
    click.option("--no-wait", is_flag=True, default=None, help="Create the run and return."),
    click.option(
        "--dry-run",
        metavar="none|client",
        is_flag=False,
        flag_value="client",
        default=None,
        help="'client': print the objects that would be created, as YAML; create nothing.",
    ),
    click.option(
        "--force", is_flag=True, default=None, help="Allow a total load above the safety limit."
    ),
    click.option(
        "-o", "--output", metavar="|".join(OUTPUTS), help="Report format. [default: table]"
    ),
)

local_option = click.option(
    "--local",
    is_flag=True,
    default=None,
    help="Run the load engine in this process: no cluster needed.",
)


def explicit(ctx: click.Context, name: str) -> bool:
    """Whether the user gave this parameter on the command line."""
    src = ctx.get_parameter_source(name)
    return src is not None and src.name in ("COMMANDLINE", "ENVIRONMENT")
