"""``redis+sentinel://``: the store through Redis Sentinel (a master, a replica and three
sentinels this module starts), and a real failover under a loop of decisions."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from types import SimpleNamespace

import pytest

import failover
import servers
from allowance import AsyncLimiter, ConfigurationError, Limiter, ManualClock, StoreError
from allowance.stores import store_from_url
from allowance.stores.redis import RedisStore
from allowance.stores.redis_sentinel import (
    FAILOVER_STARTS,
    SWITCHED,
    MasterWatch,
    sentinel_parts,
)
from conftest import start_or_skip, unique_name, with_query


@pytest.fixture(scope="module")
def group() -> Iterator[servers.RedisSentinel]:
    started = start_or_skip(servers.start_redis_sentinel, "Redis Sentinel")
    assert isinstance(started, servers.RedisSentinel)
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture
def url(group: servers.RedisSentinel) -> str:
    return with_query(group.url, prefix=unique_name())


def test_sentinel_urls() -> None:
    sentinels, service, master, extra = sentinel_parts(
        "redis://u:p%40ss@a:1,b,[::1]:3/svc/2?sentinel_password=sp&socket_keepalive=true"
    )
    assert sentinels == [("a", 1), ("b", 26379), ("::1", 3)]
    assert service == "svc"
    assert (master["db"], master["username"], master["password"]) == (2, "u", "p@ss")
    assert master["socket_keepalive"] is True
    assert extra == {"password": "sp"}
    assert sentinel_parts("redis://h:26379/svc")[2]["db"] == 0
    for bad in ("redis://h:26379", "redis://h:26379/svc/x", "redis://h/a/1/2"):
        with pytest.raises(ConfigurationError):
            sentinel_parts(bad)
    with pytest.raises(ConfigurationError):
        store_from_url("redis+sentinel://h:1/")


def test_the_watch_fences_the_master_a_failover_starts_from() -> None:
    """From a sentinel's first failover step until the new master is named (or the failover
    aborts, or FENCE_FOR passes) no connection to the old master is used; another service's
    failover changes nothing. (No sentinel listens here: the watch keeps its last answer.)"""
    watch = MasterWatch(
        [("127.0.0.1", servers.free_port())],
        "svc",
        {"socket_timeout": 0.2, "socket_connect_timeout": 0.2},
    )
    try:
        watch.address = ("10.0.0.1", 6379)
        old, new = SimpleNamespace(host="10.0.0.1", port=6379), SimpleNamespace(host="h", port=1)
        assert watch.current(old) and not watch.current(new)
        watch.heard(FAILOVER_STARTS, b"master other 10.0.0.1 6379")
        assert watch.current(old)
        watch.heard(FAILOVER_STARTS, b"master svc 10.0.0.1 6379")
        assert not watch.current(old) and not watch.current(new)
        watch.heard("-failover-abort-not-elected", b"master svc 10.0.0.1 6379")
        assert watch.current(old)
        watch.heard(FAILOVER_STARTS, b"master svc 10.0.0.1 6379")
        watch.heard(SWITCHED, b"svc 10.0.0.1 6379 h 1")
        assert watch.address == ("h", 1) and watch.current(new) and not watch.current(old)
        watch.heard(FAILOVER_STARTS, b"master svc h 1")
        assert watch.fenced is not None
        watch.fenced = (watch.fenced[0], time.monotonic() - 0.01)  # FENCE_FOR has passed
        assert watch.current(new)
    finally:
        watch.close()


def test_decisions_through_sentinel(group: servers.RedisSentinel, url: str) -> None:
    clock = ManualClock("2026-11-23T15:10:00Z")
    with Limiter(store=url, clock=clock) as lim:
        assert isinstance(lim.store, RedisStore)
        assert lim.set_account("acme", plan="pro")
        assert lim.get_account("acme").plan == "pro"
        assert lim.consume("acme", "export.ai", 10).granted == 10
        assert lim.consume("acme", "export.ai", 5, idempotency_key="k").granted == 5
        assert lim.consume("acme", "export.ai", 5, idempotency_key="k").granted == 5  # replay
        held = lim.reserve("acme", "export.ai", 15)
        assert not lim.check("acme", "export.ai").allowed
        held.commit()
        assert not lim.consume("acme", "export.ai").allowed  # 30 of 30
        assert {m.limit: m.used for m in lim.usage("acme")}["ai_exports"] == 30
        assert lim.sweep() == 0
        ring = lim.store.keyring()
        assert ring.all() == []
    with servers._redis_client(group.master.port) as master:  # it is the master's data
        assert master.hget(f"{lim.store.prefix}:{{acme}}:a", "p") == b"pro"


def test_async_decisions_through_sentinel(url: str) -> None:
    async def main() -> None:
        async with AsyncLimiter(store=url, clock=ManualClock("2026-11-23T15:10:00Z")) as lim:
            await lim.set_account("acme", plan="pro")
            decisions = await asyncio.gather(
                *(lim.consume("acme", "export.ai", idempotency_key=f"k{i % 20}") for i in range(40))
            )
            assert all(d.allowed for d in decisions)
            assert (await lim.consume("acme", "export.ai", 10)).granted == 10
            assert {m.limit: m.used for m in await lim.usage("acme")}["ai_exports"] == 30

    asyncio.run(main())


def test_no_master_known_is_store_unavailable(group: servers.RedisSentinel) -> None:
    url = group.url.replace(f"/{group.service}/", "/nosuchservice/")
    with Limiter(store=url) as lim, pytest.raises(StoreError) as info:
        lim.consume("acme", "export.ai")
    assert type(info.value).__name__ == "StoreUnavailable"
    assert info.value.maybe_applied is False  # type: ignore[attr-defined]


# --- a failover under load ---------------------------------------------------------------------


@pytest.mark.faults
@pytest.mark.parametrize("how", ["SENTINEL FAILOVER", "kill -9 the master"])
def test_a_failover_under_load(how: str, record_property: Callable[[str, object], None]) -> None:
    """Decisions run in a thread (Limiter) and an event loop (AsyncLimiter) while the master
    fails over. Once the new master is known, decisions succeed again; every grant a client
    saw is on the meter (after a crash: except writes the old master acknowledged but never
    passed on, as Redis replication is asynchronous). The figures are printed and recorded."""
    group = start_or_skip(servers.start_redis_sentinel, "Redis Sentinel")
    assert isinstance(group, servers.RedisSentinel)
    try:
        url = with_query(group.url, prefix=unique_name(), timeout="0.5")
        with Limiter(store=url) as admin:
            for account in failover.ACCOUNTS:
                admin.set_account(account, plan="max")
        old = group.master_port()

        def fail() -> None:
            if how == "kill -9 the master":
                group.master.kill()
            else:
                with servers._redis_client(group.sentinels[0].port) as sentinel:
                    sentinel.sentinel_failover(group.service)

        # a graceful failover loses nothing: the old master is fenced from the sentinel's
        # first step (before any replica is promoted) until the new master is named
        failover.under_load(
            url,
            fail,
            lambda: group.master_port() not in (old, None),
            record_property,
            lost_at_most=0 if how == "SENTINEL FAILOVER" else None,
            # decisions must succeed again within 2.5 s of the switch: the breaker's probes
            # come 0.5, 1 and 2 s apart, so a ~2.3 s failover is seen by a probe ~3.5 s in;
            # 1.5 s (after=2) left 0.3 s for a loaded machine (a fresh clone check missed it)
            after=3.0,
            failover=how,
        )
    finally:
        group.stop()
