"""``allowance usage`` and ``allowance accounts``: read and write accounts in a store."""

from __future__ import annotations

import json
from datetime import UTC
from typing import Annotated

import typer
from rich.console import RenderableType
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from allowance.cli.common import (
    DEFAULT_STORE,
    JsonOption,
    PolicyOption,
    StoreOption,
    clock_text,
    fail,
    handle_errors,
    iso_time,
    out,
    read_policy,
)
from allowance.errors import UnknownAccount
from allowance.limiter import Limiter
from allowance.policy import Policy
from allowance.types import UNCHANGED, Account, Anchor, Meter

accounts_app = typer.Typer(help="Create, change and show accounts.", no_args_is_help=True)

AccountArgument = Annotated[str, typer.Argument(help="Account id.", show_default=False)]
UserOption = Annotated[
    str | None,
    typer.Option("--user", help="Meter this user's limits (scope user or user_global) too."),
]


def _get(limiter: Limiter, account: str, store: str) -> Account:
    try:
        return limiter.get_account(account)
    except UnknownAccount:
        fail(
            f"no account {account!r} in {store}; create it with "
            f"`allowance accounts set {account} --plan PLAN`"
        )


def terms_text(account: Account) -> str:
    """The account's own terms, a line each (empty: none)."""
    lines = [f"  {name}: max {most:,} (override)" for name, most in account.overrides.items()]
    lines += [
        f"  {g.limit}: +{g.amount:,} granted until {clock_text(g.expires_at)}"
        for g in account.grants
    ]
    at = account.billing_anchor
    if at is not None:
        at = at.astimezone(UTC)
        last = " (a shorter month's last)" if at.day > 28 else ""
        lines.append(
            f"  billing anchor {clock_text(at)}: months renew on day {at.day}{last}, weeks on"
            f" {at:%A}s, at {at:%H:%M:%S} UTC"
        )
    return "\n".join(lines)


def _bar(meter: Meter) -> RenderableType:
    if meter.max is None:
        return Text("unlimited", style="dim")
    # a cap of 0 is a valid policy cell; draw it as full rather than dividing by zero
    total = meter.max or 1
    done = meter.used if meter.max else 1
    style = "red" if meter.remaining == 0 else "green"
    return ProgressBar(total=total, completed=done, width=20, complete_style=style)


def _used(meter: Meter, fair_use: int | None) -> str:
    if meter.max is not None:
        own = [] if meter.override is None else [f"own max {meter.override:,}"]
        if meter.granted:
            own.append(f"+{meter.granted:,} granted")
        return f"{meter.used:,} / {meter.max:,}" + (f" ({', '.join(own)})" if own else "")
    soft = f", fair use {fair_use:,}" if fair_use is not None else ""
    return f"{meter.used:,} (unlimited{soft})"


def meters_table(policy: Policy, account: Account, meters: list[Meter]) -> Table:
    seats = "seat" if account.seats == 1 else "seats"
    title = f"usage of {account.id} (plan {account.plan}, {account.seats} {seats}; times in UTC)"
    table = Table(title=Text(title))  # Text: no markup in an account id
    # no features column: `policy show` lists them, and a narrow terminal needs the room
    table.add_column("limit", overflow="fold")
    table.add_column("usage", no_wrap=True)
    for name in ("used", "window start", "resets"):
        table.add_column(name)
    fair_use = {
        r.limit.name: r.cell.soft_cap(account.seats) for r in policy.plan_limits(account.plan)
    }
    for meter in meters:
        table.add_row(
            meter.limit,
            _bar(meter),
            _used(meter, fair_use.get(meter.limit)),
            clock_text(meter.window_start) or "—",
            clock_text(meter.resets_at) or "—",
        )
    return table


@handle_errors
def usage(
    account: AccountArgument,
    store: StoreOption = DEFAULT_STORE,
    policy_file: PolicyOption = None,
    as_json: JsonOption = False,
    user: UserOption = None,
) -> None:
    """Show an account's meters: used and maximum of each limit, window start and reset."""
    with Limiter(read_policy(policy_file), store=store) as limiter:
        found = _get(limiter, account, store)
        meters = limiter.usage(account, user=user)
        if as_json:
            data = {
                "account": found.id,
                "plan": found.plan,
                "meters": [m.to_json() for m in meters],
            }
            typer.echo(json.dumps(data))
            return
        out().print(meters_table(limiter.policy, found, meters))


@accounts_app.command("set")
@handle_errors
def set_account(
    account: AccountArgument,
    plan: Annotated[str, typer.Option("--plan", help="The plan to put the account on.")],
    seats: Annotated[
        int | None,
        typer.Option(
            "--seats",
            help="Paying seats (default: unchanged, 1 for a new account).",
            show_default=False,
        ),
    ] = None,
    billing_anchor: Annotated[
        str | None,
        typer.Option(
            "--billing-anchor",
            metavar="TIME",
            help="When its billing periods renew, ISO 8601 with a zone, e.g."
            " 2026-11-15T09:30:00Z: monthly on that day (the 31st: a shorter month's last),"
            " weekly on that weekday, at that time (default: unchanged; none: calendar"
            " months and weeks in UTC).",
            show_default=False,
        ),
    ] = None,
    store: StoreOption = DEFAULT_STORE,
    policy_file: PolicyOption = None,
) -> None:
    """Create an account or change its plan (its counters keep their windows)."""
    anchor: Anchor = UNCHANGED
    if billing_anchor is not None:
        none = billing_anchor.strip().lower() == "none"
        anchor = None if none else iso_time("billing_anchor", billing_anchor)
    with Limiter(read_policy(policy_file), store=store) as limiter:
        if seats is None:  # a plan change alone must not reset the seats bought
            try:
                seats = limiter.get_account(account).seats
            except UnknownAccount:
                seats = 1
        saved, created = limiter.put_account(account, plan, seats, billing_anchor=anchor)
    noun = "seat" if saved.seats == 1 else "seats"
    verb = "created" if created else "updated"
    renews = ""
    if anchor is not UNCHANGED:
        at = saved.billing_anchor
        renews = ", no billing anchor" if at is None else f", billing anchor {clock_text(at)}"
    typer.echo(f"{verb} account {saved.id}: plan {saved.plan}, {saved.seats} {noun}{renews}")


@accounts_app.command("show")
@handle_errors
def show_account(
    account: AccountArgument,
    store: StoreOption = DEFAULT_STORE,
    policy_file: PolicyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show an account's plan and seats."""
    with Limiter(read_policy(policy_file), store=store) as limiter:
        found = _get(limiter, account, store)
        plan = limiter.policy.plan_by_name.get(found.plan)
    # a store may hold a plan that this policy lacks (written under another policy)
    title = plan.title if plan is not None else "not in this policy"
    if as_json:
        typer.echo(json.dumps(found.to_json()))
        return
    noun = "seat" if found.seats == 1 else "seats"
    typer.echo(f"account {found.id}: plan {found.plan} ({title}), {found.seats} {noun}")
    terms = terms_text(found)
    if terms:
        typer.echo(terms)
