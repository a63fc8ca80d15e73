"""A member's record on PostgreSQL's one-statement path (sql/decide.sql): read without its
row lock, since only its account's decisions write it and they hold the account's row; a
sweep that deletes it in between must not cost a charge its count."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

from allowance import AsyncLimiter, Limiter, ManualClock, load_policy, owners
from conftest import _postgres_schema

SCOPED = load_policy(Path(__file__).parent / "scoped.yaml")


@pytest.fixture
def schema(request: pytest.FixtureRequest, postgres_url: str) -> str:
    return _postgres_schema(request, postgres_url, url=False)


def per_user(lim: Limiter) -> int:
    meters = lim.usage("space1", user="ann")
    return next(m.used for m in meters if m.limit == "generations_per_user")


def wait_for_lock_waiters(conn: psycopg.Connection[Any], schema: str, count: int = 1) -> None:
    deadline = time.monotonic() + 10
    while (
        conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
            " AND query LIKE %s",
            (f"%{schema}%",),
        ).fetchone()
        or (0,)
    )[0] < count:
        assert time.monotonic() < deadline, "the decisions never waited for the rows"
        time.sleep(0.01)


def test_a_charge_on_a_members_record_swept_while_it_decided_is_kept(
    postgres_url: str, schema: str
) -> None:
    """The sweep's delete commits after the decision read the record and before it writes:
    the write finds no row and makes it again, with this charge in it."""
    url = f"{postgres_url}{'&' if '?' in postgres_url else '?'}schema={schema}"
    with Limiter(SCOPED, store=url, clock=ManualClock("2026-11-23T15:10:00")) as lim:
        lim.set_account("space1", plan="free")
        assert lim.consume("space1", "ai.generate", user="ann").allowed
        key = owners.record_key("space1", owners.USER + "ann")
        with (
            psycopg.connect(postgres_url) as sweeper,
            psycopg.connect(postgres_url, autocommit=True) as watcher,
        ):
            deleted = sweeper.execute(f'DELETE FROM "{schema}".owned WHERE owner = %s', (key,))
            assert deleted.rowcount == 1  # row locked until the commit below
            decided: list[bool] = []
            decision = threading.Thread(
                target=lambda: decided.append(
                    lim.consume("space1", "ai.generate", user="ann").allowed
                )
            )
            decision.start()
            wait_for_lock_waiters(watcher, schema)
            sweeper.commit()
            decision.join(10)
        assert decided == [True]
        # what it read (the first charge: this sweep deleted a record still counting) and
        # its own; a write lost to the delete would leave no record at all
        assert per_user(lim) == 2
        assert lim.consume("space1", "ai.generate", user="ann").allowed
        assert per_user(lim) == 3


@pytest.mark.parametrize("driver", ["sync", "async"])
def test_two_spaces_settling_each_others_users_holds_do_not_deadlock(
    postgres_url: str, schema: str, driver: str
) -> None:
    """Space one decides for ann and settles bob's expired hold; space two decides for bob
    and settles ann's. Each locks its own user's record across spaces first, so taking the
    other's next would deadlock (both ran out of time before the fix). Both wait on a third
    transaction holding both records, so they are granted them at the same moment."""
    url = f"{postgres_url}{'&' if '?' in postgres_url else '?'}schema={schema}"
    clock = ManualClock("2026-11-23T15:10:00")
    asks = [("space1", "ann"), ("space2", "bob")]
    results: list[object] = []

    def decide() -> None:
        try:
            if driver == "sync":
                threads = [
                    threading.Thread(
                        target=lambda a=a: results.append(lim.consume(a[0], "export", user=a[1]))
                    )
                    for a in asks
                ]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join(15)
            else:

                async def both() -> None:
                    async with AsyncLimiter(SCOPED, store=url, clock=clock) as alim:
                        calls = (alim.consume(a, "export", user=u) for a, u in asks)
                        results.extend(await asyncio.gather(*calls))

                asyncio.run(both())
        except Exception as exc:  # the assertion below shows it
            results.append(exc)

    with Limiter(SCOPED, store=url, clock=clock) as lim:
        for space in ("space1", "space2"):
            lim.set_account(space, plan="pro")
        lim.reserve("space1", "export", 2, ttl=60, user="bob")  # expires, never committed
        lim.reserve("space2", "export", 2, ttl=60, user="ann")
        clock.advance(120)
        keys = [owners.record_key("space1", owners.GLOBAL + u) for u in ("ann", "bob")]
        with (
            psycopg.connect(postgres_url) as holder,
            psycopg.connect(postgres_url, autocommit=True) as watcher,
        ):
            locked = holder.execute(
                f'SELECT owner FROM "{schema}".owned WHERE owner = ANY(%s) FOR UPDATE', (keys,)
            ).fetchall()
            assert len(locked) == 2
            deciding = threading.Thread(target=decide)
            deciding.start()
            wait_for_lock_waiters(watcher, schema, 2)
            holder.commit()
            deciding.join(20)
        assert [getattr(r, "allowed", r) for r in results] == [True, True]
        # the expired holds went back: each user has only this export of today counted
        for space, user in asks:
            meters = lim.usage(space, user=user)
            assert next(m.used for m in meters if m.limit == "exports_everywhere") == 1
