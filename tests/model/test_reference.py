"""Example-based tests of the reference model itself: it must be right on the seed's worked
example and on the rules of CONTRACT section 3 before it can judge the library."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from allowance import builtin_policy, load_policy

from .reference import Model, ModelConflict, ModelExpired

SCOPED = Path(__file__).parents[1] / "scoped.yaml"
TRANSFORMS = ("transform.virtual_model", "transform.product_staging")


def at(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def pro_model(start: str = "2026-11-23T15:10:00") -> Model:
    model = Model(builtin_policy(), at(start))
    model.set_account("acme", "pro")
    return model


def meter(model: Model, account: str, limit: str) -> tuple[int, float | None, float | None]:
    m = next(m for m in model.usage(account) if m.limit == limit)
    return m.used, m.window_start, m.resets_at


def test_seed_worked_example() -> None:
    model = pro_model()
    # Monday 15:10-15:19: twenty Virtual Model generations at 2 a minute
    for minute in range(10):
        model.now = at(f"2026-11-23T15:{10 + minute}:00")
        for _ in range(2):
            assert model.consume("acme", "transform.virtual_model").allowed
        third = model.consume("acme", "transform.virtual_model")
        assert (third.allowed, third.reason, third.limit) == (
            False,
            "limit_reached",
            "transform_rate",
        )
        assert third.resets_at == at(f"2026-11-23T15:{11 + minute}:00")
        assert third.retry_after == 60.0
        assert third.upgrade == "max"
        assert third.remaining == 0
    # 15:30-15:34: ten Product Staging
    for minute in range(5):
        model.now = at(f"2026-11-23T15:{30 + minute}:00")
        for _ in range(2):
            assert model.consume("acme", "transform.product_staging").allowed
    assert meter(model, "acme", "transform_daily") == (
        30,
        at("2026-11-23T15:10:00"),
        at("2026-11-24T15:10:00"),
    )
    model.now = at("2026-11-23T15:36:00")
    denied = model.consume("acme", "transform.product_beautifier")
    assert (denied.allowed, denied.granted, denied.reason) == (False, 0, "limit_reached")
    assert denied.limit == "transform_daily"
    assert denied.resets_at == at("2026-11-24T15:10:00")
    assert denied.retry_after == at("2026-11-24T15:10:00") - at("2026-11-23T15:36:00")
    assert (denied.upgrade, denied.remaining) == ("max", 0)
    model.now = at("2026-11-24T15:09:59")
    assert not model.consume("acme", "transform.virtual_model").allowed
    # Tuesday 16:10: granted, and a new window opens at 16:10
    model.now = at("2026-11-24T16:10:00")
    back = model.consume("acme", "transform.virtual_model")
    assert (back.allowed, back.granted, back.remaining) == (True, 1, 1)
    assert meter(model, "acme", "transform_daily") == (
        1,
        at("2026-11-24T16:10:00"),
        at("2026-11-25T16:10:00"),
    )


def test_sliding_window_frees_one_grant_at_a_time() -> None:
    model = pro_model()
    assert model.consume("acme", "transform.virtual_model").allowed
    model.advance(30)
    assert model.consume("acme", "transform.virtual_model").allowed
    model.advance(10)
    two = model.consume("acme", "transform.virtual_model", 2)
    # the first unit leaves at +60 s, the second at +90 s: two fit again at +90 s
    assert (two.limit, two.resets_at) == ("transform_rate", at("2026-11-23T15:11:30"))
    one = model.check("acme", "transform.virtual_model", 1)
    assert one.resets_at == at("2026-11-23T15:11:00")
    assert meter(model, "acme", "transform_rate") == (
        2,
        at("2026-11-23T15:10:00"),
        at("2026-11-23T15:11:00"),
    )
    model.advance(20)  # exactly 60 s after the first grant: it has left (t - L, t]
    assert meter(model, "acme", "transform_rate")[0] == 1


def test_all_or_nothing_partial_and_never_fits() -> None:
    model = pro_model()
    model.set_account("acme", "pro", seats=1)
    assert model.consume("acme", "export.ai", 25).remaining == 5
    batch = model.consume("acme", "export.ai", 10)
    assert (batch.allowed, batch.granted, batch.remaining) == (False, 0, 5)
    assert batch.resets_at == at("2026-11-30T15:10:00")  # 7 days after the window opened
    assert batch.upgrade == "max"
    some = model.consume("acme", "export.ai", 10, partial=True)
    assert (some.allowed, some.granted, some.remaining) == (True, 5, 0)
    never = model.consume("acme", "export.ai", 31)
    assert (never.limit, never.resets_at, never.retry_after) == ("ai_exports", None, None)
    assert never.upgrade == "max"  # on Max: 30 used + 31 <= 120
    assert model.consume("acme", "export.ai", 91).upgrade is None  # 30 + 91 > 120


def test_upgrade_on_limit_and_access() -> None:
    model = pro_model()
    assert model.consume("acme", "export.ai", 30).allowed
    d = model.consume("acme", "export.ai", 31)
    assert (d.limit, d.resets_at, d.upgrade) == ("ai_exports", None, "max")
    hd = model.consume("acme", "background.studio_hd")
    assert (hd.reason, hd.limit, hd.remaining, hd.upgrade) == ("no_access", None, None, "max")
    model.set_account("free", "free")
    t = model.consume("free", "transform.virtual_model")
    assert (t.reason, t.upgrade) == ("no_access", "pro")
    assert [m.limit for m in model.usage("free")] == ["ai_exports", "exports", "studio"]


def test_plan_change_keeps_counters() -> None:
    model = pro_model()
    for _ in range(15):
        assert model.consume("acme", TRANSFORMS[0], 2).allowed
        model.advance(60)
    assert not model.consume("acme", TRANSFORMS[1]).allowed
    model.set_account("acme", "max")
    assert meter(model, "acme", "transform_daily")[0] == 30
    d = model.consume("acme", TRANSFORMS[1])
    assert (d.allowed, d.remaining) == (True, 4)  # transform_rate: 5 - 1 = 4; daily 29 left
    model.set_account("acme", "pro", seats=1)
    down = model.consume("acme", TRANSFORMS[1])
    assert (down.limit, down.remaining) == ("transform_daily", 0)


def test_per_seat_and_fair_use() -> None:
    model = pro_model()
    model.set_account("acme", "pro", seats=3)
    assert model.consume("acme", "export.ai", 90).allowed
    assert next(m for m in model.usage("acme") if m.limit == "ai_exports").max == 90
    big = model.consume("acme", "export.standard", 10000)
    assert (big.allowed, big.remaining, big.fair_use_exceeded) == (True, None, False)
    over = model.consume("acme", "export.standard", 1)
    assert (over.allowed, over.fair_use_exceeded) == (True, True)
    # a calendar month: the counter starts again on 1 December
    model.now = at("2026-12-01T00:00:00")
    assert meter(model, "acme", "exports") == (0, at("2026-12-01"), at("2027-01-01"))


def test_reservations() -> None:
    model = pro_model()
    hold, d, expires = model.reserve("acme", "transform.virtual_model", 2, ttl=30)
    assert hold is not None and d.granted == 2 and expires == model.now + 30
    assert meter(model, "acme", "transform_daily")[0] == 2
    model.release(hold)
    # units go back; the anchored window the reservation opened stays open
    assert meter(model, "acme", "transform_daily") == (
        0,
        at("2026-11-23T15:10:00"),
        at("2026-11-24T15:10:00"),
    )
    assert meter(model, "acme", "transform_rate") == (0, None, None)
    hold2, _, _ = model.reserve("acme", "transform.virtual_model", 2, ttl=30)
    assert hold2 is not None
    denied = model.consume("acme", "transform.virtual_model")
    # the hold may yet be committed: resets_at does not count on its expiry
    assert denied.resets_at == model.now + 60
    model.advance(30)
    assert meter(model, "acme", "transform_rate")[0] == 0
    with pytest.raises(ModelExpired):
        model.commit(hold2)
    hold3, _, _ = model.reserve("acme", "transform.virtual_model", 1, ttl=30)
    assert hold3 is not None
    model.commit(hold3)
    model.advance(30)
    assert meter(model, "acme", "transform_daily")[0] == 1


def test_idempotency() -> None:
    model = pro_model()
    first = model.consume("acme", "export.ai", 3, key="k")
    again = model.consume("acme", "export.ai", 3, key="k")
    assert again == first
    assert meter(model, "acme", "ai_exports")[0] == 3
    with pytest.raises(ModelConflict):
        model.consume("acme", "export.ai", 4, key="k")
    model.advance(86400)
    assert model.consume("acme", "export.ai", 4, key="k").remaining == 23


def test_scopes_count_per_space_per_user_and_per_user_everywhere() -> None:
    """tests/scoped.yaml on free: 12 space credits a day (upscale costs 3), 4 generations per
    user an hour, 2 exports per user per space an hour, 3 per user across spaces a day."""
    model = Model(load_policy(SCOPED), at("2026-11-23T10:00:00"))
    for space in ("team-a", "team-b"):
        model.set_account(space, "free")
    for _ in range(4):
        assert model.consume("team-a", "ai.generate", user="ann").allowed
    mine = model.consume("team-a", "ai.generate", user="ann")
    assert (mine.reason, mine.limit) == ("limit_reached", "generations_per_user")
    assert mine.resets_at == at("2026-11-23T11:00:00")
    # bob has his own four; the space's twelve credits are shared: 4 + 4 + one upscale of 3
    for _ in range(4):
        assert model.consume("team-a", "ai.generate", user="bob").allowed
    assert model.consume("team-a", "ai.upscale", user="bob").allowed
    pool = model.consume("team-a", "ai.upscale", user="ann")
    assert (pool.reason, pool.limit, pool.remaining) == ("limit_reached", "space_credits", 0)
    # exports: two per space, three across both
    assert all(model.consume("team-a", "export", user="ann").allowed for _ in range(2))
    assert model.consume("team-a", "export", user="ann").limit == "exports_per_user"
    assert model.consume("team-b", "export", user="ann").allowed
    everywhere = model.consume("team-b", "export", user="ann")
    assert (everywhere.reason, everywhere.limit) == ("limit_reached", "exports_everywhere")
    assert model.consume("team-b", "export", user="bob").allowed
    # the meters: the account's alone without a user, each user's own with one
    assert [m.limit for m in model.usage("team-a")] == ["space_credits"]
    shown = {m.limit: m.used for m in model.usage("team-b", "ann")}
    assert shown == {
        "space_credits": 0,
        "generations_per_user": 0,
        "exports_per_user": 1,
        "exports_everywhere": 3,
    }


def test_a_key_reused_by_another_user_conflicts_where_the_feature_counts_per_user() -> None:
    model = pro_model()
    first = model.consume("acme", "transform.virtual_model", key="k", user="ann")
    # the built-in policy counts per account: the user is no part of the request's identity
    assert model.consume("acme", "transform.virtual_model", key="k", user="bob") == first
    scoped = Model(load_policy(SCOPED), model.now)
    scoped.set_account("team", "pro")
    scoped.consume("team", "export", key="k", user="ann")
    with pytest.raises(ModelConflict):
        scoped.consume("team", "export", key="k", user="bob")
