"""The PostgreSQL store: the seed's example, persistence, configuration, the schema, cleanup and
races, and its async twin on psycopg's async pool. Each test gets a fresh schema on the
session's PostgreSQL (ALLOWANCE_TEST_POSTGRES_URL, or a throwaway server), dropped afterwards."""

from __future__ import annotations

import asyncio
import gc
import socket
import sys
import threading
import time
import uuid
import weakref
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from psycopg_pool import PoolTimeout

from allowance import AsyncLimiter, ConfigurationError, Limiter, ManualClock, ReservationExpired
from allowance.errors import StoreError, StoreUnavailable
from allowance.state import IdempotencyRecord
from allowance.stores import AccountView, store_from_url
from allowance.stores import postgres as pg
from allowance.stores import postgres_async as pga
from allowance.stores import postgres_common as pgc
from allowance.stores import postgres_conn as pgconn
from allowance.stores.postgres import PostgresStore
from allowance.stores.postgres_async import AsyncPostgresStore
from allowance.view import Preload

BASE_URL = ""  # the session's PostgreSQL (conftest's postgres_url: env var or a throwaway one)


@pytest.fixture(autouse=True)
def _base_url(postgres_url: str) -> None:
    global BASE_URL
    BASE_URL = postgres_url


def with_options(**options: str) -> str:
    extra = "&".join(f"{k}={v}" for k, v in options.items())
    return f"{BASE_URL}{'&' if '?' in BASE_URL else '?'}{extra}"


def admin() -> psycopg.Connection[Any]:
    return psycopg.connect(BASE_URL, autocommit=True)


@pytest.fixture
def schema() -> Iterator[str]:
    name = f"t{uuid.uuid4().hex}"
    yield name
    with admin() as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


@pytest.fixture
def pg_url(schema: str) -> str:
    return with_options(schema=schema)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def used(lim: Limiter, account: str, name: str) -> int:
    return next(m.used for m in lim.usage(account) if m.limit == name)


def test_seed_worked_example(pg_url: str) -> None:
    clock = ManualClock("2026-11-23T15:10:00")  # a Monday
    with Limiter(store=pg_url, clock=clock) as lim:
        lim.set_account("acme", plan="pro")
        for minute in range(10):  # 15:10-15:19: twenty Virtual Model generations, 2 a minute
            clock.set(at(f"2026-11-23T15:{10 + minute}:00"))
            for _ in range(2):
                assert lim.consume("acme", "transform.virtual_model").allowed
            third = lim.consume("acme", "transform.virtual_model")
            assert (third.allowed, third.limit) == (False, "transform_rate")
            assert third.resets_at == at(f"2026-11-23T15:{11 + minute}:00")
        for minute in range(5):  # 15:30-15:34: ten Product Staging
            clock.set(at(f"2026-11-23T15:{30 + minute}:00"))
            for _ in range(2):
                assert lim.consume("acme", "transform.product_staging").allowed
        daily = next(m for m in lim.usage("acme") if m.limit == "transform_daily")
        assert (daily.used, daily.remaining) == (30, 0)
        assert daily.window_start == at("2026-11-23T15:10:00")

        clock.set(at("2026-11-23T15:36:00"))
        denied = lim.consume("acme", "transform.product_beautifier")
        assert (denied.allowed, denied.reason, denied.limit) == (
            False,
            "limit_reached",
            "transform_daily",
        )
        assert denied.resets_at == at("2026-11-24T15:10:00")
        assert denied.upgrade == "max" and denied.remaining == 0

        clock.set(at("2026-11-24T15:09:59"))
        assert not lim.consume("acme", "transform.virtual_model").allowed
        clock.set(at("2026-11-24T16:10:00"))
        back = lim.consume("acme", "transform.virtual_model")
        assert back.allowed and back.granted == 1
        daily = next(m for m in lim.usage("acme") if m.limit == "transform_daily")
        assert (daily.used, daily.window_start) == (1, at("2026-11-24T16:10:00"))
        assert daily.resets_at == at("2026-11-25T16:10:00")


