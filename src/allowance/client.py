"""``Client`` and ``AsyncClient``: the ``Limiter`` API over HTTP, against a running
``allowance serve``. They return the same objects (``Decision``, ``Meter``, ``Account``,
``Reservation``) and raise the same errors, so code moves between an embedded limiter and a
shared service by changing one line.

A denial is a return value (``Decision.allowed`` is False), as with ``Limiter``; the HTTP
429/403 of a denial never raises. Other answers map back to the error tree: a bad argument
raises the ``InvalidRequest`` subclass ``Limiter`` raises (checked here, against the
service's policy, before anything is sent), 404 ``UnknownAccount`` / ``ReservationNotFound``,
409 ``IdempotencyConflict``, 410 ``ReservationExpired``, 401 ``AuthenticationError``, 403
(scope) ``PermissionDenied``. A service that cannot be reached, times out or answers 5xx
raises ``ServiceUnavailable``, a ``StoreError``: to the caller the service is the store, so
whatever it does when ``Limiter``'s store fails (fail open, fail closed) it does here too.

**Retries.** ``retries`` (default 2) extra tries follow a failed connection, a timeout, a
dropped connection or a 502/503/504, after 0.05 s, 0.1 s, ... (or the ``Retry-After`` the
service sent, at most 2 s). Every call is safe to send twice except ``consume`` and
``reserve``, which charge: a lost answer does not say whether the first try charged. Those
are tried again only when nothing can have been charged (the connection was never made) or
under an idempotency key:
the caller's, or with ``auto_idempotency_keys=True`` a fresh random one per call, sent on
every try, so a try that did charge is recognised and its decision returned. Auto keys cost
the service an idempotency record per call (kept 24 h) and the keyed path instead of the
one-round-trip path on Redis, so they are off by default; without them an ambiguous failure
raises ``ServiceUnavailable`` and the caller decides (denying is the safe side).

The service's policy is read once (``GET /v1/policy``, at the first call that needs it), or
given as ``policy=``. A feature or plan that it does not know makes the client read it again
once before raising, so a service that has been given a new policy is followed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import datetime
from types import TracebackType
from typing import Any, TypeVar

import httpx

from allowance import remote, remote_answers
from allowance.aio import AsyncReservation
from allowance.errors import UnknownFeature, UnknownPlan
from allowance.events import Event
from allowance.ledger import LedgerPage
from allowance.limiter import DEFAULT_TTL, Reservation
from allowance.listing import DEFAULT_PAGE, AccountPage
from allowance.policy import Policy
from allowance.types import UNCHANGED, Account, Anchor, Decision, Meter

T = TypeVar("T")
DEFAULT_TIMEOUT = 5.0
DEFAULT_RETRIES = 2


class _Base:
    def __init__(
        self,
        url: str,
        key: str,
        timeout: float,
        retries: int,
        policy: Policy | None,
        auto_idempotency_keys: bool,
    ) -> None:
        self.url = remote.check_url(url)
        self.retries = retries
        self.auto_keys = auto_idempotency_keys and retries > 0
        self._policy = policy
        self._given = policy is not None  # the caller's policy: never read the service's
        self._options: dict[str, Any] = {
            "base_url": self.url,
            "headers": remote.headers(key),
            "timeout": timeout,
        }

    def _known(self, data: dict[str, Any]) -> Policy:
        self._policy = remote.compile_policy(data, self.url.rstrip("/") + "/v1/policy")
        return self._policy


class Client(_Base):
    """The ``Limiter`` API on a running service at ``url`` (``http://host:8000``), with an
    API key (``decide`` scope for decisions, ``admin`` for ``set_account``).

    ``timeout``: seconds for each of connect, read, write and pool. ``transport``: an httpx
    transport (a proxy, a Unix socket, TLS settings). ``retries``: see the module docstring.
    ``policy``: check arguments against this ``Policy`` instead of the service's.
    """

    def __init__(
        self,
        url: str,
        key: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        transport: httpx.BaseTransport | None = None,
        retries: int = DEFAULT_RETRIES,
        policy: Policy | None = None,
        auto_idempotency_keys: bool = False,
    ) -> None:
        super().__init__(url, key, timeout, retries, policy, auto_idempotency_keys)
        self._http = httpx.Client(transport=transport, **self._options)

    def _send(self, op: remote_answers.Op[T]) -> T:
        attempt = 0
        while True:
            outcome: remote_answers.Outcome
            try:
                outcome = self._http.request(op.method, op.path, json=op.body)
            except httpx.RequestError as exc:
                outcome = exc
            wait = remote_answers.pause(op, attempt, self.retries, outcome)
            if wait is None:
                return remote_answers.result(op, outcome)
            time.sleep(wait)
            attempt += 1

    def _run(self, make: Callable[[Policy], remote_answers.Op[T]]) -> T:
        policy, loaded = (self._policy, False) if self._policy else (self._load(), True)
        try:
            op = make(policy)
        except (UnknownFeature, UnknownPlan):
            if loaded or self._given:
                raise
            op = make(self._load())  # the service's policy may have changed since
        return self._send(op)

    def _load(self) -> Policy:
        return self._known(self._send(remote.policy()))

    def policy(self) -> dict[str, Any]:
        """The policy in force on the service, as data (the policy file's structure)."""
        data = self._send(remote.policy())
        self._known(data)
        return data

    def put_account(
        self, account: str, plan: str, seats: int = 1, *, billing_anchor: Anchor = UNCHANGED
    ) -> tuple[Account, bool]:
        """Create or change an account; also says whether it was created."""
        return self._run(lambda p: remote.put_account(p, account, plan, seats, billing_anchor))

    def set_account(
        self, account: str, plan: str, seats: int = 1, *, billing_anchor: Anchor = UNCHANGED
    ) -> Account:
        return self.put_account(account, plan, seats, billing_anchor=billing_anchor)[0]

    def get_account(self, account: str) -> Account:
        return self._send(remote.get_account(account))

    def accounts(
        self, prefix: str = "", cursor: str | None = None, limit: int = DEFAULT_PAGE
    ) -> AccountPage:
        """As ``Limiter.accounts``, on the service (a read key)."""
        return self._send(remote.accounts(prefix, cursor, limit))

    def events(
        self, after: int | None = None, limit: int = 100, account: str | None = None
    ) -> list[Event]:
        """As ``Limiter.events``, on the service (a read key)."""
        return self._send(remote.events(after, limit, account))

    def ledger(
        self,
        account: str,
        cursor: str | None = None,
        limit: int = 100,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> LedgerPage:
        """As ``Limiter.ledger``, on the service (a read key)."""
        return self._send(remote.ledger(account, cursor, limit, since, until))

    def set_override(self, account: str, limit: str, max: int | None) -> Account:
        """As ``Limiter.set_override``, on the service (an admin key)."""
        return self._run(lambda p: remote.set_override(p, account, limit, max))

    def grant(
        self, account: str, limit: str, amount: int, expires_at: datetime | None = None
    ) -> Account:
        """As ``Limiter.grant``, on the service (an admin key)."""
        return self._run(lambda p: remote.grant(p, account, limit, amount, expires_at))

    def set_load_factor(self, factor: float, limits: list[str] | None = None) -> dict[str, float]:
        """As ``Limiter.set_load_factor``, on the service (an admin key)."""
        return self._run(lambda p: remote.set_load_factor(p, factor, limits))

    def load_factors(self) -> dict[str, float]:
        return self._send(remote.load_factors())

    def consume(
        self,
        account: str,
        feature: str,
        amount: int = 1,
        *,
        partial: bool = False,
        idempotency_key: str | None = None,
        user: str | None = None,
    ) -> Decision:
        auto = self.auto_keys
        return self._run(
            lambda p: remote.consume(
                p, account, feature, amount, partial, idempotency_key, user, auto
            )
        )

    def check(
        self,
        account: str,
        feature: str,
        amount: int = 1,
        *,
        partial: bool = False,
        idempotency_key: str | None = None,
        user: str | None = None,
    ) -> Decision:
        """What ``consume`` would answer now; charges nothing, ignores idempotency keys."""
        return self._run(lambda p: remote.check(p, account, feature, amount, partial, user))

    def reserve(
        self,
        account: str,
        feature: str,
        amount: int = 1,
        ttl: float = DEFAULT_TTL,
        *,
        partial: bool = False,
        idempotency_key: str | None = None,
        user: str | None = None,
    ) -> Reservation:
        auto = self.auto_keys
        held = self._run(
            lambda p: remote.reserve(
                p, account, feature, amount, ttl, partial, idempotency_key, user, auto
            )
        )
        return Reservation(self, *held)

    def commit(self, reservation_id: str, amount: int | None = None) -> None:
        self._send(remote.commit(reservation_id, amount))

    def release(self, reservation_id: str) -> None:
        self._send(remote.release(reservation_id))

    def usage(self, account: str, user: str | None = None) -> list[Meter]:
        return self._send(remote.usage(account, user))

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class AsyncClient(_Base):
    """``Client`` for event loops: the same arguments and methods, as coroutines."""

    def __init__(
        self,
        url: str,
        key: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        transport: httpx.AsyncBaseTransport | None = None,
        retries: int = DEFAULT_RETRIES,
        policy: Policy | None = None,
        auto_idempotency_keys: bool = False,
    ) -> None:
        super().__init__(url, key, timeout, retries, policy, auto_idempotency_keys)
        self._http = httpx.AsyncClient(transport=transport, **self._options)

    async def _send(self, op: remote_answers.Op[T]) -> T:
        attempt = 0
        while True:
            outcome: remote_answers.Outcome
            try:
                outcome = await self._http.request(op.method, op.path, json=op.body)
            except httpx.RequestError as exc:
                outcome = exc
            wait = remote_answers.pause(op, attempt, self.retries, outcome)
            if wait is None:
                return remote_answers.result(op, outcome)
            await asyncio.sleep(wait)
            attempt += 1

    async def _run(self, make: Callable[[Policy], remote_answers.Op[T]]) -> T:
        policy, loaded = (self._policy, False) if self._policy else (await self._load(), True)
        try:
            op = make(policy)
        except (UnknownFeature, UnknownPlan):
            if loaded or self._given:
                raise
            op = make(await self._load())
        return await self._send(op)

    async def _load(self) -> Policy:
        return self._known(await self._send(remote.policy()))

    async def policy(self) -> dict[str, Any]:
        data = await self._send(remote.policy())
        self._known(data)
        return data

    async def put_account(
        self, account: str, plan: str, seats: int = 1, *, billing_anchor: Anchor = UNCHANGED
    ) -> tuple[Account, bool]:
        return await self._run(
            lambda p: remote.put_account(p, account, plan, seats, billing_anchor)
        )

    async def set_account(
        self, account: str, plan: str, seats: int = 1, *, billing_anchor: Anchor = UNCHANGED
    ) -> Account:
        return (await self.put_account(account, plan, seats, billing_anchor=billing_anchor))[0]

    async def get_account(self, account: str) -> Account:
        return await self._send(remote.get_account(account))

    async def accounts(
        self, prefix: str = "", cursor: str | None = None, limit: int = DEFAULT_PAGE
    ) -> AccountPage:
        return await self._send(remote.accounts(prefix, cursor, limit))

    async def events(
        self, after: int | None = None, limit: int = 100, account: str | None = None
    ) -> list[Event]:
        return await self._send(remote.events(after, limit, account))

    async def ledger(
        self,
        account: str,
        cursor: str | None = None,
        limit: int = 100,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> LedgerPage:
        return await self._send(remote.ledger(account, cursor, limit, since, until))

    async def set_override(self, account: str, limit: str, max: int | None) -> Account:
        return await self._run(lambda p: remote.set_override(p, account, limit, max))

    async def grant(
        self, account: str, limit: str, amount: int, expires_at: datetime | None = None
    ) -> Account:
        return await self._run(lambda p: remote.grant(p, account, limit, amount, expires_at))

    async def set_load_factor(
        self, factor: float, limits: list[str] | None = None
    ) -> dict[str, float]:
        return await self._run(lambda p: remote.set_load_factor(p, factor, limits))

    async def load_factors(self) -> dict[str, float]:
        return await self._send(remote.load_factors())

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
        auto = self.auto_keys
        return await self._run(
            lambda p: remote.consume(
                p, account, feature, amount, partial, idempotency_key, user, auto
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
        return await self._run(lambda p: remote.check(p, account, feature, amount, partial, user))

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
        auto = self.auto_keys
        held = await self._run(
            lambda p: remote.reserve(
                p, account, feature, amount, ttl, partial, idempotency_key, user, auto
            )
        )
        return AsyncReservation(self, *held)

    async def commit(self, reservation_id: str, amount: int | None = None) -> None:
        await self._send(remote.commit(reservation_id, amount))

    async def release(self, reservation_id: str) -> None:
        await self._send(remote.release(reservation_id))

    async def usage(self, account: str, user: str | None = None) -> list[Meter]:
        return await self._send(remote.usage(account, user))

    async def close(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
