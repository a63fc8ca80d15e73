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
from typing import Any

from allowance import ids, listing
from allowance.aio import AsyncLimiter
from allowance.errors import ReservationNotFound, UnknownAccount
from allowance.events import Event
from allowance.http.problems import Problem
from allowance.keys import ApiKey
from allowance.listing import AccountPage
from allowance.policy import Policy

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


def _for_account(name: str) -> Any:
    """``AsyncLimiter.<name>``, whose first argument is an account: checked first."""

    async def call(self: AccountBoundLimiter, account: str, *args: Any, **kwargs: Any) -> Any:
        return await getattr(self._inner, name)(self._mine(account), *args, **kwargs)

    call.__name__ = name
    return call


def _for_reservation(name: str) -> Any:
    """``AsyncLimiter.<name>``, whose first argument is a reservation id: checked first."""

    async def call(self: AccountBoundLimiter, held: str, *args: Any, **kwargs: Any) -> Any:
        return await getattr(self._inner, name)(self._held(held), *args, **kwargs)

    call.__name__ = name
    return call


def _as_is(name: str) -> Any:
    """``AsyncLimiter.<name>``, the same for every account: a read."""

    async def call(self: AccountBoundLimiter, *args: Any, **kwargs: Any) -> Any:
        return await getattr(self._inner, name)(*args, **kwargs)

    call.__name__ = name
    return call


def _refused(what: str) -> Any:
    async def call(self: AccountBoundLimiter, *args: Any, **kwargs: Any) -> Any:
        raise bound_refusal(what)

    return call


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

    async def accounts(
        self, prefix: str = "", cursor: str | None = None, limit: int = listing.DEFAULT_PAGE
    ) -> AccountPage:
        """Only this key's accounts (``listing.within``)."""
        assert self._key.accounts is not None
        ids = listing.within(self._inner.store.account_page, self._key.accounts)
        get = self._inner.sync.get_account
        return await asyncio.to_thread(listing.page, ids, get, prefix, cursor, limit)

    async def events(
        self, after: int | None = None, limit: int = 100, account: str | None = None
    ) -> list[Event]:
        """One of this key's accounts' only (every account's: refused)."""
        if account is None:
            raise bound_refusal("the events of every account")
        return await self._inner.events(after, limit, self._mine(account))

    # the same arguments as AsyncLimiter's, the account (or reservation) checked first
    put_account = _for_account("put_account")
    set_account = _for_account("set_account")
    get_account = _for_account("get_account")
    set_override = _for_account("set_override")
    grant = _for_account("grant")
    consume = _for_account("consume")
    check = _for_account("check")
    reserve = _for_account("reserve")
    usage = _for_account("usage")
    ledger = _for_account("ledger")
    commit = _for_reservation("commit")
    release = _for_reservation("release")
    policy_now = _as_is("policy_now")
    load_factors = _as_is("load_factors")
    put_policy = _refused("putting a policy in force")
    set_load_factor = _refused("a load factor")
    flush_journal = _refused("the journal")
    sweep = _refused("a sweep")
    close = _refused("closing the limiter")
    __aenter__ = _refused("the limiter's lifetime")
    __aexit__ = _refused("the limiter's lifetime")