def test_usage_survives_a_new_store(pg_url: str) -> None:
    clock = ManualClock("2026-11-23T15:10:00Z")
    with Limiter(store=pg_url, clock=clock) as lim:
        assert lim.put_account("a", plan="pro", seats=2)[1] is True
        assert lim.put_account("a", plan="pro", seats=2)[1] is False
        lim.consume("a", "export.ai", 7)
        r = lim.reserve("a", "export.ai", 3)
        first = lim.consume("a", "export.ai", 1, idempotency_key="k")
    with Limiter(store=pg_url.replace("postgresql://", "postgres://"), clock=clock) as lim:
        assert lim.get_account("a").seats == 2
        assert used(lim, "a", "ai_exports") == 11
        assert lim.consume("a", "export.ai", 1, idempotency_key="k").remaining == first.remaining
        assert r.id is not None
        lim.release(r.id)
        assert used(lim, "a", "ai_exports") == 8


def test_store_clock_is_the_servers(pg_url: str) -> None:
    store = store_from_url(pg_url)
    try:
        assert abs(store.now() - time.time()) < 60
        assert store.get_account("nobody") is None
    finally:
        store.close()


@pytest.mark.parametrize(
    "options",
    [
        {"schema": "bad-name"},
        {"schema": ""},
        {"schema": "x" * 64},
        {"pool_min": "many"},
        {"pool_max": "0"},
        {"pool_min": "5", "pool_max": "2"},
        {"pool_max": "-1"},
        {"no_such_option": "1"},
    ],
)
def test_bad_options_are_configuration_errors(options: dict[str, str]) -> None:
    with pytest.raises(ConfigurationError) as info:
        Limiter(store=with_options(**options))
    assert next(iter(options)) in str(info.value)


def test_a_password_is_not_repeated_in_errors() -> None:
    with pytest.raises(ConfigurationError) as info:
        Limiter(store="postgresql://me:s3cret@127.0.0.1:5432/test?schema=a-b")
    assert "s3cret" not in str(info.value)


def test_an_unreachable_server_is_a_store_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again below: nothing listens there
    with pytest.raises(StoreError, match="postgresql") as info:
        Limiter(store=f"postgresql://postgres@127.0.0.1:{port}/test")
    assert isinstance(info.value.__cause__, psycopg.OperationalError)


def _start_two_at_once(url: str) -> list[BaseException]:
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def start() -> None:
        barrier.wait()
        try:
            PostgresStore.from_url(url).close()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


def test_schema_created_by_two_stores_at_once() -> None:
    for _ in range(5):  # several rounds: the race window is small
        name = f"t{uuid.uuid4().hex}"
        errors = _start_two_at_once(with_options(schema=name))
        with admin() as conn:
            version = conn.execute(f'SELECT version FROM "{name}".schema_version').fetchall()
            conn.execute(f'DROP SCHEMA "{name}" CASCADE')
        assert errors == []
        assert version == [(pg.SCHEMA_VERSION,)]


def test_a_newer_schema_is_refused(pg_url: str, schema: str) -> None:
    PostgresStore.from_url(pg_url).close()
    with admin() as conn:
        conn.execute(f'UPDATE "{schema}".schema_version SET version = version + 1')
    with pytest.raises(ConfigurationError, match="newer"):
        PostgresStore.from_url(pg_url)


def charge_then_fail(view: AccountView, now: float) -> None:
    """Charge 5 AI exports, then fail in Python: nothing may be written."""
    counters = view.counters(["ai_exports"])
    counters["ai_exports"].start, counters["ai_exports"].used = now, 5
    view.save_counters(counters)
    raise RuntimeError("boom")


def charge_then_fail_on_the_server(view: AccountView, now: float) -> None:
    """Charge 5 AI exports, then queue a statement that fails on the server with the writes,
    in the flight of the COMMIT: nothing may be written."""
    counters = view.counters(["ai_exports"])
    counters["ai_exports"].start, counters["ai_exports"].used = now, 5
    view.save_counters(counters)
    view.writes.append(("SELECT 1 / 0", ()))  # type: ignore[attr-defined]


