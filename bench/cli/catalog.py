"""``accelbench list`` and ``accelbench describe``: what models and strategies there are."""

from __future__ import annotations

import click

from bench.cli.app import main


@main.command("list")
def list_cmd() -> None:
    """List the models and strategies, each with one line of help."""
    from bench.models.registry import (
        list_models,  # lazy: the CLI imports no torch until a command runs
    )
    from strategies import list_strategies  # lazy: as above

    click.secho("Models", bold=True)
    for info in list_models():
        click.echo(f"  {info.name:<18} {info.summary}")
    click.echo(f"  {'hf:<id or path>':<18} any diffusers text-to-image pipeline you have locally")
    click.secho("\nStrategies", bold=True)
    for name, summary in list_strategies():
        click.echo(f"  {name:<18} {summary}")
    click.echo("\nA strategy's parameters: accelbench describe NAME")


@main.command("describe")
@click.argument("name")
def describe_cmd(name: str) -> None:
    """Show a strategy's parameters, defaults and allowed values."""
    from strategies import get_strategy  # lazy: as above

    cls = get_strategy(name)
    click.secho(f"{cls.name}: {cls.summary}", bold=True)
    if cls.__doc__:
        click.echo(cls.__doc__.strip())
    lines = cls.Config.describe_params()
    click.echo("\nParameters:" if lines else "\nNo parameters.")
    for line in lines:
        click.echo(f"  {line}")
