"""One account's read-modify-write at a time in this process, for the Redis stores' slow
path (threads: ``Serial``; an event loop's tasks: ``AsyncSerial``)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager

from allowance.errors import StoreUnavailable
from allowance.stores.redis_wire import Deadline

__all__ = ["AsyncSerial", "Serial"]


class Serial:
    """One account's read-modify-write at a time in this process (threads). Writers of one
    process then never make each other retry; only writers elsewhere (other processes) can,
    and one-step decisions (which bump the version too) that started before the slow path
    did: one that starts while the account has a slow path in flight waits its turn
    (``busy``). A wait counts against the deadline of the call."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[str, tuple[threading.Lock, list[int]]] = {}  # account -> (lock, users)

    def busy(self, account: str) -> bool:
        return account in self._locks

    @contextmanager
    def hold(self, account: str, deadline: Deadline) -> Iterator[None]:
        with self._guard:
            lock, users = self._locks.get(account) or self._locks.setdefault(
                account, (threading.Lock(), [0])
            )
            users[0] += 1
        try:
            if not lock.acquire(timeout=deadline.left()):
                raise StoreUnavailable(
                    f"redis: account {account!r} busy past the timeout", maybe_applied=False
                )
            try:
                yield
            finally:
                lock.release()
        finally:
            with self._guard:
                users[0] -= 1
                if not users[0]:
                    del self._locks[account]


class AsyncSerial:
    """``Serial`` for one event loop's tasks."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, list[int]]] = {}

    def busy(self, account: str) -> bool:
        return account in self._locks

    @asynccontextmanager
    async def hold(self, account: str, deadline: Deadline) -> AsyncIterator[None]:
        lock, users = self._locks.get(account) or self._locks.setdefault(
            account, (asyncio.Lock(), [0])
        )
        users[0] += 1
        try:
            try:
                async with asyncio.timeout(deadline.left()):
                    await lock.acquire()
            except TimeoutError:
                raise StoreUnavailable(
                    f"redis: account {account!r} busy past the timeout", maybe_applied=False
                ) from None
            try:
                yield
            finally:
                lock.release()
        finally:
            users[0] -= 1
            if not users[0]:
                del self._locks[account]