def test_a_failed_operation_writes_nothing(schema: str) -> None:
    url = with_options(schema=schema, pool_min="1", pool_max="1")
    with Limiter(store=url) as lim:
        lim.set_account("a", plan="pro")

        with pytest.raises(RuntimeError):
            lim.store.transact("a", None, charge_then_fail)
        with pytest.raises(StoreError, match="division by zero"):
            lim.store.transact("a", None, charge_then_fail_on_the_server)
        # the one pooled connection is clean again, and nothing was charged
        assert used(lim, "a", "ai_exports") == 0
        assert lim.consume("a", "export.ai").allowed
        assert used(lim, "a", "ai_exports") == 1


def test_time_is_read_after_the_row_lock(pg_url: str) -> None:
    """A decision that waited for the lock takes its time from after the wait, even when the
    holder changed nothing (a denial), so decisions are ordered in time as they commit."""
    with Limiter(store=pg_url) as lim:
        lim.set_account("a", plan="pro")
        store = lim.store
        holding, go = threading.Event(), threading.Event()
        released_at: list[float] = []
        waited_at: list[float] = []

        def hold(view: AccountView, now: float) -> None:
            holding.set()
            go.wait(10)
            released_at.append(store.now())  # read just before this transaction commits

        def wait() -> None:
            store.transact("a", None, lambda view, now: waited_at.append(now))

        holder = threading.Thread(target=lambda: store.transact("a", None, hold))
        holder.start()
        assert holding.wait(10)
        waiter = threading.Thread(target=wait)
        waiter.start()
        with admin() as conn:  # until the waiter is queued on the row lock
            deadline = time.monotonic() + 10
            while not conn.execute(
                "SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE %s",
                (f"%{lim.store.schema}%",),  # type: ignore[attr-defined]
            ).fetchone():
                assert time.monotonic() < deadline
                time.sleep(0.01)
        go.set()
        holder.join()
        waiter.join()
        assert waited_at[0] >= released_at[0]


