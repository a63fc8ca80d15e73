"""Every cell of the seed's table (CONTRACT section 2): 3 plans × 8 features, per seat."""

from __future__ import annotations

import pytest

from allowance import Limiter, ManualClock

PLANS = ["free", "pro", "max"]
NO = "no_access"
UNLIMITED = None
# feature -> (limit, cap per plan) for the limit that a single burst hits first
TABLE: dict[str, tuple[str, dict[str, int | str | None]]] = {
    "export.ai": ("ai_exports", {"free": 2, "pro": 30, "max": 120}),
    "export.standard": ("exports", {"free": 250, "pro": UNLIMITED, "max": UNLIMITED}),
    "transform.virtual_model": ("transform_rate", {"free": NO, "pro": 2, "max": 5}),
    "transform.product_staging": ("transform_rate", {"free": NO, "pro": 2, "max": 5}),
    "transform.product_beautifier": ("transform_rate", {"free": NO, "pro": 2, "max": 5}),
    "background.studio": ("studio", {"free": 3000, "pro": 4000, "max": 6000}),
    "background.studio_hd": ("studio_hd", {"free": NO, "pro": NO, "max": 4000}),
    "background.standard": ("", {"free": UNLIMITED, "pro": UNLIMITED, "max": UNLIMITED}),
}
DAILY_TRANSFORM = {"pro": 30, "max": 60}
UPGRADE_FOR_ACCESS = {"transform": "pro", "background.studio_hd": "max"}


@pytest.mark.parametrize("plan", PLANS)
@pytest.mark.parametrize("feature", sorted(TABLE))
def test_cell(limiter: Limiter, plan: str, feature: str) -> None:
    limit, caps = TABLE[feature]
    cap = caps[plan]
    limiter.set_account("a", plan=plan)
    if cap == NO:
        d = limiter.consume("a", feature)
        assert (d.allowed, d.reason, d.limit, d.remaining) == (False, "no_access", None, None)
        want = "max" if feature == "background.studio_hd" else "pro"
        assert d.upgrade == want
        assert limit not in {m.limit for m in limiter.usage("a")}
        return
    if cap is UNLIMITED:
        d = limiter.consume("a", feature, 1_000_000)
        assert d.allowed and d.granted == 1_000_000 and d.remaining is None
        return
    assert isinstance(cap, int)
    full = limiter.consume("a", feature, cap)
    assert full.allowed and full.granted == cap and full.remaining == 0
    over = limiter.consume("a", feature)
    assert (over.allowed, over.reason, over.limit, over.remaining) == (
        False,
        "limit_reached",
        limit,
        0,
    )
    meter = next(m for m in limiter.usage("a") if m.limit == limit)
    assert (meter.used, meter.max, meter.remaining) == (cap, cap, 0)


@pytest.mark.parametrize("plan", ["pro", "max"])
def test_transform_daily_pools_the_three_tools(
    limiter: Limiter, clock: ManualClock, plan: str
) -> None:
    limiter.set_account("a", plan=plan)
    rate = 2 if plan == "pro" else 5
    tools = ["transform.virtual_model", "transform.product_staging", "transform.product_beautifier"]
    granted = 0
    minute = 0
    while granted < DAILY_TRANSFORM[plan]:
        d = limiter.consume("a", tools[minute % 3], rate)
        assert d.allowed, d
        granted += d.granted
        minute += 1
        clock.advance(60)
    d = limiter.consume("a", tools[0])
    assert (d.allowed, d.limit) == (False, "transform_daily")
    assert d.upgrade == ("max" if plan == "pro" else None)


@pytest.mark.parametrize(
    ("plan", "seats", "cap"), [("free", 3, 2), ("pro", 3, 90), ("max", 2, 240)]
)
def test_ai_exports_per_paying_seat(limiter: Limiter, plan: str, seats: int, cap: int) -> None:
    limiter.set_account("team", plan=plan, seats=seats)
    assert limiter.consume("team", "export.ai", cap).allowed
    d = limiter.consume("team", "export.ai")
    assert (d.allowed, d.limit) == (False, "ai_exports")
    meter = next(m for m in limiter.usage("team") if m.limit == "ai_exports")
    assert (meter.used, meter.max) == (cap, cap)


@pytest.mark.parametrize(("plan", "threshold"), [("pro", 10_000), ("max", 30_000)])
def test_fair_use_is_a_soft_limit(limiter: Limiter, plan: str, threshold: int) -> None:
    limiter.set_account("a", plan=plan)
    at = limiter.consume("a", "export.standard", threshold)
    assert at.allowed and not at.fair_use_exceeded
    above = limiter.consume("a", "export.standard")
    assert above.allowed and above.fair_use_exceeded
    assert "fair-use" in above.message
