"""Each Limiter method as data: which account, what to run on it, what it will look up, and
whether a store's one-round-trip path may answer. ``Limiter`` runs a call on a store;
``AsyncLimiter`` awaits it on an async store. Written once, driven twice.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, cast

from allowance import ids, ops, owners, validation
from allowance.errors import ReservationNotFound, UnknownAccount
from allowance.policy import Policy
from allowance.request import Request
from allowance.resilience import Entry
from allowance.stores.base import AsyncStore, Outcome, Store, Transaction
from allowance.types import Account, Decision, Meter
from allowance.view import NO_PRELOAD, AccountView, Preload

T = TypeVar("T")


@dataclass(slots=True)
class Call(Generic[T]):
    # what the call decides by: the Limiter sets the policy with the load factors in force
    # just before it runs (the fast path is given the same one)
    policy: Policy
    account: str
    op: Callable[[Policy, AccountView, float], T]
    preload: Preload = NO_PRELOAD
    fast: Request | None = None  # set when a store's fast path may answer (T = Decision)
    charge: bool = True
    on_reservation: bool = False  # an unknown account means an unknown reservation
    # a decision (consume, check, reserve): what a failure mode needs to answer without the
    # store; ``ttl`` is set for a reservation
    request: Request | None = None
    ttl: float | None = None

    def fn(self, view: AccountView, now: float) -> T:
        """What a store runs on the account (``Store.transact``)."""
        return self.op(self.policy, view, now)


def _keyed(policy: Policy, req: Request, charges: bool = True) -> Preload:
    """The idempotency record a keyed call reads and the user's records a per-user feature
    reads (nothing to build for the plain ones); ``charges``: a grant charges them."""
    if req.feature not in policy.user_features:
        return NO_PRELOAD if req.idempotency_key is None else Preload(req.idempotency_key)
    needed = owners.needed(policy, req.feature, req.user)
    return Preload(req.idempotency_key, owners=needed, charges=charges)


def one_step(policy: Policy, req: Request) -> bool:
    """Whether a store's one-step kernel may decide the request: not for a feature counted in
    billing periods, whose bounds depend on the account's anchor (the kernels take period
    bounds from the caller, who does not know it before the step reads the account)."""
    return req.feature not in policy.slow_features


def consume(
    policy: Policy,
    account: object,
    feature: object,
    amount: object,
    partial: object,
    idempotency_key: object,
    user: object,
) -> Call[Decision]:
    req = validation.request(policy, account, feature, amount, partial, idempotency_key, user)
    return Call(
        policy,
        req.account,
        lambda policy, view, now: ops.consume(policy, view, req, now),
        _keyed(policy, req),
        fast=req if req.idempotency_key is None and one_step(policy, req) else None,
        request=req,
    )


def check(
    policy: Policy, account: object, feature: object, amount: object, partial: object, user: object
) -> Call[Decision]:
    req = validation.request(policy, account, feature, amount, partial, None, user)
    return Call(
        policy,
        req.account,
        lambda policy, view, now: ops.check(policy, view, req, now),
        _keyed(policy, req, charges=False),
        fast=req if one_step(policy, req) else None,
        charge=False,
        request=req,
    )


def reserve(
    policy: Policy,
    account: object,
    feature: object,
    amount: object,
    ttl: object,
    partial: object,
    idempotency_key: object,
    user: object,
) -> Call[ops.Held]:
    req = validation.request(policy, account, feature, amount, partial, idempotency_key, user)
    seconds = validation.ttl(ttl)
    return Call(
        policy,
        req.account,
        lambda policy, view, now: ops.reserve(
            policy, view, req, seconds, now, ids.new_reservation_id
        ),
        _keyed(policy, req),
        request=req,
        ttl=seconds,
    )


def commit(policy: Policy, reservation_id: str, amount: object = None) -> Call[None]:
    account = ids.reservation_account(reservation_id)
    units = validation.settled_amount(amount)
    return Call(
        policy,
        account,
        lambda policy, view, now: ops.commit(policy, view, reservation_id, now, units),
        Preload(hold_id=reservation_id),
        on_reservation=True,
    )


def release(policy: Policy, reservation_id: str) -> Call[None]:
    account = ids.reservation_account(reservation_id)
    return Call(
        policy,
        account,
        lambda policy, view, now: ops.release(policy, view, reservation_id, now),
        Preload(hold_id=reservation_id),
        on_reservation=True,
    )


def record(policy: Policy, entry: Entry) -> Call[bool]:
    """Charge one journaled degraded grant (``ops.record``)."""
    req = Request(
        entry.account, entry.feature, entry.amount, False, entry.idempotency_key, entry.user
    )
    return Call(
        policy,
        req.account,
        lambda policy, view, now: ops.record(policy, view, req, now),
        _keyed(policy, req),
    )


def usage(policy: Policy, account: object, user: object = None) -> Call[list[Meter]]:
    who = None if user is None else validation.text("user", user)
    return Call(
        policy,
        validation.text("account", account),
        lambda policy, view, now: ops.usage(policy, view, now, who),
        Preload(owners=owners.needed(policy, None, who)),
    )


def account(policy: Policy, account: object) -> Call[Account]:
    return Call(
        policy,
        validation.text("account", account),
        lambda policy, view, now: ops.account(view, now),
    )


def set_override(policy: Policy, account: object, limit: object, most: object) -> Call[Account]:
    name, units = validation.limit(policy, limit), validation.override_max(most)
    return Call(
        policy,
        validation.text("account", account),
        lambda policy, view, now: ops.set_override(policy, view, name, units, now),
    )


def set_billing_anchor(policy: Policy, account: object, anchor: object) -> Call[Account]:
    """``anchor``: an aware datetime, or None to remove it."""
    at = None if anchor is None else validation.billing_anchor(anchor)
    return Call(
        policy,
        validation.text("account", account),
        lambda policy, view, now: ops.set_billing_anchor(policy, view, at, now),
        Preload(held=True),  # a held reservation's units may move with its counter
    )


def grant(
    policy: Policy, account: object, limit: object, amount: object, expires_at: object
) -> Call[Account]:
    name, units = validation.limit(policy, limit), validation.grant_amount(amount)
    until = validation.expires_at(expires_at)
    return Call(
        policy,
        validation.text("account", account),
        lambda policy, view, now: ops.grant(policy, view, name, units, until, now),
    )


def run(store: Store, call: Call[T], now: float | None) -> T:
    try:
        if call.fast is not None and store.fast:
            decision = store.fast_decide(call.policy, call.fast, now, call.charge)
            if decision is not None:
                return cast(T, decision)
        return store.transact(call.account, now, call.fn, call.preload)
    except UnknownAccount:
        if call.on_reservation:
            raise ReservationNotFound("reservation: no such reservation") from None
        raise


async def run_async(store: AsyncStore, call: Call[T], now: float | None) -> T:
    try:
        if call.fast is not None and store.fast:
            decision = await store.fast_decide(call.policy, call.fast, now, call.charge)
            if decision is not None:
                return cast(T, decision)
        return await store.transact(call.account, now, call.fn, call.preload)
    except UnknownAccount:
        if call.on_reservation:
            raise ReservationNotFound("reservation: no such reservation") from None
        raise


def run_many(store: Store, items: list[tuple[Call[Any], float | None]]) -> list[Outcome[Any]]:
    """``run`` for each item, through the store's ``transact_many`` (one batch)."""
    batch: list[Transaction[Any]] = [
        (call.account, now, call.fn, call.preload) for call, now in items
    ]
    out = store.transact_many(batch)
    for i, ((call, _), outcome) in enumerate(zip(items, out, strict=True)):
        if call.on_reservation and isinstance(outcome.error, UnknownAccount):
            out[i] = Outcome(None, ReservationNotFound("reservation: no such reservation"))
    return out
