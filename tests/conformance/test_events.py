"""Events (CONTRACT 8, ``events.py``) on every store: written with the charge that crosses a
level, once per window, none for a denial or a check; plan changes and expired reservations;
paging by id."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from allowance import InvalidRequest, Limiter, ManualClock, parse_policy
from allowance.events import KEEP, Event

GEN = "transform.virtual_model"  # Pro: 2 a minute (sliding), 30 a day (anchored 24 h)


@pytest.fixture
def lim(limiter: Limiter) -> Iterator[Limiter]:
    limiter.set_account("acme", "pro")
    yield limiter


def generations(lim: Limiter, clock: ManualClock, n: int, account: str = "acme") -> int:
    """``n`` generations a minute apart (the per-minute limit never binds); how many were
    granted."""
    granted = 0
    for _ in range(n):
        clock.advance(61)
        granted += lim.consume(account, GEN).granted
    return granted


def kinds(found: list[Event]) -> list[tuple[str, str | None]]:
    return [(e.type, e.limit) for e in found]


def test_thirty_pro_generations_cross_the_threshold_once_and_reach_the_limit_once(
    lim: Limiter, clock: ManualClock
) -> None:
    assert generations(lim, clock, 35) == 30
    found = lim.events()
    assert kinds(found) == [
        ("usage.threshold", "transform_daily"),
        ("usage.limit_reached", "transform_daily"),
    ]
    threshold, reached = found
    assert threshold.account == reached.account == "acme"
    assert threshold.data["used"] == 24 and threshold.data["threshold"] == 0.8
    assert threshold.data["max"] == reached.data["max"] == 30 and reached.data["used"] == 30
    assert reached.data["upgrade"] == "max" and reached.data["resets_at"].endswith("Z")
    assert threshold.id < reached.id and threshold.at < reached.at


def test_a_check_and_a_denied_batch_write_no_event(lim: Limiter, clock: ManualClock) -> None:
    generations(lim, clock, 22)
    clock.advance(61)
    assert lim.check("acme", GEN, amount=2).allowed  # would cross 24: a check writes nothing
    assert not lim.consume("acme", GEN, amount=9).allowed  # 8 left: denied, nothing charged
    assert lim.events() == []
    assert lim.consume("acme", GEN, amount=2).granted == 2  # 22 -> 24: crossed now
    assert kinds(lim.events()) == [  # and 2 of 2 in a minute: that limit is reached too
        ("usage.threshold", "transform_rate"),
        ("usage.limit_reached", "transform_rate"),
        ("usage.threshold", "transform_daily"),
    ]


def test_a_release_and_a_second_crossing_in_one_window_stay_silent(
    lim: Limiter, clock: ManualClock
) -> None:
    generations(lim, clock, 23)
    clock.advance(61)
    held = lim.reserve("acme", GEN)
    assert held.decision.granted and len(lim.events()) == 1  # 23 -> 24
    held.release()
    clock.advance(61)
    assert lim.consume("acme", GEN).granted  # 23 -> 24 again, the same window
    assert len(lim.events()) == 1


def test_the_next_window_has_its_own_events(lim: Limiter, clock: ManualClock) -> None:
    generations(lim, clock, 30)
    clock.advance(86400)
    generations(lim, clock, 30)
    assert kinds(lim.events()) == 2 * [
        ("usage.threshold", "transform_daily"),
        ("usage.limit_reached", "transform_daily"),
    ]


def test_a_plan_change_is_one_event(lim: Limiter, clock: ManualClock) -> None:
    lim.set_account("acme", "pro", seats=3)  # the same plan: no event
    clock.advance(5)
    lim.set_account("acme", "max", seats=3)
    lim.set_account("newcomer", "free")  # created, not changed
    (event,) = lim.events()
    assert event.type == "account.plan_changed" and event.account == "acme"
    assert event.data == {"from": "pro", "to": "max", "seats": 3}
    assert event.at == clock()


def test_an_expired_reservation_is_an_event(lim: Limiter, clock: ManualClock) -> None:
    held = lim.reserve("acme", GEN, ttl=30)
    clock.advance(31)
    lim.usage("acme")  # the next operation on the account settles it
    (event,) = lim.events()
    assert event.type == "reservation.expired"
    assert event.data["reservation"] == held.id and event.data["amount"] == 1


def test_pages_by_id_and_by_account(lim: Limiter, clock: ManualClock) -> None:
    lim.set_account("other", "pro")
    generations(lim, clock, 30, "acme")
    generations(lim, clock, 30, "other")
    every = lim.events()
    assert len(every) == 4 and [e.id for e in every] == sorted({e.id for e in every})
    assert lim.events(after=every[1].id) == every[2:]
    assert lim.events(limit=3) == every[:3]
    assert lim.events(after=every[-1].id) == []
    assert [e.account for e in lim.events(account="other")] == ["other", "other"]
    assert lim.events(after=every[2].id, account="other") == every[3:]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"limit": 0}, "limit"), ({"limit": 1001}, "limit"), ({"after": -1}, "after")],
)
def test_a_bad_page_is_refused(lim: Limiter, kwargs: dict[str, int], field: str) -> None:
    with pytest.raises(InvalidRequest) as err:
        lim.events(after=kwargs.get("after"), limit=kwargs.get("limit", 100))
    assert err.value.field == field


QUIET = """
version: 1
events: false
plans: [free, pro]
features: {gen: null}
limits:
  daily: {features: [gen], window: {type: anchored, length: 24h}, plans: {free: 1, pro: 3}}
"""


def test_a_policy_with_events_off_writes_none(store_url: str, clock: ManualClock) -> None:
    with Limiter(parse_policy(QUIET), store=store_url, clock=clock) as quiet:
        quiet.set_account("a", "pro")
        assert quiet.consume("a", "gen", amount=3).granted == 3
        quiet.set_account("a", "free")
        assert quiet.events() == []


def test_events_are_kept_thirty_days(lim: Limiter, clock: ManualClock) -> None:
    lim.set_account("acme", "max")  # (a plan change: one event now)
    clock.advance(KEEP - 60)
    lim.set_account("acme", "pro")  # a second, 60 s short of 30 days later
    lim.sweep()
    assert [e.data["to"] for e in lim.events()] == ["max", "pro"]
    clock.advance(120)
    lim.sweep()
    assert [e.data["to"] for e in lim.events()] == ["pro"]
    assert [e.data["to"] for e in lim.events(account="acme")] == ["pro"]


def test_racing_plan_changes_each_name_the_plan_they_replaced(lim: Limiter) -> None:
    """8 threads changing one account's plan: read in id order, each event's "from" is the
    plan the one before it changed to (none names a plan already replaced)."""
    plans = ["free", "pro", "max"]

    def change(i: int) -> None:
        for k in range(12):
            lim.set_account("acme", plans[(i + k) % 3])

    threads = [threading.Thread(target=change, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    found = [e.data for e in lim.events(account="acme", limit=1000)]
    assert found, "no plan change was an event"
    assert all(d["from"] != d["to"] for d in found)
    chain = ["pro", *(d["to"] for d in found)]  # (the fixture made it a Pro account)
    assert [d["from"] for d in found] == chain[:-1]
    account = lim.get_account("acme")
    assert account is not None and chain[-1] == account.plan
