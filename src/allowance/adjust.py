"""One account's own terms for some limits: an override of the max and grants of extra units
(``state.Adjustment``), as stores keep them and as a decision applies them.

A store keeps an account's terms as one JSON text, ``{limit: [max or null, [[until, units],
...]], "@billing": anchor}`` (the anchor, epoch seconds, when it has one: no limit name
starts with @), next to its plan and seats, read in the same step (the one-step kernels read it
too: ``decide.lua`` with cjson, ``decide.sql`` as jsonb). A decision applies the terms in
force at its ``now`` by deciding with ``Policy.adjusted`` (``in_force``), so the engine and
every message see the effective max without knowing why.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from allowance.policy import Limit, Policy
from allowance.state import Adjustment, Counter, Terms
from allowance.types import Account, Grant, to_datetime
from allowance.windows import KEEP_AFTER, SlidingWindow

InForce = tuple[tuple[str, int | None, int], ...]
BILLING = "@billing"


def encode(terms: Terms) -> str | None:
    """The stored text (None when the account has no terms of its own)."""
    kept: dict[str, Any] = {name: [a.max, a.grants] for name, a in terms.items() if a}
    if terms.billing_anchor is not None:
        kept[BILLING] = terms.billing_anchor
    return json.dumps(kept, separators=(",", ":")) if kept else None


def decode(stored: str | dict[str, Any] | None) -> Terms:
    """The terms from their stored text (or from the JSON a driver already parsed)."""
    terms = Terms()
    if not stored:
        return terms
    data = json.loads(stored) if isinstance(stored, str) else stored
    for name, value in data.items():
        if name == BILLING:
            terms.billing_anchor = float(value)
        else:
            most, grants = value
            terms[name] = Adjustment(most, [list(g) for g in grants])
    return terms


def in_force(adjustments: Mapping[str, Adjustment], now: float) -> InForce:
    """(limit, override, extra units) of each limit the terms change at ``now``, sorted."""
    out = []
    for name, adj in adjustments.items():
        extra = sum(int(units) for until, units in adj.grants if now < until)
        if adj.max is not None or extra:
            out.append((name, adj.max, extra))
    return tuple(sorted(out))


def applied(policy: Policy, terms: Terms, now: float) -> Policy:
    """The policy a decision at ``now`` on an account with these terms decides with."""
    if terms.billing_anchor is not None:
        policy = policy.anchored(terms.billing_anchor)
    if not terms:
        return policy
    return policy.adjusted(tuple(t for t in in_force(terms, now) if t[0] in policy.limits))


def changes_at(adjustments: Mapping[str, Adjustment], now: float) -> float:
    """When a grant in force at ``now`` ends first (``math.inf``: none does)."""
    return min(
        (until for adj in adjustments.values() for until, _ in adj.grants if now < until),
        default=math.inf,
    )


def window_end(limit: Limit, counter: Counter, now: float) -> float:
    """Until when a grant without an expiry lasts: the end of the window holding ``now`` (a
    calendar period's end; an open anchored window's close, else one length from now) and,
    for a sliding window, which never closes, one length from now."""
    window = limit.window
    if isinstance(window, SlidingWindow):
        return now + window.length
    return window.quota_span(counter, now)[1]


def prune(adjustments: dict[str, Adjustment], now: float) -> None:
    """Drop the grants that ended more than ``KEEP_AFTER`` ago (a clock stepping back that
    far still finds them in force, as it finds the usage of a closed window) and the terms
    left empty."""
    for name in list(adjustments):
        adj = adjustments[name]
        adj.grants = [g for g in adj.grants if now < g[0] + KEEP_AFTER]
        if not adj:
            del adjustments[name]


def overrides(adjustments: Mapping[str, Adjustment]) -> dict[str, int]:
    return {name: adj.max for name, adj in adjustments.items() if adj.max is not None}


def grants(adjustments: Mapping[str, Adjustment], now: float | None) -> tuple[Grant, ...]:
    """The grants in force at ``now`` (every stored one when None), soonest ending first."""
    found = [
        Grant(name, int(units), _aware(until))
        for name, adj in adjustments.items()
        for until, units in adj.grants
        if now is None or now < until
    ]
    return tuple(sorted(found, key=lambda g: (g.expires_at, g.limit)))


def account(account_id: str, plan: str, seats: int, text: str | None) -> Account:
    """An account as a store read it: its plan, seats and stored terms."""
    return account_of(account_id, plan, seats, decode(text), None)


def account_of(account_id: str, plan: str, seats: int, terms: Terms, now: float | None) -> Account:
    """The account with these terms (the grants in force at ``now``; None: every one kept)."""
    return Account(
        account_id,
        plan,
        seats,
        overrides(terms),
        grants(terms, now),
        to_datetime(terms.billing_anchor),
    )


def _aware(ts: float) -> datetime:
    found = to_datetime(ts)
    assert found is not None
    return found
