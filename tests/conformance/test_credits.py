"""Credits (CONTRACT section 9): a limit with ``costs: {feature: units}`` charges ``amount x
cost`` of its units, all-or-nothing with every other limit the feature touches; partial grants
round down to whole requests; ``remaining`` is in requests of the feature (what the credits
still buy), meters and the rate-limit quota in credits. On every store and both decision paths
(the one-step kernel, and the transaction path a reservation or a key takes)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from allowance import Limiter, ManualClock, parse_policy

# the seed product's later pages: AI credits pooled per team space, each AI feature costing a
# different number, beside a per-minute rate of generations
CREDITS = parse_policy(
    """\
version: 1
plans: [free, pro, max]
features:
  ai.generate: {title: AI generation}
  ai.video: {title: AI video}
  ai.upscale: {title: AI upscale}
limits:
  ai_credits:
    label: AI credits
    features: [ai.generate, ai.video, ai.upscale]
    costs: {ai.generate: 4, ai.video: 25}
    window: {type: calendar, unit: month}
    plans:
      free: 20
      pro: {max: 100, per_request: 50}
      max: {max: unlimited, fair_use: 300}
  generations:
    label: generations
    features: [ai.generate]
    window: {type: sliding, length: 60s}
    plans: {free: 2, pro: 10, max: 30}
