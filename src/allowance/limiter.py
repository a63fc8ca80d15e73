"""``Limiter``: the Python API. It validates arguments, then runs one operation of ``ops.py``
atomically in the store. Time is the injected ``clock`` or, without one, the store's clock.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Protocol

from allowance import calls, validation
from allowance.clock import Clock
from allowance.errors import ReservationNotFound, UnknownAccount
from allowance.policy import Policy, builtin_policy, load_policy
from allowance.stores import Store, store_from_url
from allowance.types import Account, Decision, Meter, to_datetime

DEFAULT_TTL = 900.0


def resolve_policy(policy: Policy | str | Path | None) -> Policy:
    if policy is None:
        return builtin_policy()
    if isinstance(policy, Policy):
        return policy
    return load_policy(policy)


class Settles(Protocol):
    """What a reservation settles through: ``Limiter`` or ``Client``."""

    def commit(self, reservation_id: str) -> None: ...

    def release(self, reservation_id: str) -> None: ...


class Reservation:
    """Units held by ``reserve``. ``id`` is None when the reservation was denied."""

    __slots__ = ("_limiter", "decision", "expires_at", "id")

    def __init__(
        self, limiter: Settles, id: str | None, decision: Decision, expires_at: datetime | None
    ) -> None:
        self._limiter = limiter
        self.id = id
        self.decision = decision
        self.expires_at = expires_at

    def commit(self) -> None:
        if self.id is None:
            raise ReservationNotFound("reservation: a denied reservation holds nothing")
        self._limiter.commit(self.id)

    def release(self) -> None:
        if self.id is not None:
            self._limiter.release(self.id)

    def __repr__(self) -> str:
        return (
            f"Reservation(id={self.id!r}, expires_at={self.expires_at!r}, "
            f"decision={self.decision!r})"
        )


class Limiter:
    """Decides and charges usage against a policy, atomically, in a store.

    ``policy``: a ``Policy``, a policy file path, or None for the built-in policy.
    ``store``: a URL (``memory://``, ``sqlite:///path.db``) or a ``Store``.
    ``clock``: zero-argument callable returning epoch seconds; None = the store's clock.
    ``timeout``: seconds any one store call may take (Redis, PostgreSQL; a store given by URL);
    None = the URL's ``?timeout=`` or ``DEFAULT_TIMEOUT``.
    """

    def __init__(
        self,
        policy: Policy | str | Path | None = None,
        store: str | Store = "memory://",
        clock: Clock | None = None,
        *,
        timeout: float | None = None,
    ) -> None:
        self.policy = resolve_policy(policy)
        self.store = store_from_url(store, timeout=timeout) if isinstance(store, str) else store
        self.store.policy = self.policy
        self.clock = clock

    def _now(self) -> float | None:
        return None if self.clock is None else float(self.clock())

    # accounts -----------------------------------------------------------------------------
    def account_id(self, account: object) -> str:
        """``account`` checked as an account id."""
        return validation.text("account", account)

    def account_settings(self, account: object, plan: object, seats: object) -> Account:
        """The account these arguments describe, checked (for ``put_account`` and its twin)."""
        account_id = self.account_id(account)
        plan_name, seat_count = validation.account_settings(self.policy, plan, seats)
        return Account(account_id, plan_name, seat_count)

    def put_account(self, account: str, plan: str, seats: int = 1) -> tuple[Account, bool]:
        """Create or change an account; also says whether it was created."""
        found = self.account_settings(account, plan, seats)
        return found, self.store.put_account(found.id, found.plan, found.seats)

    def set_account(self, account: str, plan: str, seats: int = 1) -> Account:
        """Create or change an account. Counters keep their windows; the new maxima apply now."""
        return self.put_account(account, plan, seats)[0]

    def get_account(self, account: str) -> Account:
        found = self.store.get_account(self.account_id(account))
        if found is None:
            raise UnknownAccount(account)
        return found

    # decisions ----------------------------------------------------------------------------
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
        """Decide and, if granted, charge every limit of the feature, all or nothing."""
        call = calls.consume(self.policy, account, feature, amount, partial, idempotency_key, user)
        return calls.run(self.store, self.policy, call, self._now())

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
        call = calls.check(self.policy, account, feature, amount, partial, user)
        return calls.run(self.store, self.policy, call, self._now())

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
        """Hold units (they count as used) until ``commit()``, ``release()`` or ``ttl`` s."""
        call = calls.reserve(
            self.policy, account, feature, amount, ttl, partial, idempotency_key, user
        )
        held = calls.run(self.store, self.policy, call, self._now())
        return Reservation(self, held.hold_id, held.decision, to_datetime(held.expires_at))

    def commit(self, reservation_id: str) -> None:
        """Make a reservation's units final; ``ReservationExpired`` after its expiry."""
        calls.run(self.store, self.policy, calls.commit(self.policy, reservation_id), self._now())

    def release(self, reservation_id: str) -> None:
        """Return a reservation's units to the windows they came from."""
        call = calls.release(self.policy, reservation_id)
        calls.run(self.store, self.policy, call, self._now())

    def usage(self, account: str) -> list[Meter]:
        """One meter per limit of the account's plan that it has access to."""
        return calls.run(self.store, self.policy, calls.usage(self.policy, account), self._now())

    # upkeep -------------------------------------------------------------------------------
    def sweep(self) -> int:
        """Delete expired records now (stores also do this by themselves, a little at a time)."""
        return self.store.sweep(self._now())

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> Limiter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
