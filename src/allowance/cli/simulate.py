"""``allowance simulate``: what a policy would have answered to a timeline of requests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Group, RenderableType
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from allowance.cli.common import (
    JsonOption,
    PolicyOption,
    clock_text,
    error_line,
    fail,
    fits,
    handle_errors,
    out,
    read_policy,
)
from allowance.cli.scenario import Outcome, ScenarioError, parse_scenario, replay
from allowance.types import Decision, iso

MESSAGE_ROOM = 24  # columns the table leaves its messages at least, else the narrow layout


def json_line(outcome: Outcome) -> dict[str, Any] | None:
    """The decision fields of section 4 plus where and when; None for a plan-only event."""
    event, decision = outcome.event, outcome.decision
    if decision is None:
        return None
    head = {"at": iso(event.at), "account": event.account, "feature": event.feature}
    if event.user is not None:
        head["user"] = event.user
    return {**head, "amount": event.amount, **decision.to_json()}


def outcome_text(decision: Decision, amount: int) -> Text:
    if decision.reason == "no_access":
        return Text("no access", style="red")
    if decision.reason == "request_too_large":
        return Text(f"too large ({decision.limit})", style="red")
    if not decision.allowed:
        return Text(f"denied ({decision.limit})", style="red")
    text = "granted" if decision.granted == amount else f"granted {decision.granted} of {amount}"
    if decision.fair_use_exceeded:
        return Text(f"{text}, above fair use", style="yellow")
    return Text(text, style="green")


def table(outcomes: list[Outcome], source: str, *, messages: bool = True) -> Table:
    # Text, not str: an account id or a policy title may hold [brackets] rich reads as markup
    grid = Table(title=Text(f"simulation of {source} (times in UTC)"))
    grid.add_column("time")
    grid.add_column("account", overflow="fold")
    # a name too wide for its column is folded, never cut short with an ellipsis
    grid.add_column("feature", overflow="fold")
    grid.add_column("amount", justify="right", no_wrap=True)
    for name in ("outcome", "remaining", "resets_at", "message"):
        grid.add_column(name)
    message = Text if messages else lambda _: ""  # without them: how wide the rest is
    for outcome in outcomes:
        event, decision = outcome.event, outcome.decision
        at = clock_text(event.at)
        if decision is None:
            grid.add_row(at, Text(event.account), "—", "", setting_text(outcome), "", "", "")
            continue
        grid.add_row(
            at,
            Text(who(outcome)),
            event.feature,
            f"{event.amount:,}",
            outcome_text(decision, event.amount),
            remaining_text(decision),
            clock_text(decision.resets_at) or "",
            message(decision.message),
        )
    return grid


def log(outcomes: list[Outcome], source: str) -> Group:
    """The table for a narrow terminal: a line per event (its day above it when the day
    changes), what remains and the message indented below."""
    parts: list[RenderableType] = [Text(f"simulation of {source} (times in UTC)")]
    day = None
    for outcome in outcomes:
        event, decision = outcome.event, outcome.decision
        if event.at.date() != day:
            day = event.at.date()
            parts.append(Text(f"\n{event.at:%a %d %b %Y}", style="bold"))
        head = Text.assemble((f"{event.at:%H:%M:%S}", "dim"), "  ", who(outcome), "  ")
        if decision is None:
            parts.append(head.append_text(setting_text(outcome)))
            continue
        head.append(f"{event.feature} ×{event.amount:,}  ")
        parts.append(head.append_text(outcome_text(decision, event.amount)))
        counts = []
        if (left := remaining_text(decision)) != "—":
            counts.append(f"remaining {left}")
        if decision.resets_at is not None:
            counts.append(f"resets {clock_text(decision.resets_at)}")
        below = Text(", ".join(counts) + "\n" if counts else "", style="cyan")
        below.append(decision.message, style="dim")
        parts.append(Padding(below, (0, 0, 0, 4), expand=False))
    return Group(*parts)


def who(outcome: Outcome) -> str:
    event = outcome.event
    return event.account if event.user is None else f"{event.account} ({event.user})"


def setting_text(outcome: Outcome) -> Text:
    event = outcome.event
    seats = "seat" if event.seats == 1 else "seats"
    anchor = event.billing_anchor
    renews = "" if anchor is None else f", billing anchor {clock_text(anchor)}"
    return Text(f"plan {event.plan}, {event.seats} {seats}{renews}", style="cyan")


def remaining_text(decision: Decision) -> str:
    if decision.reason == "no_access":
        return "—"  # None here is no access at all, not unlimited
    return "unlimited" if decision.remaining is None else f"{decision.remaining:,}"


def simulate(
    scenario: Annotated[
        Path, typer.Argument(help="Scenario file: a YAML list of events.", show_default=False)
    ],
    policy_file: PolicyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Replay a timeline of events against a policy, on a private in-memory store.

    The store's clock is set to each event's time. An event is {at, account, user?,
    feature, amount?, partial?, plan?, seats?, billing_anchor?}: plan, seats and billing
    anchor are applied first (creating the account), then the feature is consumed, by the
    user (a feature counted per user needs one). Use --json for one decision per line.
    """
    policy = read_policy(policy_file)
    if not scenario.is_file():
        fail(f"{scenario}: {'not a file' if scenario.exists() else 'no such scenario file'}")
    try:
        text = scenario.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        fail(f"{scenario}: cannot read it ({exc})")
    try:
        outcomes = replay(parse_scenario(text, str(scenario), policy), policy, str(scenario))
    except ScenarioError as exc:
        for line in exc.lines:
            error_line(line)
        raise typer.Exit(1) from None
    if not as_json:
        console, source = out(), str(scenario)
        rest = table(outcomes, source, messages=False)
        wide = fits(console, rest, room=MESSAGE_ROOM)
        console.print(table(outcomes, source) if wide else log(outcomes, source))
        return
    for outcome in outcomes:
        if (data := json_line(outcome)) is not None:
            typer.echo(json.dumps(data))


command = handle_errors(simulate)