def test_sweep_and_the_bounded_background_sweep(
    pg_url: str, schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = ManualClock("2026-11-23T15:10:00Z")

    def rows(table: str) -> int:
        with admin() as conn:
            row = conn.execute(f'SELECT count(*) FROM "{schema}".{table}').fetchone()
        assert row is not None
        return int(row[0])

    with Limiter(store=pg_url, clock=clock) as lim:
        lim.set_account("a", plan="pro")
        for i in range(6):
            lim.consume("a", "export.standard", idempotency_key=f"k{i}")
        committed = lim.reserve("a", "background.studio", 3, ttl=60)
        committed.commit()
        lim.reserve("a", "background.studio", 2, ttl=60)  # left to expire untouched
        assert used(lim, "a", "studio") == 5
        assert (rows("idempotency"), rows("holds")) == (6, 2)

        clock.advance(3 * 86400)
        monkeypatch.setattr(pg, "SWEEP_EVERY", 1)  # every operation sweeps ...
        monkeypatch.setattr(pg, "SWEEP_BATCH", 2)  # ... at most 2 rows of each kind
        lim.consume("a", "export.standard")
        assert (rows("idempotency"), rows("holds")) == (4, 0)  # the held one was settled first
        monkeypatch.setattr(pg, "SWEEP_EVERY", 10**9)
        assert lim.sweep() == 4
        assert lim.sweep() == 0
        assert used(lim, "a", "studio") == 0


# --- the async twin ----------------------------------------------------------------------------


def no_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``asyncio.to_thread`` (AsyncLimiter's fallback for a sync store) fail."""

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("AsyncLimiter ran the store in a worker thread")

    monkeypatch.setattr(asyncio, "to_thread", refuse)


def next_hold_expiry(schema: str, account: str) -> float | None:
    with admin() as conn:
        row = conn.execute(
            f'SELECT next_hold_expiry FROM "{schema}".accounts WHERE id = %s', (account,)
        ).fetchone()
    assert row is not None
    return row[0]  # type: ignore[no-any-return]


def test_async_limiter_uses_the_async_pool_not_threads(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def main() -> None:
        lim = AsyncLimiter(store=pg_url)
        try:
            assert isinstance(lim.async_store, AsyncPostgresStore)
            assert lim.async_store.policy is lim.policy
            with monkeypatch.context() as patch:
                no_threads(patch)
                await lim.set_account("acme", plan="pro")
                decisions = await asyncio.gather(
                    *(lim.consume("acme", "export.ai") for _ in range(80))
                )
                assert sum(d.granted for d in decisions) == 30
                assert sum(not d.allowed for d in decisions) == 50
                meter = {m.limit: m.used for m in await lim.usage("acme")}
                assert meter["ai_exports"] == 30
                assert (await lim.get_account("acme")).plan == "pro"
                assert await lim.sweep() == 0
        finally:
            await lim.close()  # the sync store's close may use a thread

    asyncio.run(main())


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_next_hold_expiry_follows_the_held_reservations(
    kind: str, pg_url: str, schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The row's earliest held expiry is recomputed by the server when a hold leaves the held
    state (the view cannot know the next one), also when the earliest is settled as expired
    and then committed in the same transaction (read-your-writes: it is expired)."""
    clock = ManualClock("2026-11-23T15:10:00Z")
    start = clock()

    async def main() -> None:
        lim = AsyncLimiter(store=pg_url, clock=clock)
        try:
            if kind == "sync":
                lim.async_store = None  # AsyncLimiter then runs the sync store in a thread
            else:
                no_threads(monkeypatch)
            await lim.set_account("a", plan="pro")
            first = await lim.reserve("a", "export.ai", 1, ttl=60)
            second = await lim.reserve("a", "export.ai", 1, ttl=120)
            third = await lim.reserve("a", "export.ai", 1, ttl=180)
            assert next_hold_expiry(schema, "a") == start + 60
            await first.commit()  # the earliest leaves: the next one is the row's
            assert next_hold_expiry(schema, "a") == start + 120
            clock.advance(150)  # the second is due now, the third not yet
            with pytest.raises(ReservationExpired):
                await second.commit()  # settled as expired first, in the same transaction
            assert next_hold_expiry(schema, "a") == start + 120  # that one rolled back
            await third.release()  # settles the second (expired) and releases the third
            assert next_hold_expiry(schema, "a") is None
            assert {m.limit: m.used for m in await lim.usage("a")}["ai_exports"] == 1
        finally:
            monkeypatch.undo()
            await lim.close()

    asyncio.run(main())


def test_async_failed_operation_writes_nothing(schema: str) -> None:
    url = with_options(schema=schema, pool_min="1", pool_max="1")

    async def main() -> None:
        PostgresStore.from_url(url).close()  # the schema
        store = AsyncPostgresStore.from_url(url)
        try:
            await store.put_account("a", "pro", 1)
            with pytest.raises(StoreError, match="division by zero") as info:
                await store.transact("a", None, charge_then_fail_on_the_server)
            assert isinstance(info.value.__cause__, psycopg.Error)
            with pytest.raises(RuntimeError):
                await store.transact("a", None, charge_then_fail)
            # the one pooled connection is clean again, and nothing was charged
            stored = await store.transact("a", None, lambda view, now: view.counters(["x"]))
            assert stored["x"].used == 0
            with admin() as conn:
                row = conn.execute(f'SELECT counters FROM "{schema}".accounts').fetchone()
            assert row == ({},)
        finally:
            await store.close()
        with pytest.raises(StoreError, match="closed"):
            await store.get_account("a")
        await store.close()  # twice is harmless

    asyncio.run(main())


def test_records_not_preloaded(pg_url: str) -> None:
    """The sync view reads a record nobody preloaded; the async one has no I/O and refuses."""
    record = IdempotencyRecord("consume", "export.ai", 1, {}, 2e9)
    with Limiter(store=pg_url) as lim:
        lim.set_account("a", plan="pro")
        lim.store.transact("a", None, lambda view, now: view.put_idempotency("k", record))
        found = lim.store.transact("a", None, lambda view, now: view.get_idempotency("k"))
        assert found == record
        held = lim.reserve("a", "export.ai", ttl=60)
        later = lim.store.transact("a", None, lambda view, now: view.due_holds(now + 120))
        assert [h.id for h in later] == [held.id]

        async def main() -> None:
            store = lim.store.async_store()
            assert store is not None
            try:
                preloaded = await store.transact(
                    "a",
                    None,
                    lambda view, now: view.get_idempotency("k"),
                    Preload(idempotency_key="k"),
                )
                assert preloaded == record
                with pytest.raises(StoreError, match="not preloaded"):
                    await store.transact("a", None, lambda view, now: view.get_hold("h"))
                with pytest.raises(StoreError, match="not preloaded"):
                    await store.transact("a", None, lambda view, now: view.due_holds(now + 120))
            finally:
                await store.close()

        asyncio.run(main())


def test_async_sweep_and_the_bounded_background_sweep(
    pg_url: str, schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = ManualClock("2026-11-23T15:10:00Z")

    def rows(table: str) -> int:
        with admin() as conn:
            row = conn.execute(f'SELECT count(*) FROM "{schema}".{table}').fetchone()
        assert row is not None
        return int(row[0])

    async def main() -> None:
        lim = AsyncLimiter(store=pg_url, clock=clock)
        try:
            no_threads(monkeypatch)
            await lim.set_account("a", plan="pro")
            for i in range(6):
                await lim.consume("a", "export.standard", idempotency_key=f"k{i}")
            committed = await lim.reserve("a", "background.studio", 3, ttl=60)
            await committed.commit()
            await lim.reserve("a", "background.studio", 2, ttl=60)  # left to expire untouched
            assert (rows("idempotency"), rows("holds")) == (6, 2)

            clock.advance(3 * 86400)
            monkeypatch.setattr(pgc, "SWEEP_EVERY", 1)  # every operation sweeps ...
            monkeypatch.setattr(pgc, "SWEEP_BATCH", 2)  # ... at most 2 rows of each kind
            await lim.consume("a", "export.standard")
            assert (rows("idempotency"), rows("holds")) == (4, 0)  # the held one settled first
            monkeypatch.setattr(pgc, "SWEEP_EVERY", 10**9)
            assert await lim.sweep() == 4
            assert await lim.sweep() == 0
            assert {m.limit: m.used for m in await lim.usage("a")}["studio"] == 0
        finally:
            monkeypatch.undo()
            await lim.close()

    asyncio.run(main())


def test_async_unreachable_server_is_a_store_error(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again below: nothing listens there
    monkeypatch.setattr(pga, "OPEN_TIMEOUT", 1.0)

    async def main() -> None:
        store = AsyncPostgresStore.from_url(f"postgresql://postgres@127.0.0.1:{port}/test")
        try:
            for _ in range(2):  # a failed opening is not kept: the next operation tries again
                with pytest.raises(StoreError, match="postgresql") as info:
                    await store.get_account("a")
                assert isinstance(info.value.__cause__, psycopg.OperationalError)
        finally:
            await store.close()

    asyncio.run(main())


@pytest.mark.parametrize("version", [1, 2])
def test_an_older_schema_is_upgraded(schema: str, version: int) -> None:
    url = with_options(schema=schema)
    Limiter(store=url).close()
    with admin() as conn:  # version 1 had no decide(); version 2's took the spec as jsonb
        # (version 13's is decide_v13: its new parameters need a new name, and servers of
        # the version before keep their decide() while a deployment rolls)
        conn.execute(f'DROP FUNCTION "{schema}".decide_v13')
        conn.execute(f'UPDATE "{schema}".schema_version SET version = %s', (version,))
    with Limiter(store=url) as lim:
        lim.set_account("acme", plan="pro")
        assert lim.consume("acme", "export.ai", 30).allowed
        assert not lim.consume("acme", "export.ai").allowed
    with admin() as conn:
        row = conn.execute(f'SELECT version FROM "{schema}".schema_version').fetchone()
        assert row == (pg.SCHEMA_VERSION,)


def test_errors_inside_a_transaction_leave_prepared_statements_usable(schema: str) -> None:
    """Operations that fail inside the pipelined transaction (a reused idempotency key, often
    enough that psycopg would prepare their statements) must not break the prepared
    statements of later decisions on the same connection (sync and async)."""
    from allowance import IdempotencyConflict, UnknownAccount

    url = with_options(schema=schema, pool_min="1", pool_max="1")  # one connection for all
    keyed = [("a", "background.studio", n, "k1") for n in (1, 2) * 7]
    plain = [("a", "background.standard", 1, None)] * 3  # prepared after the failures
    steps = [
        ("a", "export.ai", 1, None),  # a prepared statement on the connection first
        *keyed,
        *plain,
        ("nobody", "export.ai", 1, None),
        *[("a", "export.ai", 1, None)] * 3,
    ]
    expected = ["ok", *["ok", "IdempotencyConflict"] * 7, "ok", "ok", "ok", "UnknownAccount"]
    expected += ["ok"] * 3
    refused = (IdempotencyConflict, UnknownAccount)

    with Limiter(store=url) as lim:
        lim.set_account("a", "free")
        got = []
        for account, feature, amount, key in steps:
            try:
                lim.consume(account, feature, amount, idempotency_key=key)
                got.append("ok")
            except refused as exc:
                got.append(type(exc).__name__)
        assert got == expected

    async def main() -> list[str]:
        got = []
        async with AsyncLimiter(store=url) as alim:
            await alim.set_account("a", "free")  # a new store: its counters start again
            for account, feature, amount, key in steps:
                try:
                    await alim.consume(account, feature, amount, idempotency_key=key and key + "b")
                    got.append("ok")
                except refused as exc:
                    got.append(type(exc).__name__)
        return got

    assert asyncio.run(main()) == expected


def test_fast_path_prepares_again_after_deallocate_all(schema: str) -> None:
    """The fast path's statement is prepared by name on each connection; a DEALLOCATE ALL
    (psycopg sends one when it resets its own cache) drops it, and the next decision prepares
    it again: charged once, not refused, not sent twice."""
    store = PostgresStore.from_url(with_options(schema=schema, pool_min="1", pool_max="1"))
    with Limiter(store=store) as lim:
        lim.set_account("a", "pro")
        assert lim.consume("a", "export.ai").allowed
        with store._pool.connection() as conn:  # the one connection the fast path uses
            names = conn.execute("SELECT name FROM pg_prepared_statements").fetchall()
            assert any(name.startswith("allowance_decide_") for (name,) in names)
            conn.execute("DEALLOCATE ALL")
        assert lim.consume("a", "export.ai", 2).allowed
        assert used(lim, "a", "ai_exports") == 3


def test_fast_path_connection_closed_while_idle_is_replaced(schema: str) -> None:
    """A pooled connection the server closed while it sat idle (a restart, an idle timeout,
    pg_terminate_backend) is found before anything is sent on it and replaced: the decision
    succeeds, charged once."""
    store = PostgresStore.from_url(with_options(schema=schema, pool_min="1", pool_max="1"))
    with Limiter(store=store) as lim:
        lim.set_account("a", "pro")
        assert lim.consume("a", "export.ai").allowed
        with store._connection() as conn:
            pid = conn.pgconn.backend_pid
        with admin() as other:
            other.execute("SELECT pg_terminate_backend(%s, 5000)", (pid,))  # waits for its exit
        assert lim.consume("a", "export.ai").allowed
        assert used(lim, "a", "ai_exports") == 2


def test_fast_path_connection_lost_mid_query_is_unavailable_never_sent_twice(schema: str) -> None:
    """A connection lost while its decision runs in the server: that decision is a
    StoreUnavailable (never sent again: it might have charged), the next one decides."""
    url = with_options(schema=schema, pool_min="1", pool_max="1")
    store = PostgresStore.from_url(url, timeout=10.0)
    with Limiter(store=store) as lim:
        lim.set_account("a", "pro")
        assert lim.consume("a", "export.ai").allowed
        got: list[BaseException] = []

        def decide() -> None:
            try:
                lim.consume("a", "export.ai")
            except BaseException as exc:  # asserted below
                got.append(exc)

        with admin() as holder, admin() as other:
            holder.execute("BEGIN")  # holds the row lock: the decision waits in the server
            holder.execute(f'SELECT 1 FROM "{schema}".accounts WHERE id = %s FOR UPDATE', ("a",))
            thread = threading.Thread(target=decide)
            thread.start()
            deadline = time.monotonic() + 5
            waiting: tuple[Any, ...] | None = None
            while waiting is None and time.monotonic() < deadline:
                waiting = other.execute(
                    "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                    " AND query LIKE %s",
                    ("%.decide_v13(%",),
                ).fetchone()
            assert waiting is not None
            other.execute("SELECT pg_terminate_backend(%s)", (waiting[0],))
            thread.join(10)
            holder.execute("ROLLBACK")
        assert len(got) == 1 and isinstance(got[0], StoreUnavailable), got
        assert lim.consume("a", "export.ai").allowed
        assert used(lim, "a", "ai_exports") == 2


def test_async_fast_path_prepares_again_and_replaces_a_closed_connection(schema: str) -> None:
    """The async store's fast path, as the tests above: a DEALLOCATE ALL is met by preparing
    again (charged once), a kept connection the server closed while idle is replaced before
    anything is sent on it (the decision succeeds, charged once)."""
    url = with_options(schema=schema, pool_min="1", pool_max="1")

    async def main() -> int:
        async with AsyncLimiter(store=url) as lim:
            store = lim.async_store
            assert isinstance(store, AsyncPostgresStore)  # its pool: one connection
            await lim.set_account("a", "pro")
            assert (await lim.consume("a", "export.ai")).allowed
            async with store._connection() as conn:
                cur = await conn.execute("SELECT name FROM pg_prepared_statements")
                names = await cur.fetchall()
                assert any(name.startswith("allowance_decide_") for (name,) in names)
                await conn.execute("DEALLOCATE ALL")
                pid = conn.pgconn.backend_pid
            assert (await lim.consume("a", "export.ai", 2)).allowed
            with admin() as other:
                other.execute("SELECT pg_terminate_backend(%s, 5000)", (pid,))
            assert (await lim.consume("a", "export.ai")).allowed
            assert (await lim.consume("a", "export.ai")).allowed
            return {m.limit: m.used for m in await lim.usage("a")}["ai_exports"]

    assert asyncio.run(main()) == 5


@pytest.mark.parametrize("pool_max", ["1", "2"])
def test_async_kept_connections_never_starve_waiters(schema: str, pool_max: str) -> None:
    """The async store keeps connections idle between operations instead of returning them
    to the pool; with many operations in flight on a pool of one or two (fast decisions,
    reservations and reads through the slow path), every one still gets a connection, in
    far less than the pool's 30 s wait, and the counts add up."""
    url = with_options(schema=schema, pool_min="1", pool_max=pool_max)

    async def main() -> tuple[int, float]:
        async with AsyncLimiter(store=url) as lim:
            await lim.set_account("a", "max", seats=10)  # 1,200 exports a week

            async def one(n: int) -> None:
                if n % 3 == 0:
                    await lim.reserve("a", "export.ai", 2)  # held: counts as used
                elif n % 3 == 1:
                    assert (await lim.consume("a", "export.ai")).allowed
                else:
                    await lim.usage("a")

            began = time.perf_counter()
            await asyncio.wait_for(asyncio.gather(*(one(n) for n in range(60))), 20)
            took = time.perf_counter() - began
            store = lim.async_store
            assert isinstance(store, AsyncPostgresStore)
            assert len(store._idle) <= int(pool_max)
            used = {m.limit: m.used for m in await lim.usage("a")}["ai_exports"]
            return used, took

    used, took = asyncio.run(main())
    assert used == 20 * 2 + 20  # 20 reservations of 2 (held count as used), 20 consumes
    assert took < 10


def test_an_async_limiter_holds_one_pool_of_connections(schema: str) -> None:
    """AsyncLimiter decides through the async store's pool; the sync store it is built on
    opens its own pool only when something needs it (it used to hold one too: two pools, and
    twice the connections, per process)."""
    name = f"one-pool-{uuid.uuid4().hex[:8]}"
    url = with_options(schema=schema, application_name=name)

    def connections() -> int:
        with admin() as conn:
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", (name,)
            ).fetchone()
        assert row is not None
        return int(row[0])

    async def main() -> tuple[int, int]:
        async with AsyncLimiter(store=url) as alim:
            await alim.set_account("a", plan="pro")
            for _ in range(5):
                await alim.consume("a", "export.ai")
            await asyncio.sleep(0.2)  # the pool's background connects, if any
            held = connections()
        return held, connections()

    held, after = asyncio.run(main())
    assert held == 1  # the async pool's one (min 1); the sync pool never opened
    assert after == 0
    with Limiter(store=url) as lim:  # a sync Limiter opens its pool on first use
        assert lim.consume("a", "export.ai").allowed
        assert connections() >= 1


@pytest.mark.parametrize("twin", ["sync", "async"])
def test_a_store_dropped_after_pool_waits_is_freed_at_once(schema: str, twin: str) -> None:
    """A store that waited for a pool connection in vain is, once dropped, freed at once by
    reference counting, with its pool. psycopg_pool's timeout exception used to keep its
    waiting frame, and with it the pool and the store, in a reference cycle: garbage left for
    the cyclic collector, on every decision that waited for the pool's first connection."""
    url = with_options(schema=schema, pool_max="1", timeout="0.2")
    gc.collect()
    gc.disable()
    try:
        if twin == "sync":
            store = PostgresStore.from_url(url)
            held = store._getconn()
            for _ in range(2):
                with pytest.raises(StoreError):
                    store.now()
            store._putconn(held)
            store.close()
            freed = weakref.ref(store)
            del held, store
        else:

            async def main() -> weakref.ref[Any]:
                astore = AsyncPostgresStore.from_url(url)
                async with astore._connection():
                    for _ in range(2):
                        with pytest.raises(StoreError):
                            await astore.get_account("a")
                pool = weakref.ref(astore._pool)
                await astore.close()
                return pool

            freed = asyncio.run(main())
        assert freed() is None
    finally:
        gc.enable()


def test_a_limiter_dropped_unclosed_and_collected_in_a_pool_worker_closes_its_pool(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Limiter dropped without close() inside a reference cycle (any exception re-raised from
    a frame that holds it makes one) is freed by the cyclic collector in whatever thread it
    runs. In one of the pool's own workers, psycopg_pool's ``__del__`` failed trying to join
    that thread ("cannot join current thread", CI) and left the pool unclosed; the store now
    closes a pool it was dropped with from a thread of its own."""
    url = f"{pg_url}&pool_max=4&timeout=0.3"
    armed, dropped, collected = threading.Event(), threading.Event(), threading.Event()
    unraisable: list[str] = []
    connected = pgconn.Reachability.connected

    def connected_then_collect(self: pgconn.Reachability, failed: BaseException | None) -> None:
        connected(self, failed)
        # a worker that connected for a caller who gave up meanwhile
        if armed.is_set() and not collected.is_set() and dropped.wait(5):
            gc.collect()
            collected.set()

    monkeypatch.setattr(pgconn.Reachability, "connected", connected_then_collect)
    monkeypatch.setattr(sys, "unraisablehook", lambda u: unraisable.append(repr(u.exc_value)))
    gc.collect()
    gc.disable()
    try:
        lim = Limiter(store=url)
        lim.set_account("acme", plan="pro")  # the pool's first connection, made on open
        store = lim.store
        assert isinstance(store, PostgresStore)
        name = store._pool.name
        armed.set()
        held: list[Any] = []
        with pytest.raises(PoolTimeout):  # every connection out: the pool grows in a worker,
            while len(held) < 4:  # which then waits
                held.append(store._getconn())
        for conn in held:
            store._putconn(conn)
        cycle: list[Any] = [lim]
        cycle.append(cycle)
        del lim, store, held, conn, cycle
        dropped.set()
        assert collected.wait(5)
    finally:
        gc.enable()
    deadline = time.monotonic() + 5
    while any(t.name.startswith(name) for t in threading.enumerate()):
        assert time.monotonic() < deadline, "the dropped pool's threads still run"
        time.sleep(0.02)
    assert unraisable == []
