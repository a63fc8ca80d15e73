"""``AsyncLimiter``: the async twin of ``Limiter``, for use inside event loops.

It builds the same calls as ``Limiter`` (``calls.py``) and awaits them on the store's async
twin when the store has one (Redis and Redis Cluster through ``redis.asyncio``, PostgreSQL
through psycopg's ``AsyncConnectionPool``). Otherwise a store that never blocks (memory) is
called directly on the loop, and one that does file I/O without an async driver here (SQLite)
runs in a worker thread, so the loop is never blocked.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, TypeVar

from allowance import calls, ids, listing, load, validation
from allowance.clock import Clock
from allowance.errors import (
    AllowanceError,
    ReservationNotFound,
    StoreError,
    StoreUnavailable,
    UnknownFeature,
    UnknownPlan,
)
from allowance.events import Event
from allowance.ledger import LedgerPage
from allowance.limiter import DEFAULT_TTL, Limiter, log, without_store
from allowance.listing import AccountPage
from allowance.live import POLICY
from allowance.policy import Policy
from allowance.resilience import JOURNAL_SIZE, Mode
from allowance.stores import Store
from allowance.stores.base import Outcome
from allowance.types import UNCHANGED, Account, Anchor, Decision, Meter, to_datetime

T = TypeVar("T")


class AsyncSettles(Protocol):
    """What an async reservation settles through: ``AsyncLimiter`` or ``AsyncClient``."""

    async def commit(self, reservation_id: str, amount: int | None = None) -> None: ...

    async def release(self, reservation_id: str) -> None: ...


class AsyncReservation:
    """Units held by ``AsyncLimiter.reserve``; ``id`` is None when denied."""

    __slots__ = ("_limiter", "decision", "expires_at", "id")

    def __init__(
        self,
        limiter: AsyncSettles,
        id: str | None,
        decision: Decision,
        expires_at: datetime | None,
    ) -> None:
        self._limiter = limiter
        self.id = id
        self.decision = decision
        self.expires_at = expires_at

    async def commit(self, amount: int | None = None) -> None:
        """As ``Reservation.commit``."""
        if self.id is None:
            raise ReservationNotFound("reservation: a denied reservation holds nothing")
        await self._limiter.commit(self.id, amount)

    async def release(self) -> None:
        if self.id is not None:
            await self._limiter.release(self.id)


class AsyncLimiter:
    """Same arguments and methods as ``Limiter``, as coroutines."""

    def __init__(
        self,
        policy: Policy | str | Path | None = None,
        store: str | Store = "memory://",
        clock: Clock | None = None,
        *,
        timeout: float | None = None,
        on_store_error: Mode | None = None,
        journal_size: int = JOURNAL_SIZE,
    ) -> None:
        self.sync = Limiter(
            policy,
            store,
            clock,
            timeout=timeout,
            on_store_error=on_store_error,
            journal_size=journal_size,
        )
        self.guard = self.sync.guard
        self.store = self.sync.store
        self.async_store = self.store.async_store()
        self._batcher = Batcher(self.store) if self.store.batches else None
        self._reading: asyncio.Future[None] | None = None  # the settings' read under way

    @property
    def policy(self) -> Policy:
        """As ``Limiter.policy``."""
        return self.sync.policy

    async def _run(self, make: Callable[[Policy], calls.Call[T]]) -> T:
        """As ``Limiter._run``: through the breaker, by the failure mode without the store."""
        try:
            call = make(self.sync.live.policy)
        except (UnknownFeature, UnknownPlan):  # see Limiter._build
            with contextlib.suppress(StoreUnavailable):
                await self.policy_now()
            call = make(self.sync.live.policy)
        now = self.sync._now()
        guard = self.guard
        breaker = guard.breaker
        try:
            if breaker.open_until is not None:
                breaker.before()
            try:
                policy = await self.policy_now()
                if policy is not call.policy:
                    call = make(policy)
                result = await self._run_on_store(call, now)
            except StoreUnavailable as exc:
                exc.retry_after = breaker.failed()
                raise
        except StoreUnavailable as exc:
            return without_store(guard, call, exc, now)
        if breaker.failures:
            breaker.succeeded()
        if guard.journal.entries:
            self.sync._start_flush()  # in a thread, on the sync store
        return result

    async def flush_journal(self) -> int:
        """As ``Limiter.flush_journal``."""
        return await asyncio.to_thread(self.sync.flush_journal)

    async def _run_on_store(self, call: calls.Call[T], now: float | None) -> T:
        if self.async_store is not None:
            return await calls.run_async(self.async_store, call, now)
        if self._batcher is not None:
            return await self._batcher.run(call, now)
        if self.store.blocking:
            return await asyncio.to_thread(calls.run, self.store, call, now)
        return calls.run(self.store, call, now)

    async def put_account(
        self, account: str, plan: str, seats: int = 1, *, billing_anchor: Anchor = UNCHANGED
    ) -> tuple[Account, bool]:
        """As ``Limiter.put_account``."""
        if self.async_store is None:
            return await asyncio.to_thread(
                lambda: self.sync.put_account(account, plan, seats, billing_anchor=billing_anchor)
            )
        found = self.sync.account_settings(account, plan, seats)
        if billing_anchor is not UNCHANGED and billing_anchor is not None:
            validation.billing_anchor(billing_anchor)  # checked before anything is written
        created = await self.async_store.put_account(
            found.id, found.plan, found.seats, self.sync._now()
        )
        if billing_anchor is UNCHANGED:
            return (found if created else await self.get_account(found.id)), created
        anchor = billing_anchor
        return await self._run(lambda p: calls.set_billing_anchor(p, found.id, anchor)), created

    async def set_account(
        self, account: str, plan: str, seats: int = 1, *, billing_anchor: Anchor = UNCHANGED
    ) -> Account:
        """As ``Limiter.set_account``."""
        return (await self.put_account(account, plan, seats, billing_anchor=billing_anchor))[0]

    async def get_account(self, account: str) -> Account:
        """As ``Limiter.get_account``."""
        return await self._run(lambda p: calls.account(p, account))

    async def accounts(
        self, prefix: str = "", cursor: str | None = None, limit: int = listing.DEFAULT_PAGE
    ) -> AccountPage:
        """As ``Limiter.accounts``."""
        return await asyncio.to_thread(self.sync.accounts, prefix, cursor, limit)

    async def events(
        self, after: int | None = None, limit: int = 100, account: str | None = None
    ) -> list[Event]:
        """As ``Limiter.events``."""
        return await asyncio.to_thread(self.sync.events, after, limit, account)

    async def ledger(
        self,
        account: str,
        cursor: str | None = None,
        limit: int = 100,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> LedgerPage:
        """As ``Limiter.ledger``."""
        return await asyncio.to_thread(
            self.sync.ledger, account, cursor, limit, since=since, until=until
        )

    async def set_override(self, account: str, limit: str, max: int | None) -> Account:
        """As ``Limiter.set_override``."""
        return await self._run(lambda p: calls.set_override(p, account, limit, max))

    async def grant(
        self, account: str, limit: str, amount: int, expires_at: datetime | None = None
    ) -> Account:
        """As ``Limiter.grant``."""
        return await self._run(lambda p: calls.grant(p, account, limit, amount, expires_at))

    async def consume(
        self,
        account: str,
        feature: str,
        amount: int = 1,
        *,
        partial: bool = False,
        idempotency_key: str | None = None,
        user: str | None = None,
    ) -> Decision:
        return await self._run(
            lambda p: calls.consume(p, account, feature, amount, partial, idempotency_key, user)
        )

    async def check(
        self,
        account: str,
        feature: str,
        amount: int = 1,
        *,
        partial: bool = False,
        idempotency_key: str | None = None,
        user: str | None = None,
    ) -> Decision:
        return await self._run(lambda p: calls.check(p, account, feature, amount, partial, user))

    async def reserve(
        self,
        account: str,
        feature: str,
        amount: int = 1,
        ttl: float = DEFAULT_TTL,
        *,
        partial: bool = False,
        idempotency_key: str | None = None,
        user: str | None = None,
    ) -> AsyncReservation:
        held = await self._run(
            lambda p: calls.reserve(
                p, account, feature, amount, ttl, partial, idempotency_key, user
            )
        )
        return AsyncReservation(self, held.hold_id, held.decision, to_datetime(held.expires_at))

    async def commit(self, reservation_id: str, amount: int | None = None) -> None:
        if ids.is_degraded(reservation_id):  # see Limiter.commit
            self.guard.settle(reservation_id, validation.settled_amount(amount))
            return
        await self._run(lambda p: calls.commit(p, reservation_id, amount))

    async def release(self, reservation_id: str) -> None:
        if ids.is_degraded(reservation_id):
            self.guard.settle(reservation_id, 0)
            return
        await self._run(lambda p: calls.release(p, reservation_id))

    async def usage(self, account: str, user: str | None = None) -> list[Meter]:
        return await self._run(lambda p: calls.usage(p, account, user))

    async def policy_now(self) -> Policy:
        """As ``Limiter.policy_now``, reading through the async store where there is one.
        While a read is under way every call waits for it, so calls still reach the store
        in the order they were made."""
        sync, live = self.sync, self.sync.live
        reading = self._reading
        if reading is None:
            if not self.store.blocking and self.async_store is None:
                return sync.policy_now()  # the memory store: no I/O
            if not live.due():
                return live.policy
            reading = self._reading = asyncio.ensure_future(self._read_settings())
        await asyncio.shield(reading)
        return live.policy

    async def _read_settings(self) -> None:
        try:
            if self.async_store is not None:
                texts = (
                    await self.async_store.get_setting(POLICY),
                    await self.async_store.get_setting(load.SETTING),
                )
            else:
                texts = await asyncio.to_thread(
                    lambda: (self.store.get_setting(POLICY), self.store.get_setting(load.SETTING))
                )
            if self.sync.live.apply(*texts):
                self.sync._switched()
        except StoreUnavailable:
            raise
        except AllowanceError as exc:  # a setting it cannot read: decide as before
            log.warning("settings: kept the ones read last: %s", exc)
        finally:
            self._reading = None

    async def put_policy(self, policy: Policy | str) -> Policy:
        """As ``Limiter.put_policy``."""
        return await asyncio.to_thread(self.sync.put_policy, policy)

    async def set_load_factor(
        self, factor: float, limits: list[str] | tuple[str, ...] | None = None
    ) -> dict[str, float]:
        """As ``Limiter.set_load_factor``."""
        return await asyncio.to_thread(self.sync.set_load_factor, factor, limits)

    async def load_factors(self) -> dict[str, float]:
        """As ``Limiter.load_factors``."""
        return await asyncio.to_thread(self.sync.load_factors)

    async def sweep(self) -> int:
        if self.async_store is not None:
            return await self.async_store.sweep(self.sync._now())
        return await asyncio.to_thread(self.sync.sweep)

    async def close(self) -> None:
        if self.async_store is not None:
            await self.async_store.close()
        await asyncio.to_thread(self.sync.close)

    async def __aenter__(self) -> AsyncLimiter:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


class Batcher:
    """For a store that commits batches (SQLite): the calls awaited while a batch is in the
    worker thread form the next batch, one thread hop and one commit for all of them."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._waiting: list[tuple[calls.Call[Any], float | None, asyncio.Future[Any]]] = []
        self._draining: asyncio.Task[None] | None = None

    async def run(self, call: calls.Call[T], now: float | None) -> T:
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._waiting.append((call, now, future))
        if self._draining is None:
            self._draining = asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        try:
            while self._waiting:
                # a caller that went away before its call was sent is not charged
                batch = [item for item in self._waiting if not item[2].done()]
                self._waiting = []
                items = [(call, now) for call, now, _ in batch]
                try:
                    outcomes = await asyncio.to_thread(calls.run_many, self.store, items)
                except Exception as exc:  # the batch as a whole failed: each its own error
                    outcomes = [Outcome(None, _batch_error(exc)) for _ in batch]
                for (_, _, future), outcome in zip(batch, outcomes, strict=True):
                    if future.done():  # its caller went away; the work is done regardless
                        continue
                    if outcome.error is not None:
                        future.set_exception(outcome.error)
                    else:
                        future.set_result(outcome.value)
        finally:
            self._draining = None


def _batch_error(exc: Exception) -> Exception:
    error = StoreError(f"the batch failed: {exc}")
    error.__cause__ = exc
    return error
