"""Idempotency keys: the first answer given under a key, kept 24 h in the account's record and
given back to a retry. A key re-used for another request is a conflict, not a replay: another
operation, feature or amount, or, where the feature counts per user, another user (whose
counters the first answer charged)."""

from __future__ import annotations

from allowance.errors import IdempotencyConflict
from allowance.policy import Policy
from allowance.request import Request
from allowance.state import IdempotencyRecord
from allowance.types import Decision
from allowance.view import AccountView

__all__ = ["IDEMPOTENCY_TTL", "remember", "remembered"]

IDEMPOTENCY_TTL = 86400.0  # a key answers the same for 24 h


def _user(policy: Policy, req: Request) -> str | None:
    """The user a key's answer belongs to: none where the feature counts only per account
    (so a key is the same request whatever user a caller names there)."""
    return req.user if req.feature in policy.user_features else None


def remembered(
    policy: Policy, view: AccountView, req: Request, operation: str, now: float
) -> IdempotencyRecord | None:
    """The answer kept under the request's idempotency key, if any (24 h)."""
    if req.idempotency_key is None:
        return None
    record = view.get_idempotency(req.idempotency_key)
    if record is None or record.expires_at <= now:
        return None
    first = (record.operation, record.feature, record.amount)
    if first != (operation, req.feature, req.amount):
        raise IdempotencyConflict(
            f"idempotency_key {req.idempotency_key!r} was used within 24 h for "
            f"{record.operation} of {record.amount} {record.feature}, not "
            f"{operation} of {req.amount} {req.feature}"
        )
    user = _user(policy, req)
    if record.user != user:
        raise IdempotencyConflict(
            f"idempotency_key {req.idempotency_key!r} was used within 24 h for "
            f"{record.feature} by user {record.user!r}, not {user!r}"
        )
    return record


def remember(
    policy: Policy,
    view: AccountView,
    operation: str,
    req: Request,
    decision: Decision,
    now: float,
    reservation: tuple[str | None, float | None] = (None, None),
) -> None:
    """Keep the first answer under the request's key (none: nothing) for 24 h;
    ``reservation`` is (id, expires_at)."""
    if req.idempotency_key is None:
        return
    view.put_idempotency(
        req.idempotency_key,
        IdempotencyRecord(
            operation,
            req.feature,
            req.amount,
            decision.to_json(quota=True, at=now),
            now + IDEMPOTENCY_TTL,
            reservation[0],
            reservation[1],
            _user(policy, req),
        ),
    )
