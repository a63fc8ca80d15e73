"""``sqlite:///path.db``: one file, safe for many threads and processes.

Each operation runs in a ``BEGIN IMMEDIATE`` transaction (the write lock is taken before
anything is read, so two processes never decide on the same stale counters) and time is read
after the lock is held, so decisions are ordered as they commit. WAL journal. Operations that
threads of one process bring at once share one transaction and one commit, each in its own
savepoint (``sqlite_commit.py``).

Durability: ``synchronous=FULL`` by default: a granted decision is on disk (the WAL fsynced)
before it is returned, so a power cut loses no recorded usage. ``?synchronous=normal`` skips
that fsync: several times faster, and still safe against a crash of the application, but a
power cut or OS crash may lose the last transactions (usage that was granted but not
recorded, i.e. an over-grant). ``?busy_timeout=MS`` (default 30000) is how long a writer waits
for the lock.

Layout: an account's counters live in its own row (a JSON object by limit name), so a decision
reads one row and writes one row: the same page work as a bare single-row upsert. Counters
whose windows have closed are dropped whenever the row is written, so a row holds at most one
counter per limit. (Counter rows of their own, with an index on their expiry for cleanup,
wrote three pages per commit and cost three times as much.)

Cleanup (``upkeep.py``): every few hundred operations a process settles expired reservations
and deletes a batch of expired idempotency records and settled reservations larger than those
operations can add, and drops the spent counters of a batch of accounts; ``Limiter.sweep()``
repeats batches until nothing is left.
"""

from __future__ import annotations

import contextlib
import json
import json.scanner
import os
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

from allowance import adjust, events, ledger, ops
from allowance.clock import system_clock
from allowance.errors import ConfigurationError, StoreError, UnknownAccount
from allowance.events import Event
from allowance.ledger import Row
from allowance.ops import HOLD_KEEP
from allowance.state import HELD
from allowance.stores import sql_events, sql_ledger, sqlite_schema
from allowance.stores.base import Outcome, Store, Transaction
from allowance.stores.keyring import KeyRing, SQLKeyRing
from allowance.stores.sqlite_commit import GroupCommit
from allowance.stores.sqlite_view import SQLiteView, _encode
from allowance.stores.upkeep import SWEEP_BATCH, SWEEP_EVERY, live_stored
from allowance.types import Account
from allowance.view import NO_PRELOAD, AccountView, Preload

T = TypeVar("T")
EVENTS = sql_events.statements("", "?")
LEDGER = sql_ledger.statements("", "?")


# Store.swap_setting: a new setting only if none is there; a change only from what was read
SETTING_NEW = "INSERT INTO settings (name, value) VALUES (?, ?) ON CONFLICT (name) DO NOTHING"
SETTING_SWAP = "UPDATE settings SET value = ? WHERE name = ? AND value = ?"


