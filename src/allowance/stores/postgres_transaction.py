"""The PostgreSQL stores' transaction protocol, written once and free of I/O: a generator that
yields what to send and receives what came back, run by a thin driver in each store
(``postgres.py`` with a connection, ``postgres_async.py`` awaiting one).

One operation on one account is one READ COMMITTED transaction in psycopg's pipeline mode, in
two flights: ``BEGIN``, the locking ``SELECT ... FOR UPDATE`` and the reads of the records the
operation named up front (``Preload``) go together (the reads queued behind the lock run with
the row locked); the operation (``fn``, the shared code of ``ops.py``) runs on a
``PostgresView`` of them, without I/O; its writes (the idempotency record, reservations, then
the row) and ``COMMIT`` go in the last flight, which waits for the WAL flush. A reservation
past its expiry costs a flight more, only when one is due (the row says so), and so does a
read of a record nobody preloaded (``fetch``: a bare ``transact``; the async store refuses
those).

The steps: ``Send(query, params)`` queues a statement and is answered with a handle;
``Rows(handle, one)`` is answered with its first row (None if none) or all of its rows. A
driver that fails a step throws the error into the generator, which then sends what ends the
transaction cleanly and re-raises.

A failure before any write (an unknown account, a reused idempotency key) ends in COMMIT, not
ROLLBACK: nothing changed, and on a ROLLBACK psycopg drops the connection's prepared statements
so late that it also drops the next one it prepares ("prepared statement _pg3_N does not
exist"). Nothing is prepared inside the pipeline for the same reason. A transaction that wrote
nothing but the row lock commits without waiting for the WAL flush: a crash could lose nothing.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass, replace
from typing import Any, Generic, TypeVar

import psycopg

from allowance.errors import UnknownAccount
from allowance.owners import GLOBAL
from allowance.policy import Policy
from allowance.stores.postgres_common import (
    BEGIN,
    COMMIT,
    NO_WAIT,
    ROLLBACK,
    Fetch,
    PostgresView,
    due_read,
    owner_reads,
    record_reads,
)
from allowance.view import AccountView, NotLoaded, Preload

T = TypeVar("T")
S = TypeVar("S")
R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class Send:
    """Queue a statement in the pipeline; answered with a handle for ``Rows``."""

    query: str
    params: tuple[Any, ...] = ()


@dataclass(frozen=True, slots=True)
class Rows:
    """The rows of a statement sent: the first (None if none) when ``one``, else all."""

    handle: Any
    one: bool = True


Step = Send | Rows
Protocol = Generator[Step, Any, tuple[T, float]]


def transaction(
    q: dict[str, str],
    policy: Policy | None,
    account_id: str,
    now: float | None,
    fn: Callable[[AccountView, float], T],
    preload: Preload,
    fetch: Fetch | None = None,
) -> Protocol[T]:
    """One operation's transaction; returns its result and the time it ran at (the server's
    clock read after the row lock was granted, unless ``now`` was given). ``fetch``: how the
    view reads a record nobody preloaded (a blocking read: the sync driver's; without it
    such a read is a ``StoreError``)."""
    while True:
        outcome = yield from _attempt(q, policy, account_id, now, fn, preload, fetch)
        if not isinstance(outcome, Relock):
            return outcome
        preload = replace(preload, owners=outcome.owners)


@dataclass(frozen=True, slots=True)
class Relock:
    """An attempt ended before writing anything: it needed a user's record across accounts
    that sorts before one it holds. Every transaction takes those locks in sorted order
    (behind its own account's row, which no other one holds), so none waits for another in
    a cycle: two spaces settling each other's users' expired holds would deadlock otherwise.
    The next attempt locks all of ``owners`` up front."""

    owners: tuple[str, ...]


def _out_of_order(held: Iterable[str], wanted: Iterable[str]) -> bool:
    """Whether locking the records across accounts of ``wanted`` after those of ``held``
    would break the sorted order (a member's record is guarded by its account's row)."""
    last = max((o for o in held if o.startswith(GLOBAL)), default=None)
    first = min((o for o in wanted if o.startswith(GLOBAL)), default=None)
    return last is not None and first is not None and first < last


def _attempt(
    q: dict[str, str],
    policy: Policy | None,
    account_id: str,
    now: float | None,
    fn: Callable[[AccountView, float], T],
    preload: Preload,
    fetch: Fetch | None,
) -> Generator[Step, Any, tuple[T, float] | Relock]:
    wrote = False
    yield Send(BEGIN)
    try:
        lock = yield Send(q["lock"], (account_id,))
        reads = []
        for query, params in record_reads(q, account_id, preload):
            reads.append((yield Send(query, params)))
        locks = []  # the per-user records named up front, locked behind the row
        for query, params in owner_reads(q, account_id, preload.owners):
            locks.append((yield Send(query, params)))
        row = yield Rows(lock)
        if row is None:
            raise UnknownAccount(account_id)
        if now is None:
            now = float(row[4])  # read after the lock was granted
        found = []
        for handle in reads:
            found.append(((yield Rows(handle)) or (None,))[0])
        owned = {}
        for owner, handle in zip(preload.owners, locks, strict=True):
            owned[owner] = ((yield Rows(handle)) or (None,))[0]
        due: list[Any] = []
        read = due_read(q, account_id, row, math.inf if preload.held else now)
        if read is not None:  # a flight only when a reservation is due
            due = [r[0] for r in (yield Rows((yield Send(*read)), one=False))]
        while True:
            view = PostgresView(q, policy, account_id, row, now, preload, found, due, fetch, owned)
            try:
                result = fn(view, now)
                break
            except NotLoaded as missing:  # a reservation's user: one flight more, then again
                wanted = sorted(missing.owners)
                if _out_of_order(owned, wanted):
                    yield Send(NO_WAIT)  # nothing written: see the module's docstring
                    yield Send(COMMIT)
                    return Relock(tuple(sorted({*owned, *wanted})))
                locks = []
                for query, params in owner_reads(q, account_id, wanted):
                    locks.append((yield Send(query, params)))
                for owner, handle in zip(wanted, locks, strict=True):
                    owned[owner] = ((yield Rows(handle)) or (None,))[0]
        wrote = True  # the last flight: the writes and COMMIT
        for query, params in view.finish():
            yield Send(query, params)
    except BaseException:
        try:  # rides with the pipeline's last flight
            if wrote:
                yield Send(ROLLBACK)
            else:  # the row lock alone: no fsync needed either
                yield Send(NO_WAIT)
                yield Send(COMMIT)
        except psycopg.Error:
            pass  # the driver's own cleanup ends it (the connection may be gone)
        raise
    if not view.writes:  # only the row lock: a crash could lose nothing
        yield Send(NO_WAIT)
    yield Send(COMMIT)
    return result, now


def advance(protocol: Generator[S, Any, R], reply: Any, error: BaseException | None) -> S | Done[R]:
    """A protocol's next step after ``reply`` (or after ``error``, thrown into it), or
    ``Done`` with its result: the part of a driver's loop that does no I/O (this one's and
    the sweep's, ``postgres_upkeep.sweep``)."""
    try:
        return protocol.send(reply) if error is None else protocol.throw(error)
    except StopIteration as done:
        return Done(done.value)


@dataclass(frozen=True, slots=True)
class Done(Generic[R]):
    """The protocol has finished: its result (a transaction's: its own and the time it ran
    at)."""

    value: R
