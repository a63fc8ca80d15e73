"""Billing periods (CONTRACT section 9): ``window: {type: billing, unit: month|week}`` counts
in the account's own billing months or weeks, which renew at its ``billing_anchor`` (set with
``set_account``): monthly on the anchor's day (the 31st: a shorter month's last day), weekly
on its weekday, at its time of day, in UTC. An account without an anchor counts in calendar
months and ISO weeks in UTC. A new anchor never hands a period's units out again. On every
store and both request paths (a billing feature is decided by the transaction path, which
reads the anchor in the same step), sync and async."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from allowance import (
    AsyncLimiter,
    InvalidRequest,
    Limiter,
    ManualClock,
    UnknownAccount,
    load_policy,
)
from allowance.types import Account

from .support import Keys

BILLED = load_policy(Path(__file__).parents[1] / "billed.yaml")
PATHS = pytest.mark.parametrize("keyed", [False, True], ids=["plain", "keyed"])


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@pytest.fixture
def lim(store_url: str, clock: ManualClock) -> Iterator[Limiter]:
    clock.set("2026-11-20T00:00:00Z")
    with Limiter(BILLED, store=store_url, clock=clock) as limiter:
        yield limiter


def meter(lim: Limiter, account: str, limit: str = "batch_exports") -> tuple[object, ...]:
    m = next(m for m in lim.usage(account) if m.limit == limit)
    return m.used, m.window_start, m.resets_at


@PATHS
def test_a_billing_month_renews_on_the_anchor_day_at_its_time(
    lim: Limiter, clock: ManualClock, keyed: bool
) -> None:
    key = Keys(keyed)
    account = lim.set_account("a", plan="free", billing_anchor=utc("2026-01-15T09:30:00Z"))
    assert account.billing_anchor == utc("2026-01-15T09:30:00Z")
    assert lim.consume("a", "export.batch", 2, idempotency_key=key()).allowed
    d = lim.consume("a", "export.batch", idempotency_key=key())
    assert (d.allowed, d.limit, d.resets_at) == (False, "batch_exports", utc("2026-12-15T09:30Z"))
    assert d.message == (
        "You have reached your monthly limit of 2 batch exports. It resets on Tue 15 Dec at"
        " 09:30 UTC, or upgrade to Pro for 5 a month."
    )
    assert lim.check("a", "export.batch").resets_at == utc("2026-12-15T09:30Z")
    assert meter(lim, "a") == (2, utc("2026-11-15T09:30Z"), utc("2026-12-15T09:30Z"))
    clock.set("2026-12-15T09:29:59Z")
    assert not lim.consume("a", "export.batch", idempotency_key=key()).allowed
    clock.set("2026-12-15T09:30:00Z")
    assert lim.consume("a", "export.batch", idempotency_key=key()).allowed
    assert meter(lim, "a") == (1, utc("2026-12-15T09:30Z"), utc("2027-01-15T09:30Z"))


@PATHS
def test_the_31st_renews_on_a_shorter_months_last_day(
    lim: Limiter, clock: ManualClock, keyed: bool
) -> None:
    key = Keys(keyed)
    lim.set_account("a", plan="free", billing_anchor=utc("2026-01-31T00:00:00Z"))
    clock.set("2027-02-10T00:00:00Z")
    assert lim.consume("a", "export.batch", 2, idempotency_key=key()).allowed
    d = lim.consume("a", "export.batch", idempotency_key=key())
    assert (d.allowed, d.resets_at) == (False, utc("2027-02-28T00:00Z"))
    assert meter(lim, "a") == (2, utc("2027-01-31T00:00Z"), utc("2027-02-28T00:00Z"))
    clock.set("2027-02-28T00:00:00Z")
    assert lim.consume("a", "export.batch", 2, idempotency_key=key()).allowed
    d = lim.consume("a", "export.batch", idempotency_key=key())
    assert (d.allowed, d.resets_at) == (False, utc("2027-03-31T00:00Z"))  # the 31st again


def test_an_account_without_an_anchor_counts_in_calendar_months(
    lim: Limiter, clock: ManualClock
) -> None:
    assert lim.set_account("a", plan="free").billing_anchor is None
    assert lim.consume("a", "export.batch", 2).allowed
    d = lim.consume("a", "export.batch")
    assert (d.allowed, d.resets_at) == (False, utc("2026-12-01T00:00Z"))
    clock.set("2026-12-01T00:00:00Z")
    assert lim.consume("a", "export.batch").allowed


@PATHS
def test_a_weekly_plan_renews_on_the_anchor_weekday(
    lim: Limiter, clock: ManualClock, keyed: bool
) -> None:
    key = Keys(keyed)
    lim.set_account("w", plan="pro_weekly", billing_anchor=utc("2026-11-26T18:00:00Z"))  # Thu
    clock.set("2026-12-01T12:00:00Z")
    assert lim.consume("w", "export.batch", 3, idempotency_key=key()).allowed
    d = lim.consume("w", "export.batch", idempotency_key=key())
    assert (d.allowed, d.limit, d.resets_at) == (
        False,
        "batch_exports_weekly",
        utc("2026-12-03T18:00Z"),
    )
    assert "weekly limit of 3 batch exports" in d.message
    clock.set("2026-12-03T18:00:00Z")
    assert lim.consume("w", "export.batch", 3, idempotency_key=key()).allowed
    # an account without an anchor: the ISO week from Monday
    lim.set_account("v", plan="pro_weekly")
    assert lim.consume("v", "export.batch", 3).resets_at is None
    assert lim.consume("v", "export.batch").resets_at == utc("2026-12-07T00:00Z")


def test_a_new_anchor_keeps_what_the_period_in_force_counted(
    lim: Limiter, clock: ManualClock
) -> None:
    lim.set_account("a", plan="free")  # calendar months: Nov 1 to Dec 1
    assert lim.consume("a", "export.batch", 2).allowed
    # renewing on the 20th from now must not hand this month's 2 exports out again
    lim.set_account("a", plan="free", billing_anchor=utc("2026-01-20T00:00:00Z"))
    d = lim.consume("a", "export.batch")
    assert (d.allowed, d.resets_at) == (False, utc("2026-12-20T00:00Z"))
    assert meter(lim, "a") == (2, utc("2026-11-20T00:00Z"), utc("2026-12-20T00:00Z"))
    # an anchor whose period in force began before the usage keeps it too
    lim.set_account("b", plan="free", billing_anchor=utc("2026-01-18T00:00:00Z"))
    assert lim.consume("b", "export.batch", 2).allowed
    lim.set_account("b", plan="free", billing_anchor=utc("2026-01-10T00:00:00Z"))
    assert lim.consume("b", "export.batch").resets_at == utc("2026-12-10T00:00Z")
    clock.set("2026-12-10T00:00:00Z")
    assert lim.consume("b", "export.batch", 2).allowed


def test_the_anchor_is_kept_with_the_account(lim: Limiter, store_url: str) -> None:
    lim.set_account("a", plan="free", billing_anchor=utc("2026-03-31T08:00:00+02:00"))
    lim.set_account("a", plan="pro", seats=2)  # a plan change leaves the anchor as it was
    found = lim.get_account("a")
    assert (found.plan, found.seats, found.billing_anchor) == ("pro", 2, utc("2026-03-31T06:00Z"))
    assert found.to_json()["billing_anchor"] == "2026-03-31T06:00:00Z"
    assert Account.from_json(found.to_json()) == found
    if not store_url.startswith("memory:"):  # another limiter on the same store reads it
        with Limiter(BILLED, store=store_url) as again:
            assert again.get_account("a").billing_anchor == utc("2026-03-31T06:00Z")
    lim.set_override("a", "batch_exports", max=7)  # other terms leave it as it was
    assert lim.get_account("a").billing_anchor == utc("2026-03-31T06:00Z")


def test_an_anchored_account_keeps_the_one_step_path_for_other_features(lim: Limiter) -> None:
    # the one-step kernels read the account's terms, the anchor among them, in that step
    lim.set_account("a", plan="free", billing_anchor=utc("2026-01-15T09:30:00Z"))
    lim.set_override("a", "exports", max=4)
    lim.grant("a", "exports", 1)
    assert lim.check("a", "export.single", 5).allowed
    assert lim.consume("a", "export.single", 5).allowed
    d = lim.consume("a", "export.single")
    assert (d.allowed, d.limit) == (False, "exports")
    assert lim.consume("a", "export.batch", 2).allowed  # and the billing one beside it


def test_a_grant_without_expiry_lasts_to_the_billing_periods_end(lim: Limiter) -> None:
    lim.set_account("a", plan="free", billing_anchor=utc("2026-01-15T09:30:00Z"))
    account = lim.grant("a", "batch_exports", 3)
    assert [g.expires_at for g in account.grants] == [utc("2026-12-15T09:30Z")]
    assert lim.consume("a", "export.batch", 5).allowed


def test_an_anchor_left_out_stays_and_none_removes_it(lim: Limiter, clock: ManualClock) -> None:
    lim.set_account("a", plan="free", billing_anchor=utc("2026-01-15T09:30:00Z"))
    assert lim.consume("a", "export.batch").allowed
    assert lim.set_account("a", plan="free").billing_anchor == utc("2026-01-15T09:30:00Z")
    removed = lim.set_account("a", plan="free", billing_anchor=None)
    assert removed.billing_anchor is None and lim.get_account("a").billing_anchor is None
    # calendar months again; the unit counted on the 20th stays counted in November
    assert meter(lim, "a") == (1, utc("2026-11-01T00:00Z"), utc("2026-12-01T00:00Z"))
    assert lim.consume("a", "export.batch").allowed
    d = lim.consume("a", "export.batch")
    assert (d.allowed, d.resets_at) == (False, utc("2026-12-01T00:00Z"))
    clock.set("2026-12-01T00:00:00Z")
    assert lim.consume("a", "export.batch", 2).allowed


def test_a_plan_change_answers_the_whole_account(lim: Limiter) -> None:
    lim.set_account("a", plan="free", billing_anchor=utc("2026-01-15T09:30:00Z"))
    lim.set_override("a", "exports", max=4)
    lim.grant("a", "exports", 1)
    changed, created = lim.put_account("a", plan="pro", seats=2)
    assert not created
    assert changed == lim.get_account("a")
    assert (changed.plan, changed.seats, changed.overrides) == ("pro", 2, {"exports": 4})
    assert (len(changed.grants), changed.billing_anchor) == (1, utc("2026-01-15T09:30Z"))


@pytest.mark.parametrize(
    "anchor",
    [datetime(2026, 1, 15, 9, 30), "2026-01-15T09:30:00Z", 1768469400],
    ids=["naive", "text", "number"],
)
def test_a_bad_anchor_is_refused_and_changes_nothing(lim: Limiter, anchor: object) -> None:
    with pytest.raises(InvalidRequest) as refused:
        lim.set_account("new", plan="pro", billing_anchor=anchor)  # type: ignore[arg-type]
    assert refused.value.field == "billing_anchor"
    with pytest.raises(UnknownAccount):
        lim.get_account("new")
    lim.set_account("a", plan="free")
    with pytest.raises(InvalidRequest):
        lim.set_account("a", plan="pro", billing_anchor=anchor)  # type: ignore[arg-type]
    assert lim.get_account("a").plan == "free"


def test_a_reservation_counts_in_the_billing_period(lim: Limiter) -> None:
    lim.set_account("a", plan="free", billing_anchor=utc("2026-01-15T09:30:00Z"))
    held = lim.reserve("a", "export.batch", 2)
    assert held.decision.allowed
    assert lim.check("a", "export.batch").resets_at == utc("2026-12-15T09:30Z")
    held.commit(1)  # the unused one goes back to the billing month
    assert meter(lim, "a") == (1, utc("2026-11-15T09:30Z"), utc("2026-12-15T09:30Z"))


@pytest.mark.parametrize("end", ["release", "expiry", "commit"])
def test_a_held_reservation_follows_its_units_to_a_new_anchors_period(
    lim: Limiter, clock: ManualClock, end: str
) -> None:
    lim.set_account("a", plan="free")  # calendar months: the units go to November's
    held = lim.reserve("a", "export.batch", 2, ttl=60)
    assert held.decision.allowed
    lim.set_account("a", plan="free", billing_anchor=utc("2026-01-20T00:00:00Z"))
    assert not lim.check("a", "export.batch").allowed  # still held, in the new period
    if end == "release":
        held.release()
    elif end == "commit":
        held.commit()
    else:
        clock.advance(61)
    used = 2 if end == "commit" else 0  # released or expired: back where they now are
    assert meter(lim, "a")[0] == used
    assert lim.consume("a", "export.batch", 2).allowed is (used == 0)


def test_async_billing_periods(store_url: str, clock: ManualClock) -> None:
    clock.set("2027-02-10T00:00:00Z")

    async def scenario() -> None:
        async with AsyncLimiter(BILLED, store=store_url, clock=clock) as lim:
            await lim.set_account("a", plan="free", billing_anchor=utc("2026-01-31T00:00:00Z"))
            assert (await lim.consume("a", "export.batch", 2)).allowed
            d = await lim.consume("a", "export.batch", idempotency_key="k")
            assert (d.allowed, d.resets_at) == (False, utc("2027-02-28T00:00Z"))
            assert (await lim.get_account("a")).billing_anchor == utc("2026-01-31T00:00Z")
            with pytest.raises(InvalidRequest):
                await lim.set_account("a", plan="pro", billing_anchor=datetime(2026, 1, 1))
            # a new anchor moves a held reservation's units, read in the same step
            await lim.set_account("b", plan="free")
            held = await lim.reserve("b", "export.batch", 2, ttl=60)
            await lim.set_account("b", plan="free", billing_anchor=utc("2026-01-20T00:00:00Z"))
            assert not (await lim.check("b", "export.batch")).allowed
            await held.release()
            assert (await lim.consume("b", "export.batch", 2)).allowed
            # left out: as it was, and the whole account answered; None removes it
            await lim.set_override("b", "exports", max=4)
            kept = await lim.set_account("b", plan="pro")
            assert (kept.overrides, kept.billing_anchor) == (
                {"exports": 4},
                utc("2026-01-20T00:00Z"),
            )
            assert (
                await lim.set_account("b", plan="pro", billing_anchor=None)
            ).billing_anchor is None

    asyncio.run(scenario())
