"""The seed's worked example, minute by minute (CONTRACT section 2)."""

from datetime import UTC, datetime

from allowance import Limiter, ManualClock


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def test_monday_to_tuesday() -> None:
    clock = ManualClock("2026-11-23T15:10:00")  # a Monday
    lim = Limiter(clock=clock)
    lim.set_account("acme", plan="pro")
    # 15:10-15:19: twenty Virtual Model generations at 2 a minute
    for minute in range(10):
        clock.set(at(f"2026-11-23T15:{10 + minute}:00"))
        for _ in range(2):
            assert lim.consume("acme", "transform.virtual_model").allowed
        third = lim.consume("acme", "transform.virtual_model")
        assert (third.allowed, third.limit) == (False, "transform_rate")
        assert third.resets_at == at(f"2026-11-23T15:{11 + minute}:00")
    # 15:30-15:34: ten Product Staging
    for minute in range(5):
        clock.set(at(f"2026-11-23T15:{30 + minute}:00"))
        for _ in range(2):
            assert lim.consume("acme", "transform.product_staging").allowed
    daily = next(m for m in lim.usage("acme") if m.limit == "transform_daily")
    assert (daily.used, daily.remaining) == (30, 0)
    assert daily.window_start == at("2026-11-23T15:10:00")

    clock.set(at("2026-11-23T15:36:00"))
    denied = lim.consume("acme", "transform.product_beautifier")
    assert not denied.allowed
    assert denied.reason == "limit_reached"
    assert denied.limit == "transform_daily"
    assert denied.resets_at == at("2026-11-24T15:10:00")
    assert (
        denied.retry_after
        == (at("2026-11-24T15:10:00") - at("2026-11-23T15:36:00")).total_seconds()
    )
    assert denied.upgrade == "max"
    assert denied.remaining == 0
    assert denied.message == (
        "You have reached your daily limit of 30 generations for image transformation tools. "
        "It resets on Tue 24 Nov at 15:10 UTC, or upgrade to Max for 60 a day."
    )

    clock.set(at("2026-11-24T15:09:59"))
    assert not lim.consume("acme", "transform.virtual_model").allowed

    clock.set(at("2026-11-24T16:10:00"))
    back = lim.consume("acme", "transform.virtual_model")
    assert back.allowed and back.granted == 1
    daily = next(m for m in lim.usage("acme") if m.limit == "transform_daily")
    assert daily.used == 1
    assert daily.window_start == at("2026-11-24T16:10:00")
    assert daily.resets_at == at("2026-11-25T16:10:00")