class SQLiteStore(Store):
    scheme = "sqlite"

    def __init__(self, path: str, *, synchronous: str = "FULL", busy_timeout_ms: int = 30000):
        if synchronous.upper() not in ("FULL", "NORMAL", "EXTRA"):
            raise ConfigurationError(
                f"store: synchronous must be full, normal or extra (got {synchronous!r})"
            )
        self.path = path
        self.synchronous = synchronous.upper()
        self.busy_timeout_ms = busy_timeout_ms
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._all_lock = threading.Lock()
        self._ops = 0
        self._scan_from = ""  # the account after which the next sweep looks at counters
        self._group = GroupCommit()
        conn = self._conn()
        with _Translate():
            if sqlite_schema.written_by_newer(conn):
                raise ConfigurationError(f"store: {path} was written by a newer allowance")
            with _Transaction(conn):
                sqlite_schema.create(conn)

    @classmethod
    def from_url(cls, url: str) -> SQLiteStore:
        parts = urlsplit(url)
        raw = url.split("://", 1)[1].split("?", 1)[0]
        # sqlite:///rel.db -> "rel.db"; sqlite:////abs/x.db -> "/abs/x.db"
        path = raw[1:] if raw.startswith("/") else raw
        if not path or path == ":memory:":
            raise ConfigurationError(
                f"store: {url!r} names no file; use sqlite:///path.db (or memory://)"
            )
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        unknown = set(query) - {"synchronous", "busy_timeout"}
        if unknown:
            raise ConfigurationError(f"store: unknown option(s) {sorted(unknown)} in {url!r}")
        try:
            timeout = int(query.get("busy_timeout", "30000"))
        except ValueError:
            raise ConfigurationError(
                f"store: busy_timeout must be milliseconds in {url!r}"
            ) from None
        parent = Path(path).parent
        if not parent.exists():
            raise ConfigurationError(f"store: directory {parent} does not exist")
        return cls(path, synchronous=query.get("synchronous", "FULL"), busy_timeout_ms=timeout)

    def _conn(self) -> sqlite3.Connection:
        local = self._local
        conn: sqlite3.Connection | None = getattr(local, "conn", None)
        if conn is not None and local.pid == os.getpid():
            return conn
        with _Translate():
            conn = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=0
            )
            conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute(f"PRAGMA synchronous = {self.synchronous}")
        local.conn, local.pid = conn, os.getpid()
        with self._all_lock:
            self._all.append(conn)
        return conn

    def now(self) -> float:
        return system_clock()

    def put_account(self, account_id: str, plan: str, seats: int, now: float | None = None) -> bool:
        conn = self._conn()
        with _Translate(), _Transaction(conn):
            found = conn.execute(
                "SELECT plan, seats FROM accounts WHERE id = ?", (account_id,)
            ).fetchone()
            policy = self.policy
            at = system_clock() if now is None else now
            if found is not None and found[0] != plan and (policy is None or policy.events):
                _, put = sql_events.event_writes(
                    EVENTS, events.plan_changed(account_id, found[0], plan, seats, at)
                )
                conn.execute(*put)
            keeps = policy is None or policy.ledger_keep is not None
            if found is not None and tuple(found) != (plan, seats) and keeps:
                row = ledger.plan_change(account_id, found[0], plan, seats, at)
                conn.executemany(LEDGER["put_row"], sql_ledger.row_writes([row]))
            conn.execute(
                "INSERT INTO accounts (id, plan, seats) VALUES (?, ?, ?)"
                " ON CONFLICT (id) DO UPDATE SET plan = excluded.plan, seats = excluded.seats",
                (account_id, plan, seats),
            )
            return found is None

    def get_account(self, account_id: str) -> Account | None:
        with _Translate():
            row = (
                self._conn()
                .execute(
                    "SELECT plan, seats, adjustments FROM accounts WHERE id = ?", (account_id,)
                )
                .fetchone()
            )
        return None if row is None else adjust.account(account_id, row[0], row[1], row[2])

    def transact(
        self,
        account_id: str,
        now: float | None,
        fn: Callable[[AccountView, float], T],
        preload: Preload = NO_PRELOAD,
    ) -> T:
        (outcome,) = self.transact_many([(account_id, now, fn, preload)])
        if outcome.error is not None:
            raise outcome.error
        return outcome.value  # type: ignore[return-value]

    batches = True

    def transact_many(self, items: list[Transaction[Any]]) -> list[Outcome[Any]]:
        works = [self._work(account_id, now, fn) for account_id, now, fn, _ in items]
        out = []
        with _Translate():
            for done in self._group.run_many(self._conn, works):
                error = done.error
                if isinstance(error, sqlite3.Error):
                    error = StoreError(f"sqlite: {error}")
                    error.__cause__ = done.error
                if error is not None and not isinstance(error, Exception):
                    raise error  # KeyboardInterrupt and the like
                out.append(Outcome(None if error else done.value[0], error))
                if error is None:
                    self._ops += 1
                    if self._ops % SWEEP_EVERY == 0:
                        self._sweep(done.value[1], SWEEP_BATCH)
        return out

    def _work(
        self, account_id: str, now: float | None, fn: Callable[[AccountView, float], T]
    ) -> Callable[[sqlite3.Connection], tuple[T, float]]:
        def work(conn: sqlite3.Connection) -> tuple[T, float]:
            row = conn.execute(
                "SELECT plan, seats, next_hold_expiry, counters, adjustments FROM accounts"
                " WHERE id = ?",
                (account_id,),
            ).fetchone()
            if row is None:
                raise UnknownAccount(account_id)
            # read under the write lock: commit order = time order
            at = system_clock() if now is None else now
            view = SQLiteView(self, conn, account_id, row, EVENTS, LEDGER)
            result = fn(view, at)
            view.flush(at)
            return result, at

        return work

    def sweep(self, now: float | None = None) -> int:
        with _Translate():
            return self._sweep(system_clock() if now is None else now, None)

    def _sweep(self, now: float, batch: int | None) -> int:
        """Settle expired reservations, then delete what has expired: one batch, or (``batch``
        None) batches until nothing is left, each its own short transaction."""
        conn = self._conn()
        limit = -1 if batch is None else batch
        due = conn.execute(
            "SELECT DISTINCT account FROM holds WHERE state = ? AND expires_at <= ? LIMIT ?",
            (HELD, now, limit),
        ).fetchall()
        policy = self.policy
        if policy is not None:
            for (account,) in due:
                with contextlib.suppress(UnknownAccount):
                    self.transact(
                        account, now, lambda view, t: ops.settle_due_holds(policy, view, t)
                    )
        removed = 0
        if batch is None:
            self._scan_from = ""  # every account, from the first
        while True:
            deleted = self._delete_batch(conn, now, batch or SWEEP_BATCH)
            counters, wrapped = self._reclaim_batch(conn, now, batch or SWEEP_BATCH)
            removed += deleted + counters
            if batch is not None or (deleted == 0 and wrapped):
                return removed

    def _delete_batch(self, conn: sqlite3.Connection, now: float, batch: int) -> int:
        removed = 0
        with _Transaction(conn):
            for sql, args in (
                (
                    "DELETE FROM idempotency WHERE (account, key) IN (SELECT account, key"
                    " FROM idempotency WHERE expires_at <= ? LIMIT ?)",
                    (now, batch),
                ),
                (
                    "DELETE FROM holds WHERE id IN (SELECT id FROM holds WHERE state != ?"
                    " AND expires_at <= ? LIMIT ?)",
                    (HELD, now - HOLD_KEEP, batch),
                ),
                (
                    "DELETE FROM owned WHERE owner IN (SELECT owner FROM owned"
                    " WHERE drop_after <= ? LIMIT ?)",
                    (now, batch),
                ),
                (
                    "DELETE FROM events WHERE id IN (SELECT id FROM events WHERE at < ? LIMIT ?)",
                    (now - events.KEEP, batch),
                ),
                (
                    LEDGER["drop_rows"],
                    (batch, now - ledger.retention(self.policy)),
                ),
                (
                    "DELETE FROM event_marks WHERE (account, mark) IN (SELECT account, mark"
                    " FROM event_marks WHERE until < ? LIMIT ?)",
                    (now, batch),
                ),
            ):
                removed += conn.execute(sql, args).rowcount
        return removed

    def _reclaim_batch(self, conn: sqlite3.Connection, now: float, batch: int) -> tuple[int, bool]:
        """Drop the spent counters of the next ``batch`` accounts after the last one looked
        at; also say whether the walk went past the last account (and starts over)."""
        policy = self.policy
        if policy is None:
            return 0, True
        removed = 0
        with _Transaction(conn):
            rows = conn.execute(
                "SELECT id, counters FROM accounts WHERE id > ? AND counters != '{}'"
                " ORDER BY id LIMIT ?",
                (self._scan_from, batch),
            ).fetchall()
            for account_id, stored in rows:
                counters = json.loads(stored)
                keep = live_stored(policy, counters, now)
                if keep is not None:
                    conn.execute(
                        "UPDATE accounts SET counters = ? WHERE id = ?",
                        (_encode(keep), account_id),
                    )
                    removed += len(counters) - len(keep)
        wrapped = len(rows) < batch
        self._scan_from = "" if wrapped else rows[-1][0]
        return removed, wrapped

    def execute(self, sql: str, args: tuple[Any, ...] = ()) -> tuple[list[Any], int]:
        """One statement outside the decision path, in autocommit (the keyring's): its rows
        and rowcount."""
        with _Translate():
            cursor = self._conn().execute(sql, args)
            return cursor.fetchall(), cursor.rowcount

    def account_ids(self) -> list[str]:
        rows, _ = self.execute("SELECT id FROM accounts ORDER BY id")
        return [str(r[0]) for r in rows]

    def events(self, after: int, limit: int, account: str | None) -> list[Event]:
        rows, _ = self.execute(*sql_events.read_events(EVENTS, after, limit, account))
        return sql_events.events_of(rows)

    def newest_event_id(self) -> int:
        rows, _ = self.execute(EVENTS["newest"])
        return int(rows[0][0])

    def ledger(
        self,
        account: str,
        after: str | None,
        limit: int,
        since: float | None = None,
        until: float | None = None,
    ) -> list[Row]:
        query = sql_ledger.read_rows(LEDGER, account, after, limit, since, until)
        rows, _ = self.execute(*query)
        return sql_ledger.rows_of(account, rows)

    def account_page(self, prefix: str, after: str | None, limit: int) -> list[str]:
        rows, _ = self.execute(  # BINARY order: UTF-8 bytes, the code points' order
            "SELECT id FROM accounts WHERE id > ? AND substr(id, 1, ?) = ? ORDER BY id LIMIT ?",
            (after or "", len(prefix), prefix, limit),
        )
        return [str(r[0]) for r in rows]

    def get_setting(self, name: str) -> str | None:
        rows, _ = self.execute("SELECT value FROM settings WHERE name = ?", (name,))
        return str(rows[0][0]) if rows else None

    def put_setting(self, name: str, value: str) -> None:
        self.execute(
            "INSERT INTO settings (name, value) VALUES (?, ?)"
            " ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            (name, value),
        )

    def swap_setting(self, name: str, old: str | None, new: str) -> bool:
        if old is None:
            return self.execute(SETTING_NEW, (name, new))[1] == 1
        return self.execute(SETTING_SWAP, (new, name, old))[1] == 1

    def delete_setting(self, name: str) -> None:
        self.execute("DELETE FROM settings WHERE name = ?", (name,))

    def _make_keyring(self) -> KeyRing:
        return SQLKeyRing(self.execute, "api_keys", "?")

    def close(self) -> None:
        with self._all_lock:
            conns, self._all = self._all, []
        for conn in conns:
            conn.close()
        self._local = threading.local()


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on any error (nothing half-charged)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> None:
        self.conn.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.conn.execute("COMMIT")
        elif self.conn.in_transaction:
            self.conn.execute("ROLLBACK")


class _Translate:
    """sqlite3 errors become ``StoreError`` (chained), at this one point."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is not None and issubclass(exc_type, sqlite3.Error):
            raise StoreError(f"sqlite: {exc}") from exc
