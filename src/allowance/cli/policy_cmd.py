"""``allowance policy show``, ``check`` and ``diff`` (its logic: ``policy_diff.py``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.columns import Columns
from rich.console import Group, RenderableType
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from allowance.cli import policy_diff
from allowance.cli.common import fits, handle_errors, out, read_policy
from allowance.plan_text import cell_text, features_text, window_text
from allowance.policy import Policy

__all__ = ["app", "cell_text", "features_text", "plan_table", "window_text"]

app = typer.Typer(help="Show or check a policy (the plans and their limits).", no_args_is_help=True)


def plan_table(policy: Policy) -> Table:
    table = Table(title=plan_title(policy))
    table.add_column("limit", style="bold")
    table.add_column("features")
    for plan in policy.plans:
        table.add_column(plan.name)
    table.add_column("window")
    for limit in policy.limits.values():
        cells = [cell_text(limit.cells[plan.name]) for plan in policy.plans]
        table.add_row(limit.name, features_text(limit), *cells, window_text(limit))
    for feature in unlimited_features(policy):
        table.add_row("—", feature, *["unlimited"] * len(policy.plans), "—")
    return table


def unlimited_features(policy: Policy) -> list[str]:
    listed = {f for limit in policy.limits.values() for f in limit.features}
    return [f for f in policy.features if f not in listed]


def plan_sections(policy: Policy) -> Group:
    """The plan table for a narrow terminal: a section per limit, its plans' settings laid
    out in as many columns as fit."""
    parts: list[RenderableType] = [plan_title(policy)]
    for limit in policy.limits.values():
        window = window_text(limit).replace("\n", "; ")
        parts.append(Text.assemble("\n", (limit.name, "bold"), "  ", (window, "cyan")))
        features = features_text(limit).replace("\n", ", ")
        parts.append(Padding(Text(f"features: {features}"), (0, 0, 0, 2), expand=False))
        cells = [
            Text.assemble((plan.name, "bold"), " ", cell_text(limit.cells[plan.name]))
            for plan in policy.plans
        ]
        parts.append(Padding(Columns(cells, padding=(0, 3)), (0, 0, 0, 2), expand=False))
    if rest := unlimited_features(policy):
        parts.append(Text.assemble("\n", ("no limit", "bold"), f"  {', '.join(rest)}"))
    return Group(*parts)


def plan_title(policy: Policy) -> Text:
    # Text, not str: a file name may hold [brackets] rich reads as markup
    return Text(f"policy {policy.source_name} (time zone {policy.timezone})")


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
    console, table = out(), plan_table(policy)
    console.print(table if fits(console, table) else plan_sections(policy))


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


@app.command("diff")
@handle_errors
def diff(
    old_file: Annotated[Path, typer.Argument(help="The policy file in force now.")],
    new_file: Annotated[Path, typer.Argument(help="The policy file to change to.")],
    store: Annotated[
        str | None,
        typer.Option(
            "--store",
            help="Also list the accounts of this store that the new policy puts over a max.",
            show_default=False,
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show, plan by plan, what changes from OLD to NEW, and (with --store) which accounts
    would be over their new max."""
    old, new = read_policy(old_file), read_policy(new_file)
    found = policy_diff.changes(old, new)
    over = None if store is None else policy_diff.over_new_max(old, new, store)
    if as_json:
        typer.echo(json.dumps(policy_diff.as_json(found, over)))
        return
    console = out()
    if found:
        console.print(policy_diff.change_table(found))
    else:
        console.print("no changes: the two policies grant the same")
    if over is not None:
        if over:
            console.print(policy_diff.over_table(over))
        else:
            console.print(f"no account in {store} is over its new max")
