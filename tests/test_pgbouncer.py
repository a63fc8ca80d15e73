"""PostgreSQL behind PgBouncer in transaction pooling mode (Debian's ``pgbouncer``, default
settings: no protocol-level prepared statements): consecutive transactions of one client land on
different server connections, so a statement prepared on one is missing on the next. Decisions
through it, many threads, plain URL (detected) and ``?prepare=false``: zero errors, exact
counts; the seed's example and an 8 processes x 16 threads race through it."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

import servers
from allowance import Limiter
from allowance.stores.postgres import PostgresStore
from races import race


@pytest.fixture(scope="module")
def bouncer(postgres_url: str) -> Iterator[servers.PgBouncer]:
    try:
        # server connections that come and go (as after a bouncer's server_lifetime or a
        # failover), so a client's statement is often missing where its next call lands
        found = servers.start_pgbouncer(
            postgres_url,
            "transaction",
            pool_size=6,
            settings="server_lifetime = 1\nserver_idle_timeout = 1\n",
        )
    except servers.ServerUnavailable as exc:
        if servers_required():
            raise
        pytest.skip(str(exc))
    try:
        yield found
    finally:
        found.stop()


def servers_required() -> bool:
    import os

    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.fixture
def schema(postgres_url: str) -> Iterator[str]:
    name = f"b{uuid.uuid4().hex}"
    yield name
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


def url(bouncer: servers.PgBouncer, schema: str, **options: str) -> str:
    extra = "".join(f"&{k}={v}" for k, v in options.items())
    return f"{bouncer.url}?schema={schema}&timeout=5{extra}"


def hammer(lim: Limiter, threads: int, calls: int) -> list[BaseException]:
    """``threads`` threads x ``calls`` decisions on one Limiter (fast path: check and consume;
    transaction path: an idempotency key); the exceptions raised."""
    errors: list[BaseException] = []
    start = threading.Barrier(threads)

    def run(i: int) -> None:
        start.wait(10)
        for n in range(calls):
            try:
                if n % 3 == 0:
                    lim.consume(f"a{i % 4}", "export.ai")
                elif n % 3 == 1:
                    lim.check(f"a{i % 4}", "transform.virtual_model")
                else:
                    lim.consume(f"a{i % 4}", "export.ai", idempotency_key=f"{i}-{n}")
            except BaseException as exc:  # collected, asserted by the caller
                errors.append(exc)

    workers = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
    return errors


@pytest.mark.parametrize("options", [{}, {"prepare": "false"}], ids=["detected", "prepare=false"])
def test_eight_threads_through_a_transaction_pooling_bouncer(
    bouncer: servers.PgBouncer, schema: str, options: dict[str, Any]
) -> None:
    with Limiter(store=url(bouncer, schema, pool_max="8", **options)) as lim:
        for i in range(4):
            lim.set_account(f"a{i}", "pro")
        assert hammer(lim, threads=8, calls=150) == []
        # 8 threads x 50 plain consumes and 50 keyed ones on 4 accounts: the weekly 30 each
        used = [
            next(m.used for m in lim.usage(f"a{i}") if m.limit == "ai_exports") for i in range(4)
        ]
        assert used == [30, 30, 30, 30]


def test_prepare_option_is_checked(bouncer: servers.PgBouncer, schema: str) -> None:
    from allowance.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="prepare"):
        PostgresStore.from_url(url(bouncer, schema, prepare="maybe"))


@pytest.mark.slow
def test_eight_processes_of_sixteen_threads_race_through_the_bouncer(
    bouncer: servers.PgBouncer, schema: str
) -> None:
    """The race of tests/integration/test_races.py (8 processes x 16 threads x 4 consumes on
    one Pro account, one store per process), through the bouncer on a plain URL: every
    worker exits cleanly, and exactly the weekly 30 are granted and metered."""
    store_url = url(bouncer, schema, pool_max="8")
    with Limiter(store=store_url) as setup:
        setup.set_account("acme", plan="pro")
        granted = race(store_url, "export.ai", threads=16, share=True)
        assert granted == 30
        assert {m.limit: m.used for m in setup.usage("acme")}["ai_exports"] == 30
