"""A clock that steps back (NTP on the store's host, app servers whose ``clock=`` disagree)
never throws away usage counted at a later time, and never grants it twice: on every store,
for every kind of window, across period boundaries (issue 10, defect 1)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from allowance import Limiter, ManualClock, parse_policy
from allowance.windows import KEEP_AFTER

STEPS_POLICY = """\
version: 1
plans: [basic]
features:
  doc.day: {title: Day}
  doc.week: {title: Week}
  doc.month: {title: Month}
  doc.anchored: {title: Anchored}
  doc.sliding: {title: Sliding}
limits:
  day: {features: [doc.day], window: {type: calendar, unit: day}, plans: {basic: 3}}
  week: {features: [doc.week], window: {type: calendar, unit: week}, plans: {basic: 3}}
  month:
    features: [doc.month]
    window: {type: calendar, unit: month, timezone: Europe/Paris}
    plans: {basic: 3}
  anchored: {features: [doc.anchored], window: {type: anchored, length: 1h}, plans: {basic: 3}}
  sliding: {features: [doc.sliding], window: {type: sliding, length: 60s}, plans: {basic: 3}}
"""


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def test_seed_month_stepped_back_across_its_boundary_grants_nothing_twice(
    limiter: Limiter, clock: ManualClock
) -> None:
    """The issue's case: Free, 250 standard exports a calendar month."""
    limiter.set_account("a", plan="free")
    clock.set("2026-12-01T00:00:05Z")
    assert limiter.consume("a", "export.standard", 250).granted == 250
    clock.set("2026-11-30T23:59:58Z")  # stepped back into November
    d = limiter.consume("a", "export.standard", 250)
    assert (d.allowed, d.limit, d.remaining) == (False, "exports", 0)
    assert d.resets_at == utc("2027-01-01T00:00:00")  # December's units leave with December
    assert not limiter.consume("a", "export.standard").allowed
    assert not limiter.check("a", "export.standard").allowed
    m = next(m for m in limiter.usage("a") if m.limit == "exports")
    assert (m.used, m.window_start) == (250, utc("2026-12-01T00:00:00"))
    clock.set("2026-12-01T00:00:10Z")
    assert not limiter.consume("a", "export.standard", 250).allowed
    m = next(m for m in limiter.usage("a") if m.limit == "exports")
    assert m.used == 250


@pytest.mark.parametrize(
    ("feature", "later", "earlier"),
    [
        ("doc.day", "2026-11-24T00:00:01Z", "2026-11-23T23:59:59Z"),
        ("doc.week", "2026-11-30T00:00:01Z", "2026-11-29T23:59:59Z"),  # Monday / Sunday
        # local midnight in Paris (UTC+1) is 23:00 UTC the day before
        ("doc.month", "2026-11-30T23:00:01Z", "2026-11-30T22:59:59Z"),
    ],
)
def test_calendar_periods_keep_a_later_periods_units(
    store_url: str, feature: str, later: str, earlier: str
) -> None:
    clock = ManualClock(later)
    with Limiter(parse_policy(STEPS_POLICY), store=store_url, clock=clock) as lim:
        lim.set_account("a", plan="basic")
        assert lim.consume("a", feature, 2).granted == 2
        clock.set(earlier)
        assert lim.consume("a", feature).granted == 1  # one of three left, whatever the clock
        d = lim.consume("a", feature)
        assert not d.allowed and d.remaining == 0
        assert not lim.consume("a", feature, partial=True).allowed
        clock.set(later)
        assert not lim.consume("a", feature).allowed
        m = next(m for m in lim.usage("a") if m.features == (feature,))
        assert m.used == 3


def test_anchored_and_sliding_windows_count_usage_from_later_times(store_url: str) -> None:
    clock = ManualClock("2026-11-23T12:00:00Z")
    with Limiter(parse_policy(STEPS_POLICY), store=store_url, clock=clock) as lim:
        lim.set_account("a", plan="basic")
        for feature in ("doc.anchored", "doc.sliding"):
            assert lim.consume("a", feature, 2).granted == 2
        clock.advance(-30)
        for feature in ("doc.anchored", "doc.sliding"):
            assert lim.consume("a", feature, 5, partial=True).granted == 1
            assert not lim.consume("a", feature).allowed
        clock.advance(30)
        for feature in ("doc.anchored", "doc.sliding"):
            assert not lim.consume("a", feature).allowed
        # the sliding window frees the early grant (at t - 30) first, a minute after it
        clock.advance(30)
        assert lim.consume("a", "doc.sliding", 5, partial=True).granted == 1
        clock.advance(30)
        assert lim.consume("a", "doc.sliding", 5, partial=True).granted == 2
        anchored = next(m for m in lim.usage("a") if m.limit == "anchored")
        assert (anchored.used, anchored.window_start) == (3, utc("2026-11-23T12:00:00"))


