"""The ``allowance`` command line: policies, simulations, accounts, usage, the service.

Every ``AllowanceError`` becomes a one-line red error on stderr and exit status 1; exit status
2 is left to Typer for usage mistakes (an unknown option, a missing argument).
"""

from __future__ import annotations

from typing import Annotated

import typer

from allowance import __version__
from allowance.cli import (
    demo_cmd,
    ledger_cmd,
    load_cmd,
    policy_cmd,
    serve_cmd,
    simulate,
    sweep_cmd,
    terms_cmd,
    usage_cmd,
    webhooks_cmd,
)
from allowance.cli.typer_help import hide_flag_types

hide_flag_types()

app = typer.Typer(
    name="allowance",
    help="Plan-based usage limits: check policies, replay scenarios, look at usage.",
    no_args_is_help=True,
    rich_markup_mode="markdown",  # reflows docstring paragraphs in --help
    pretty_exceptions_show_locals=False,  # a bug's traceback must not print store URLs etc.
)
app.add_typer(policy_cmd.app, name="policy")
app.command("simulate")(simulate.command)
app.command("usage")(usage_cmd.usage)
usage_cmd.accounts_app.command("override")(terms_cmd.override)
usage_cmd.accounts_app.command("grant")(terms_cmd.grant)
app.add_typer(usage_cmd.accounts_app, name="accounts")
app.command("serve")(serve_cmd.serve)
app.add_typer(serve_cmd.keys_app, name="keys")
app.command("sweep")(sweep_cmd.sweep)
app.command("demo")(demo_cmd.demo)
app.add_typer(load_cmd.app, name="load-factor")
app.add_typer(webhooks_cmd.app, name="webhooks")
app.add_typer(ledger_cmd.app, name="ledger")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"allowance {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """Plan-based usage limits: check policies, replay scenarios, look at usage."""


def main() -> None:
    """The console script ``allowance``."""
    app()


__all__ = ["app", "main"]
