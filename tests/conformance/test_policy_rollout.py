"""Policy rollout (CONTRACT section 9): ``put_policy`` validates a policy and keeps it in the
store; every Limiter on that store decides with it within ``load.REFRESH`` (in place of its
own), the one that put it at once; a switch is never half applied. On every store."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from allowance import (
    Limiter,
    ManualClock,
    PolicyError,
    UnknownFeature,
    builtin_policy,
    load,
    parse_policy,
)
from allowance.stores import store_from_url

BASE = """\
version: 1
plans: [free, pro]
features:
  export.ai: {title: AI export}
  export.old: {title: Old export}
limits:
  exports:
    features: [export.ai, export.old]
    window: {type: calendar, unit: week}
    plans: {free: 2, pro: 30}
"""
# Pro's exports 30 -> 10; export.old gone, export.new added
NEXT = (
    BASE.replace("pro: 30", "pro: 10")
    .replace("export.old: {title: Old export}", "export.new: {title: New export}")
    .replace("[export.ai, export.old]", "[export.ai, export.new]")
)


@pytest.fixture(autouse=True)
def quick_refresh(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(load, "REFRESH", 0.0)  # read the settings on every call


@pytest.fixture
def pair(store_url: str, clock: ManualClock) -> Iterator[tuple[Limiter, Limiter]]:
    """Two Limiters on one store, both with BASE as their own policy."""
    with Limiter(parse_policy(BASE), store=store_url, clock=clock) as one:
        store = one.store if store_url.startswith("memory") else store_from_url(store_url)
        with Limiter(parse_policy(BASE), store=store, clock=clock) as two:
            one.set_account("a", plan="pro")
            yield one, two


def test_every_limiter_on_the_store_switches(pair: tuple[Limiter, Limiter]) -> None:
    one, two = pair
    assert two.consume("a", "export.ai", 12).allowed  # 12 of 30
    one.put_policy(NEXT)
    assert "export.new" in one.policy.features  # at once where it was put
    d = two.consume("a", "export.ai")
    assert (d.allowed, d.limit) == (False, "exports")  # 12 already over the new 10
    assert next(m.max for m in two.usage("a") if m.limit == "exports") == 10
    with pytest.raises(UnknownFeature):
        two.consume("a", "export.old")
    assert two.policy.to_data() == one.policy.to_data()
    # a Limiter opened later decides with the store's policy too, whatever its own
    three = Limiter(store=two.store, clock=two.clock)  # (shares two's store: not closed)
    assert three.check("a", "export.new").reason == "limit_reached"
    three.set_account("b", plan="pro")
    assert three.consume("b", "export.new", 11).reason == "limit_reached"


def test_a_bad_policy_is_refused_with_its_line_and_changes_nothing(
    pair: tuple[Limiter, Limiter],
) -> None:
    one, two = pair
    with pytest.raises(PolicyError) as err:
        one.put_policy(BASE.replace("pro: 30", "pro: -3"))
    assert err.value.issues[0].line == 10
    assert two.check("a", "export.old").allowed  # still BASE everywhere
    assert one.policy.to_data() == two.policy.to_data() == parse_policy(BASE).to_data()


def test_load_factors_apply_to_the_stored_policy(pair: tuple[Limiter, Limiter]) -> None:
    one, two = pair
    one.put_policy(NEXT)
    one.set_load_factor(0.5)
    assert two.consume("a", "export.ai", 9, partial=True).granted == 5  # floor(10 × 0.5)


def test_a_limiters_own_new_policy_gives_way_to_the_stored_one(
    pair: tuple[Limiter, Limiter],
) -> None:
    one, two = pair
    two.use_local_policy(builtin_policy())  # a file re-read (SIGHUP)
    assert "export.standard" in two.policy.features
    one.put_policy(NEXT)
    assert two.check("a", "export.new").allowed
    assert "export.standard" not in two.policy.features


def test_a_switch_under_load_is_never_half_applied(pair: tuple[Limiter, Limiter]) -> None:
    """Threads decide while the policy flips between BASE and NEXT: every answer is one
    policy's (a known feature decided, or UnknownFeature for one the other lacks), never an
    error of mixing the two."""
    one, two = pair
    errors: list[BaseException] = []
    stop = threading.Event()

    def decide() -> None:
        while not stop.is_set():
            for feature in ("export.old", "export.new", "export.ai"):
                try:
                    d = two.check("a", feature)
                    assert d.reason in ("ok", "limit_reached"), d
                except UnknownFeature:
                    pass
                except BaseException as exc:
                    errors.append(exc)

    workers = [threading.Thread(target=decide) for _ in range(4)]
    for w in workers:
        w.start()
    try:
        for i in range(20):
            one.put_policy(NEXT if i % 2 == 0 else BASE)
    finally:
        stop.set()
        for w in workers:
            w.join()
    assert errors == []
