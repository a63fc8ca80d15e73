"""Overrides and grants (CONTRACT section 9): ``set_override(account, limit, max=N|None)``
replaces the plan's max for one account, ``grant(account, limit, amount, expires_at=None)``
adds units on top until ``expires_at`` or the close of the window open now; both show in
decisions, meters, messages and the account, are kept in the store, and are applied by both
decision paths (the one-step kernels read them from the account's record) on every store,
sync and async."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from allowance import AsyncLimiter, InvalidRequest, Limiter, ManualClock, UnknownAccount
from allowance.stores import store_from_url

from .support import Keys

PATHS = pytest.mark.parametrize("keyed", [False, True], ids=["kernel", "transaction"])


@pytest.fixture
def lim(store_url: str, clock: ManualClock) -> Iterator[Limiter]:
    with Limiter(store=store_url, clock=clock) as limiter:
        limiter.set_account("a", plan="pro", seats=3)  # ai_exports: 30 a week per seat = 90
        yield limiter


def meter(lim: Limiter, limit: str) -> tuple[int, int | None, int | None, int]:
    m = next(m for m in lim.usage("a") if m.limit == limit)
    return m.used, m.max, m.override, m.granted


def at(clock: ManualClock, seconds: float) -> datetime:
    return datetime.fromtimestamp(clock() + seconds, UTC)


@PATHS
def test_an_override_replaces_the_max_on_every_plan(lim: Limiter, keyed: bool) -> None:
    key = Keys(keyed)
    account = lim.set_override("a", "ai_exports", max=100)
    assert account.overrides == {"ai_exports": 100}
    assert meter(lim, "ai_exports") == (0, 100, 100, 0)  # for the account, not × 3 seats
    d = lim.consume("a", "export.ai", 150, partial=True, idempotency_key=key())
    assert (d.granted, d.remaining) == (100, 0)
    d = lim.consume("a", "export.ai", idempotency_key=key())
    assert (d.allowed, d.reason, d.limit) == (False, "limit_reached", "ai_exports")
    assert "100" in d.message
    assert d.quota is not None and d.quota.max == 100
    assert d.upgrade is None  # the override holds on Max too: no plan would grant it
    lim.set_override("a", "ai_exports", max=None)  # the plan's 90 again, usage kept
    assert meter(lim, "ai_exports") == (100, 90, None, 0)
    assert lim.get_account("a").overrides == {}


@PATHS
def test_an_override_caps_an_unlimited_limit_and_zero_blocks(lim: Limiter, keyed: bool) -> None:
    key = Keys(keyed)
    lim.set_override("a", "exports", max=5)  # pro: unlimited, fair use 10,000
    assert lim.consume("a", "export.standard", 5, idempotency_key=key()).allowed
    d = lim.consume("a", "export.standard", idempotency_key=key())
    assert (d.allowed, d.limit, d.fair_use_exceeded) == (False, "exports", False)
    lim.set_override("a", "transform_daily", max=0)
    d = lim.consume("a", "transform.virtual_model", idempotency_key=key())
    assert (d.allowed, d.limit) == (False, "transform_daily")


@PATHS
def test_a_grant_adds_units_until_it_expires(lim: Limiter, clock: ManualClock, keyed: bool) -> None:
    key = Keys(keyed)
    account = lim.grant("a", "ai_exports", 10, expires_at=at(clock, 3600))
    assert [(g.limit, g.amount) for g in account.grants] == [("ai_exports", 10)]
    assert account.grants[0].expires_at == at(clock, 3600)
    assert meter(lim, "ai_exports") == (0, 100, None, 10)
    assert lim.consume("a", "export.ai", 100, idempotency_key=key()).allowed
    d = lim.consume("a", "export.ai", idempotency_key=key())
    assert (d.allowed, d.limit) == (False, "ai_exports")
    clock.advance(3600)  # the grant has ended: the max is the plan's, the usage stays
    assert meter(lim, "ai_exports") == (100, 90, None, 0)
    assert lim.get_account("a").grants == ()
    assert not lim.consume("a", "export.ai", idempotency_key=key()).allowed


@PATHS
def test_grants_add_up_on_top_of_an_override_and_a_load_factor(
    lim: Limiter, clock: ManualClock, keyed: bool
) -> None:
    key = Keys(keyed)
    lim.set_override("a", "ai_exports", max=101)
    lim.grant("a", "ai_exports", 7, expires_at=at(clock, 60))
    lim.grant("a", "ai_exports", 3, expires_at=at(clock, 120))
    lim.set_load_factor(0.5, ["ai_exports"])
    assert meter(lim, "ai_exports")[1] == 50 + 10  # floor(101 × 0.5), then the grants
    d = lim.consume("a", "export.ai", 100, partial=True, idempotency_key=key())
    assert d.granted == 60
    clock.advance(60)
    assert meter(lim, "ai_exports")[1:] == (53, 101, 3)


def test_a_grant_without_an_expiry_lasts_the_window_open_now(
    lim: Limiter, clock: ManualClock
) -> None:
    # anchored, no window open: one length from now; open: until it closes
    account = lim.grant("a", "transform_daily", 5)
    assert account.grants[0].expires_at == at(clock, 86400)
    clock.advance(3600)
    lim.consume("a", "transform.virtual_model")  # opens a window ending 25 h from the start
    clock.advance(3600)
    account = lim.grant("a", "transform_daily", 1)
    assert [g.expires_at for g in account.grants] == [at(clock, 86400 - 7200), at(clock, 82800)]
    # a calendar month: its end; a sliding window: one length from now
    month = lim.grant("a", "exports", 1).grants
    now = datetime.fromtimestamp(clock(), UTC)
    end = next(g.expires_at for g in month if g.limit == "exports")
    assert end.day == 1 and end.hour == 0 and now < end <= now + timedelta(days=31)
    sliding = lim.grant("a", "transform_rate", 1).grants
    assert next(g.expires_at for g in sliding if g.limit == "transform_rate") == at(clock, 60)


def test_terms_are_kept_in_the_store_with_the_account(store_url: str, clock: ManualClock) -> None:
    store = store_from_url(store_url)
    with Limiter(store=store, clock=clock) as one, Limiter(store=store, clock=clock) as other:
        one.set_account("a", "pro")
        one.set_override("a", "ai_exports", max=3)
        one.grant("a", "ai_exports", 2, expires_at=at(clock, 600))
        found = other.get_account("a")
        assert (found.overrides, [g.amount for g in found.grants]) == ({"ai_exports": 3}, [2])
        assert other.consume("a", "export.ai", 5).allowed
        assert not other.consume("a", "export.ai").allowed
        other.set_account("a", "max", seats=2)  # a plan change keeps the account's terms
        assert one.get_account("a").overrides == {"ai_exports": 3}
        assert not one.consume("a", "export.ai").allowed


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda lim, t: lim.set_override("a", "nope", max=5), "limit"),
        (lambda lim, t: lim.set_override("a", "ai_exports", max=-1), "max"),
        (lambda lim, t: lim.set_override("a", "ai_exports", max="5"), "max"),
        (lambda lim, t: lim.set_override("a", "ai_exports", max=True), "max"),
        (lambda lim, t: lim.grant("a", "nope", 5), "limit"),
        (lambda lim, t: lim.grant("a", "ai_exports", 0), "amount"),
        (lambda lim, t: lim.grant("a", "ai_exports", 2.5), "amount"),
        (
            lambda lim, t: lim.grant("a", "ai_exports", 5, expires_at=t.replace(tzinfo=None)),
            "expires_at",
        ),
        (
            lambda lim, t: lim.grant("a", "ai_exports", 5, expires_at=t - timedelta(hours=2)),
            "expires_at",
        ),
        (lambda lim, t: lim.grant("a", "ai_exports", 5, expires_at="tomorrow"), "expires_at"),
    ],
)
def test_a_bad_call_names_its_field_and_changes_nothing(
    lim: Limiter, clock: ManualClock, call: object, field: str
) -> None:
    with pytest.raises(InvalidRequest) as raised:
        call(lim, at(clock, 3600))  # type: ignore[operator]
    assert raised.value.field == field
    found = lim.get_account("a")
    assert (found.overrides, found.grants) == ({}, ())
    assert meter(lim, "ai_exports") == (0, 90, None, 0)


def test_an_unknown_account_gets_no_terms(lim: Limiter) -> None:
    with pytest.raises(UnknownAccount):
        lim.set_override("ghost", "ai_exports", max=5)
    with pytest.raises(UnknownAccount):
        lim.grant("ghost", "ai_exports", 5)


def test_async_overrides_and_grants(store_url: str, clock: ManualClock) -> None:
    async def main() -> None:
        async with AsyncLimiter(store=store_url, clock=clock) as lim:
            await lim.set_account("a", "pro")
            await lim.set_override("a", "ai_exports", max=4)
            account = await lim.grant("a", "ai_exports", 1, expires_at=at(clock, 60))
            assert (account.overrides, len(account.grants)) == ({"ai_exports": 4}, 1)
            d = await lim.consume("a", "export.ai", 9, partial=True)
            assert d.granted == 5
            clock.advance(60)
            meters = {m.limit: m for m in await lim.usage("a")}
            assert (meters["ai_exports"].used, meters["ai_exports"].max) == (5, 4)
            assert (await lim.get_account("a")).grants == ()

    asyncio.run(main())


@PATHS
def test_a_grant_reads_by_the_clock_after_a_step_back(
    lim: Limiter, clock: ManualClock, keyed: bool
) -> None:
    # a grant ended less than KEEP_AFTER ago is kept (as a closed window's usage is), so a
    # clock stepping back finds it in force again; one ended longer ago is dropped on a write
    key = Keys(keyed)
    lim.grant("a", "ai_exports", 10, expires_at=at(clock, 60))
    clock.advance(120)
    lim.grant("a", "ai_exports", 1, expires_at=at(clock, 10_000))  # a write: prunes
    clock.advance(-90)
    assert meter(lim, "ai_exports")[1] == 101
    assert lim.consume("a", "export.ai", 101, idempotency_key=key()).allowed
    clock.advance(90 + 400)  # 460 s after it ended
    lim.grant("a", "ai_exports", 1, expires_at=at(clock, 10_000))
    clock.advance(-470)  # 10 s before it ended: dropped all the same
    assert [g.amount for g in lim.get_account("a").grants] == [1, 1]
    assert meter(lim, "ai_exports")[1] == 92
