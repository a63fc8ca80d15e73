"""Reservations and idempotency keys (CONTRACT section 3) on every store."""

from __future__ import annotations

import pytest

from allowance import (
    IdempotencyConflict,
    Limiter,
    ManualClock,
    ReservationExpired,
    ReservationNotFound,
)


def used(lim: Limiter, account: str, name: str) -> int:
    return next(m.used for m in lim.usage(account) if m.limit == name)


def test_reserved_units_count_until_released(limiter: Limiter) -> None:
    limiter.set_account("a", plan="free")
    r = limiter.reserve("a", "background.studio", 2999)
    assert r.id is not None and r.decision.allowed and r.decision.remaining == 1
    assert used(limiter, "a", "studio") == 2999
    assert not limiter.consume("a", "background.studio", 2).allowed
    r.release()
    assert used(limiter, "a", "studio") == 0
    r.release()  # twice is harmless
    assert limiter.consume("a", "background.studio", 3000).allowed


def test_commit_makes_units_final(limiter: Limiter, clock: ManualClock) -> None:
    limiter.set_account("a", plan="free")
    r = limiter.reserve("a", "background.studio", 4, ttl=60)
    r.commit()
    r.commit()  # a retried commit is harmless
    clock.advance(120)
    assert used(limiter, "a", "studio") == 4
    with pytest.raises(ReservationNotFound, match="committed"):
        r.release()


def test_expiry_returns_units_and_commit_then_fails(limiter: Limiter, clock: ManualClock) -> None:
    limiter.set_account("a", plan="free")
    r = limiter.reserve("a", "background.studio", 10, ttl=30)
    assert r.expires_at is not None
    clock.advance(29.5)
    assert used(limiter, "a", "studio") == 10
    clock.advance(0.5)
    assert used(limiter, "a", "studio") == 0
    with pytest.raises(ReservationExpired):
        r.commit()
    r.release()  # after expiry: nothing left to return, no error


def test_expiry_is_settled_by_any_later_decision(limiter: Limiter, clock: ManualClock) -> None:
    limiter.set_account("a", plan="free")
    limiter.reserve("a", "export.ai", 2, ttl=10)
    assert not limiter.consume("a", "export.ai").allowed
    clock.advance(10)
    assert limiter.consume("a", "export.ai", 2).allowed


def test_default_ttl_is_15_minutes(limiter: Limiter, clock: ManualClock) -> None:
    limiter.set_account("a", plan="free")
    r = limiter.reserve("a", "export.ai", 2)
    assert r.expires_at is not None
    assert r.expires_at.timestamp() == clock() + 900


def test_released_units_go_back_to_their_window_only(limiter: Limiter, clock: ManualClock) -> None:
    limiter.set_account("a", plan="free")
    r = limiter.reserve("a", "background.studio", 5, ttl=7 * 86400)
    opened = next(m.window_start for m in limiter.usage("a") if m.limit == "studio")
    r.release()
    # the window the reservation opened stays open
    m = next(m for m in limiter.usage("a") if m.limit == "studio")
    assert (m.used, m.window_start) == (0, opened)
    r2 = limiter.reserve("a", "background.studio", 5, ttl=7 * 86400)
    clock.advance(86400)  # that window closed; a new one opens with new usage
    limiter.consume("a", "background.studio", 7)
    r2.release()
    assert used(limiter, "a", "studio") == 7


def test_reservation_in_a_sliding_window(limiter: Limiter, clock: ManualClock) -> None:
    limiter.set_account("a", plan="pro")
    r = limiter.reserve("a", "transform.virtual_model", 2)
    assert not limiter.consume("a", "transform.product_staging").allowed
    clock.advance(5)
    r.release()
    assert limiter.consume("a", "transform.product_staging", 2).allowed
    assert used(limiter, "a", "transform_daily") == 2


def test_denied_reserve_has_no_id(limiter: Limiter) -> None:
    limiter.set_account("a", plan="pro")
    r = limiter.reserve("a", "background.studio_hd")
    assert r.id is None and r.expires_at is None and r.decision.reason == "no_access"
    r.release()  # nothing held, nothing to do
    with pytest.raises(ReservationNotFound):
        r.commit()


