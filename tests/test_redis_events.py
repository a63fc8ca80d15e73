"""Redis's events outbox (``redis_events.py``) when a process stops between its steps: an
event written with its charge (or plan change) but not relayed reaches the log with the next
sweep (or the account's next event), and one relayed but not trimmed from the outbox is
logged once. On plain Redis a charge's events reach the log in the charging script itself."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from allowance import AsyncLimiter, Limiter, ManualClock
from allowance.errors import StoreUnavailable
from allowance.events import KEEP
from allowance.stores.redis import RedisStore
from allowance.stores.redis_async import AsyncRedisStore
from allowance.stores.redis_events import OUTBOX, RELAY
from allowance.stores.redis_wire import Deadline, Lua
from conftest import STORE_FACTORIES

GEN = "transform.virtual_model"  # Pro: 2 a minute, 30 a day: 24 crosses 80 %, 30 reaches it
DAILY = "transform_daily"


class Stopping(RedisStore):
    """A store whose process stops before one step of the relay (``stop``: that step's
    script): the step never reaches Redis, as when the process is killed there."""

    stop: Lua | None = None

    def _run(self, script: Lua, keys: list[str], argv: list[Any], deadline: Deadline) -> Any:
        if script is self.stop:
            raise StoreUnavailable("stopped here", maybe_applied=False)
        return super()._run(script, keys, argv, deadline)


def stopping(url: str) -> Stopping:
    plain = RedisStore.from_url(url)
    return Stopping(plain.client, plain.prefix, url, plain.timeout)


def kinds(lim: Limiter, account: str = "acme") -> list[tuple[str, int]]:
    return [(e.type, e.data["used"]) for e in lim.events(account=account)]


@pytest.fixture(params=["redis", "redis_cluster"])
def acme(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Limiter, Stopping]]:
    """A Pro account on a store that can be made to stop, its Limiter on a manual clock."""
    store = stopping(STORE_FACTORIES[request.param](request, tmp_path))
    with Limiter(store=store, clock=ManualClock("2026-11-23T15:10:00Z")) as lim:
        lim.set_account("acme", plan="pro")
        yield lim, store


def generations(lim: Limiter, n: int) -> None:
    for _ in range(n):
        clock = lim.clock
        assert isinstance(clock, ManualClock)
        clock.advance(61)
        assert lim.consume("acme", GEN).allowed


def plans(lim: Limiter) -> list[str]:
    return [e.data["to"] for e in lim.events(account="acme")]


def test_an_event_left_in_the_outbox_is_relayed_by_the_sweep(
    acme: tuple[Limiter, Stopping],
) -> None:
    lim, store = acme
    store.stop = RELAY
    lim.set_account("acme", "max")  # the plan change is kept; its relay never ran
    account = lim.get_account("acme")
    assert account is not None and account.plan == "max"
    assert lim.events() == []
    account_hash = store.key("acme", "a")
    assert store.client.hget(account_hash, "ob") == b"1"
    store.stop = None
    lim.sweep()
    assert plans(lim) == ["max"]
    assert store.client.hget(account_hash, "ob") is None
    assert store.client.llen(store.key("acme", "e")) == 0
    lim.sweep()  # nothing left: nothing twice
    lim.set_account("acme", "pro")
    assert plans(lim) == ["max", "pro"]


def test_an_event_relayed_but_not_trimmed_is_logged_once(acme: tuple[Limiter, Stopping]) -> None:
    lim, store = acme
    store.stop = OUTBOX  # logged, but the process stops before the outbox is trimmed
    lim.set_account("acme", "max")
    assert plans(lim) == ["max"]
    assert store.client.llen(store.key("acme", "e")) == 1
    store.stop = None
    lim.set_account("acme", "pro")  # the next event's relay carries the old entry again
    lim.sweep()
    assert plans(lim) == ["max", "pro"]
    assert [e.id for e in lim.events()] == sorted({e.id for e in lim.events()})
    assert store.client.llen(store.key("acme", "e")) == 0


@pytest.mark.parametrize("acme", ["redis_cluster"], indirect=True)
def test_a_charge_s_events_left_in_the_outbox_on_a_cluster_are_relayed(
    acme: tuple[Limiter, Stopping],
) -> None:
    """On Redis Cluster apply.lua cannot reach the log's slot: the same outbox and relay."""
    lim, store = acme
    store.stop = RELAY
    generations(lim, 24)  # the charge crossing 80 % is kept; its relay never ran
    assert {m.limit: m.used for m in lim.usage("acme")}[DAILY] == 24
    assert lim.events() == []
    store.stop = None
    lim.sweep()
    generations(lim, 6)
    assert kinds(lim) == [("usage.threshold", 24), ("usage.limit_reached", 30)]


@pytest.mark.parametrize("acme", ["redis"], indirect=True)
def test_plain_redis_relays_a_charge_s_events_in_the_charging_step(
    acme: tuple[Limiter, Stopping],
) -> None:
    lim, store = acme
    store.stop = RELAY  # never needed: apply.lua writes the log itself
    generations(lim, 30)
    assert kinds(lim) == [("usage.threshold", 24), ("usage.limit_reached", 30)]
    assert store.client.llen(store.key("acme", "e")) == 0
    assert store.client.hget(store.key("acme", "a"), "ob") is None