def test_a_sliding_grant_made_after_a_step_back_leaves_in_time_order(store_url: str) -> None:
    """Entries stay sorted when a grant lands before later ones (Lua and SQL appended)."""
    clock = ManualClock("2026-11-23T12:01:40Z")  # t = 100 s past 12:00
    with Limiter(parse_policy(STEPS_POLICY), store=store_url, clock=clock) as lim:
        lim.set_account("a", plan="basic")
        assert lim.consume("a", "doc.sliding").granted == 1  # at 100
        clock.advance(-0.5)
        assert lim.consume("a", "doc.sliding", 2).granted == 2  # at 99.5
        clock.advance(60.1)  # 159.6: the grant at 99.5 has left, the one at 100 has not
        d = lim.check("a", "doc.sliding", 3, partial=True)
        assert (d.granted, d.remaining) == (2, 0)
        assert lim.consume("a", "doc.sliding", 3, partial=True).granted == 2
        clock.advance(0.5)  # 160.1: the grant at 100 has left too
        assert lim.consume("a", "doc.sliding", 3, partial=True).granted == 1


def test_a_write_just_after_windows_close_keeps_them_for_a_step_back(store_url: str) -> None:
    """A store drops a counter only KEEP_AFTER after its window closed: a write on the account
    just after (another feature's reservation) must not throw away usage that a clock step
    back of a few seconds counts again (found by the model comparison: SQLite, PostgreSQL and
    Redis's slow path dropped every closed counter on each write, and it was granted twice)."""
    clock = ManualClock("2026-11-23T23:00:00Z")
    with Limiter(parse_policy(STEPS_POLICY), store=store_url, clock=clock) as lim:
        lim.set_account("a", plan="basic")
        assert lim.consume("a", "doc.anchored", 3).granted == 3  # 23:00 to midnight
        clock.set("2026-11-23T23:59:00Z")
        for feature in ("doc.sliding", "doc.day"):
            assert lim.consume("a", feature, 3).granted == 3
        clock.set("2026-11-24T00:00:01Z")  # every one of those windows has closed
        assert lim.reserve("a", "doc.week", 1, ttl=60).id is not None  # writes the account
        clock.advance(-2)  # the clock steps back into them
        for feature in ("doc.anchored", "doc.sliding", "doc.day"):
            d = lim.consume("a", feature)
            assert (d.allowed, d.remaining) == (False, 0), feature
        assert {m.limit: m.used for m in lim.usage("a")} == {
            "day": 3,
            "week": 1,
            "month": 0,
            "anchored": 3,
            "sliding": 3,
        }


def test_a_redis_counter_key_outlives_its_window_by_keep_after(store_url: str) -> None:
    """The same margin on Redis's own clock: the counters key's TTL (fast and slow path)."""
    if not store_url.startswith("redis"):
        pytest.skip("Redis keys only")
    clock = ManualClock("2026-11-23T12:00:00Z")
    with Limiter(parse_policy(STEPS_POLICY), store=store_url, clock=clock) as lim:
        lim.set_account("a", plan="basic")
        store: Any = lim.store
        key = store.key("a", "c")
        assert lim.consume("a", "doc.sliding").granted == 1  # one round trip of decide.lua
        assert store.client.pttl(key) > 60_000 + KEEP_AFTER * 1000 - 5_000
        lim.release(lim.reserve("a", "doc.sliding", 1, ttl=10).id or "")  # the slow path
        assert store.client.pttl(key) > 60_000 + KEEP_AFTER * 1000 - 5_000


def test_a_hold_swept_after_its_expiry_stays_expired_after_a_step_back(store_url: str) -> None:
    """A sweep at a time past a reservation's expiry settles it (its units go back) on every
    store; the clock stepping back before that expiry does not revive it for a commit.
    memory:// used to settle it only when deleting its record, HOLD_KEEP later."""
    from allowance import ReservationExpired

    clock = ManualClock("2026-11-24T12:00:00Z")
    with Limiter(store=store_url, clock=clock) as lim:
        lim.set_account("acct", plan="pro")
        held = lim.reserve("acct", "background.studio", 4, ttl=60)
        assert held.id is not None
        clock.advance(61)
        lim.sweep()
        clock.advance(-30)  # back before the expiry
        with pytest.raises(ReservationExpired):
            held.commit()
        assert next(m.used for m in lim.usage("acct") if m.limit == "studio") == 0
