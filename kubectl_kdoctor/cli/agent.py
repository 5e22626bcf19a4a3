"""``kubectl-kdoctor agent``: the agent inside a pod (hidden from help)."""

from __future__ import annotations

import os

import click


@click.command("agent", hidden=True)
@click.option(
    "--run", "run", metavar="NAME", help="The run this agent belongs to. [env KDOCTOR_RUN]"
)
def agent(run: str | None) -> int:
    """Run the agent: serve peers, run the load, write the report."""
    name = run or os.environ.get("KDOCTOR_RUN")
    if not name:
        raise click.UsageError("--run (or KDOCTOR_RUN) is required")
    from kubectl_kdoctor.agent.main import main

    return main(name)
