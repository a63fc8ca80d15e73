"""``allowance policy show`` and ``allowance policy check``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from allowance.cli.common import handle_errors, out, read_policy
from allowance.policy import Cell, Limit, Policy
from allowance.windows import CalendarWindow

app = typer.Typer(help="Show or check a policy (the plans and their limits).", no_args_is_help=True)


def n(count: int) -> str:
    return f"{count:,}"


def cell_text(cell: Cell) -> str:
    """One plan's setting as the seed's table words it: '30 per seat', 'no access'..."""
    if not cell.access:
        return "no access"
    per_seat = " per seat" if cell.per_seat else ""
    at_once = "" if cell.per_request is None else f", {n(cell.per_request)} at once"
    if cell.max is None:
        if cell.fair_use is None:
            return f"unlimited{at_once}"
        return f"unlimited (fair use {n(cell.fair_use)}{per_seat}){at_once}"
    return f"{n(cell.max)}{per_seat}{at_once}"


def length_text(seconds: float) -> str:
    """'7 days', '24 h', '90 min', '60 s': a whole day is said as 24 h, like the seed."""
    if seconds % 86400 == 0 and seconds > 86400:
        return f"{int(seconds // 86400)} days"
    if seconds % 3600 == 0:
        return f"{int(seconds // 3600)} h"
    if seconds % 60 == 0 and seconds > 60:
        return f"{int(seconds // 60)} min"
    return f"{seconds:g} s"


def window_text(limit: Limit) -> str:
    window = limit.window
    if isinstance(window, CalendarWindow):
        return f"calendar {window.unit}, {window.tz}"
    return f"{length_text(window.length)}, {window.kind}"


def features_text(limit: Limit) -> str:
    """The features a limit counts, one a line, each with its cost when it is not 1 (credits:
    'ai.video × 25')."""
    return "\n".join(
        f if (cost := limit.cost(f)) == 1 else f"{f} × {n(cost)}" for f in limit.features
    )


def plan_table(policy: Policy) -> Table:
    table = Table(title=Text(f"policy {policy.source_name} (time zone {policy.timezone})"))
    table.add_column("limit", style="bold")
    table.add_column("features")
    for plan in policy.plans:
        table.add_column(plan.name)
    table.add_column("window")
    for limit in policy.limits.values():
        cells = [cell_text(limit.cells[plan.name]) for plan in policy.plans]
        table.add_row(limit.name, features_text(limit), *cells, window_text(limit))
    listed = {f for limit in policy.limits.values() for f in limit.features}
    for feature in policy.features:
        if feature not in listed:
            table.add_row("—", feature, *["unlimited"] * len(policy.plans), "—")
    return table


@app.command("show")
@handle_errors
def show(
    file: Annotated[
        Path | None,
        typer.Argument(help="Policy file (default: the built-in policy).", show_default=False),
    ] = None,
    as_yaml: Annotated[
        bool, typer.Option("--yaml", help="Print the policy as a policy file.")
    ] = False,
) -> None:
    """Show the plan table of a policy, like the seed's, or the policy file itself."""
    policy = read_policy(file)
    if as_yaml:
        typer.echo(policy.to_yaml(), nl=False)
        return
    out().print(plan_table(policy))


@app.command("check")
@handle_errors
def check(file: Annotated[Path, typer.Argument(help="Policy file to check.")]) -> None:
    """Check a policy file: exit 0 if valid, else print each problem with its line and exit 1."""
    policy = read_policy(file)
    counts = ", ".join(
        f"{len(items)} {noun}{'' if len(items) == 1 else 's'}"
        for noun, items in (
            ("plan", policy.plans),
            ("feature", policy.features),
            ("limit", policy.limits),
        )
    )
    typer.echo(f"{file}: ok ({counts})")