""",
    "credits",
)


@pytest.fixture
def lim(store_url: str, clock: ManualClock) -> Iterator[Limiter]:
    with Limiter(CREDITS, store=store_url, clock=clock) as limiter:
        limiter.set_account("a", plan="pro")
        yield limiter


def used(lim: Limiter, limit: str) -> int:
    return next(m.used for m in lim.usage("a") if m.limit == limit)


@pytest.mark.parametrize("keyed", [False, True], ids=["kernel", "transaction"])
def test_a_request_charges_its_cost_and_says_what_is_left(lim: Limiter, keyed: bool) -> None:
    key = "k1" if keyed else None
    d = lim.consume("a", "ai.generate", 2, idempotency_key=key)
    assert (d.allowed, d.granted) == (True, 2)
    assert d.remaining == 8  # 92 credits buy 23 more generations, the minute's rate 8 more
    assert (used(lim, "ai_credits"), used(lim, "generations")) == (8, 2)
    d = lim.consume("a", "ai.video", 1, idempotency_key=None if key is None else "k2")
    assert (d.granted, d.remaining) == (1, 2)  # 67 credits buy two more videos
    assert d.message == (
        "AI video: granted 1; 67 of your monthly limit of 100 AI credits left, enough for 2"
        " more at 25 each."
    )
    assert d.quota is not None and (d.quota.limit, d.quota.max, d.quota.remaining) == (
        "ai_credits",
        100,
        67,
    )
    assert lim.consume("a", "ai.upscale", 7).remaining == 60  # costs 1: no costs entry
    meter = next(m for m in lim.usage("a") if m.limit == "ai_credits")
    assert (meter.used, meter.max, meter.remaining) == (40, 100, 60)  # meters count credits


def test_all_or_nothing_in_credits(lim: Limiter, clock: ManualClock) -> None:
    lim.consume("a", "ai.video", 2)  # 50 credits
    lim.consume("a", "ai.upscale", 40)  # 90
    d = lim.consume("a", "ai.generate", 3)  # 12 credits wanted, 10 left
    assert (d.allowed, d.reason, d.limit) == (False, "limit_reached", "ai_credits")
    assert d.remaining == 2  # two generations still fit
    assert d.upgrade == "max"
    assert d.message.startswith(
        "Only 10 of your monthly limit of 100 AI credits are left, not enough for 12 (3 at 4 each)."
    )
    assert (used(lim, "ai_credits"), used(lim, "generations")) == (90, 0)  # nothing charged
    assert lim.consume("a", "ai.video", 1).reason == "limit_reached"
    # the other limit binds first when it is the tighter one
    lim.set_account("a", plan="free")
    d = lim.consume("a", "ai.generate", 1)
    assert d.limit == "ai_credits"


def test_partial_rounds_down_to_whole_requests(lim: Limiter) -> None:
    assert lim.consume("a", "ai.upscale", 43).allowed
    assert lim.consume("a", "ai.upscale", 40).allowed  # 17 credits left
    d = lim.consume("a", "ai.generate", 9, partial=True)
    assert (d.allowed, d.granted, d.remaining) == (True, 4, 0)  # 16 of the 17 credits
    assert (used(lim, "ai_credits"), used(lim, "generations")) == (99, 4)
    d = lim.consume("a", "ai.video", 1, partial=True)
    assert (d.allowed, d.reason) == (False, "limit_reached")  # 1 credit buys no video
    assert used(lim, "ai_credits") == 99


def test_a_per_request_cap_is_in_credits(lim: Limiter) -> None:
    d = lim.consume("a", "ai.video", 3)  # 75 credits: over the 50 one request may take
    assert (d.reason, d.limit, d.upgrade) == ("request_too_large", "ai_credits", "max")
    assert d.message.startswith("A request for 75 is more than the 50 AI credits allowed at once")
    d = lim.consume("a", "ai.video", 3, partial=True)
    assert (d.granted, used(lim, "ai_credits")) == (2, 50)  # two videos fit in 50
    assert lim.consume("a", "ai.generate", 13).reason == "request_too_large"  # 52 credits


def test_a_soft_level_counts_credits(lim: Limiter) -> None:
    lim.set_account("a", plan="max")
    assert not lim.consume("a", "ai.video", 12).fair_use_exceeded  # 300 credits: at the level
    d = lim.consume("a", "ai.generate", 1)
    assert d.allowed and d.fair_use_exceeded and d.remaining == 29


def test_a_reservation_returns_its_credits_and_settles_in_them(lim: Limiter) -> None:
    held = lim.reserve("a", "ai.video", 2, ttl=60)
    assert held.id is not None and used(lim, "ai_credits") == 50
    held.release()
    assert used(lim, "ai_credits") == 0
    estimate = lim.reserve("a", "ai.generate", 5, ttl=60)
    assert (used(lim, "ai_credits"), used(lim, "generations")) == (20, 5)
    estimate.commit(3)  # the real count: 2 generations' credits go back
    assert (used(lim, "ai_credits"), used(lim, "generations")) == (12, 3)
    bigger = lim.reserve("a", "ai.generate", 1, ttl=60)
    bigger.commit(4)  # 3 more generations: 12 more credits
    assert (used(lim, "ai_credits"), used(lim, "generations")) == (28, 7)


def test_the_reset_is_when_the_credits_free(lim: Limiter, clock: ManualClock) -> None:
    """The sliding rate frees a generation after a minute; the credits only next month: the
    blocking limit is the one that frees last, and the request fits when both have room."""
    lim.set_account("a", plan="free")
    lim.consume("a", "ai.generate", 2)  # 8 of 20 credits, the rate's 2
    clock.advance(30)
    d = lim.consume("a", "ai.generate", 1)
    assert (d.limit, d.retry_after) == ("generations", 30.0)
    lim.consume("a", "ai.upscale", 10)  # 18 credits: no generation fits this month
    d = lim.consume("a", "ai.generate", 1)
    assert d.limit == "ai_credits" and d.resets_at is not None
    assert d.resets_at.day == 1 and d.retry_after is not None and d.retry_after > 30


def test_costs_read_in_the_policy_table_and_survive_a_round_trip() -> None:
    import yaml

    from allowance.cli.policy_cmd import features_text
    from allowance.policy import parse_policy as reparse

    assert features_text(CREDITS.limits["ai_credits"]) == (
        "ai.generate × 4\nai.video × 25\nai.upscale"
    )
    again = reparse(yaml.safe_dump(CREDITS.to_data(), sort_keys=False))
    assert again.limits["ai_credits"].costs == {"ai.generate": 4, "ai.video": 25}
    rules = again.rules("pro", "ai.video")
    assert rules is not None and [r.cost for r in rules] == [25]
