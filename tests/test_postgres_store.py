"""The PostgreSQL store: the seed's example, persistence, configuration, the schema, cleanup and
races. Each test gets a fresh schema on the session's PostgreSQL (ALLOWANCE_TEST_POSTGRES_URL, or
a throwaway server), dropped afterwards."""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest

from allowance import ConfigurationError, Limiter, ManualClock
from allowance.errors import StoreError
from allowance.stores import AccountView, store_from_url
from allowance.stores import postgres as pg
from allowance.stores.postgres import PostgresStore

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


def test_a_failed_operation_writes_nothing(schema: str) -> None:
    url = with_options(schema=schema, pool_min="1", pool_max="1")
    with Limiter(store=url) as lim:
        lim.set_account("a", plan="pro")

        def charge_then_fail(view: AccountView, now: float) -> None:
            counters = view.counters(["ai_exports"])
            counters["ai_exports"].start, counters["ai_exports"].used = now, 5
            view.save_counters(counters)
            raise RuntimeError("boom")

        def charge_then_fail_on_the_server(view: AccountView, now: float) -> None:
            counters = view.counters(["ai_exports"])
            counters["ai_exports"].start, counters["ai_exports"].used = now, 5
            view.save_counters(counters)
            view._conn.execute("SELECT 1 / 0")  # type: ignore[attr-defined]  # queued, fails late

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


def test_threads_race_for_the_last_units(pg_url: str) -> None:
    with Limiter(store=pg_url) as setup:
        setup.set_account("acme", plan="pro")
        barrier = threading.Barrier(16)
        granted: list[int] = []
        lock = threading.Lock()

        def run() -> None:
            with Limiter(store=pg_url) as lim:
                barrier.wait()
                mine = sum(lim.consume("acme", "export.ai").granted for _ in range(5))
            with lock:
                granted.append(mine)

        threads = [threading.Thread(target=run) for _ in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(granted) == 16 and sum(granted) == 30
        assert used(setup, "acme", "ai_exports") == 30