def test_a_plan_change_names_the_plan_it_replaced_in_one_step(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    url = STORE_FACTORIES["redis"](request, tmp_path)
    with Limiter(store=url) as lim:  # Redis's clock
        lim.set_account("acme", plan="free")
        before = lim.store.now()
        lim.set_account("acme", plan="pro")
        lim.set_account("acme", plan="pro", seats=3)  # the same plan: no event
        (event,) = lim.events(account="acme")
    assert event.data == {"from": "free", "to": "pro", "seats": 1}
    assert before <= event.at <= before + 5


@pytest.mark.parametrize("kind", ["redis", "redis_cluster"])
def test_the_async_store_writes_and_relays_the_same_events(
    request: pytest.FixtureRequest, tmp_path: Path, kind: str
) -> None:
    url = STORE_FACTORIES[kind](request, tmp_path)
    clock = ManualClock("2026-11-23T15:10:00Z")

    async def run() -> list[tuple[str, object]]:
        async with AsyncLimiter(store=url, clock=clock) as lim:
            await lim.set_account("acme", plan="free")
            await lim.set_account("acme", plan="pro")
            for _ in range(30):
                clock.advance(61)
                assert (await lim.consume("acme", GEN)).allowed
            await lim.sweep()
            found = await lim.events(account="acme")
        return [(e.type, e.data.get("used", e.data.get("from"))) for e in found]

    assert asyncio.run(run()) == [
        ("account.plan_changed", "free"),
        ("usage.threshold", 24),
        ("usage.limit_reached", 30),
    ]


def test_an_account_s_events_are_indexed_in_a_few_bytes_and_dropped_with_the_log(
    acme: tuple[Limiter, Stopping],
) -> None:
    """Per account, the ids of its events: a sorted set of ~64 bytes for one (a stream per
    account preallocated 4 KiB: 4.7 KB for one event); it goes when retention has dropped
    them all, and a later event makes it anew."""
    lim, store = acme
    clock = lim.clock
    assert isinstance(clock, ManualClock)
    lim.set_account("beta", plan="free")
    lim.set_account("acme", plan="max")  # one event each
    index = store.event_log.index("acme")
    assert store.client.type(index) == b"zset" and store.client.memory_usage(index) < 200
    assert not store.client.exists(store.event_log.stream_of("acme"))
    clock.advance(KEEP / 2)
    lim.set_account("beta", plan="pro")  # beta: a second, newer one
    clock.advance(KEEP / 2 + 60)
    lim.sweep()
    assert not store.client.exists(index)
    assert store.client.zcard(store.event_log.index("beta")) == 1
    assert [e.data["to"] for e in lim.events()] == ["pro"]
    assert [e.data["to"] for e in lim.events(account="beta")] == ["pro"]
    lim.set_account("acme", plan="pro")
    assert [e.data["to"] for e in lim.events(account="acme")] == ["pro"]


def legacy_event(store: RedisStore, account: str, to: str, at: float) -> int:
    """An event as a version before the index relayed it: into the log and the account's
    own stream."""
    n = int(store.client.incr(store.event_log.last_id))
    body = json.dumps({"type": "account.plan_changed", "at": at, "account": account,
                       "limit": None, "data": {"from": "free", "to": to, "seats": 1}})  # fmt: skip
    store.client.xadd(store.event_log.log, {"b": body}, id=f"{n}-0")
    store.client.xadd(store.event_log.stream_of(account), {"b": body}, id=f"{n}-0")
    return n


def test_events_an_older_version_kept_in_a_stream_per_account_read_in_order_then_dropped(
    acme: tuple[Limiter, Stopping],
) -> None:
    lim, store = acme
    clock = lim.clock
    assert isinstance(clock, ManualClock)
    legacy_event(store, "acme", "max", clock())
    lim.set_account("acme", plan="free")  # an indexed one between two of the stream's
    legacy_event(store, "acme", "pro", clock())
    whole = [e.data["to"] for e in lim.events(account="acme")]
    assert whole == ["max", "free", "pro"]
    paged, after = [], 0
    while page := lim.events(account="acme", after=after, limit=1):
        paged += [e.data["to"] for e in page]
        after = page[-1].id
    assert paged == whole
    clock.advance(KEEP + 60)
    lim.sweep()
    assert not store.client.exists(store.event_log.stream_of("acme"))
    assert not store.client.exists(store.event_log.index("acme"))
    assert lim.events(account="acme") == []


@pytest.mark.parametrize("kind", ["redis", "redis_cluster"])
def test_the_async_sweep_drops_an_account_s_index_with_its_events(
    request: pytest.FixtureRequest, tmp_path: Path, kind: str
) -> None:
    url = STORE_FACTORIES[kind](request, tmp_path)
    clock = ManualClock("2026-11-23T15:10:00Z")

    async def run() -> tuple[int, list[object]]:
        async with AsyncLimiter(store=url, clock=clock) as lim:
            await lim.set_account("acme", plan="free")
            await lim.set_account("acme", plan="max")  # one event
            store = lim.async_store
            assert isinstance(store, AsyncRedisStore)
            assert await store.client.exists(store.event_log.index("acme"))
            clock.advance(KEEP + 60)
            await lim.sweep()
            left = int(await store.client.exists(store.event_log.index("acme")))
            return left, [e.type for e in await lim.events()]

    assert asyncio.run(run()) == (0, [])
