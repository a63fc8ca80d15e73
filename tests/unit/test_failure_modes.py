"""The failure modes, the breaker and the journal (CONTRACT section 7) on a store whose outage
the test switches: ``OutageStore`` is the memory store behind a switch that fails a call
before it runs (the store down: certainly not applied) or after it ran (the reply lost). The
same machinery against real servers frozen and killed is in tests/faults/."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, TypeVar

import pytest

from allowance import AsyncLimiter, Limiter, ManualClock, StoreUnavailable, acting_as
from allowance.errors import InvalidAmount, InvalidRequest, PolicyError
from allowance.policy import builtin_policy, parse_policy
from allowance.resilience import Breaker
from allowance.stores.memory import MemoryStore
from allowance.view import NO_PRELOAD, AccountView, Preload

T = TypeVar("T")
START = "2026-11-23T15:10:00Z"


class OutageStore(MemoryStore):
    fast = False  # every decision through transact, where the outage is

    def __init__(self) -> None:
        super().__init__()
        self.down = False  # fail before running: never applied
        self.lose_reply = False  # run, then fail as if the reply was lost
        self.calls = 0

    def transact(
        self,
        account_id: str,
        now: float | None,
        fn: Callable[[AccountView, float], T],
        preload: Preload = NO_PRELOAD,
    ) -> T:
        self.calls += 1
        if self.down:
            raise StoreUnavailable("memory: switched off", maybe_applied=False)
        result = super().transact(account_id, now, fn, preload)
        if self.lose_reply:
            raise StoreUnavailable("memory: reply lost", maybe_applied=True)
        return result


def make(
    mode: str | None = None, policy: object = None, size: int = 10_000, cooldown: float = 0.05
) -> Limiter:
    store = OutageStore()
    limiter = Limiter(
        policy,  # type: ignore[arg-type]
        store,
        ManualClock(START),
        on_store_error=mode,  # type: ignore[arg-type]
        journal_size=size,
    )
    limiter.guard.breaker = Breaker(first_cooldown=cooldown, max_cooldown=4 * cooldown)
    limiter.set_account("acme", "pro")
    return limiter


def outage(limiter: Limiter) -> OutageStore:
    assert isinstance(limiter.store, OutageStore)
    return limiter.store


def used(limiter: Limiter, limit: str) -> int:
    """The meter as another limiter on the same store reads it (its breaker is its own)."""
    store = outage(limiter)
    down, lost = store.down, store.lose_reply
    store.down = store.lose_reply = False
    try:
        observer = Limiter(limiter.policy, store, limiter.clock)
        return next(m.used for m in observer.usage("acme") if m.limit == limit)
    finally:
        store.down, store.lose_reply = down, lost


def test_deny_raises_store_unavailable_and_the_breaker_stops_waiting() -> None:
    limiter = make(cooldown=5.0)
    store = outage(limiter)
    store.down = True
    for _ in range(3):
        with pytest.raises(StoreUnavailable) as raised:
            limiter.consume("acme", "export.ai")
        assert raised.value.retry_after > 0
    assert limiter.guard.breaker.is_open
    before = store.calls
    started = time.perf_counter()
    for _ in range(100):
        with pytest.raises(StoreUnavailable, match="circuit breaker open") as raised:
            limiter.consume("acme", "export.ai")
    per_call = (time.perf_counter() - started) / 100
    assert store.calls == before  # not one call reached the store while open
    assert per_call < 0.001
    assert 0 < raised.value.retry_after <= 5.0
    assert not raised.value.maybe_applied


def test_breaker_closes_after_a_successful_probe_and_reopens_after_a_failed_one() -> None:
    limiter = make(cooldown=0.3)
    store = outage(limiter)
    store.down = True
    for _ in range(3):
        with pytest.raises(StoreUnavailable):
            limiter.consume("acme", "export.ai")
    time.sleep(0.31)
    calls = store.calls
    with pytest.raises(StoreUnavailable):  # the probe: it reaches the store and fails
        limiter.consume("acme", "export.ai")
    assert store.calls == calls + 1
    assert limiter.guard.breaker.is_open
    store.down = False
    with pytest.raises(StoreUnavailable, match="breaker"):  # cooldown doubled: still open
        limiter.consume("acme", "export.ai")
    time.sleep(0.61)
    assert limiter.consume("acme", "export.ai").allowed  # the probe succeeds
    assert not limiter.guard.breaker.is_open
    assert used(limiter, "ai_exports") == 1


def test_allow_grants_degraded_and_the_journal_is_charged_once_the_store_is_back() -> None:
    limiter = make("allow")
    store = outage(limiter)
    store.down = True
    decisions = [limiter.consume("acme", "export.ai", 2) for _ in range(10)]
    assert all(d.allowed and d.degraded and d.granted == 2 for d in decisions)
    assert decisions[0].to_json()["degraded"] is True
    assert len(limiter.guard.journal) == 10
    assert limiter.guard.degraded == 10
    store.down = False
    assert used(limiter, "ai_exports") == 0
    assert limiter.flush_journal() == 10
    assert len(limiter.guard.journal) == 0
    assert used(limiter, "ai_exports") == 20
    assert limiter.flush_journal() == 0  # nothing charged twice
    assert used(limiter, "ai_exports") == 20
    normal = limiter.consume("acme", "export.ai")
    assert not normal.degraded and normal.to_json()["degraded"] is False


def test_recovery_flushes_the_journal_by_itself() -> None:
    limiter = make("allow")
    store = outage(limiter)
    store.down = True
    for _ in range(5):
        limiter.consume("acme", "export.ai")
    store.down = False
    time.sleep(0.06)
    limiter.consume("acme", "export.ai")  # the probe succeeds: the flush starts in a thread
    deadline = time.monotonic() + 5
    while limiter.guard.journal and time.monotonic() < deadline:
        time.sleep(0.01)
    assert used(limiter, "ai_exports") == 6


def test_a_lost_reply_is_never_charged_twice() -> None:
    limiter = make("allow")
    store = outage(limiter)
    store.lose_reply = True  # applied in the store, the reply lost
    plain = limiter.consume("acme", "export.ai")
    keyed = limiter.consume("acme", "export.ai", idempotency_key="k-1")
    assert plain.degraded and keyed.degraded
    assert len(limiter.guard.journal) == 1  # only the keyed one: its key makes it safe
    assert limiter.guard.journal.unrecorded == 1
    store.lose_reply = False
    assert limiter.flush_journal() == 0  # the store knows k-1 already
    assert used(limiter, "ai_exports") == 2
    # the caller's retry under the same key after the flush: the first answer, no charge
    assert limiter.consume("acme", "export.ai", idempotency_key="k-1").allowed
    assert used(limiter, "ai_exports") == 2


def test_a_journal_charge_whose_reply_is_lost_is_retried_without_charging_twice() -> None:
    limiter = make("allow")
    store = outage(limiter)
    store.down = True
    limiter.consume("acme", "export.ai", 3)
    store.down, store.lose_reply = False, True
    assert limiter.flush_journal() == 0  # charged, but the reply was lost: kept to retry
    assert len(limiter.guard.journal) == 1
    store.lose_reply = False
    assert limiter.flush_journal() == 0  # the retry finds its key: nothing more
    assert len(limiter.guard.journal) == 0
    assert used(limiter, "ai_exports") == 3


def test_a_degraded_grant_is_charged_at_the_time_it_was_granted() -> None:
    limiter = make("allow")
    clock = limiter.clock
    assert isinstance(clock, ManualClock)
    store = outage(limiter)
    store.down = True
    limiter.consume("acme", "transform.virtual_model")
    clock.advance(2 * 86400)  # two days later the store is back
    store.down = False
    limiter.flush_journal()
    # charged two days ago: today's window of the daily limit does not carry it
    assert used(limiter, "transform_daily") == 0


def test_a_degraded_grant_charged_from_the_journal_writes_its_events() -> None:
    limiter = make("allow")
    store = outage(limiter)
    store.down = True
    assert limiter.consume("acme", "export.ai", 30).degraded  # Pro: 30 a week, all of it
    store.down = False
    assert limiter.flush_journal() == 1
    found = [(e.type, e.limit, e.data["used"]) for e in limiter.events(account="acme")]
    assert found == [
        ("usage.threshold", "ai_exports", 30),
        ("usage.limit_reached", "ai_exports", 30),
    ]


def test_check_and_reserve_in_allow_mode() -> None:
    limiter = make("allow")
    store = outage(limiter)
    store.down = True
    checked = limiter.check("acme", "export.ai", 5)
    assert checked.allowed and checked.degraded
    assert len(limiter.guard.journal) == 0  # a check charges nothing, now or later
    held = limiter.reserve("acme", "export.ai", 4)
    assert held.decision.degraded and held.id is not None
    held.commit()  # a degraded reservation holds nothing in the store: its journal entry
    held.release()  # a release after the commit changes nothing
    store.down = False
    limiter.flush_journal()
    assert used(limiter, "ai_exports") == 4  # journaled as used when it was granted


@pytest.mark.parametrize(
    ("settle", "charged"),
    [
        (lambda r: r.commit(1), 1),  # the rest goes back
        (lambda r: r.commit(6), 6),  # the extra is granted degraded too, and counted
        (lambda r: r.commit(0), 0),
        (lambda r: r.release(), 0),
        (lambda r: (r.commit(2), r.release(), r.commit(5)), 2),  # the first settlement stands
    ],
)
def test_a_degraded_reservation_is_settled_at_its_real_amount(
    settle: Callable[[Any], object], charged: int
) -> None:
    limiter = make("allow")
    store = outage(limiter)
    store.down = True
    settle(limiter.reserve("acme", "export.ai", 4))
    assert len(limiter.guard.journal) == (1 if charged else 0)
    store.down = False
    limiter.flush_journal()
    assert used(limiter, "ai_exports") == charged


def test_a_degraded_reservation_charged_already_keeps_its_charge() -> None:
    limiter = make("allow")
    store = outage(limiter)
    store.down = True
    held = limiter.reserve("acme", "export.ai", 4)
    store.down = False
    limiter.flush_journal()
    held.commit(1)  # the journal charged 4 already: never under-counted
    held.release()
    with pytest.raises(InvalidAmount):
        held.commit(-1)
    assert used(limiter, "ai_exports") == 4


def test_an_async_degraded_reservation_is_settled_at_its_real_amount() -> None:
    async def main() -> int:
        store = OutageStore()
        async with AsyncLimiter(None, store, ManualClock(START), on_store_error="allow") as lim:
            await lim.set_account("acme", "pro")
            store.down = True
            first = await lim.reserve("acme", "export.ai", 4)
            second = await lim.reserve("acme", "export.ai", 4)
            await first.commit(3)
            await second.release()
            store.down = False
            lim.guard.breaker = Breaker(first_cooldown=0.0)
            await lim.flush_journal()
            return next(m.used for m in await lim.usage("acme") if m.limit == "ai_exports")

    assert asyncio.run(main()) == 3


def test_the_full_journal_answers_as_deny() -> None:
    limiter = make("allow", size=3)
    outage(limiter).down = True
    for _ in range(3):
        assert limiter.consume("acme", "export.ai").degraded
    with pytest.raises(StoreUnavailable, match=r"journal .* is full"):
        limiter.consume("acme", "export.ai")


def test_calls_that_are_not_decisions_raise_in_allow_mode_too() -> None:
    limiter = make("allow")
    outage(limiter).down = True
    with pytest.raises(StoreUnavailable):
        limiter.usage("acme")


POLICY = """
on_store_error: allow
plans: [free, pro]
features:
  cheap: {on_store_error: allow}
  costly: {title: Costly, on_store_error: deny}
  plain:
