"""The ledger (CONTRACT section 8): an append-only record of what changed an account's usage
or terms, with who did it, for finance and support.

One row per counter changed: a charge of a feature that counts against two limits is two
rows, each with the units that limit counted (``amount``: credits where the limit has costs;
negative where units went back, a release or an expiry), so the amounts of one limit's rows
add up to what it counted. Plan changes, overrides, grants and billing-anchor changes are a
row each. ``key_id`` is the API key the change was made with (``acting_as``: the service sets
it for each request), ``idempotency_key`` the request's.

A row is written by the same atomic step as the change, through ``AccountView.record`` (the
operations in ``ops.py``) or, in the one-step kernels (Redis ``decide.lua``, PostgreSQL
``decide()``), from ``head``: everything of a charge's rows but the limit, the amount and the
time, which the kernel adds. Stores keep rows per account, in the order written, for the
policy's ``ledger.keep`` (a sweep, or on Redis each append, drops older ones).
"""

from __future__ import annotations

import contextlib
import functools
import json
import re
from collections.abc import Iterable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

from allowance.errors import InvalidRequest
from allowance.types import iso, parse_iso, to_datetime

if TYPE_CHECKING:
    from allowance.policy import Policy, Rule
    from allowance.state import Hold

__all__ = [
    "KINDS",
    "Charge",
    "Entry",
    "LedgerPage",
    "Row",
    "acting",
    "acting_as",
    "after_cursor",
    "head",
]

CHARGE = "charge"
RELEASE = "release"
COMMIT = "commit"
EXPIRY = "expiry"
PLAN_CHANGE = "plan_change"
OVERRIDE = "override"
GRANT = "grant"
BILLING_ANCHOR = "billing_anchor"
KINDS = (CHARGE, RELEASE, COMMIT, EXPIRY, PLAN_CHANGE, OVERRIDE, GRANT, BILLING_ANCHOR)
#: the policy's default retention: 90 days
KEEP = 90 * 86400.0
#: the columns of an export (csv) and the members of a row (json)
COLUMNS = (
    "cursor",
    "at",
    "kind",
    "account",
    "feature",
    "limit",
    "amount",
    "key_id",
    "idempotency_key",
    "user",
    "data",
)

#: who is acting: the API key id a change is made with (None: the library, no key)
acting: ContextVar[str | None] = ContextVar("allowance_acting_key", default=None)


@contextlib.contextmanager
def acting_as(key_id: str | None) -> Iterator[None]:
    """Record the changes made inside as made with ``key_id`` (the ledger's ``key_id``)."""
    token = acting.set(key_id)
    try:
        yield
    finally:
        acting.reset(token)


class Entry(NamedTuple):
    """A row as an operation writes it, before the store gives it its place: ``Row``'s fields
    but the cursor, in its order."""

    at: float
    kind: str
    account: str
    feature: str | None
    limit: str | None
    amount: int
    key_id: str | None
    idempotency_key: str | None
    user: str | None
    data: dict[str, Any]

    def body(self, at: str | None = None) -> str:
        """As stores keep it: ``head`` then the limit, the amount and the time (``at``: the
        time as text instead, a placeholder a script replaces)."""
        start = _head(
            self.kind, self.feature, self.key_id, self.idempotency_key, self.user, self.data
        )
        when = repr(self.at) if at is None else at
        return f"{start},{json.dumps(self.limit)},{self.amount},{when}]"


def _head(
    kind: str,
    feature: str | None,
    key_id: str | None,
    idempotency_key: str | None,
    user: str | None,
    data: dict[str, Any],
) -> str:
    return json.dumps([kind, feature, key_id, idempotency_key, user, data], separators=(",", ":"))[
        :-1
    ]


def head(feature: str, idempotency_key: str | None, user: str | None) -> str:
    """What a kernel's charge rows start with (an unclosed JSON array): it appends
    ``,<limit as JSON>,<amount>,<at>]`` for each counter it charged."""
    return _charge_head(feature, acting.get(), idempotency_key, user)


@functools.lru_cache(maxsize=4096)  # the decision path: the same few heads over and over
def _charge_head(
    feature: str, key_id: str | None, idempotency_key: str | None, user: str | None
) -> str:
    return _head(CHARGE, feature, key_id, idempotency_key, user, {})


