"""``allowance demo``: the seed's worked example, loaded into a store as a demo account.

The seed's Monday (``seed-example.yaml``, which ``simulate`` replays on a private store) is
played on the given store, moved in time so that its last event, the first refusal by the
daily limit, happens now: the account then stands where the seed's story does, 30 of 30
generations used, refused until the window closes in a little under a day, Max named as the
upgrade. Decisions are made at the events' times (an injected clock), so the counters'
windows are the ones the story opened.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import Annotated

import typer

from allowance.cli.common import DEFAULT_STORE, StoreOption, fail, handle_errors, out
from allowance.cli.scenario import parse_scenario, play
from allowance.clock import ManualClock
from allowance.errors import UnknownAccount
from allowance.limiter import Limiter
from allowance.policy import builtin_policy

SCENARIO = "seed-example.yaml"
SEED_ACCOUNT = "acme"  # the scenario's; the demo's is --account


@handle_errors
def demo(
    store: StoreOption = DEFAULT_STORE,
    account: Annotated[str, typer.Option(help="The demo account's id.")] = "demo",
) -> None:
    """Load the seed's worked example into the store as a demo account (built-in policy).

    Its Monday is played so that it ends now: the Pro account has made 30 image
    transformations, the daily limit, and its next one is refused until the 24-hour window
    closes. `make run` then shows it (`allowance usage demo`, `GET /v1/accounts/demo/usage`).
    """
    policy = builtin_policy()
    text = resources.files("allowance").joinpath(SCENARIO).read_text(encoding="utf-8")
    events = parse_scenario(text, SCENARIO, policy)
    monday = [e for e in events if e.at.date() == events[0].at.date()]
    clock = ManualClock(0.0)
    with Limiter(policy, store=store, clock=clock) as limiter:
        try:
            limiter.get_account(account)
        except UnknownAccount:
            pass
        else:
            fail(f"{store} has an account {account!r} already; pass --account for another id")
        # whole seconds: the story's times read as the seed's do
        now = datetime.fromtimestamp(int(limiter.store.now()), UTC)
        shift = now - monday[-1].at
        moved = [
            replace(e, at=e.at + shift, account=account if e.account == SEED_ACCOUNT else e.account)
            for e in monday
        ]
        outcomes = play(moved, limiter, clock, SCENARIO)
    last = outcomes[-1].decision
    assert last is not None  # the story ends with a refusal
    began = moved[0].at
    console = out()
    console.print(
        f"demo account {account!r} on {store}: the seed's Monday, {len(outcomes) - 1} requests"
        f" from {began:%H:%M} to {now:%H:%M} UTC (shifted by {_days(shift)})"
    )
    console.print(f"  now: {last.message}", highlight=False, soft_wrap=True)
    console.print(
        f"  see it: allowance usage {account} --store {store}"
        f"   (make run: GET /v1/accounts/{account}/usage)",
        highlight=False,
        soft_wrap=True,
    )


def _days(shift: timedelta) -> str:
    return f"{shift.days} days" if abs(shift.days) != 1 else f"{shift.days} day"
