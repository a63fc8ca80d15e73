"""``Decision.quota``: the binding limit that rate-limit headers show, on every store."""

from __future__ import annotations

from allowance import Limiter, ManualClock
from allowance.types import Decision, Quota


def test_a_grant_names_the_limit_with_least_left(limiter: Limiter, clock: ManualClock) -> None:
    limiter.set_account("a", plan="pro")
    d = limiter.consume("a", "transform.virtual_model")
    # 2 a minute and 30 a day: after one, the minute has 1 left, the day 29
    assert d.quota == Quota("transform_rate", 2, 60.0, 1, 60.0)
    clock.advance(20)
    d = limiter.consume("a", "transform.virtual_model")
    assert d.quota == Quota("transform_rate", 2, 60.0, 0, 40.0)  # the first unit leaves at 60 s


def test_a_denial_shows_when_the_request_fits(limiter: Limiter, clock: ManualClock) -> None:
    limiter.set_account("a", plan="free")
    limiter.consume("a", "export.ai", 2)
    clock.advance(3600)
    d = limiter.consume("a", "export.ai")
    assert d.quota == Quota("ai_exports", 2, 7 * 86400.0, 0, 7 * 86400.0 - 3600)
    assert d.retry_after == d.quota.reset_after


def test_per_seat_and_calendar_quota(limiter: Limiter) -> None:
    limiter.set_account("a", plan="pro", seats=3)
    q = limiter.consume("a", "export.ai", 5).quota
    assert q is not None and (q.max, q.remaining) == (90, 85)
    limiter.set_account("f", plan="free")
    q = limiter.consume("f", "export.standard").quota  # calendar month, UTC; clock: 23 Nov
    assert q is not None and q.limit == "exports" and q.window == 30 * 86400.0
    assert q.reset_after == 8 * 86400.0 - (15 * 3600 + 10 * 60)  # to 1 Dec 00:00


def test_no_quota_without_a_limit(limiter: Limiter) -> None:
    limiter.set_account("a", plan="free")
    assert limiter.consume("a", "background.standard").quota is None  # unlimited
    assert limiter.consume("a", "transform.virtual_model").quota is None  # no access


def test_quota_survives_json() -> None:
    q = Quota("studio", 4000, 86400.0, 3999, 86400.0)
    d = Decision(True, 1, "ok", None, 3999, None, None, None, "ok", False, q)
    assert Decision.from_json(d.to_json(quota=True)).quota == q
    assert "quota" not in d.to_json()  # section 4's fields only, unless asked


def test_an_idempotent_replay_counts_down_from_now(limiter: Limiter, clock: ManualClock) -> None:
    """A replay returns the first decision (CONTRACT), but the binding limit's time to reset
    is from the replay's time: a retry ten minutes later is not told the whole window."""
    limiter.set_account("a", plan="free")
    first = limiter.consume("a", "export.ai", 2, idempotency_key="job-1")
    assert first.quota == Quota("ai_exports", 2, 7 * 86400.0, 0, 7 * 86400.0)
    clock.advance(600)
    again = limiter.consume("a", "export.ai", 2, idempotency_key="job-1")
    assert again.to_json() == first.to_json()  # the same decision, charged once
    assert again.quota == Quota("ai_exports", 2, 7 * 86400.0, 0, 7 * 86400.0 - 600)
    denied = limiter.consume("a", "export.ai", idempotency_key="job-2")
    clock.advance(60)
    replayed = limiter.consume("a", "export.ai", idempotency_key="job-2")
    assert not replayed.allowed and replayed.retry_after == denied.retry_after
    assert denied.quota is not None and replayed.quota is not None
    assert replayed.quota.reset_after == denied.quota.reset_after - 60
