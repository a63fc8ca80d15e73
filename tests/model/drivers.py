"""How the model comparison drives a limiter: ``Limiter`` as it is, ``AsyncLimiter`` on an event
loop of its own (each call run to completion, so the timeline stays sequential), behind the one
synchronous face the state machine calls; and how answers are compared with the model's."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Coroutine
from datetime import datetime, timedelta
from typing import Any, Protocol, TypeVar

from allowance import AsyncLimiter, Decision, Limiter, ManualClock, Meter, Policy
from allowance.aio import AsyncReservation
from allowance.types import UNCHANGED, Anchor

from . import reference

T = TypeVar("T")
# seconds a store call may take: the comparison checks answers, not latency, on a busy machine
TIMEOUT = 10.0


class Held(Protocol):
    """A reservation as the machine uses it (``Reservation`` or an async one, synced)."""

    @property
    def id(self) -> str | None: ...

    @property
    def decision(self) -> Decision: ...

    @property
    def expires_at(self) -> datetime | None: ...

    def commit(self, amount: int | None = None) -> None: ...

    def release(self) -> None: ...


class Driver(Protocol):
    def set_account(
        self, account: str, plan: str, seats: int, anchor: Anchor = UNCHANGED
    ) -> None: ...

    def set_load_factor(self, factor: float, limit: str | None) -> None: ...

    def set_override(self, account: str, limit: str, most: int | None) -> None: ...

    def grant(self, account: str, limit: str, units: int, until: datetime | None) -> None: ...

    def consume(
        self,
        account: str,
        feature: str,
        amount: int,
        partial: bool,
        key: str | None = None,
        user: str | None = None,
    ) -> Decision: ...

    def check(
        self,
        account: str,
        feature: str,
        amount: int,
        partial: bool,
        key: str | None = None,
        user: str | None = None,
    ) -> Decision: ...

    def reserve(
        self,
        account: str,
        feature: str,
        amount: int,
        ttl: float,
        partial: bool,
        user: str | None = None,
    ) -> Held: ...

    def usage(self, account: str, user: str | None = None) -> list[Meter]: ...

    def close(self) -> None: ...


class SyncDriver:
    def __init__(self, policy: Policy, url: str, clock: ManualClock) -> None:
        self.lim = Limiter(policy, store=url, clock=clock, timeout=TIMEOUT)

    def set_account(self, account: str, plan: str, seats: int, anchor: Anchor = UNCHANGED) -> None:
        self.lim.set_account(account, plan, seats, billing_anchor=anchor)

    def set_load_factor(self, factor: float, limit: str | None) -> None:
        self.lim.set_load_factor(factor, None if limit is None else [limit])

    def set_override(self, account: str, limit: str, most: int | None) -> None:
        self.lim.set_override(account, limit, max=most)

    def grant(self, account: str, limit: str, units: int, until: datetime | None) -> None:
        self.lim.grant(account, limit, units, until)

    def consume(
        self,
        account: str,
        feature: str,
        amount: int,
        partial: bool,
        key: str | None = None,
        user: str | None = None,
    ) -> Decision:
        return self.lim.consume(
            account, feature, amount, partial=partial, idempotency_key=key, user=user
        )

    def check(
        self,
        account: str,
        feature: str,
        amount: int,
        partial: bool,
        key: str | None = None,
        user: str | None = None,
    ) -> Decision:
        return self.lim.check(
            account, feature, amount, partial=partial, idempotency_key=key, user=user
        )

    def reserve(
        self,
        account: str,
        feature: str,
        amount: int,
        ttl: float,
        partial: bool,
        user: str | None = None,
    ) -> Held:
        return self.lim.reserve(account, feature, amount, ttl, partial=partial, user=user)

    def usage(self, account: str, user: str | None = None) -> list[Meter]:
        return self.lim.usage(account, user)

    def close(self) -> None:
        self.lim.close()


class SyncedReservation:
    def __init__(self, driver: AsyncDriver, r: AsyncReservation) -> None:
        self._driver, self._r = driver, r
        self.id, self.decision, self.expires_at = r.id, r.decision, r.expires_at

    def commit(self, amount: int | None = None) -> None:
        self._driver.run(self._r.commit(amount))

    def release(self) -> None:
        self._driver.run(self._r.release())


class AsyncDriver:
    """``AsyncLimiter`` through the store's async twin (Redis, Redis Cluster, PostgreSQL), the
    SQLite batcher, or memory called on the loop."""

    def __init__(self, policy: Policy, url: str, clock: ManualClock) -> None:
        self.loop = asyncio.new_event_loop()

        async def make() -> AsyncLimiter:  # inside the loop: pools bind to it
            return AsyncLimiter(policy, store=url, clock=clock, timeout=TIMEOUT)

        self.lim = self.run(make())

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coro)

    def set_account(self, account: str, plan: str, seats: int, anchor: Anchor = UNCHANGED) -> None:
        self.run(self.lim.set_account(account, plan, seats, billing_anchor=anchor))

    def set_load_factor(self, factor: float, limit: str | None) -> None:
        self.run(self.lim.set_load_factor(factor, None if limit is None else [limit]))

    def set_override(self, account: str, limit: str, most: int | None) -> None:
        self.run(self.lim.set_override(account, limit, max=most))

    def grant(self, account: str, limit: str, units: int, until: datetime | None) -> None:
        self.run(self.lim.grant(account, limit, units, until))

    def consume(
        self,
        account: str,
        feature: str,
        amount: int,
        partial: bool,
        key: str | None = None,
        user: str | None = None,
    ) -> Decision:
        return self.run(
            self.lim.consume(
                account, feature, amount, partial=partial, idempotency_key=key, user=user
            )
        )

    def check(
        self,
        account: str,
        feature: str,
        amount: int,
        partial: bool,
        key: str | None = None,
        user: str | None = None,
    ) -> Decision:
        return self.run(
            self.lim.check(
                account, feature, amount, partial=partial, idempotency_key=key, user=user
            )
        )

    def reserve(
        self,
        account: str,
        feature: str,
        amount: int,
        ttl: float,
        partial: bool,
        user: str | None = None,
    ) -> Held:
        r = self.run(self.lim.reserve(account, feature, amount, ttl, partial=partial, user=user))
        return SyncedReservation(self, r)

    def usage(self, account: str, user: str | None = None) -> list[Meter]:
        return self.run(self.lim.usage(account, user))

    def close(self) -> None:
        try:
            self.run(self.lim.close())
        finally:
            self.loop.close()


DRIVERS: dict[str, type[SyncDriver] | type[AsyncDriver]] = {
    "sync": SyncDriver,
    "async": AsyncDriver,
}


# --- comparing answers -------------------------------------------------------------------------


def ts(value: datetime | None) -> float | None:
    if value is None:
        return None
    assert value.utcoffset() == timedelta(0), value
    return value.timestamp()


# the fields of a decision that CONTRACT section 4 fixes (the model has no sentences, quotas)
DECISION_FIELDS = tuple(f.name for f in dataclasses.fields(reference.Decision))


def actual_decision(d: Decision) -> dict[str, Any]:
    return {f: getattr(d, f) for f in DECISION_FIELDS} | {"resets_at": ts(d.resets_at)}


def expected_decision(d: reference.Decision) -> dict[str, Any]:
    return {f: getattr(d, f) for f in DECISION_FIELDS}


def assert_same_decision(what: str, actual: Decision, expected: reference.Decision) -> None:
    got, want = actual_decision(actual), expected_decision(expected)
    a, b = got["retry_after"], want["retry_after"]
    if a is not None and b is not None and abs(a - b) <= 1e-6:
        got["retry_after"] = b
    assert got == want, f"{what}: library {got} != model {want}"


def actual_meters(meters: list[Meter]) -> list[tuple[Any, ...]]:
    return [
        (
            m.limit,
            tuple(m.features),
            m.used,
            m.max,
            m.remaining,
            ts(m.window_start),
            ts(m.resets_at),
        )
        for m in meters
    ]


def expected_meters(meters: list[reference.Meter]) -> list[tuple[Any, ...]]:
    return [
        (m.limit, m.features, m.used, m.max, m.remaining, m.window_start, m.resets_at)
        for m in meters
    ]
