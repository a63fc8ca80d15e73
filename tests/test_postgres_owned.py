"""A member's record on PostgreSQL's one-statement path (sql/decide.sql): read without its
row lock, since only its account's decisions write it and they hold the account's row; a
sweep that deletes it in between must not cost a charge its count."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

from allowance import Limiter, ManualClock, load_policy, owners
from conftest import _postgres_schema

SCOPED = load_policy(Path(__file__).parent / "scoped.yaml")


@pytest.fixture
def schema(request: pytest.FixtureRequest, postgres_url: str) -> str:
    return _postgres_schema(request, postgres_url, url=False)


def per_user(lim: Limiter) -> int:
    meters = lim.usage("space1", user="ann")
    return next(m.used for m in meters if m.limit == "generations_per_user")


def wait_for_lock_waiter(conn: psycopg.Connection[Any], schema: str) -> None:
    deadline = time.monotonic() + 10
    while not conn.execute(
        "SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE %s",
        (f"%{schema}%",),
    ).fetchone():
        assert time.monotonic() < deadline, "the decision never waited for the row"
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
            wait_for_lock_waiter(watcher, schema)
            sweeper.commit()
            decision.join(10)
        assert decided == [True]
        # what it read (the first charge: this sweep deleted a record still counting) and
        # its own; a write lost to the delete would leave no record at all
        assert per_user(lim) == 2
        assert lim.consume("space1", "ai.generate", user="ann").allowed
        assert per_user(lim) == 3