@dataclass(frozen=True, slots=True)
class Row:
    """A row as read back; ``cursor`` is its place in the account's ledger."""

    cursor: str
    at: float
    kind: str
    account: str
    feature: str | None
    limit: str | None
    amount: int
    key_id: str | None
    idempotency_key: str | None
    user: str | None
    data: dict[str, Any]

    @classmethod
    def stored(cls, cursor: str, account: str, body: str | bytes) -> Row:
        kind, feature, key_id, idem, user, data, limit, amount, at = json.loads(body)
        return cls(
            cursor, float(at), kind, account, feature, limit, int(amount), key_id, idem, user, data
        )

    def within(self, since: float | None, until: float | None) -> bool:
        """Whether the row is at or after ``since`` and before ``until`` (None: unbounded)."""
        return (since is None or self.at >= since) and (until is None or self.at < until)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Row:
        """``to_json`` read back (``Client.ledger``)."""
        at = parse_iso(d["at"])
        assert at is not None
        return cls(
            d["cursor"],
            at.timestamp(),
            d["kind"],
            d["account"],
            d["feature"],
            d["limit"],
            int(d["amount"]),
            d["key_id"],
            d["idempotency_key"],
            d["user"],
            d["data"],
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "cursor": self.cursor,
            "at": iso(to_datetime(self.at)),
            "kind": self.kind,
            "account": self.account,
            "feature": self.feature,
            "limit": self.limit,
            "amount": self.amount,
            "key_id": self.key_id,
            "idempotency_key": self.idempotency_key,
            "user": self.user,
            "data": self.data,
        }

    def csv_fields(self) -> list[object]:
        """The row for ``COLUMNS``: empty for none, ``data`` as JSON."""
        d = self.to_json()
        d["data"] = json.dumps(self.data, separators=(",", ":")) if self.data else ""
        return ["" if d[c] is None else d[c] for c in COLUMNS]


@dataclass(frozen=True, slots=True)
class LedgerPage:
    rows: list[Row]
    next_cursor: str | None  # None: this was the last page

    def to_json(self) -> dict[str, Any]:
        return {"rows": [r.to_json() for r in self.rows], "next_cursor": self.next_cursor}


_CURSOR = re.compile(r"\d{1,20}(-\d{1,20})?")


def after_cursor(cursor: object) -> str | None:
    """``cursor`` checked as a row's cursor (None: from the first row)."""
    if cursor is None:
        return None
    if not isinstance(cursor, str) or not _CURSOR.fullmatch(cursor):
        raise InvalidRequest("cursor", cursor, "expected the cursor of a ledger row")
    return cursor


def retention(policy: Policy | None) -> float:
    """How long rows are kept: the policy's ``ledger.keep`` (the default when off or none:
    turning the ledger off stops writing, it does not drop what was written)."""
    keep = None if policy is None else policy.ledger_keep
    return KEEP if keep is None else keep


def seq_of(cursor: str | None) -> int:
    """A checked cursor as the row number a SQL or memory store gives (0: from the first)."""
    if cursor is None:
        return 0
    if "-" in cursor:
        raise InvalidRequest("cursor", cursor, "expected the cursor of a ledger row")
    return int(cursor)


#: a charge as the decision path hands it to the ledger (``AccountView.record_charge``):
#: (rules decided on, at, feature, units granted, idempotency key, user, reservation id or
#: None). A plain tuple: one is made for every grant.
Charge = tuple["tuple[Rule, ...]", float, str, int, "str | None", "str | None", "str | None"]


def charged(account: str, charge: Charge) -> list[Entry]:
    """The rows of a charge: one per rule, with the units it counted (each rule knows its
    cost), made with the key acting now."""
    rules, at, feature, units, idempotency_key, user, reservation = charge
    who = acting.get()
    data: dict[str, Any] = {} if reservation is None else {"reservation": reservation}
    return [
        Entry(at, CHARGE, account, feature, r.limit.name, units * r.cost, who, idempotency_key,
              user, data)
        for r in rules
    ]  # fmt: skip


def counted(
    policy: Policy,
    kind: str,
    at: float,
    account: str,
    feature: str,
    names: Iterable[str],
    units: int,
    idempotency_key: str | None = None,
    user: str | None = None,
    data: dict[str, Any] | None = None,
) -> list[Entry]:
    """The rows of ``units`` of ``feature`` counted (negative: returned) by limits ``names``."""
    who, extra, limits = acting.get(), data or {}, policy.limits
    return [
        Entry(at, kind, account, feature, name, units * limits[name].cost(feature), who,
              idempotency_key, user, extra)
        for name in names
    ]  # fmt: skip


def of_hold(
    policy: Policy, kind: str, hold: Hold, units: int, at: float, **data: Any
) -> list[Entry]:
    """The rows of ``units`` of a reservation's feature changing its counters (negative:
    going back), for a release, an expiry or a commit; they name the reservation."""
    return counted(
        policy, kind, at, hold.account, hold.feature, hold.marks, units, user=hold.user,
        data={"reservation": hold.id, **data},
    )  # fmt: skip


def plan_change(account: str, old: str, new: str, seats: int, at: float) -> Entry:
    """The row of a plan (or seat count) change."""
    return term(PLAN_CHANGE, at, account, None, 0, **{"from": old, "to": new, "seats": seats})


def term(kind: str, at: float, account: str, limit: str | None, amount: int, **data: Any) -> Entry:
    """A row of a change of the account's terms or plan (no feature)."""
    return Entry(at, kind, account, None, limit, amount, acting.get(), None, None, data)
