"""How the PostgreSQL stores run a protocol free of I/O (``postgres_transaction.py``, the
sweep's ``postgres_upkeep.py``) on a connection: each step's statement sent, its rows read, a
failed step thrown back into the protocol so it can end the transaction. The sync store's
drivers, then the async store's, the same steps awaited."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import (
    AbstractAsyncContextManager,
    AbstractContextManager,
    AsyncExitStack,
    ExitStack,
    suppress,
)
from typing import Any, TypeVar

import psycopg
from psycopg.pq import TransactionStatus

from allowance.stores.postgres_conn import AsyncTimedConnection, TimedConnection
from allowance.stores.postgres_transaction import Done, Protocol, Send, Step, advance
from allowance.stores.postgres_upkeep import Settle, Sweep
from allowance.view import NO_PRELOAD, AccountView, Preload

__all__ = ["adrive", "adrive_sweep", "arollback", "drive", "drive_sweep", "rollback"]

T = TypeVar("T")
Conn = TimedConnection
AsyncConn = AsyncTimedConnection
Fn = Callable[[AccountView, float], Any]
# a store's own transaction: (account, now, fn, preload) -> (fn's result, the time)
Transact = Callable[[str, "float | None", Fn, Preload], tuple[Any, float]]
AsyncTransact = Callable[[str, "float | None", Fn, Preload], Awaitable[tuple[Any, float]]]


def drive(conn: Conn, protocol: Protocol[T]) -> tuple[T, float]:
    """Run the transaction protocol (postgres_transaction.py) on a connection in pipeline
    mode; a failed step is thrown into it, so it can end the transaction."""
    reply: Any = None
    error: BaseException | None = None
    while not isinstance(step := advance(protocol, reply, error), Done):
        reply, error = None, None
        try:
            reply = run_step(conn, step)
        except BaseException as exc:
            error = exc
    return step.value


def drive_sweep(
    transact: Transact, connection: Callable[[], AbstractContextManager[Conn]], protocol: Sweep
) -> int:
    """Run the sweep protocol (postgres_upkeep.py) as ``drive`` runs a transaction: its
    statements from one ``Settle`` to the next on one connection, put back before the
    ``Settle``, whose transaction (``transact``: the store's own) takes a connection of its
    own."""
    reply: Any = None
    error: BaseException | None = None
    with ExitStack() as held:
        conn: Conn | None = None
        while not isinstance(step := advance(protocol, reply, error), Done):
            reply, error = None, None
            try:
                if isinstance(step, Settle):
                    held.close()
                    conn = None
                    reply = transact(step.account, step.now, step.fn, NO_PRELOAD)
                else:
                    if conn is None:
                        conn = held.enter_context(connection())
                    reply = run_step(conn, step)
            except BaseException as exc:
                error = exc
        return step.value


def run_step(conn: Conn, step: Step) -> Any:
    """A protocol's statement sent (answered with its cursor), or the rows of one sent."""
    if isinstance(step, Send):
        return conn.execute(step.query, step.params, prepare=False)
    return step.handle.fetchone() if step.one else step.handle.fetchall()


def rollback(conn: Conn) -> None:
    """End a failed transaction so the connection goes back to the pool clean. A connection
    that is broken or mid-query is left to the pool, which discards it."""
    if conn.pgconn.transaction_status in (TransactionStatus.INTRANS, TransactionStatus.INERROR):
        with suppress(psycopg.Error):
            conn.rollback()


async def adrive(conn: AsyncConn, protocol: Protocol[T]) -> tuple[T, float]:
    """``drive``, awaited."""
    reply: Any = None
    error: BaseException | None = None
    while not isinstance(step := advance(protocol, reply, error), Done):
        reply, error = None, None
        try:
            reply = await arun_step(conn, step)
        except BaseException as exc:
            error = exc
    return step.value


async def adrive_sweep(
    transact: AsyncTransact,
    connection: Callable[[], AbstractAsyncContextManager[AsyncConn]],
    protocol: Sweep,
) -> int:
    """``drive_sweep``, awaited."""
    reply: Any = None
    error: BaseException | None = None
    async with AsyncExitStack() as held:
        conn: AsyncConn | None = None
        while not isinstance(step := advance(protocol, reply, error), Done):
            reply, error = None, None
            try:
                if isinstance(step, Settle):
                    await held.aclose()
                    conn = None
                    reply = await transact(step.account, step.now, step.fn, NO_PRELOAD)
                else:
                    if conn is None:
                        conn = await held.enter_async_context(connection())
                    reply = await arun_step(conn, step)
            except BaseException as exc:
                error = exc
        return step.value


async def arun_step(conn: AsyncConn, step: Step) -> Any:
    """``run_step``, awaited."""
    if isinstance(step, Send):
        return await conn.execute(step.query, step.params, prepare=False)
    return await (step.handle.fetchone() if step.one else step.handle.fetchall())


async def arollback(conn: AsyncConn) -> None:
    """End a failed transaction so the connection goes back to the pool clean. A connection
    that is broken or mid-query is left to the pool, which discards it."""
    if conn.pgconn.transaction_status in (TransactionStatus.INTRANS, TransactionStatus.INERROR):
        with suppress(psycopg.Error):
            await conn.rollback()
