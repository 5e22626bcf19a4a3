"""The click command tree (entry point ``kubectl-kdoctor``)."""

import click


@click.group()
def main() -> None:
    """Probe a Kubernetes data plane under load."""
