"""What stores persist: an account (with its own terms for some limits), one counter per
(account, limit), holds, idempotency records.

These are plain mutable records. The engine reads and updates them; a store only loads them,
hands them to the engine inside one atomic step (a lock, a transaction, a script) and saves
what changed. Times are epoch seconds (float, UTC).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any


class Counter:
    """Usage of one limit by one account.

    anchored: ``start`` is the open window's start (None: no window), ``used`` its units.
    calendar: ``start`` is the period the units belong to, ``used`` its units.
    sliding:  ``entries`` holds [time, units] of each grant still possibly in the window, oldest
              first; ``used`` is their sum.
    """

    __slots__ = ("entries", "start", "used")

    def __init__(
        self, start: float | None = None, used: int = 0, entries: list[list[Any]] | None = None
    ) -> None:
        self.start = start
        self.used = used
        self.entries = entries

    @classmethod
    def stored(cls, start: float | None, used: int, entries: list[list[Any]] | None) -> Counter:
        """A counter as a store read it back. Sliding entries are put in time order, which the
        windows rely on: a kernel before schema 4 appended a grant made after a clock step
        back behind later ones."""
        if entries and any(a[0] > b[0] for a, b in pairwise(entries)):
            entries.sort(key=_time)
        return cls(start, used, entries)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Counter) and (self.start, self.used, self.entries) == (
            other.start,
            other.used,
            other.entries,
        )

    def __repr__(self) -> str:
        return f"Counter(start={self.start!r}, used={self.used!r}, entries={self.entries!r})"


def rows(counters: dict[str, Counter]) -> dict[str, tuple[Any, ...]]:
    """Counters as the SQL stores keep them: ``{limit: [start, used, entries]}``."""
    return {name: (c.start, c.used, c.entries or None) for name, c in counters.items()}


def from_rows(data: dict[str, Any]) -> dict[str, Counter]:
    """``rows`` read back."""
    return {name: Counter.stored(start, used, e) for name, (start, used, e) in data.items()}


def _time(entry: list[Any]) -> float:
    return float(entry[0])


HELD = "held"
COMMITTED = "committed"
RELEASED = "released"
EXPIRED = "expired"


@dataclass
class Hold:
    """A reservation: units charged to windows, returned unless committed before ``expires_at``.

    ``marks`` says which window each limit's units went to (the window/period start, or the
    sliding entry's time), so a release returns them there and nowhere else.
    """

    id: str
    account: str
    feature: str
    amount: int
    marks: dict[str, float]
    expires_at: float
    state: str = HELD
    created_at: float = 0.0
    user: str | None = None  # whose per-user counters (``owners.py``) it charged

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "account": self.account,
            "feature": self.feature,
            "amount": self.amount,
            "marks": self.marks,
            "expires_at": self.expires_at,
            "state": self.state,
            "created_at": self.created_at,
            **({} if self.user is None else {"user": self.user}),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Hold:
        return cls(**data)


@dataclass
class IdempotencyRecord:
    """The first answer given for an idempotency key, kept for 24 h."""

    operation: str  # "consume" or "reserve"
    feature: str
    amount: int
    decision: dict[str, Any]  # Decision.to_json()
    expires_at: float
    reservation_id: str | None = None
    reservation_expires_at: float | None = None
    user: str | None = None  # whose counters it charged, where the feature counts per user

    def to_json(self) -> dict[str, Any]:
        return {
            "operation": self.operation,
            "feature": self.feature,
            "amount": self.amount,
            "decision": self.decision,
            "expires_at": self.expires_at,
            "reservation_id": self.reservation_id,
            "reservation_expires_at": self.reservation_expires_at,
            "user": self.user,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> IdempotencyRecord:
        return cls(**data)


@dataclass
class Adjustment:
    """An account's own terms for one limit. ``max``: replaces every plan's max for the whole
    account (not per seat; a load factor still lowers it); None: the plan's. ``grants``:
    [until, units] of extra units on top of the max, each while ``now < until``."""

    max: int | None = None
    grants: list[list[Any]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return self.max is not None or bool(self.grants)


class Terms(dict[str, Adjustment]):
    """An account's own terms: its adjustments by limit and, as ``billing_anchor``, when its
    billing periods renew (epoch seconds; None: calendar months and weeks in UTC)."""

    billing_anchor: float | None = None


@dataclass
class AccountState:
    """An account as a store keeps it. ``next_hold_expiry`` lets a decision skip hold
    bookkeeping entirely when nothing can have expired."""

    plan: str
    seats: int
    counters: dict[str, Counter] = field(default_factory=dict)
    holds: dict[str, Hold] = field(default_factory=dict)  # held ones only
    next_hold_expiry: float | None = None
    adjustments: Terms = field(default_factory=Terms)  # by limit, and the billing anchor
    # the per-user counters of its users (owners.py), by owner
    owned: dict[str, dict[str, Counter]] = field(default_factory=dict)
    # the marks of its events still standing (``events.py``): mark -> until
    marks: dict[str, float] = field(default_factory=dict)
    # recent denials of this account by request, and until when each stands (memory://'s
    # memo); dropped on every write to the account
    denied: dict[Any, Any] | None = None
