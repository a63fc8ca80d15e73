"""``allowance load-factor``: lower limits for everyone on a store, and show what is lowered."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from allowance.cli.common import (
    DEFAULT_STORE,
    JsonOption,
    PolicyOption,
    StoreOption,
    handle_errors,
    out,
    read_policy,
)
from allowance.limiter import Limiter
from allowance.policy import Policy

app = typer.Typer(
    help="Lower limits for everyone on a store in periods of high demand (a load factor).",
    no_args_is_help=True,
)


def factor_table(policy: Policy, factors: dict[str, float]) -> Table:
    table = Table(title="load factors (effective max = floor(max × seats × factor))")
    table.add_column("limit", style="bold")
    table.add_column("factor", justify="right")
    table.add_column("label")
    for name, factor in factors.items():
        shown = "1 (not lowered)" if factor == 1.0 else f"{factor:g}"
        table.add_row(name, shown, policy.limits[name].label)
    return table


def _print(policy: Policy, factors: dict[str, float], as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps({"factors": factors}))
    else:
        out().print(factor_table(policy, factors))


@app.command("set")
@handle_errors
def set_factor(
    factor: Annotated[
        float, typer.Argument(help="0 < factor <= 1; 1 lifts it.", show_default=False)
    ],
    limits: Annotated[
        list[str] | None,
        typer.Option("--limit", help="A limit it applies to (repeat; default: every limit)."),
    ] = None,
    store: StoreOption = DEFAULT_STORE,
    policy_file: PolicyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Set the load factor; every server on the store applies it within a second."""
    with Limiter(read_policy(policy_file), store=store) as limiter:
        factors = limiter.set_load_factor(factor, limits or None)
        _print(limiter.policy, factors, as_json)


@app.command("show")
@handle_errors
def show_factors(
    store: StoreOption = DEFAULT_STORE,
    policy_file: PolicyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show the load factor in force for each limit."""
    with Limiter(read_policy(policy_file), store=store) as limiter:
        _print(limiter.policy, limiter.load_factors(), as_json)
