"""What a key bound to accounts (``ApiKey.accounts``) may do through the routes.

``routes.service`` hands such a caller an ``AccountBoundLimiter`` instead of the service's
limiter, so no route has to remember the rule: every call that names an account (in the
path, in the body, inside a reservation id) is checked here first, and any other account is
unknown, a 404 that changes nothing, as if it did not exist. What is the same for every
account reads as before (the policy, the load factors); changing it (a policy, a load
factor) is refused with a 403. The keys routes refuse such a key themselves (``unbound``).

It subclasses ``AsyncLimiter`` without its state, so a method added there and not here
fails closed (no store to reach); ``tests/service/test_bound_keys.py`` checks that every
public method of ``AsyncLimiter`` is defined here.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from types import TracebackType

from allowance import ids, listing
from allowance.aio import AsyncLimiter, AsyncReservation
from allowance.errors import ReservationNotFound, UnknownAccount
from allowance.http.problems import Problem
from allowance.keys import ApiKey
from allowance.limiter import DEFAULT_TTL
from allowance.listing import AccountPage
from allowance.policy import Policy
from allowance.types import UNCHANGED, Account, Anchor, Decision, Meter

__all__ = ["AccountBoundLimiter", "bound_refusal", "unbound"]


def bound_refusal(what: str) -> Problem:
    return Problem(
        403,
        "key-bound-to-accounts",
        "Key bound to accounts",
        f"this key acts for some accounts only; {what} needs a key for every account",
    )


def unbound(key: ApiKey, what: str) -> None:
    """Refuse a key bound to accounts for what concerns every account (``what``)."""
    if key.accounts is not None:
        raise bound_refusal(what)


class AccountBoundLimiter(AsyncLimiter):
    def __init__(self, limiter: AsyncLimiter, key: ApiKey) -> None:  # no super(): see above
        self._inner = limiter
        self._key = key

    def _mine(self, account: str) -> str:
        if not self._key.acts_for(account):
            raise UnknownAccount(account)
        return account

    def _held(self, reservation_id: str) -> str:
        """The reservation's, when it is of an account of this key's: its id says whose (a
        reservation granted without the store carries no account, so it is not)."""
        try:
            account = ids.reservation_account(reservation_id)
        except ReservationNotFound:
            account = None
        if account is None or not self._key.acts_for(account):
            raise ReservationNotFound(f"reservation: no reservation {reservation_id!r}")
        return reservation_id

    @property
    def policy(self) -> Policy:
        return self._inner.policy

    async def policy_now(self) -> Policy:
        return await self._inner.policy_now()

    async def load_factors(self) -> dict[str, float]:
        return await self._inner.load_factors()

    async def accounts(
        self, prefix: str = "", cursor: str | None = None, limit: int = listing.DEFAULT_PAGE
    ) -> AccountPage:
        """Only this key's accounts (``listing.within``)."""
        assert self._key.accounts is not None
        ids = listing.within(self._inner.store.account_page, self._key.accounts)
        get = self._inner.sync.get_account
        return await asyncio.to_thread(listing.page, ids, get, prefix, cursor, limit)

    async def put_account(
        self, account: str, plan: str, seats: int = 1, *, billing_anchor: Anchor = UNCHANGED
    ) -> tuple[Account, bool]:
        return await self._inner.put_account(
            self._mine(account), plan, seats, billing_anchor=billing_anchor
        )

    async def set_account(
        self, account: str, plan: str, seats: int = 1, *, billing_anchor: Anchor = UNCHANGED
    ) -> Account:
        return (await self.put_account(account, plan, seats, billing_anchor=billing_anchor))[0]

    async def get_account(self, account: str) -> Account:
        return await self._inner.get_account(self._mine(account))

    async def set_override(self, account: str, limit: str, max: int | None) -> Account:
        return await self._inner.set_override(self._mine(account), limit, max)

    async def grant(
        self, account: str, limit: str, amount: int, expires_at: datetime | None = None
    ) -> Account:
        return await self._inner.grant(self._mine(account), limit, amount, expires_at)

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
        return await self._inner.consume(
            self._mine(account),
            feature,
            amount,
            partial=partial,
            idempotency_key=idempotency_key,
            user=user,
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
        return await self._inner.check(
            self._mine(account), feature, amount, partial=partial, user=user
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
        return await self._inner.reserve(
            self._mine(account),
            feature,
            amount,
            ttl,
            partial=partial,
            idempotency_key=idempotency_key,
            user=user,
        )

    async def commit(self, reservation_id: str, amount: int | None = None) -> None:
        await self._inner.commit(self._held(reservation_id), amount)

    async def release(self, reservation_id: str) -> None:
        await self._inner.release(self._held(reservation_id))

    async def usage(self, account: str, user: str | None = None) -> list[Meter]:
        return await self._inner.usage(self._mine(account), user)

    async def put_policy(self, policy: Policy | str) -> Policy:
        raise bound_refusal("putting a policy in force")

    async def set_load_factor(
        self, factor: float, limits: list[str] | tuple[str, ...] | None = None
    ) -> dict[str, float]:
        raise bound_refusal("a load factor")

    async def flush_journal(self) -> int:
        raise bound_refusal("the journal")

    async def sweep(self) -> int:
        raise bound_refusal("a sweep")

    async def close(self) -> None:
        raise bound_refusal("closing the limiter")

    async def __aenter__(self) -> AsyncLimiter:
        raise bound_refusal("the limiter's lifetime")

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        raise bound_refusal("the limiter's lifetime")
