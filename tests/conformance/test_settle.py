"""``Reservation.commit(amount)`` (CONTRACT section 9): a reservation of an estimate is settled
at the real count, on every store. Fewer units go back to the windows they came from; more are
charged if they fit, else ``LimitExceeded`` and the reservation stays as it was."""

from __future__ import annotations

import asyncio

import pytest

from allowance import (
    AsyncLimiter,
    InvalidAmount,
    Limiter,
    LimitExceeded,
    ManualClock,
    ReservationExpired,
    ReservationNotFound,
)


def used(lim: Limiter, limit: str, account: str = "a") -> int:
    return next(m.used for m in lim.usage(account) if m.limit == limit)


def test_fewer_go_back_more_are_charged(limiter: Limiter) -> None:
    limiter.set_account("a", plan="pro")  # ai_exports: 30 a week per seat
    estimate = limiter.reserve("a", "export.ai", 10)
    estimate.commit(4)
    assert used(limiter, "ai_exports") == 4
    bigger = limiter.reserve("a", "export.ai", 10)
    bigger.commit(15)
    assert used(limiter, "ai_exports") == 19
    nothing = limiter.reserve("a", "export.ai", 5)
    nothing.commit(0)
    assert used(limiter, "ai_exports") == 19
    with pytest.raises(ReservationNotFound):
        nothing.release()  # committed: final, even at 0


def test_more_than_fits_raises_and_keeps_the_reservation(limiter: Limiter) -> None:
    limiter.set_account("a", plan="pro")
    limiter.consume("a", "export.ai", 15)
    held = limiter.reserve("a", "export.ai", 10)
    with pytest.raises(LimitExceeded) as raised:
        held.commit(16)  # 15 + 16 > 30
    d = raised.value.decision
    assert (d.allowed, d.reason, d.limit, d.remaining) == (False, "limit_reached", "ai_exports", 5)
    assert d.upgrade == "max" and d.resets_at is not None
    assert used(limiter, "ai_exports") == 25  # still 15 + the 10 held
    held.commit(15)  # what fits: 15 + 15 = 30
    assert used(limiter, "ai_exports") == 30
    held.commit(1)  # committing again changes nothing
    assert used(limiter, "ai_exports") == 30


def test_a_bad_amount_changes_nothing(limiter: Limiter) -> None:
    limiter.set_account("a", plan="pro")
    held = limiter.reserve("a", "export.ai", 3)
    for bad in (-1, 1.5, "2", True, 1_000_001):
        with pytest.raises(InvalidAmount, match="amount"):
            held.commit(bad)  # type: ignore[arg-type]
    held.release()
    assert used(limiter, "ai_exports") == 0


def test_units_go_back_to_their_own_sliding_window(limiter: Limiter, clock: ManualClock) -> None:
    limiter.set_account("a", plan="pro")  # transform_rate: 2 in any minute (sliding)
    held = limiter.reserve("a", "transform.virtual_model", 2)
    clock.advance(30)
    assert not limiter.consume("a", "transform.virtual_model").allowed
    held.commit(1)
    assert limiter.consume("a", "transform.virtual_model").allowed  # the returned unit
    d = limiter.consume("a", "transform.virtual_model")
    assert not d.allowed and d.retry_after == 30  # the committed one leaves at 60 s


def test_after_expiry_it_raises(limiter: Limiter, clock: ManualClock) -> None:
    limiter.set_account("a", plan="pro")
    held = limiter.reserve("a", "export.ai", 3, ttl=60)
    clock.advance(61)
    with pytest.raises(ReservationExpired):
        held.commit(2)
    assert used(limiter, "ai_exports") == 0


def test_async_settles_the_same(store_url: str, clock: ManualClock) -> None:
    async def main() -> tuple[int, str]:
        async with AsyncLimiter(store=store_url, clock=clock) as lim:
            await lim.set_account("a", plan="pro")
            held = await lim.reserve("a", "export.ai", 10)
            await held.commit(25)
            again = await lim.reserve("a", "export.ai", 1)
            try:
                await again.commit(6)
            except LimitExceeded as exc:
                reason = exc.decision.reason
            meters = await lim.usage("a")
            return next(m.used for m in meters if m.limit == "ai_exports"), reason

    assert asyncio.run(main()) == (26, "limit_reached")
