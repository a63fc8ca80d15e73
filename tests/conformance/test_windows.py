"""Window semantics of CONTRACT section 3 on every store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from allowance import Limiter, ManualClock


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def meter(lim: Limiter, account: str, name: str):  # type: ignore[no-untyped-def]
    return next(m for m in lim.usage(account) if m.limit == name)


def test_anchored_window_opens_at_first_grant_and_closes_exactly(
    limiter: Limiter, clock: ManualClock
) -> None:
    limiter.set_account("a", plan="free")
    assert meter(limiter, "a", "studio").window_start is None
    clock.set("2026-11-23T10:00:00Z")
    limiter.consume("a", "background.studio", 3000)
    m = meter(limiter, "a", "studio")
    assert (m.window_start, m.resets_at) == (utc("2026-11-23T10:00:00"), utc("2026-11-24T10:00:00"))
    clock.set("2026-11-24T09:59:59.999Z")
    assert not limiter.consume("a", "background.studio").allowed
    clock.set("2026-11-24T10:00:00Z")
    assert limiter.consume("a", "background.studio").allowed
    assert meter(limiter, "a", "studio").window_start == utc("2026-11-24T10:00:00")


def test_a_denied_request_opens_no_window_and_charges_nothing(limiter: Limiter) -> None:
    limiter.set_account("a", plan="pro")
    d = limiter.consume("a", "export.ai", 31)
    assert not d.allowed and d.resets_at is None and d.retry_after is None
    m = meter(limiter, "a", "ai_exports")
    assert (m.used, m.window_start) == (0, None)
    # the two-limit feature: the rate limit allows 2 but the request is all-or-nothing
    d = limiter.consume("a", "transform.virtual_model", 3)
    assert not d.allowed and d.limit == "transform_rate" and d.resets_at is None
    assert meter(limiter, "a", "transform_daily").window_start is None


def test_sliding_window_frees_one_grant_at_a_time(limiter: Limiter, clock: ManualClock) -> None:
    limiter.set_account("a", plan="max")  # 5 a minute
    t0 = clock()
    limiter.consume("a", "transform.virtual_model", 2)
    clock.advance(10)
    limiter.consume("a", "transform.product_staging", 2)
    clock.advance(10)
    limiter.consume("a", "transform.product_beautifier", 1)
    clock.advance(10)
    t0_dt = datetime.fromtimestamp(t0, UTC)
    two = limiter.check("a", "transform.virtual_model", 2)
    assert two.resets_at == t0_dt + timedelta(seconds=60)
    assert two.retry_after == 30.0
    three = limiter.check("a", "transform.virtual_model", 3)
    assert three.resets_at == t0_dt + timedelta(seconds=70)
    m = meter(limiter, "a", "transform_rate")
    assert (m.used, m.window_start, m.resets_at) == (5, t0_dt, t0_dt + timedelta(seconds=60))
    clock.set(t0 + 60)  # the first grant leaves at exactly t0 + L
    assert limiter.consume("a", "transform.virtual_model", 2).allowed
    assert not limiter.consume("a", "transform.virtual_model").allowed


def test_calendar_month_resets_at_midnight_utc(limiter: Limiter, clock: ManualClock) -> None:
    limiter.set_account("a", plan="free")
    clock.set("2026-11-30T23:59:59Z")
    assert limiter.consume("a", "export.standard", 250).allowed
    d = limiter.consume("a", "export.standard")
    assert d.resets_at == utc("2026-12-01T00:00:00") and d.retry_after == 1.0
    m = meter(limiter, "a", "exports")
    assert (m.window_start, m.resets_at) == (utc("2026-11-01T00:00:00"), utc("2026-12-01T00:00:00"))
    clock.set("2026-12-01T00:00:00Z")
    assert limiter.consume("a", "export.standard").allowed
    m = meter(limiter, "a", "exports")
    assert (m.used, m.window_start) == (1, utc("2026-12-01T00:00:00"))


def test_the_blocking_limit_is_the_one_that_frees_last(
    limiter: Limiter, clock: ManualClock
) -> None:
    limiter.set_account("a", plan="pro")
    for _ in range(14):
        assert limiter.consume("a", "transform.virtual_model", 2).allowed
        clock.advance(60)
    assert limiter.consume("a", "transform.virtual_model", 2).allowed  # 30 today, 2 this minute
    d = limiter.consume("a", "transform.virtual_model")
    assert d.limit == "transform_daily"  # frees tomorrow, after the minute
    assert d.resets_at == utc("2026-11-24T15:10:00")


def test_partial_grants_what_every_limit_allows(limiter: Limiter) -> None:
    limiter.set_account("a", plan="pro")
    assert limiter.consume("a", "export.ai", 20).allowed
    batch = limiter.consume("a", "export.ai", 50)
    assert not batch.allowed and batch.remaining == 10
    part = limiter.consume("a", "export.ai", 50, partial=True)
    assert (part.allowed, part.granted, part.remaining) == (True, 10, 0)
    none = limiter.consume("a", "export.ai", 5, partial=True)
    assert (none.allowed, none.granted, none.limit) == (False, 0, "ai_exports")
    assert none.resets_at == utc("2026-11-30T15:10:00")


def test_plan_change_keeps_windows_and_applies_new_max(
    limiter: Limiter, clock: ManualClock
) -> None:
    limiter.set_account("a", plan="pro")
    for _ in range(15):
        limiter.consume("a", "transform.virtual_model", 2)
        clock.advance(60)
    assert not limiter.consume("a", "transform.virtual_model").allowed
    limiter.set_account("a", plan="max")
    m = meter(limiter, "a", "transform_daily")
    assert (m.used, m.max, m.remaining, m.window_start) == (30, 60, 30, utc("2026-11-23T15:10:00"))
    assert limiter.consume("a", "transform.virtual_model", 5).allowed
    limiter.set_account("a", plan="free")  # downgrade: no access any more, usage kept
    assert limiter.consume("a", "transform.virtual_model").reason == "no_access"
    limiter.set_account("a", plan="pro")
    d = limiter.consume("a", "transform.virtual_model")
    assert (d.allowed, d.limit, d.remaining) == (False, "transform_daily", 0)  # 35 > 30


def test_upgrade_is_the_cheapest_plan_that_grants_now(limiter: Limiter) -> None:
    limiter.set_account("a", plan="free")
    limiter.consume("a", "export.ai", 2)
    assert limiter.consume("a", "export.ai", 28).upgrade == "pro"
    assert limiter.consume("a", "export.ai", 29).upgrade == "max"
    assert limiter.consume("a", "export.ai", 119).upgrade is None
    limiter.set_account("t", plan="pro", seats=2)
    d = limiter.consume("t", "export.ai", 61)
    assert (d.upgrade, d.resets_at) == ("max", None)
    assert "Upgrade to Max for 240 a week" in d.message


def test_remaining_is_the_least_over_the_limits(limiter: Limiter, clock: ManualClock) -> None:
    limiter.set_account("a", plan="max")
    d = limiter.consume("a", "transform.virtual_model", 3)
    assert d.remaining == 2  # rate: 5 - 3; daily: 60 - 3
    clock.advance(60)
    for _ in range(11):
        limiter.consume("a", "transform.virtual_model", 5)
        clock.advance(60)
    d = limiter.consume("a", "transform.virtual_model", 2)
    assert (d.allowed, d.remaining) == (True, 0)  # daily 60/60 is now the least
    d = limiter.check("a", "transform.virtual_model")
    assert (d.allowed, d.remaining) == (False, 0)


def test_check_charges_nothing(limiter: Limiter) -> None:
    limiter.set_account("a", plan="pro")
    for _ in range(3):
        d = limiter.check("a", "export.ai", 30)
        assert d.allowed and d.remaining == 0
    assert meter(limiter, "a", "ai_exports").used == 0
