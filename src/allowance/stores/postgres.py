"""``postgresql://user@host:port/db``: PostgreSQL through psycopg 3 and a ``psycopg_pool`` pool.

URL options, removed before the rest goes to libpq: ``schema`` (default ``allowance``; every
table lives in it), ``pool_min`` / ``pool_max`` (default 1 / 10), ``timeout`` (seconds, default
``stores.base.DEFAULT_TIMEOUT``; ``Limiter(timeout=)`` overrides it). The others are libpq's
(``connect_timeout`` defaults to 10 s here, not forever: it bounds the pool's own connecting).

Timeout: every call has one deadline, ``timeout`` from its start: the wait for a pool connection
and every wait on the server's socket (``TimedConnection``) end there, with a
``StoreUnavailable``; a connection that timed out mid-query is closed, never reused. While the
server refuses connections, a caller with nothing to wait for stops within 50 ms, and a server
back after an outage of any length is found within seconds (``postgres_conn``). A pooled
connection the server closed (a restart) is found by a zero-timeout poll of its socket before
anything is sent, and replaced: no decision fails for it (see ``postgres_common.stale``).

A plain ``consume`` or ``check`` (no idempotency key) is one statement, one round trip: the
schema's ``decide()`` function (``sql/decide.sql``, the twin of Redis's ``decide.lua``) locks the
row, applies the grant arithmetic, charges and returns the counters as they were. A grant comes
with its remaining and fair-use flag, so its decision is built at once (the engine writes its
sentence and quota only if they are read); for a denial Python replays the engine on the
counters (``ops.replay``), which must agree on the grant. The feature's limits are constants in
its statement (one prepared statement per feature and connection, sent through psycopg's libpq
layer: see ``postgres_fast.py``); a connection lost under it is a ``StoreError``, never a second
send (the first may have charged). It reads ``clock_timestamp()`` after the lock is held. It
hands over to the path below when the account has a reservation past its expiry.

Every other operation is one READ COMMITTED transaction, written once as a protocol free of
I/O (``postgres_transaction.py``) that this store and its async twin drive: the account's row
is locked with ``SELECT ... FOR UPDATE``, the shared operations of ``ops.py`` run on it, and
its counters (one ``jsonb`` value, as in SQLite) are written back by one ``UPDATE`` only if
they changed. Two decisions on one account queue on the row lock and the second reads what the
first committed: no lost update. Any error rolls the whole transaction back.

The view ``ops`` runs on (``postgres_common.PostgresView``) does no I/O, so this store and its
async twin (``postgres_async.py``, on psycopg's ``AsyncConnectionPool``) share it, and the SQL:
it is built from the locked row and the records the operation named up front (``Preload``: its
idempotency record, the reservation it commits or releases), and it collects its writes as
statements. The row's ``next_hold_expiry`` (the earliest expiry of a held reservation) is
recomputed by the row's ``UPDATE`` itself whenever a reservation changed, by a subquery that
sees the reservation upserts queued before it, so nothing is read back for it.

Round trips on that path: two per operation, granted or not, with or without an idempotency
key or a reservation; one more for an account with a reservation past its expiry, and for a
record read that was not preloaded (the flights: ``postgres_transaction.py``).

Time: with no clock given, it is the server's ``clock_timestamp()`` read after the row lock is
held, so decisions on one account are ordered in time as they commit. In the locking select
list itself it would be computed by the scan below ``LockRows``, before the wait (checked on
PostgreSQL 15: behind a holder that committed without changing the row, the waiter got the
time from before its 1 s wait; only an updated row made the READ COMMITTED re-check compute it
again). Selected from a ``MATERIALIZED`` CTE that takes the lock, it is read after the wait, in
the same statement. ``now()`` is the transaction's start, also before the wait.

Schema (``postgres_schema.py``): created by the first store to start, under an advisory lock,
versioned in ``schema_version``; a newer one is refused.
Cleanup, written once as a protocol free of I/O too (``postgres_upkeep.py``): every
``SWEEP_EVERY`` operations a process settles a bounded batch of expired reservations (each
account in a transaction of its own), then deletes a batch of expired idempotency records and
settled reservations and drops the spent counters of a batch of accounts (``SKIP LOCKED``:
sweepers never queue on each other); ``Limiter.sweep()`` does all of it.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from time import monotonic
from typing import Any, TypeVar

import psycopg
from psycopg.pq import ExecStatus
from psycopg_pool import ConnectionPool

from allowance import adjust
from allowance.errors import StoreError
from allowance.events import Event
from allowance.ledger import Row
from allowance.policy import Policy
from allowance.request import Request
from allowance.stores import postgres_upkeep as upkeep
from allowance.stores import sql_events, sql_ledger
from allowance.stores.base import DEFAULT_TIMEOUT, AsyncStore, Store, store_timeout
from allowance.stores.keyring import KeyRing, SQLKeyRing
from allowance.stores.postgres_common import (
    CONNECTION_KWARGS,
    NOW,
    SWEEP_BATCH,
    SWEEP_EVERY,
    PostgresView,
    Translate,
    account_params,
    queries,
    render,
)
from allowance.stores.postgres_conn import (
    POOL_OPTIONS,
    Reachability,
    TimedConnection,
    close_when_dropped,
    execute,
    getconn,
    stale,
)
from allowance.stores.postgres_drive import drive, drive_sweep, rollback
from allowance.stores.postgres_fast import (
    FastSpec,
    Params,
    Prepared,
    behind_bouncer,
    check_prepared,
    check_result,
    dropped,
    fast_decision,
    fast_params,
    fast_spec,
    libpq_row,
)
from allowance.stores.postgres_schema import migrate
from allowance.stores.postgres_sql import SCHEMA_VERSION
from allowance.stores.postgres_transaction import transaction
from allowance.stores.postgres_url import check_settings, parse_url, redact
from allowance.types import Account, Decision
from allowance.view import NO_PRELOAD, AccountView, Preload

__all__ = ["SCHEMA_VERSION", "SWEEP_BATCH", "SWEEP_EVERY", "PostgresStore", "PostgresView"]

T = TypeVar("T")
Conn = TimedConnection
log = logging.getLogger(__name__)


class PostgresStore(Store):
    scheme = "postgresql"
    blocking = True
    fast = True

    def __init__(
        self,
        conninfo: str,
        *,
        schema: str = "allowance",
        pool_min: int = 1,
        pool_max: int = 10,
        timeout: float = DEFAULT_TIMEOUT,
        prepare: bool = True,
    ) -> None:
        check_settings(schema, pool_min, pool_max)
        self.prepare = prepare
        self.conninfo = conninfo
        self.schema = schema
        self.timeout = store_timeout(None, timeout, redact(conninfo))
        self.pool_min, self.pool_max = pool_min, pool_max
        self.sql = queries(schema)
        self._scan_from = ""  # the account after which the next sweep looks at counters
        self._ops = itertools.count(1)
        self._prepared = Prepared()  # the fast path's, on each connection
        self._reach = Reachability()
        with Translate():
            # One direct connection first: an unreachable server fails here at once (a pool
            # would retry in the background until its timeout), and it creates the schema.
            with psycopg.connect(conninfo, autocommit=True) as conn:
                migrate(conn, schema, self.sql)
            self._pool: ConnectionPool[Conn] = ConnectionPool(
                conninfo,
                connection_class=TimedConnection,
                min_size=pool_min,
                max_size=pool_max,
                kwargs={**CONNECTION_KWARGS, "reachability": self._reach},
                open=False,
                **POOL_OPTIONS,
                name=f"allowance-{schema}",
            )
        # opened by the first call that needs it: an AsyncLimiter decides through its async
        # twin's pool, and must not hold this one's connections too (nor does a forked child
        # inherit a pool's threads)
        self._opened = False
        self._opening = threading.Lock()
        self._dropped = close_when_dropped(self, self._pool)

    @classmethod
    def from_url(cls, url: str, *, timeout: float | None = None) -> PostgresStore:
        found = parse_url(url)
        return cls(
            found.conninfo,
            schema=found.schema,
            pool_min=found.pool_min,
            pool_max=found.pool_max,
            timeout=store_timeout(found.timeout, timeout, url),
            prepare=found.prepare,
        )

    def async_store(self) -> AsyncStore | None:
        """The twin on psycopg's async pool; the schema is already there (created above)."""
        from allowance.stores.postgres_async import AsyncPostgresStore

        store = AsyncPostgresStore(
            self.conninfo,
            schema=self.schema,
            pool_min=self.pool_min,
            pool_max=self.pool_max,
            timeout=self.timeout,
            prepare=self.prepare,
        )
        store.policy = self.policy
        return store

    def _getconn(self) -> Conn:
        """A pool connection, its deadline set ``timeout`` from now; one the server closed
        is dropped and the next one taken (nothing was sent on it), until the deadline. While
        no connection is out, the wait is in slices, and ends as soon as the pool finds that the
        server refuses connections (``Reachability``)."""
        pool, reach = self._pool, self._reach
        if not self._opened:
            self._open_pool()
        deadline = monotonic() + self.timeout
        while True:
            conn = getconn(pool, max(reach.wait(deadline - monotonic()), 0.001))
            if conn is None:
                reach.waited(deadline, self.timeout)
                continue
            if not stale(conn):
                conn.deadline = deadline
                reach.lent.add(id(conn))
                return conn
            conn.close()
            pool.putconn(conn)  # closed: the pool drops it and connects a new one

    def _open_pool(self) -> None:
        """Start the pool connecting; the caller waits for a connection within its deadline."""
        with self._opening:
            if not self._opened:
                self._pool.open(wait=False)
                self._opened = True

    def _putconn(self, conn: Conn) -> None:
        conn.deadline = None  # the pool's own reset of it is not this call's
        self._reach.lent.discard(id(conn))
        self._pool.putconn(conn)

    @contextmanager
    def _connection(self) -> Iterator[Conn]:
        conn = self._getconn()
        try:
            yield conn
        finally:
            self._putconn(conn)

    def _one(self, query: str, params: tuple[Any, ...] | dict[str, Any] = ()) -> tuple[Any, ...]:
        """The first row of a single-statement transaction; () when there is none."""
        with Translate(), self._connection() as conn:
            return conn.execute(query, params).fetchone() or ()

    def now(self) -> float:
        return float(self._one(NOW)[0])

    def put_account(self, account_id: str, plan: str, seats: int, now: float | None = None) -> bool:
        params = account_params(self.policy, account_id, plan, seats, now)
        with Translate(), self._connection() as conn, conn.transaction():
            conn.execute(self.sql["lock_account"], params)
            row = conn.execute(self.sql["put_account"], params).fetchone()
        return bool(row and row[0])

    def get_account(self, account_id: str) -> Account | None:
        row = self._one(self.sql["get_account"], (account_id,))
        return adjust.account(account_id, row[0], row[1], row[2]) if row else None

    def fast_decide(
        self, policy: Policy, req: Request, now: float | None, charge: bool
    ) -> Decision | None:
        """One statement, one round trip: the schema's decide() function (sql/decide.sql),
        through libpq (see postgres_fast.py)."""
        spec = fast_spec(policy, req.feature, self.schema)
        params = fast_params(policy, spec, req, now, charge)
        with Translate():
            # getconn / putconn, not pool.connection(): its "with conn" only adds a commit
            # call, and an autocommit connection has nothing to commit
            conn = self._getconn()
            try:
                row = self._run_prepared(conn, spec, params)
            finally:
                self._putconn(conn)
        return fast_decision(policy, req, row)

    def _run_prepared(self, conn: Conn, spec: FastSpec, params: Params) -> Any:
        """decide()'s row, the statement prepared on this connection first if need be. Sent
        with libpq's async calls and waited for as psycopg's cursors wait (``conn.wait`` on
        ``generators.execute``), so the wait ends at the call's deadline: libpq's own
        blocking calls wait for ever. Unprepared (``prepare=false``, or found behind a
        bouncer) it is one unnamed statement: parse, bind and run in one flight."""
        pg = conn.pgconn
        if not self.prepare:
            pg.send_query_params(spec.libpq, params)
            result = conn.wait(execute(pg))[-1]
        else:
            if not self._prepared.has(pg, spec.name):
                pg.send_prepare(spec.name, spec.libpq)
                check_prepared(conn.wait(execute(pg))[-1], conn)
                self._prepared.add(pg, spec.name)
            pg.send_query_prepared(spec.name, params)
            result = conn.wait(execute(pg))[-1]
            if dropped(result):
                pg.send_prepare(spec.name, spec.libpq)
                check_prepared(conn.wait(execute(pg))[-1], conn)
                pg.send_query_prepared(spec.name, params)
                result = conn.wait(execute(pg))[-1]
                if dropped(result):  # nothing ran: see behind_bouncer
                    self.prepare = behind_bouncer()
                    pg.send_query_params(spec.libpq, params)
                    result = conn.wait(execute(pg))[-1]
        check_result(result, ExecStatus.TUPLES_OK, conn)
        return libpq_row(result)

    def transact(
        self,
        account_id: str,
        now: float | None,
        fn: Callable[[AccountView, float], T],
        preload: Preload = NO_PRELOAD,
    ) -> T:
        result, when = self._transact(account_id, now, fn, preload)
        if next(self._ops) % SWEEP_EVERY == 0:
            try:
                self._sweep(when, SWEEP_BATCH)
            except StoreError:  # the decision is committed; the next round will sweep again
                log.warning("allowance: background sweep failed", exc_info=True)
        return result

    def _transact(
        self,
        account_id: str,
        now: float | None,
        fn: Callable[[AccountView, float], T],
        preload: Preload,
    ) -> tuple[T, float]:
        with Translate(), self._connection() as conn:

            def fetch(query: str, params: tuple[Any, ...]) -> list[Any]:
                return [r[0] for r in conn.execute(query, params, prepare=False).fetchall()]

            protocol = transaction(self.sql, self.policy, account_id, now, fn, preload, fetch)
            try:
                with conn.pipeline():
                    return drive(conn, protocol)
            except BaseException:
                rollback(conn)  # only if the ROLLBACK above could not run
                raise

    def sweep(self, now: float | None = None) -> int:
        return self._sweep(self.now() if now is None else now, None)

    def _sweep(self, now: float, batch: int | None) -> int:
        """Settle expired reservations, then delete what has expired; ``batch`` None = all
        (the protocol: ``postgres_upkeep.sweep``)."""
        with Translate():
            return drive_sweep(
                self._transact, self._connection, upkeep.sweep(self, now, batch, SWEEP_BATCH)
            )

    def execute(self, sql: str, args: tuple[Any, ...] = ()) -> tuple[list[Any], int]:
        """One statement outside the decision path, in autocommit (the keyring's): its rows
        (none for a write) and rowcount."""
        with Translate(), self._connection() as conn:
            cursor = conn.execute(sql, args)
            return (cursor.fetchall() if cursor.description else []), cursor.rowcount

    def account_ids(self) -> list[str]:
        rows, _ = self.execute(self.sql["account_ids"])
        return [str(r[0]) for r in rows]

    def events(self, after: int, limit: int, account: str | None) -> list[Event]:
        q = sql_events.statements(render("{s}.", self.schema), "%s")
        rows, _ = self.execute(*sql_events.read_events(q, after, limit, account))
        return sql_events.events_of(rows)

    def newest_event_id(self) -> int:
        q = sql_events.statements(render("{s}.", self.schema), "%s")
        rows, _ = self.execute(q["newest"])
        return int(rows[0][0])

    def ledger(
        self,
        account: str,
        after: str | None,
        limit: int,
        since: float | None = None,
        until: float | None = None,
    ) -> list[Row]:
        q = sql_ledger.statements(render("{s}.", self.schema), "%s")
        rows, _ = self.execute(*sql_ledger.read_rows(q, account, after, limit, since, until))
        return sql_ledger.rows_of(account, rows)

    def account_page(self, prefix: str, after: str | None, limit: int) -> list[str]:
        rows, _ = self.execute(self.sql["account_page"], (after or "", prefix, prefix, limit))
        return [str(r[0]) for r in rows]

    def get_setting(self, name: str) -> str | None:
        rows, _ = self.execute(self.sql["get_setting"], (name,))
        return str(rows[0][0]) if rows else None

    def put_setting(self, name: str, value: str) -> None:
        self.execute(self.sql["put_setting"], (name, value))

    def swap_setting(self, name: str, old: str | None, new: str) -> bool:
        if old is None:
            return self.execute(self.sql["new_setting"], (name, new))[1] == 1
        return self.execute(self.sql["swap_setting"], (new, name, old))[1] == 1

    def delete_setting(self, name: str) -> None:
        self.execute(self.sql["delete_setting"], (name,))

    def _make_keyring(self) -> KeyRing:
        # quoted as the decision queries quote it (a schema may have capitals)
        return SQLKeyRing(self.execute, render("{s}.api_keys", self.schema), "%s")

    def close(self) -> None:
        with self._opening:
            self._opened = True  # closed for good: never opened again by a late call
            self._dropped.detach()
            self._pool.close()