limits:
  daily:
    features: [cheap, costly, plain]
    window: {type: calendar, unit: day}
    plans: {free: 5, pro: 50}
"""


def test_failure_mode_per_feature_wins_over_the_policy_and_the_limiter() -> None:
    policy = parse_policy(POLICY)
    assert policy.on_store_error == "allow"
    assert policy.to_data()["features"]["costly"] == {"title": "Costly", "on_store_error": "deny"}
    for mode, plain_degrades in ((None, True), ("deny", False), ("allow", True)):
        limiter = make(mode, policy)
        outage(limiter).down = True
        assert limiter.consume("acme", "cheap").degraded
        with pytest.raises(StoreUnavailable):
            limiter.consume("acme", "costly")
        if plain_degrades:
            assert limiter.consume("acme", "plain").degraded
        else:
            with pytest.raises(StoreUnavailable):
                limiter.consume("acme", "plain")


def test_bad_failure_modes_are_named() -> None:
    with pytest.raises(PolicyError) as raised:
        parse_policy(
            POLICY.replace("cheap: {on_store_error: allow}", "cheap: {on_store_error: maybe}")
        )
    assert "features.cheap.on_store_error" in str(raised.value)
    assert "line 5" in str(raised.value)
    with pytest.raises(InvalidRequest, match="on_store_error"):
        Limiter(builtin_policy(), "memory://", on_store_error="open")  # type: ignore[arg-type]
    with pytest.raises(InvalidRequest, match="journal_size"):
        Limiter(builtin_policy(), "memory://", journal_size=-1)


def test_async_limiter_degrades_and_flushes() -> None:
    async def scenario() -> None:
        store = OutageStore()
        limiter = AsyncLimiter(None, store, ManualClock(START), on_store_error="allow")
        limiter.guard.breaker = Breaker(first_cooldown=0.05)
        await limiter.set_account("acme", "pro")
        store.down = True
        decisions = await asyncio.gather(*(limiter.consume("acme", "export.ai") for _ in range(50)))
        assert all(d.degraded for d in decisions)
        store.down = False
        assert await limiter.flush_journal() == 50
        assert not limiter.guard.breaker.is_open  # the flush reached the store
        meters = await limiter.usage("acme")
        assert next(m.used for m in meters if m.limit == "ai_exports") == 50
        await limiter.close()

    asyncio.run(scenario())


def test_a_degraded_grant_charged_from_the_journal_names_the_key_it_was_granted_to() -> None:
    """The ledger's rows of a journaled grant carry the key id of the request that got it,
    not the flushing thread's (which has none)."""
    limiter = make("allow")
    store = outage(limiter)
    store.down = True
    with acting_as("key_app"):
        assert limiter.consume("acme", "export.ai", 2).degraded
    store.down = False
    assert limiter.flush_journal() == 1
    rows = [(r.kind, r.key_id, r.amount, r.data) for r in limiter.ledger("acme").rows]
    assert ("charge", "key_app", 2, {"degraded": True}) in rows
    assert all(key == "key_app" for kind, key, _, _ in rows if kind == "charge")
