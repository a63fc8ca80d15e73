"""Argument checks shared by ``Limiter`` and ``AsyncLimiter``: each names the bad field."""

from __future__ import annotations

import math
from datetime import datetime

from allowance.errors import (
    InvalidAmount,
    InvalidRequest,
    UnknownFeature,
    UnknownPlan,
)
from allowance.policy import Policy
from allowance.request import Request
from allowance.resilience import Mode

MAX_AMOUNT = 1_000_000
MAX_SEATS = 1_000_000
MAX_ID = 200
MAX_TTL = 7 * 86400.0
MAX_UNITS = 10**12  # an override's max or a grant's units


def text(field: str, value: object) -> str:
    if not isinstance(value, str) or not value or len(value) > MAX_ID:
        raise InvalidRequest(
            field, value, f"expected a non-empty string of at most {MAX_ID} characters"
        )
    if not value.isprintable():
        raise InvalidRequest(field, value, "must not contain control characters")
    return value


def request(
    policy: Policy,
    account: object,
    feature: object,
    amount: object,
    partial: object,
    idempotency_key: object,
    user: object,
) -> Request:
    if type(amount) is not int or not 1 <= amount <= MAX_AMOUNT:
        raise InvalidAmount("amount", amount, f"expected a whole number from 1 to {MAX_AMOUNT:,}")
    if not isinstance(feature, str) or feature not in policy.features:
        raise UnknownFeature("feature", feature, "not a feature of the policy")
    if type(partial) is not bool:
        raise InvalidRequest("partial", partial, "expected true or false")
    if user is None and feature in policy.user_features:
        scoped = next(lim for lim in policy.limits_of(feature) if lim.scope != "account")
        raise InvalidRequest(
            "user",
            None,
            f"required: {feature} counts per user (limit {scoped.name} has scope: {scoped.scope})",
        )
    return Request(
        text("account", account),
        feature,
        amount,
        partial,
        None if idempotency_key is None else text("idempotency_key", idempotency_key),
        None if user is None else text("user", user),
    )


def settled_amount(value: object) -> int | None:
    """``commit(amount=)``: None (the amount held), or the units really used."""
    if value is None:
        return None
    if type(value) is not int or not 0 <= value <= MAX_AMOUNT:
        raise InvalidAmount("amount", value, f"expected a whole number from 0 to {MAX_AMOUNT:,}")
    return value


def account_settings(policy: Policy, plan: object, seats: object) -> tuple[str, int]:
    if not isinstance(plan, str) or plan not in policy.plan_by_name:
        names = ", ".join(p.name for p in policy.plans)
        raise UnknownPlan("plan", plan, f"not a plan of the policy ({names})")
    if type(seats) is not int or not 1 <= seats <= MAX_SEATS:
        raise InvalidRequest("seats", seats, f"expected a whole number from 1 to {MAX_SEATS:,}")
    return plan, seats


def ttl(value: object) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or not 0 < value <= MAX_TTL
    ):
        raise InvalidRequest("ttl", value, "expected seconds, more than 0 and at most 7 days")
    return float(value)


def store_error_mode(value: object) -> Mode | None:
    """``on_store_error`` of a limiter: None (the policy's), "deny" or "allow"."""
    if value is None or value == "deny" or value == "allow":
        return value
    raise InvalidRequest("on_store_error", value, "expected 'deny' or 'allow'")


def journal_size(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 10_000_000:
        raise InvalidRequest("journal_size", value, "expected a whole number in 0..10,000,000")
    return value


def limit(policy: Policy, value: object) -> str:
    if not isinstance(value, str) or value not in policy.limits:
        known = ", ".join(policy.limits)
        raise InvalidRequest("limit", value, f"not a limit of the policy ({known})")
    return value


def override_max(value: object) -> int | None:
    """``set_override(max=)``: the account's own max, or None (the plan's again)."""
    if value is None:
        return None
    if type(value) is not int or not 0 <= value <= MAX_UNITS:
        raise InvalidRequest("max", value, f"expected a whole number from 0 to {MAX_UNITS:,}")
    return value


def grant_amount(value: object) -> int:
    if type(value) is not int or not 1 <= value <= MAX_UNITS:
        raise InvalidAmount("amount", value, f"expected a whole number from 1 to {MAX_UNITS:,}")
    return value


def aware_time(field: str, value: object) -> float:
    """``value`` checked as an aware datetime, as epoch seconds."""
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise InvalidRequest(field, value, "expected a timezone-aware datetime")
    return value.timestamp()


def expires_at(value: object) -> float | None:
    """A grant's end: None (the current window's), or an aware datetime."""
    return None if value is None else aware_time("expires_at", value)


def billing_anchor(value: object) -> float:
    """When an account's billing periods renew: an aware datetime."""
    return aware_time("billing_anchor", value)
