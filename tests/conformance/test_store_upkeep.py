"""Usage meters, persistence and cleanup on every store."""

from __future__ import annotations

from allowance import Limiter, ManualClock


def test_usage_lists_every_limit_the_plan_has(limiter: Limiter) -> None:
    limiter.set_account("f", plan="free")
    limiter.set_account("p", plan="pro", seats=4)
    limiter.set_account("m", plan="max")
    assert [m.limit for m in limiter.usage("f")] == ["ai_exports", "exports", "studio"]
    pro = {m.limit: m for m in limiter.usage("p")}
    assert list(pro) == ["ai_exports", "exports", "transform_rate", "transform_daily", "studio"]
    assert pro["ai_exports"].max == 120 and pro["exports"].max is None
    assert all(m.used == 0 for m in pro.values())
    assert [m.limit for m in limiter.usage("m")][-1] == "studio_hd"


def test_sweep_removes_expired_records(limiter: Limiter, clock: ManualClock) -> None:
    limiter.set_account("a", plan="pro")
    limiter.consume("a", "export.ai", idempotency_key="k1")
    r = limiter.reserve("a", "background.studio", 3, ttl=60)
    limiter.reserve("a", "background.studio", 2, ttl=60)  # left to expire untouched
    r.commit()
    clock.advance(3 * 86400)
    removed = limiter.sweep()
    # in-process stores delete the three expired records here; Redis lets them expire by TTL
    # and only has the untouched reservation to settle
    assert removed >= (1 if limiter.store.scheme == "redis" else 3)
    assert limiter.sweep() == 0
    studio = next(m for m in limiter.usage("a") if m.limit == "studio")
    assert studio.used == 0
