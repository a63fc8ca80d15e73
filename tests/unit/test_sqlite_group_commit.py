"""Group commit: threads' operations share a transaction; one failing rolls back alone."""

from __future__ import annotations

import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from allowance.stores.sqlite_commit import GroupCommit


class Boom(Exception):
    pass


def test_batches_commit_together_and_failures_roll_back_alone(tmp_path: Path) -> None:
    path = tmp_path / "g.db"
    with sqlite3.connect(path) as setup:
        setup.execute("CREATE TABLE t (n INTEGER PRIMARY KEY)")
    local = threading.local()

    def conn() -> sqlite3.Connection:
        if not hasattr(local, "conn"):
            local.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        c: sqlite3.Connection = local.conn
        return c

    group = GroupCommit()
    ran_on: dict[int, int] = {}
    start = threading.Barrier(16)

    def one(n: int) -> int:
        def work(c: sqlite3.Connection) -> int:
            ran_on[n] = threading.get_ident()
            c.execute("INSERT INTO t VALUES (?)", (n,))
            time.sleep(0.002)  # so that others queue behind this batch
            if n % 5 == 0:
                raise Boom(n)  # after its insert: the savepoint must undo it
            return n * 10

        start.wait()
        try:
            return group.run(conn, work)
        except Boom:
            return -1
        finally:
            submitted[n] = threading.get_ident()

    submitted: dict[int, int] = {}
    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(one, range(16)))
    assert results == [-1 if n % 5 == 0 else n * 10 for n in range(16)]
    with sqlite3.connect(path) as check:
        rows = [r[0] for r in check.execute("SELECT n FROM t ORDER BY n")]
    assert rows == [n for n in range(16) if n % 5]
    # some operations ran on another thread's connection: they were batched
    assert any(ran_on[n] != submitted[n] for n in range(16))


def test_a_failed_commit_fails_the_whole_batch(tmp_path: Path) -> None:
    path = tmp_path / "g.db"
    with sqlite3.connect(path) as setup:
        setup.execute("CREATE TABLE t (n INTEGER PRIMARY KEY)")
    c = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    group = GroupCommit()

    def work(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO t VALUES (1)")
        conn.execute("INSERT INTO t VALUES (1)")  # fails: the transaction is rolled back

    with pytest.raises(sqlite3.IntegrityError):
        group.run(lambda: c, work)
    assert c.execute("SELECT count(*) FROM t").fetchone() == (0,)
    assert not c.in_transaction
    assert group.run(lambda: c, lambda conn: 7) == 7  # the group still works
