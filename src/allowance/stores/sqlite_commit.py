"""Group commit for ``SQLiteStore``: the operations that threads of one process bring at the
same moment run in one write transaction, each inside its own savepoint, and share one
commit (one WAL fsync at ``synchronous=FULL``).

Why: a commit at FULL costs an fsync, and SQLite makes a writer that finds the lock taken
sleep in steps of milliseconds. Threads of one process queue here instead; the first becomes
the leader, runs everything queued so far, commits, wakes the others with their results and
hands the lead to the next waiting thread (so no thread serves others for long). Nothing is
answered before the commit that holds it is durable, and an operation that fails rolls back
to its savepoint only: the others in the batch commit as if it had run alone.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

T = TypeVar("T")
MAX_BATCH = 64  # bounds how long the last of a batch waits for the first


class _Pending(Generic[T]):
    __slots__ = ("done", "error", "lead", "value", "work")

    def __init__(self, work: Callable[[sqlite3.Connection], T]) -> None:
        self.work = work
        self.done = threading.Event()
        self.lead = False  # set with ``done`` unset: this thread leads the next batch
        self.value: Any = None
        self.error: BaseException | None = None


class GroupCommit:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queue: list[_Pending[Any]] = []
        self._leading = False

    def run(
        self, conn: Callable[[], sqlite3.Connection], work: Callable[[sqlite3.Connection], T]
    ) -> T:
        """``work(conn)`` inside a write transaction, committed before this returns."""
        (done,) = self.run_many(conn, [work])
        if done.error is not None:
            raise done.error
        return done.value  # type: ignore[no-any-return]

    def run_many(
        self,
        conn: Callable[[], sqlite3.Connection],
        works: list[Callable[[sqlite3.Connection], Any]],
    ) -> list[_Pending[Any]]:
        """Each of ``works`` as ``run`` would, all queued at once; each result holds its
        ``value`` or its ``error``."""
        mine: list[_Pending[Any]] = [_Pending(work) for work in works]
        with self._lock:
            self._queue.extend(mine)
            lead = not self._leading
            self._leading = True
        if lead:
            self._lead(conn)
        for pending in mine:
            # FIFO: when the lead is handed to this thread it is for the pending it waits on
            while True:
                pending.done.wait()
                if not pending.lead:
                    break
                pending.lead = False
                pending.done.clear()
                self._lead(conn)
        return mine

    def _lead(self, conn: Callable[[], sqlite3.Connection]) -> None:
        with self._lock:
            batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
        try:
            _commit(conn(), batch)
        except BaseException as exc:  # no connection: the batch fails, the lead moves on
            for pending in batch:
                pending.error = pending.error or exc
        with self._lock:
            if self._queue:  # the next waiting thread leads; this one goes back to its caller
                nxt = self._queue[0]
                nxt.lead = True
                nxt.done.set()
            else:
                self._leading = False
        for pending in batch:
            pending.done.set()


def _commit(conn: sqlite3.Connection, batch: list[_Pending[Any]]) -> None:
    alone = len(batch) == 1  # no savepoint needed: a failure rolls the whole thing back
    try:
        conn.execute("BEGIN IMMEDIATE")
    except BaseException as exc:
        for pending in batch:
            pending.error = exc
        return
    try:
        for pending in batch:
            if not alone:
                conn.execute("SAVEPOINT op")
            try:
                pending.value = pending.work(conn)
            except BaseException as exc:
                pending.error = exc
                if alone:
                    raise
                conn.execute("ROLLBACK TO op")
            if not alone:
                conn.execute("RELEASE op")
        conn.execute("COMMIT")
    except BaseException as exc:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        for pending in batch:
            if pending.error is None:
                pending.error = exc  # nothing of this batch was committed
