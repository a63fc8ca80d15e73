"""Redis-specific behaviour: scripts survive a SCRIPT FLUSH, prefixes isolate, keys share a
slot, bad options and unreachable servers are clear errors."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis
from redis.crc import key_slot

from allowance import (
    AsyncLimiter,
    ConfigurationError,
    Limiter,
    ManualClock,
    StoreError,
    builtin_policy,
    parse_policy,
)
from allowance.stores.redis import RedisStore
from allowance.stores.redis_scripts import lua
from allowance.stores.redis_wire import Deadline
from conftest import STORE_FACTORIES
from reply_dropper import ReplyDropper


@pytest.mark.parametrize("kind", ["redis", "redis_cluster"])
def test_decisions_survive_a_script_flush(
    request: pytest.FixtureRequest, tmp_path: Path, kind: str
) -> None:
    url = STORE_FACTORIES[kind](request, tmp_path)
    with Limiter(store=url, clock=ManualClock("2026-11-23T15:10:00Z")) as lim:
        lim.set_account("acme", plan="pro")
        assert lim.consume("acme", "export.ai", 10).allowed
        lim.store.client.script_flush()  # type: ignore[attr-defined]
        assert lim.consume("acme", "export.ai", 20).allowed
        assert not lim.consume("acme", "export.ai").allowed


def test_prefixes_isolate_stores(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    one, two = (STORE_FACTORIES["redis"](request, tmp_path) for _ in range(2))
    with Limiter(store=one) as a, Limiter(store=two) as b:
        a.set_account("acme", plan="free")
        b.set_account("acme", plan="pro")
        a.consume("acme", "export.ai", 2)
        assert {m.limit: m.used for m in b.usage("acme")}["ai_exports"] == 0


def test_every_key_of_an_account_is_in_one_slot(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    url = STORE_FACTORIES["redis_cluster"](request, tmp_path)
    with Limiter(store=url) as lim:
        for account in ("acme", "we{ird}", "x}y{z"):
            lim.set_account(account, plan="pro")
            lim.consume(account, "export.ai", idempotency_key="k")
            r = lim.reserve(account, "background.studio", 2)
            store = lim.store
            assert isinstance(store, RedisStore)
            assert r.id is not None
            names = [store.key(account, s) for s in ("a", "c", "i:k", "r:" + r.id)]
            slots = {key_slot(name.encode()) for name in names}
            assert len(slots) == 1, names


@pytest.mark.parametrize(
    "url", ["redis://127.0.0.1:1/0?prefix=bad prefix", "redis://127.0.0.1:1/0?prefix={x}"]
)
def test_bad_prefix(url: str) -> None:
    with pytest.raises(ConfigurationError, match="prefix"):
        Limiter(store=url)


def test_unreachable_server_is_a_store_error() -> None:
    lim = Limiter(store="redis://127.0.0.1:1/0")
    with pytest.raises(StoreError) as info:
        lim.set_account("acme", plan="pro")
    assert isinstance(info.value.__cause__, redis.exceptions.ConnectionError)


@pytest.mark.parametrize("kind", ["redis", "redis_cluster"])
def test_a_forked_child_takes_its_own_connection(
    request: pytest.FixtureRequest, tmp_path: Path, kind: str
) -> None:
    import os

    url = STORE_FACTORIES[kind](request, tmp_path)
    lim = Limiter(store=url)
    lim.set_account("acme", plan="pro")
    assert lim.consume("acme", "export.ai").allowed  # the parent holds a connection now
    pid = os.fork()
    if pid == 0:  # the child: same Limiter object, inherited thread-local client
        code = 0 if lim.consume("acme", "export.ai", 2).granted == 2 else 1
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert lim.consume("acme", "export.ai").allowed  # the parent's connection still works
    assert {m.limit: m.used for m in lim.usage("acme")}["ai_exports"] == 4
    lim.close()


def test_cluster_decisions_follow_a_redirection(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """The fast path talks to the slot's master over a connection its thread holds; a MOVED
    there (here: the held connection goes to another master, as after a resharding) is sent
    again through RedisCluster, and the stale connection is dropped."""
    url = STORE_FACTORIES["redis_cluster"](request, tmp_path)
    with Limiter(store=url, clock=ManualClock("2026-11-23T15:10:00Z")) as lim:
        store = lim.store
        assert isinstance(store, RedisStore)
        lim.set_account("acme", plan="pro")
        assert lim.consume("acme", "export.ai", 10).granted == 10
        slot = key_slot(store.key("acme", "a").encode())
        owner = store.client.nodes_manager.get_node_from_slot(slot)
        other = next(n for n in store.client.get_primaries() if n.name != owner.name)
        wrong = store._links.new(other.redis_connection.connection_pool)
        store._links_here()[owner.name] = wrong  # what a thread holds after the slot moved
        assert lim.consume("acme", "export.ai", 20).granted == 20  # MOVED, then RedisCluster
        assert store._links_here().get(owner.name) is not wrong
        assert wrong._conn._sock is None  # closed
        assert not lim.consume("acme", "export.ai").allowed  # 30 of 30, on the right master
        assert {m.limit: m.used for m in lim.usage("acme")}["ai_exports"] == 30


# keeps the server busy for 1 s: other clients' commands wait unread until it ends
BUSY_SCRIPT = """
local t = redis.call('TIME')
local start = t[1] * 1000000 + t[2]
repeat t = redis.call('TIME') until t[1] * 1000000 + t[2] - start > 1000000
return 1
"""


@pytest.mark.parametrize("kind", ["redis", "redis_cluster"])
@pytest.mark.parametrize("path", ["fast", "slow"])
def test_a_lost_reply_is_not_sent_again(
    request: pytest.FixtureRequest, tmp_path: Path, kind: str, path: str
) -> None:
    """A decision whose reply is lost is a StoreError, and nothing is sent again. Here the
    server is kept busy past the client's socket timeout: the client gives up and closes the
    connection, and when the server is free it still runs the command it had received (then
    fails to answer). A resend would charge a second time. The fast path is a plain consume;
    on the slow path (``reserve``) it is the read before the write that is lost."""
    url = STORE_FACTORIES[kind](request, tmp_path)
    sep = "&" if "?" in url else "?"
    with Limiter(store=f"{url}{sep}socket_timeout=0.3") as lim:
        lim.set_account("acme", plan="pro")
        assert lim.consume("acme", "export.ai").allowed  # warm the connections
        store: RedisStore = lim.store  # type: ignore[assignment]
        if store.cluster:
            slot = key_slot(store.key("acme", "a").encode())
            node = store.client.nodes_manager.get_node_from_slot(slot)
            busy = redis.Redis(host=node.host, port=node.port)
        else:
            where = store.client.connection_pool.connection_kwargs
            busy = redis.Redis(host=where["host"], port=where["port"])  # no socket timeout
        with busy:
            blocker = threading.Thread(target=busy.eval, args=(BUSY_SCRIPT, 0))
            blocker.start()
            time.sleep(0.3)  # the script has started (a thread start is quick)
            with pytest.raises(StoreError):
                if path == "fast":
                    lim.consume("acme", "export.ai", 2)
                else:
                    lim.reserve("acme", "export.ai", 2)
            blocker.join()
        used = {m.limit: m.used for m in lim.usage("acme")}["ai_exports"]
        assert used == (3 if path == "fast" else 1)


@pytest.mark.parametrize("path", ["fast", "slow"])
def test_a_connection_lost_after_the_command_ran_is_not_sent_again(
    request: pytest.FixtureRequest, tmp_path: Path, path: str
) -> None:
    """The connection drops after the server ran the script, before its reply reaches the
    client (a proxy cuts it): a StoreError, and charged once; redis-py's own retry would send
    it again on a new connection and charge twice. On the slow path (``reserve``) the write
    is the second script: its reply is the one cut."""
    url = STORE_FACTORIES["redis"](request, tmp_path)
    where = urlsplit(url)
    assert where.hostname is not None and where.port is not None
    proxy = ReplyDropper(where.hostname, where.port)
    try:
        with Limiter(store=url.replace(f":{where.port}/", f":{proxy.port}/", 1)) as lim:
            lim.set_account("acme", plan="pro")
            assert lim.consume("acme", "export.ai").allowed
            if path == "slow":  # the scripts loaded, so each step below is one reply
                lim.reserve("acme", "export.ai", 1).release()
            proxy.arm(skip=0 if path == "fast" else 1)  # slow: the read passes, the write not
            with pytest.raises(StoreError):
                if path == "fast":
                    lim.consume("acme", "export.ai", 2)
                else:
                    lim.reserve("acme", "export.ai", 2)
            assert proxy.dropped == 1
            used = {m.limit: m.used for m in lim.usage("acme")}["ai_exports"]
            assert used == 3  # 1, then 2 (charged or held) once
    finally:
        proxy.close()


@pytest.mark.parametrize("kind", ["redis", "redis_cluster"])
def test_a_held_connection_the_server_closed_is_replaced(
    request: pytest.FixtureRequest, tmp_path: Path, kind: str
) -> None:
    """Decisions go over a connection each thread holds. One the server closed since its
    last use (a restart, an idle timeout; here CLIENT KILL) is found closed before it is
    used and replaced, so the decision goes through; nothing is sent on a dead connection."""
    url = STORE_FACTORIES[kind](request, tmp_path)
    with Limiter(store=url) as lim:
        lim.set_account("acme", plan="pro")
        assert lim.consume("acme", "export.ai").allowed
        store: RedisStore = lim.store  # type: ignore[assignment]
        if store.cluster:
            slot = key_slot(store.key("acme", "a").encode())
            node = store.client.nodes_manager.get_node_from_slot(slot)
            held = store._links_here()[node.name]
            admin = redis.Redis(host=node.host, port=node.port)
        else:
            held = store._links_here()[None]
            where = store.client.connection_pool.connection_kwargs
            admin = redis.Redis(host=where["host"], port=where["port"])
        with admin:
            assert admin.client_kill_filter(_id=str(held.client_id(Deadline(1)))) == 1
        time.sleep(0.05)  # the server's FIN arrives
        assert lim.consume("acme", "export.ai", 2).allowed
        assert {m.limit: m.used for m in lim.usage("acme")}["ai_exports"] == 3


def test_an_async_lane_the_server_closed_is_replaced(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """The same for the connections the async store holds for decisions (``Lanes``)."""
    from allowance import AsyncLimiter
    from allowance.stores.redis_async import AsyncRedisStore

    url = STORE_FACTORIES["redis"](request, tmp_path)

    async def main() -> int:
        async with AsyncLimiter(store=url) as lim:
            await lim.set_account("acme", plan="pro")
            assert (await lim.consume("acme", "export.ai")).allowed
            store = lim.async_store
            assert isinstance(store, AsyncRedisStore)
            [lane] = store._lanes[None]._free
            await lane.send_command("CLIENT", "ID")
            lane_id = await lane.read_response()
            where = store.client.connection_pool.connection_kwargs
            with redis.Redis(host=where["host"], port=where["port"]) as admin:
                assert admin.client_kill_filter(_id=lane_id) == 1
            await asyncio.sleep(0.05)
            assert (await lim.consume("acme", "export.ai", 2)).allowed
            usage = await lim.usage("acme")
            return {m.limit: m.used for m in usage}["ai_exports"]

    assert asyncio.run(main()) == 3


def test_a_sweep_passes_over_an_account_it_cannot_load(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """A key that looks like an account with a due reservation but is none (a stray or
    half-deleted key) is passed over: the sweep settles the others, sync and async alike (the
    sync sweep used to stop at it with UnknownAccount)."""
    url = STORE_FACTORIES["redis"](request, tmp_path)
    clock = ManualClock("2026-11-23T15:10:00Z")
    with Limiter(store=url, clock=clock) as lim:
        store = lim.store
        assert isinstance(store, RedisStore)
        for name in ("ghost1", "ghost2"):
            store.client.hset(store.key(name, "a"), mapping={"nh": "1", "id": name})
        lim.set_account("acme", plan="pro")
        lim.reserve("acme", "export.ai", 5, ttl=60)
        clock.advance(120)
        assert lim.sweep() == 1
        assert {m.limit: m.used for m in lim.usage("acme")}["ai_exports"] == 0

        async def main() -> int:
            async with AsyncLimiter(store=url, clock=clock) as alim:
                await alim.reserve("acme", "export.ai", 5, ttl=60)
                clock.advance(120)
                return await alim.sweep()

        assert asyncio.run(main()) == 1


def _scripts_run(store: object, into: list[str]) -> None:
    """Record the SHA of each script ``store`` runs (its own method, wrapped: it still runs)."""
    run = store._run  # type: ignore[attr-defined]

    def recorded(script: Any, keys: list[str], argv: list[Any], deadline: Deadline) -> Any:
        into.append(script.sha)
        return run(script, keys, argv, deadline)

    store._run = recorded  # type: ignore[attr-defined]


def test_a_charge_crossing_a_level_takes_two_scripts_not_three(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """decide.lua leaves the 24th Pro generation of a day (80 % of 30) to the slow path, which
    writes its event; the slow path starts from what decide.lua read (no load.lua)."""
    url = STORE_FACTORIES["redis"](request, tmp_path)
    clock = ManualClock("2026-11-23T15:10:00Z")
    with Limiter(store=url, clock=clock) as lim:
        lim.set_account("acme", plan="pro")
        for _ in range(23):
            assert lim.consume("acme", "transform.virtual_model").allowed
            clock.advance(60)
        ran: list[str] = []
        _scripts_run(lim.store, ran)
        assert lim.consume("acme", "transform.virtual_model").allowed
        assert len(ran) == 2 and lua("load").sha not in ran
        found = [(e.type, e.data.get("threshold")) for e in lim.events(account="acme")]
        assert found == [("usage.threshold", 0.8)]
        clock.advance(60)
        ran.clear()
        assert lim.consume("acme", "transform.virtual_model").allowed  # no crossing: one
        assert len(ran) == 1


def test_async_a_charge_crossing_a_level_takes_two_scripts_not_three(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    url = STORE_FACTORIES["redis"](request, tmp_path)
    clock = ManualClock("2026-11-23T15:10:00Z")

    async def go() -> tuple[list[str], list[str]]:
        async with AsyncLimiter(store=url, clock=clock) as lim:
            await lim.set_account("acme", plan="pro")
            for _ in range(23):
                assert (await lim.consume("acme", "transform.virtual_model")).allowed
                clock.advance(60)
            ran: list[str] = []
            _scripts_async(lim.async_store, ran)
            assert (await lim.consume("acme", "transform.virtual_model")).allowed
            return ran, [e.type for e in await lim.events(account="acme")]

    ran, types = asyncio.run(go())
    assert len(ran) == 2 and lua("load").sha not in ran
    assert types == ["usage.threshold"]


def _scripts_async(store: object, into: list[str]) -> None:
    run = store._run  # type: ignore[attr-defined]

    async def recorded(script: Any, keys: list[str], argv: list[Any], deadline: Deadline) -> Any:
        into.append(script.sha)
        return await run(script, keys, argv, deadline)

    store._run = recorded  # type: ignore[attr-defined]


def test_the_ledger_list_is_trimmed_and_kept_alive_without_the_sweep(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """The list of an account's ledger rows is trimmed and given its lifetime (keep and a
    hundredth) when new and at the first append in each hundredth of keep (ledger.lua): a
    list the sweep emptied gets a lifetime again, old rows go without a sweep."""
    url = STORE_FACTORIES["redis"](request, tmp_path)
    clock = ManualClock("2026-11-23T15:10:00Z")
    policy = parse_policy(f"{builtin_policy().source_text}\nledger: {{keep: 1h}}\n")
    with Limiter(policy, url, clock=clock) as lim:
        store: RedisStore = lim.store  # type: ignore[assignment]
        key = store.ledger_key("acme")
        lim.set_account("acme", plan="pro")
        lim.consume("acme", "transform.virtual_model")
        assert 3_600_000 < store.client.pttl(key) <= 3_636_000
        store.client.persist(key)  # as if set long ago: appends in this hundredth leave it
        clock.advance(1)
        lim.consume("acme", "transform.virtual_model")
        assert store.client.pttl(key) == -1
        clock.advance(3_601)  # past keep: the next append drops the first four rows
        lim.consume("acme", "transform.virtual_model")
        assert len({r.at for r in lim.ledger("acme").rows}) == 1
        assert len(lim.ledger("acme").rows) == 2
        assert 3_600_000 < store.client.pttl(key) <= 3_636_000
        clock.advance(3_700)
        lim.sweep()
        assert store.client.exists(key) == 0  # the sweep emptied it
        lim.consume("acme", "transform.virtual_model")
        assert store.client.pttl(key) > 3_600_000  # a new list: its lifetime set