@pytest.mark.parametrize("bad", ["nope", "r123.bm9uZQ", "", 42])
def test_unknown_reservation(limiter: Limiter, bad: object) -> None:
    limiter.set_account("a", plan="pro")
    with pytest.raises(ReservationNotFound):
        limiter.commit(bad)  # type: ignore[arg-type]
    with pytest.raises(ReservationNotFound):
        limiter.release(bad)  # type: ignore[arg-type]


def test_idempotent_consume_charges_once(limiter: Limiter) -> None:
    limiter.set_account("a", plan="pro")
    first = limiter.consume("a", "export.ai", 3, idempotency_key="job-1")
    again = limiter.consume("a", "export.ai", 3, idempotency_key="job-1")
    assert first == again and first.allowed
    assert used(limiter, "a", "ai_exports") == 3
    other = limiter.consume("b" if False else "a", "export.ai", 3, idempotency_key="job-2")
    assert other.allowed and used(limiter, "a", "ai_exports") == 6


def test_idempotent_denial_is_replayed_even_after_room_frees(limiter: Limiter) -> None:
    limiter.set_account("a", plan="free")
    denied = limiter.consume("a", "export.ai", 3, idempotency_key="k")
    assert not denied.allowed
    assert limiter.consume("a", "export.ai", 3, idempotency_key="k") == denied


def test_idempotency_conflict(limiter: Limiter) -> None:
    limiter.set_account("a", plan="pro")
    limiter.consume("a", "export.ai", 3, idempotency_key="k")
    with pytest.raises(IdempotencyConflict):
        limiter.consume("a", "export.ai", 4, idempotency_key="k")
    with pytest.raises(IdempotencyConflict):
        limiter.consume("a", "export.standard", 3, idempotency_key="k")
    with pytest.raises(IdempotencyConflict):
        limiter.reserve("a", "export.ai", 3, idempotency_key="k")
    assert used(limiter, "a", "ai_exports") == 3


def test_idempotency_keys_are_per_account_and_last_24h(
    limiter: Limiter, clock: ManualClock
) -> None:
    limiter.set_account("a", plan="pro")
    limiter.set_account("b", plan="pro")
    limiter.consume("a", "export.ai", idempotency_key="k")
    limiter.consume("b", "export.ai", idempotency_key="k")
    assert used(limiter, "b", "ai_exports") == 1
    clock.advance(86399)
    limiter.consume("a", "export.ai", idempotency_key="k")
    assert used(limiter, "a", "ai_exports") == 1
    clock.advance(1)
    limiter.consume("a", "export.ai", idempotency_key="k")
    assert used(limiter, "a", "ai_exports") == 2


def test_check_ignores_idempotency_keys(limiter: Limiter) -> None:
    limiter.set_account("a", plan="pro")
    limiter.check("a", "export.ai", 5, idempotency_key="k")
    d = limiter.consume("a", "export.ai", 1, idempotency_key="k")  # no conflict with the check
    assert d.allowed and used(limiter, "a", "ai_exports") == 1


def test_idempotent_reserve_returns_the_same_reservation(limiter: Limiter) -> None:
    limiter.set_account("a", plan="pro")
    r1 = limiter.reserve("a", "export.ai", 2, idempotency_key="r")
    r2 = limiter.reserve("a", "export.ai", 2, idempotency_key="r")
    assert r1.id == r2.id and r1.expires_at == r2.expires_at
    assert used(limiter, "a", "ai_exports") == 2


def test_commit_long_after_expiry_still_says_expired(limiter: Limiter, clock: ManualClock) -> None:
    limiter.set_account("a", plan="free")
    r = limiter.reserve("a", "background.studio", 3, ttl=60)
    clock.advance(3 * 86400)
    limiter.sweep()  # the record may be gone by now; the answer stays the same
    with pytest.raises(ReservationExpired):
        r.commit()
