"""``allowance accounts override`` and ``allowance accounts grant``: one account's own terms
(CONTRACT section 9), written to the store as ``Limiter.set_override`` and ``grant`` do."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from allowance.cli.common import (
    DEFAULT_STORE,
    JsonOption,
    PolicyOption,
    StoreOption,
    handle_errors,
    iso_time,
    read_policy,
)
from allowance.cli.usage_cmd import AccountArgument, terms_text
from allowance.errors import InvalidRequest
from allowance.limiter import Limiter
from allowance.types import Account

LimitArgument = Annotated[str, typer.Argument(help="A limit of the policy.", show_default=False)]


def _print(account: Account, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(account.to_json()))
        return
    terms = terms_text(account)
    typer.echo(f"account {account.id}: " + ("own terms\n" + terms if terms else "no own terms"))


@handle_errors
def override(
    account: AccountArgument,
    limit: LimitArgument,
    most: Annotated[
        int | None,
        typer.Argument(
            metavar="MAX",
            help="The account's own max for the limit, whatever its plan (not per seat).",
            show_default=False,
        ),
    ] = None,
    remove: Annotated[
        bool, typer.Option("--remove", help="Give the limit the plan's max again.")
    ] = False,
    store: StoreOption = DEFAULT_STORE,
    policy_file: PolicyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Replace a limit's max for one account (a load factor still lowers it)."""
    if (most is None) == (not remove):
        raise InvalidRequest("max", most, "give MAX, or --remove to drop the override")
    with Limiter(read_policy(policy_file), store=store) as limiter:
        _print(limiter.set_override(account, limit, None if remove else most), as_json)


@handle_errors
def grant(
    account: AccountArgument,
    limit: LimitArgument,
    amount: Annotated[int, typer.Argument(help="Units on top of the max.", show_default=False)],
    expires_at: Annotated[
        str | None,
        typer.Option(
            "--expires-at",
            metavar="TIME",
            help="ISO 8601 with a zone, e.g. 2026-12-31T00:00:00Z (default: when the window"
            " open now closes).",
            show_default=False,
        ),
    ] = None,
    store: StoreOption = DEFAULT_STORE,
    policy_file: PolicyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Give one account extra units of a limit for a while."""
    ends = None if expires_at is None else iso_time("expires_at", expires_at)
    with Limiter(read_policy(policy_file), store=store) as limiter:
        _print(limiter.grant(account, limit, amount, ends), as_json)
