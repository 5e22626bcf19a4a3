"""``kubectl-kdoctor agent``: the agent inside a pod (hidden from help)."""

from __future__ import annotations

import click


@click.command("agent", hidden=True)
@click.option("--config", "config_path", metavar="FILE", help="Task configuration (JSON).")
def agent(config_path: str | None) -> int:
    """Run the agent: serve peers, run the load, write the report."""
    raise click.ClickException("the agent is being built")
