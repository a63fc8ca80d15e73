"""The async twin of ``postgres.py`` on psycopg's ``AsyncConnectionPool``: the same SQL, the
same view and the same transaction in the same pipelined flights, and the same sweep
(``postgres_upkeep.sweep``), awaited. The records an operation reads are named up front
(``Preload``) and read in the locking flight, and expired reservations right after it, so
``ops`` runs between awaits without I/O of its own.

The pool is created and opened by the first operation, inside the running loop: psycopg_pool
deprecates opening an async pool in its constructor, and an open pool belongs to one loop. The
schema is the sync store's work (``AsyncLimiter`` builds that one first), so it is not checked
here.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from time import monotonic
from typing import Any, TypeVar

from psycopg.pq import ExecStatus, TransactionStatus
from psycopg_pool import AsyncConnectionPool

from allowance import adjust
from allowance.errors import StoreError
from allowance.policy import Policy
from allowance.request import Request
from allowance.stores import postgres_common as common
from allowance.stores import postgres_upkeep as upkeep
from allowance.stores.base import DEFAULT_TIMEOUT, AsyncStore, store_timeout
from allowance.stores.postgres_common import (
    CONNECTION_KWARGS,
    NOW,
    Translate,
    account_params,
    queries,
)
from allowance.stores.postgres_conn import (
    POOL_OPTIONS,
    AsyncTimedConnection,
    Reachability,
    agetconn,
    execute,
    stale,
)
from allowance.stores.postgres_drive import adrive, adrive_sweep, arollback
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
from allowance.stores.postgres_transaction import transaction
from allowance.stores.postgres_url import check_settings, parse_url, redact
from allowance.types import Account, Decision
from allowance.view import NO_PRELOAD, AccountView, Preload

T = TypeVar("T")
AsyncConn = AsyncTimedConnection
log = logging.getLogger(__name__)
OPEN_TIMEOUT = 30.0  # seconds the first operation waits for the pool's first connections


class AsyncPostgresStore(AsyncStore):
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
        self.timeout = store_timeout(None, timeout, redact(conninfo))
        self.schema = schema
        self.sql = queries(schema)
        self._scan_from = ""  # the account after which the next sweep looks at counters
        self._prepared = Prepared()  # the fast path's, on each connection
        self.policy: Policy | None = None
        self._sizes = (pool_min, pool_max)
        self._pool: AsyncConnectionPool[AsyncConn] | None = None
        self._idle: list[AsyncConn] = []  # connections kept between operations (_connection)
        self._waiting = 0  # callers waiting for the pool
        self._reach = Reachability()
        self._opening = asyncio.Lock()  # binds to a loop only when first contended
        self._closed = False
        self._ops = itertools.count(1)

    @classmethod
    def from_url(cls, url: str, *, timeout: float | None = None) -> AsyncPostgresStore:
        found = parse_url(url)
        return cls(
            found.conninfo,
            schema=found.schema,
            pool_min=found.pool_min,
            pool_max=found.pool_max,
            timeout=store_timeout(found.timeout, timeout, url),
            prepare=found.prepare,
        )

    async def _open(self) -> AsyncConnectionPool[AsyncConn]:
        # One opener: the coroutines that arrive meanwhile wait for its pool (two concurrent
        # pool.wait() calls would trip an assertion in psycopg_pool).
        async with self._opening:
            if self._closed:
                raise StoreError("postgresql: the store is closed")
            if self._pool is None:
                pool_min, pool_max = self._sizes
                pool: AsyncConnectionPool[AsyncConn] = AsyncConnectionPool(
                    self.conninfo,
                    connection_class=AsyncTimedConnection,
                    min_size=pool_min,
                    max_size=pool_max,
                    kwargs={**CONNECTION_KWARGS, "reachability": self._reach},
                    open=False,
                    **POOL_OPTIONS,
                    name=f"allowance-{self.schema}-async",
                )
                try:
                    await pool.open(wait=True, timeout=OPEN_TIMEOUT)
                except BaseException:
                    await pool.close()  # not kept: the next operation tries a new one
                    raise
                self._pool = pool
            return self._pool

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[AsyncConn]:
        """A connection this store kept idle, else the pool's. One that comes back clean and
        idle is kept (up to the pool's size) unless someone waits for the pool: the pool's
        checkout and return cost about 40 us of CPU, as much as a decision's own Python.
        Every caller comes through here, so an idle kept connection is always taken before
        anyone waits on the pool, and one coming back goes to the pool while anyone does.
        Anything but a clean idle connection goes back to the pool, which resets or drops it.
        The call's deadline (``timeout`` from now) bounds the wait for the pool and every wait
        on the server; a connection the server closed is dropped before anything is sent on
        it, and the next one taken."""
        deadline = monotonic() + self.timeout
        pool = self._pool if self._pool is not None else await self._open()
        reach = self._reach
        while True:
            if self._idle:
                conn = self._idle.pop()
            else:
                self._waiting += 1
                try:
                    wait = reach.wait(deadline - monotonic())
                    found = await agetconn(pool, max(wait, 0.001))
                finally:
                    self._waiting -= 1
                if found is None:
                    reach.waited(deadline, self.timeout)
                    continue
                conn = found
            if not stale(conn):
                break
            await conn.close()
            await pool.putconn(conn)  # closed: the pool drops it and connects a new one
        conn.deadline = deadline
        reach.lent.add(id(conn))
        try:
            yield conn
        except BaseException:
            conn.deadline = None
            reach.lent.discard(id(conn))
            await pool.putconn(conn)
            raise
        conn.deadline = None
        reach.lent.discard(id(conn))
        if (
            self._waiting == 0
            and len(self._idle) < self._sizes[1]
            and not self._closed
            and conn.pgconn.transaction_status == TransactionStatus.IDLE
        ):
            self._idle.append(conn)
        else:
            await pool.putconn(conn)

    async def _one(
        self, query: str, params: tuple[Any, ...] | dict[str, Any] = ()
    ) -> tuple[Any, ...]:
        """The first row of a single-statement transaction; () when there is none."""
        with Translate():
            async with self._connection() as conn:
                cur = await conn.execute(query, params)
                return await cur.fetchone() or ()

    async def put_account(
        self, account_id: str, plan: str, seats: int, now: float | None = None
    ) -> bool:
        params = account_params(self.policy, account_id, plan, seats, now)
        with Translate():
            async with self._connection() as conn, conn.transaction():
                await conn.execute(self.sql["lock_account"], params)
                cur = await conn.execute(self.sql["put_account"], params)
                row = await cur.fetchone()
        return bool(row and row[0])

    async def get_setting(self, name: str) -> str | None:
        row = await self._one(self.sql["get_setting"], (name,))
        return str(row[0]) if row else None

    async def get_account(self, account_id: str) -> Account | None:
        row = await self._one(self.sql["get_account"], (account_id,))
        return adjust.account(account_id, row[0], row[1], row[2]) if row else None

    async def fast_decide(
        self, policy: Policy, req: Request, now: float | None, charge: bool
    ) -> Decision | None:
        """One statement, one round trip: the schema's decide() function (sql/decide.sql),
        through libpq (see postgres_fast.py)."""
        spec = fast_spec(policy, req.feature, self.schema)
        params = fast_params(policy, spec, req, now, charge)
        with Translate():
            async with self._connection() as conn:
                row = await self._run_prepared(conn, spec, params)
        return fast_decision(policy, req, row)

    async def _run_prepared(self, conn: AsyncConn, spec: FastSpec, params: Params) -> Any:
        """decide()'s row, the statement prepared on this connection first if need be. Sent
        with libpq's async calls and awaited the way psycopg's own cursor awaits its results
        (``AsyncConnection.wait`` on ``generators.execute``). Unprepared, as the sync store's."""
        pg = conn.pgconn
        if not self.prepare:
            pg.send_query_params(spec.libpq, params)
            result = (await conn.wait(execute(pg)))[-1]
        else:
            if not self._prepared.has(pg, spec.name):
                pg.send_prepare(spec.name, spec.libpq)
                check_prepared((await conn.wait(execute(pg)))[-1], conn)
                self._prepared.add(pg, spec.name)
            pg.send_query_prepared(spec.name, params)
            result = (await conn.wait(execute(pg)))[-1]
            if dropped(result):
                pg.send_prepare(spec.name, spec.libpq)
                check_prepared((await conn.wait(execute(pg)))[-1], conn)
                pg.send_query_prepared(spec.name, params)
                result = (await conn.wait(execute(pg)))[-1]
                if dropped(result):  # nothing ran: see behind_bouncer
                    self.prepare = behind_bouncer()
                    pg.send_query_params(spec.libpq, params)
                    result = (await conn.wait(execute(pg)))[-1]
        check_result(result, ExecStatus.TUPLES_OK, conn)
        return libpq_row(result)

    async def transact(
        self,
        account_id: str,
        now: float | None,
        fn: Callable[[AccountView, float], T],
        preload: Preload = NO_PRELOAD,
    ) -> T:
        result, when = await self._transact(account_id, now, fn, preload)
        if next(self._ops) % common.SWEEP_EVERY == 0:
            try:
                await self._sweep(when, common.SWEEP_BATCH)
            except StoreError:  # the decision is committed; the next round will sweep again
                log.warning("allowance: background sweep failed", exc_info=True)
        return result

    async def _transact(
        self,
        account_id: str,
        now: float | None,
        fn: Callable[[AccountView, float], T],
        preload: Preload,
    ) -> tuple[T, float]:
        """The transaction protocol (postgres_transaction.py), awaited."""
        protocol = transaction(self.sql, self.policy, account_id, now, fn, preload)
        with Translate():
            async with self._connection() as conn:
                try:
                    async with conn.pipeline():
                        return await adrive(conn, protocol)
                except BaseException:
                    await arollback(conn)  # only if the ROLLBACK above could not run
                    raise

    async def sweep(self, now: float | None = None) -> int:
        if now is None:
            now = float((await self._one(NOW))[0])
        return await self._sweep(now, None)

    async def _sweep(self, now: float, batch: int | None) -> int:
        """Settle expired reservations, then delete what has expired; ``batch`` None = all
        (the protocol: ``postgres_upkeep.sweep``)."""
        with Translate():
            sweep = upkeep.sweep(self, now, batch, common.SWEEP_BATCH)
            return await adrive_sweep(self._transact, self._connection, sweep)

    async def close(self) -> None:
        async with self._opening:  # after an opening in progress, so its pool is closed too
            self._closed = True
            pool, self._pool = self._pool, None
            idle, self._idle = self._idle, []
        if pool is not None:
            for conn in idle:
                await pool.putconn(conn)
            await pool.close()
