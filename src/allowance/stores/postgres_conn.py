"""The connections of the PostgreSQL stores and what the stores know about reaching the server:
a per-call deadline on every wait (``TimedConnection``), the check for one the server closed
(``stale``), and whether the pool can connect at all (``Reachability``).

It is also the one module that takes from psycopg more than its public API (the rest import
these names from here; ``tests/unit/test_driver_adapters.py`` fails when a psycopg version
changes them): ``execute`` (the generator psycopg's cursors wait on, which the fast path drives
through ``Connection.wait`` under its deadline), ``WaitTimeout`` (what ``wait`` raises at its
timeout) and ``error_from_result`` (psycopg's exception for a failed libpq result). A pool's
connection is taken through ``getconn``/``agetconn``, which break a reference cycle of
psycopg_pool's timeout (see ``getconn``).

psycopg_pool, left to itself, makes an outage last longer than the server's: a failed
connection attempt is retried with a doubling delay (1, 2, 4 ... s) for five minutes, so a
server back after 40 s is found some 28 s later, and meanwhile every caller that finds no
idle connection waits its whole timeout for one that is not coming. ``POOL_OPTIONS`` makes the
pool give an attempt up after ``RECONNECT_FOR`` (the next caller who needs a connection starts
a fresh one at once: a server that is back is found within that, or the breaker's next probe);
``Reachability`` lets a caller stop waiting within ``REFUSED_WAIT`` when the pool's last attempt
failed and no connection is out that could come back.
"""

from __future__ import annotations

import select
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from time import monotonic
from typing import Any, Self, TypeVar

import psycopg
from psycopg.errors import _WaitTimeout as WaitTimeout
from psycopg.errors import error_from_result
from psycopg.generators import execute
from psycopg.pq import ConnStatus
from psycopg.rows import TupleRow
from psycopg_pool import AsyncConnectionPool, ConnectionPool, PoolTimeout

from allowance.errors import StoreUnavailable

__all__ = [
    "POOL_OPTIONS",
    "AsyncTimedConnection",
    "Reachability",
    "TimedConnection",
    "WaitTimeout",
    "agetconn",
    "close_when_dropped",
    "error_from_result",
    "execute",
    "getconn",
    "stale",
]

C = TypeVar("C", bound=psycopg.Connection[Any])
AC = TypeVar("AC", bound=psycopg.AsyncConnection[Any])

RECONNECT_FOR = 2.0  # seconds a pool keeps retrying one failed connection attempt
REFUSED_WAIT = 0.05  # a caller's wait for a new connection, between checks of Reachability
POOL_OPTIONS: dict[str, Any] = {"reconnect_timeout": RECONNECT_FOR}


class Reachability:
    """What one store's pool learnt from its last attempt to connect, and which of its
    connections are out (handed to a caller). Shared by the pool's workers and the callers;
    every update is a single attribute store or set operation, atomic under the GIL."""

    def __init__(self) -> None:
        self.refused: str | None = None  # the last attempt's error; None once one succeeds
        self.lent: set[int] = set()  # id() of the connections callers hold

    def wait(self, left: float) -> float:
        """How long a caller waits for a pool connection this time, ``left`` seconds before
        its deadline: all of it while a connection is out (one will come back), else short
        slices: only a new connection can come, and the pool's attempt to make one may fail
        meanwhile (``waited`` is then asked after each slice)."""
        return left if self.lent else min(left, REFUSED_WAIT)

    def waited(self, deadline: float, timeout: float) -> None:
        """A wait of ``wait`` ended with no connection: return to wait again, or raise what
        the caller is told. Nothing was sent either way."""
        if self.refused is not None and not self.lent:
            raise StoreUnavailable(
                f"postgresql: cannot connect ({self.refused})", maybe_applied=False
            )
        if monotonic() >= deadline:
            raise PoolTimeout(f"none free after {timeout:g} s")

    def connected(self, failed: BaseException | None) -> None:
        if failed is None:
            self.refused = None
        else:
            self.refused = str(failed).strip().splitlines()[0]


def getconn(pool: ConnectionPool[C], timeout: float) -> C | None:
    """A connection from ``pool`` within ``timeout`` seconds, or None.

    psycopg_pool's ``PoolTimeout`` is raised from the waiting client that holds it (and again,
    as a new one whose ``__context__`` is the first), so its traceback keeps that frame, the
    client and the pool in a reference cycle. A store dropped without ``close()`` was then freed
    by the cyclic collector in whatever thread it ran, one of the pool's own workers among them,
    whose ``ConnectionPool.__del__`` fails trying to join itself. ``_untraced`` breaks it."""
    try:
        return pool.getconn(timeout=timeout)
    except PoolTimeout as exc:
        _untraced(exc)
        return None


