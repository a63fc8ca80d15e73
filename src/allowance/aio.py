"""``AsyncLimiter``: the async twin of ``Limiter``, for use inside event loops.

It validates and decides exactly like ``Limiter`` (it drives one). Stores that never block
(memory) are called directly on the loop; stores that do file I/O (SQLite, which has no async
driver) run in a worker thread so the loop is never blocked.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import TypeVar

from allowance.clock import Clock
from allowance.errors import ReservationNotFound
from allowance.limiter import DEFAULT_TTL, Limiter, Reservation
from allowance.policy import Policy
from allowance.stores import Store
from allowance.types import Account, Decision, Meter

T = TypeVar("T")


class AsyncReservation:
    """Units held by ``AsyncLimiter.reserve``; ``id`` is None when denied."""

    __slots__ = ("_limiter", "decision", "expires_at", "id")

    def __init__(self, limiter: AsyncLimiter, held: Reservation) -> None:
        self._limiter = limiter
        self.id = held.id
        self.decision = held.decision
        self.expires_at: datetime | None = held.expires_at

    async def commit(self) -> None:
        if self.id is None:
            raise ReservationNotFound("reservation: a denied reservation holds nothing")
        await self._limiter.commit(self.id)

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
    ) -> None:
        self.sync = Limiter(policy, store, clock)
        self.policy = self.sync.policy
        self._blocking = self.sync.store.blocking

    async def _run(self, fn: Callable[[], T]) -> T:
        if self._blocking:
            return await asyncio.to_thread(fn)
        return fn()

    async def put_account(self, account: str, plan: str, seats: int = 1) -> tuple[Account, bool]:
        return await self._run(lambda: self.sync.put_account(account, plan, seats))

    async def set_account(self, account: str, plan: str, seats: int = 1) -> Account:
        return await self._run(lambda: self.sync.set_account(account, plan, seats))

    async def get_account(self, account: str) -> Account:
        return await self._run(lambda: self.sync.get_account(account))

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
            lambda: self.sync.consume(
                account,
                feature,
                amount,
                partial=partial,
                idempotency_key=idempotency_key,
                user=user,
            )
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
        return await self._run(
            lambda: self.sync.check(account, feature, amount, partial=partial, user=user)
        )

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
            lambda: self.sync.reserve(
                account,
                feature,
                amount,
                ttl,
                partial=partial,
                idempotency_key=idempotency_key,
                user=user,
            )
        )
        return AsyncReservation(self, held)

    async def commit(self, reservation_id: str) -> None:
        await self._run(lambda: self.sync.commit(reservation_id))

    async def release(self, reservation_id: str) -> None:
        await self._run(lambda: self.sync.release(reservation_id))

    async def usage(self, account: str) -> list[Meter]:
        return await self._run(lambda: self.sync.usage(account))

    async def sweep(self) -> int:
        return await self._run(self.sync.sweep)

    async def close(self) -> None:
        await self._run(self.sync.close)

    async def __aenter__(self) -> AsyncLimiter:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
