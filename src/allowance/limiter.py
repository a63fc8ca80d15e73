"""``Limiter``: the Python API. It validates arguments, then runs one operation of ``ops.py``
atomically in the store. Time is the injected ``clock`` or, without one, the store's clock.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from types import TracebackType

from allowance import ids, ops, validation
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


class Reservation:
    """Units held by ``reserve``. ``id`` is None when the reservation was denied."""

    __slots__ = ("_limiter", "decision", "expires_at", "id")

    def __init__(
        self, limiter: Limiter, id: str | None, decision: Decision, expires_at: datetime | None
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
    """

    def __init__(
        self,
        policy: Policy | str | Path | None = None,
        store: str | Store = "memory://",
        clock: Clock | None = None,
    ) -> None:
        self.policy = resolve_policy(policy)
        self.store = store_from_url(store) if isinstance(store, str) else store
        self.store.policy = self.policy
        self.clock = clock

    def _now(self) -> float | None:
        return None if self.clock is None else float(self.clock())

    # accounts -----------------------------------------------------------------------------
    def put_account(self, account: str, plan: str, seats: int = 1) -> tuple[Account, bool]:
        """Create or change an account; also says whether it was created."""
        account_id = validation.text("account", account)
        assert account_id is not None
        plan, seats = validation.account_settings(self.policy, plan, seats)
        created = self.store.put_account(account_id, plan, seats)
        return Account(account_id, plan, seats), created

    def set_account(self, account: str, plan: str, seats: int = 1) -> Account:
        """Create or change an account. Counters keep their windows; the new maxima apply now."""
        return self.put_account(account, plan, seats)[0]

    def get_account(self, account: str) -> Account:
        validation.text("account", account)
        found = self.store.get_account(account)
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
        req = validation.request(
            self.policy, account, feature, amount, partial, idempotency_key, user
        )
        policy = self.policy
        if self.store.fast and idempotency_key is None:
            decision = self.store.fast_decide(policy, req, self._now(), True)
            if decision is not None:
                return decision
        return self.store.transact(
            req.account,
            self._now(),
            lambda view, now: ops.consume(policy, view, req, now),
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
        req = validation.request(self.policy, account, feature, amount, partial, None, user)
        policy = self.policy
        if self.store.fast:
            decision = self.store.fast_decide(policy, req, self._now(), False)
            if decision is not None:
                return decision
        return self.store.transact(
            req.account,
            self._now(),
            lambda view, now: ops.check(policy, view, req, now),
        )

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
        req = validation.request(
            self.policy, account, feature, amount, partial, idempotency_key, user
        )
        seconds = validation.ttl(ttl)
        policy = self.policy
        held = self.store.transact(
            req.account,
            self._now(),
            lambda view, now: ops.reserve(policy, view, req, seconds, now, ids.new_reservation_id),
        )
        return Reservation(self, held.hold_id, held.decision, to_datetime(held.expires_at))

    def commit(self, reservation_id: str) -> None:
        """Make a reservation's units final; ``ReservationExpired`` after its expiry."""
        account = ids.reservation_account(reservation_id)
        policy = self.policy
        self._on_reservation(
            account, lambda view, now: ops.commit(policy, view, reservation_id, now)
        )

    def release(self, reservation_id: str) -> None:
        """Return a reservation's units to the windows they came from."""
        account = ids.reservation_account(reservation_id)
        policy = self.policy
        self._on_reservation(
            account, lambda view, now: ops.release(policy, view, reservation_id, now)
        )

    def _on_reservation(self, account: str, fn: ops.ViewFn[None]) -> None:
        try:
            self.store.transact(account, self._now(), fn)
        except UnknownAccount:
            raise ReservationNotFound("reservation: no such reservation") from None

    def usage(self, account: str) -> list[Meter]:
        """One meter per limit of the account's plan that it has access to."""
        validation.text("account", account)
        policy = self.policy
        return self.store.transact(
            account, self._now(), lambda view, now: ops.usage(policy, view, now)
        )

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
