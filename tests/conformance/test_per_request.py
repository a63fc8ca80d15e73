"""Per-request caps (CONTRACT section 9): ``per_request: N`` on a plan's cell caps what one
request may ask for, on every store and both decision paths (a store's one-step kernel and
the transaction path, taken by a reservation or an idempotency key)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from allowance import Limiter, ManualClock, parse_policy
from allowance.cli.policy_cmd import cell_text
from allowance.http.answers import decision_problem, decision_status

# the seed product's batch modes: a batch export count per month with at most so many images
# in one batch, more on higher plans, and Ultra's Super Batch of any size
BATCHES = parse_policy(
    """\
version: 1
plans: [free, pro, max, ultra]
features:
  export.batch: {title: Batch export}
  export.super_batch: {title: Super Batch export}
limits:
  batch_images:
    label: images
    features: [export.batch, export.super_batch]
    window: {type: calendar, unit: month}
    plans:
      free: no_access
      pro: {max: 500, per_request: 50}
      max: {max: 1500, per_request: 250}
      ultra: {max: 5000}
  super_batches:
    label: super batches
    features: [export.super_batch]
    window: {type: sliding, length: 1h}
    plans:
      free: no_access
      pro: no_access
      max: {max: unlimited, per_request: 100}
      ultra: {max: unlimited, per_request: 1000}
""",
    "batches",
)


@pytest.fixture
def lim(store_url: str, clock: ManualClock) -> Iterator[Limiter]:
    with Limiter(BATCHES, store=store_url, clock=clock) as limiter:
        limiter.set_account("a", plan="pro")
        yield limiter


def used(lim: Limiter, limit: str) -> int:
    return next(m.used for m in lim.usage("a") if m.limit == limit)


def test_a_request_over_the_cap_is_denied_and_charges_nothing(lim: Limiter) -> None:
    lim.consume("a", "export.batch", 20)
    for ask in (lim.consume, lim.check):
        d = ask("a", "export.batch", 51)
        assert (d.allowed, d.granted, d.reason) == (False, 0, "request_too_large")
        assert (d.limit, d.resets_at, d.retry_after) == ("batch_images", None, None)
        assert d.remaining == 480
        assert d.upgrade == "max"  # the cheapest plan whose cap admits 51 at once
        assert d.message == (
            "A request for 51 is more than the 50 images allowed at once; upgrade to Max for"
            " up to 250 at once."
        )
    assert used(lim, "batch_images") == 20
    assert lim.consume("a", "export.batch", 50).granted == 50  # the cap itself is allowed


def test_partial_grants_at_most_the_cap(lim: Limiter) -> None:
    d = lim.consume("a", "export.batch", 80, partial=True)
    assert (d.allowed, d.granted, d.remaining) == (True, 50, 450)
    assert used(lim, "batch_images") == 50


def test_the_upgrade_is_a_plan_that_admits_the_whole_request(lim: Limiter) -> None:
    d = lim.consume("a", "export.batch", 300)
    assert (d.reason, d.upgrade) == ("request_too_large", "ultra")  # Max allows 250 at once
    assert "upgrade to Ultra for any number at once" in d.message
    lim.set_account("a", plan="ultra")
    assert lim.consume("a", "export.batch", 300).granted == 300
    assert lim.consume("a", "export.batch", 5001).upgrade is None  # above Ultra's monthly max


def test_the_least_cap_of_the_features_limits_binds(lim: Limiter) -> None:
    """Two limits with caps: the one admitting less names the denial, whatever the order."""
    lim.set_account("a", plan="max")
    d = lim.consume("a", "export.super_batch", 120)
    assert (d.reason, d.limit, d.upgrade) == ("request_too_large", "super_batches", "ultra")
    d = lim.consume("a", "export.super_batch", 120, partial=True)
    assert (d.granted, used(lim, "batch_images"), used(lim, "super_batches")) == (100, 100, 100)


def test_a_quota_that_is_used_up_is_still_a_limit_reached(lim: Limiter) -> None:
    for _ in range(10):
        assert lim.consume("a", "export.batch", 50).allowed
    d = lim.consume("a", "export.batch", 10)
    assert (d.reason, d.limit) == ("limit_reached", "batch_images")
    assert d.upgrade == "max"
    assert lim.consume("a", "export.batch", 60).reason == "request_too_large"  # both: size first


def test_reservations_and_keyed_requests_take_the_same_cap(lim: Limiter) -> None:
    held = lim.reserve("a", "export.batch", 51, ttl=60)
    assert held.id is None and held.decision.reason == "request_too_large"
    keyed = lim.consume("a", "export.batch", 51, idempotency_key="k1")
    assert keyed.reason == "request_too_large"
    assert lim.consume("a", "export.batch", 51, idempotency_key="k1") == keyed
    got = lim.reserve("a", "export.batch", 51, ttl=60, partial=True)
    assert got.decision.granted == 50 and got.id is not None
    assert used(lim, "batch_images") == 50


def test_it_answers_403_with_no_retry_and_reads_in_the_policy_table(lim: Limiter) -> None:
    d = lim.consume("a", "export.batch", 51)
    assert decision_status(d) == 403  # only another plan helps: not a 429 to retry
    problem = decision_problem(d)
    assert problem.status == 403 and "Retry-After" not in problem.headers
    assert cell_text(BATCHES.limits["batch_images"].cells["pro"]) == "500, 50 at once"
    assert cell_text(BATCHES.limits["super_batches"].cells["ultra"]) == "unlimited, 1,000 at once"