def close_when_dropped(owner: object, pool: ConnectionPool[Any]) -> weakref.finalize[Any, Any]:
    """Close ``pool`` when ``owner`` is freed unclosed, from a thread of its own.

    An owner in a reference cycle (any exception re-raised from a frame that holds it makes
    one) is freed by the cyclic collector in whatever thread it runs, one of the pool's own
    workers among them; there psycopg_pool's ``__del__`` fails trying to join that thread and
    leaves the pool's threads and connections behind. The owner's ``close()`` detaches this."""
    finalizer = weakref.finalize(owner, _close_in_a_thread, pool)
    finalizer.atexit = False  # an exiting process takes its connections with it
    return finalizer


def _close_in_a_thread(pool: ConnectionPool[Any]) -> None:
    threading.Thread(target=pool.close, name=f"{pool.name}-close", daemon=True).start()


def _untraced(exc: BaseException) -> None:
    """Drop the tracebacks of ``exc`` and of the exceptions it was raised while handling."""
    seen: BaseException | None = exc
    while seen is not None:
        seen.__traceback__ = None
        seen = seen.__context__


async def agetconn(pool: AsyncConnectionPool[AC], timeout: float) -> AC | None:
    """``getconn`` for the async pool (the same cycle)."""
    try:
        return await pool.getconn(timeout=timeout)
    except PoolTimeout as exc:
        _untraced(exc)
        return None


@contextmanager
def _noted(reachability: Reachability | None) -> Iterator[None]:
    """Tell ``reachability`` how the attempt to connect inside ended."""
    try:
        yield
    except psycopg.OperationalError as exc:
        if reachability is not None:
            reachability.connected(exc)
        raise
    if reachability is not None:
        reachability.connected(None)


def stale(conn: psycopg.BaseConnection[Any]) -> bool:
    """An idle connection the server closed (restart, idle timeout, pg_terminate_backend):
    closed, broken, or readable while nothing was asked (its EOF, or the FATAL the server
    sent before closing). A zero-timeout poll costs about a microsecond, where psycopg_pool's
    ``check_connection`` costs a round trip."""
    if conn.closed or conn.pgconn.status != ConnStatus.OK:
        return True
    readable, _, _ = select.select([conn.pgconn.socket], (), (), 0)
    return bool(readable)


class TimedConnection(psycopg.Connection[TupleRow]):
    """A connection whose every wait on the server ends at ``deadline`` (monotonic seconds,
    None: unbounded), set by the store per call. psycopg has no per-call bound of its own, and
    ``statement_timeout`` is the server's: useless when the server is frozen. A connection
    that timed out is closed at once (it is mid-protocol: never to be reused). The pool passes
    its store's ``Reachability`` as the ``reachability`` keyword of ``connect``."""

    deadline: float | None = None

    @classmethod
    def connect(cls, conninfo: str = "", **kwargs: Any) -> Self:
        with _noted(kwargs.pop("reachability", None)):
            return super().connect(conninfo, **kwargs)

    def wait(self, gen: Any, interval: float = 0.1, timeout: float | None = None) -> Any:
        if self.deadline is not None:
            left = max(self.deadline - monotonic(), 0.0)
            timeout = left if timeout is None else min(timeout, left)
        try:
            return super().wait(gen, interval, timeout)
        except WaitTimeout:
            self.close()
            raise


class AsyncTimedConnection(psycopg.AsyncConnection[TupleRow]):
    """``TimedConnection``'s async twin."""

    deadline: float | None = None

    @classmethod
    async def connect(cls, conninfo: str = "", **kwargs: Any) -> Self:
        with _noted(kwargs.pop("reachability", None)):
            return await super().connect(conninfo, **kwargs)

    async def wait(self, gen: Any, interval: float = 0.1, timeout: float | None = None) -> Any:
        if self.deadline is not None:
            left = max(self.deadline - monotonic(), 0.0)
            timeout = left if timeout is None else min(timeout, left)
        try:
            return await super().wait(gen, interval, timeout)
        except WaitTimeout:
            await self.close()
            raise
