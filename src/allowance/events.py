"""Events (CONTRACT section 8): what a product hears when usage crosses a threshold, reaches a
limit or passes a fair-use level, when a plan changes, when a reservation expires.

An event is found here, in Python, by the operation that causes it (``ops.py``, on the
counters before and after its charge) and handed to the view (``AccountView.emit``), which
writes it in the same atomic step as the charge: an outbox. The one-step kernels never write
one: a charge that would cross a level (``rules.Encoded``'s ``levels`` and ``reach``) is sent
to the transaction path instead (``crosses`` is that test, which the kernels repeat), so how an
event is worded, deduplicated and stored exists once. That costs one slower decision per level
per window.

Once per window. A crossing event carries a ``mark`` (its kind, limit, threshold and user) and
until when it stands (the end of the window it was counted in); a store writes the event only
when no event of that mark stands, and keeps the mark with it, so a release and a second
crossing in the same window stay silent.

"Reached" is the charge after which nothing more of the limit fits (less than its cheapest
feature's cost is left): written with that charge, so a denial never writes and a denied
request or a check cause no event.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from allowance import listing
from allowance.errors import InvalidRequest
from allowance.policy import Limit, Policy, Rule
from allowance.state import Counter, Hold
from allowance.types import iso, to_datetime

if TYPE_CHECKING:
    from allowance.engine import Ruling

__all__ = [
    "FAIR_USE_EXCEEDED",
    "LIMIT_REACHED",
    "PLAN_CHANGED",
    "RESERVATION_EXPIRED",
    "THRESHOLD",
    "TYPES",
    "Event",
    "NewEvent",
    "crosses",
    "crossings",
    "levels",
    "page_size",
]

THRESHOLD = "usage.threshold"
LIMIT_REACHED = "usage.limit_reached"
FAIR_USE_EXCEEDED = "usage.fair_use_exceeded"
PLAN_CHANGED = "account.plan_changed"
RESERVATION_EXPIRED = "reservation.expired"
#: every type, the list a webhook's ``events`` is checked against
TYPES = (THRESHOLD, LIMIT_REACHED, FAIR_USE_EXCEEDED, PLAN_CHANGED, RESERVATION_EXPIRED)
MAX_PAGE = listing.MAX_PAGE  # events one call returns at most
#: how long a store keeps events (then a sweep drops them): 30 days
KEEP = 30 * 86400.0


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An event an operation emits, before the store gives it its id. ``mark``: written only
    if no event of this mark stands (None: always); ``until``: when the mark stops standing."""

    type: str
    at: float
    account: str
    limit: str | None
    data: dict[str, Any]
    mark: str | None = None
    until: float = 0.0

    def body(self) -> str:
        """As stores keep it (its id is the store's)."""
        return json.dumps(
            {
                "type": self.type,
                "at": self.at,
                "account": self.account,
                "limit": self.limit,
                "data": self.data,
            },
            separators=(",", ":"),
        )


@dataclass(frozen=True, slots=True)
class Event:
    """An event as read back: ``id``s increase in the order events were written."""

    id: int
    type: str
    at: float
    account: str
    limit: str | None
    data: dict[str, Any]

    @classmethod
    def stored(cls, event_id: int, body: str | bytes) -> Event:
        d = json.loads(body)
        return cls(int(event_id), d["type"], float(d["at"]), d["account"], d["limit"], d["data"])

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Event:
        """``to_json`` read back (``Client.events``)."""
        at = datetime.fromisoformat(data["at"].replace("Z", "+00:00")).timestamp()
        return cls(int(data["id"]), data["type"], at, data["account"], data["limit"], data["data"])

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": self.type,
            "at": iso(to_datetime(self.at)),
            "account": self.account,
            "limit": self.limit,
            "data": self.data,
        }


def page_size(limit: object) -> int:
    """``limit`` checked as a page size: the same bounds as a page of accounts."""
    return listing.size(limit)


def after_id(after: object) -> int:
    if after is None:
        return 0
    if isinstance(after, bool) or not isinstance(after, int) or after < 0:
        raise InvalidRequest("after", after, "expected an event id (a whole number >= 0)")
    return after


def levels(
    used: int, units: int, cap: int | None, soft: int | None, limit: Limit
) -> list[tuple[str, float | None]]:
    """The levels of ``limit`` that charging ``units`` onto ``used`` crosses, as (event type,
    threshold): each threshold (a fraction of ``cap``), the point where less than its
    cheapest cost is left, or the soft (fair-use) level of an uncapped cell."""
    after = used + units
    if cap is None:
        return [(FAIR_USE_EXCEEDED, None)] if soft is not None and used <= soft < after else []
    found: list[tuple[str, float | None]] = []  # (a loop: most charges cross nothing, and
    for f in limit.thresholds:  # a comprehension costs a frame on every one of them)
        if used < f * cap <= after:
            found.append((THRESHOLD, f))
    if cap - after < limit.least_cost:
        found.append((LIMIT_REACHED, None))
    return found


def crosses(used: int, units: int, cap: int | None, soft: int | None, limit: Limit) -> bool:
    """Whether the charge crosses any level (``levels``): what the kernels test, reading
    ``rules.Encoded``'s ``reach`` and ``levels``."""
    return bool(levels(used, units, cap, soft, limit))


def crossings(
    policy: Policy,
    ruling: Ruling,
    plan: str,
    seats: int,
    feature: str,
    counters: Mapping[str, Counter],
    now: float,
    account: str,
    user: str | None,
) -> list[NewEvent]:
    """The events a charged ruling causes; ``counters`` are as charged, the ruling's
    ``used`` as before; none when the policy has events off."""
    if not policy.events:
        return []
    out: list[NewEvent] = []
    for rule, used in zip(ruling.rules, ruling.used, strict=True):
        cell, limit = rule.cell, rule.limit
        cap = cell.cap(seats)
        soft = None if cap is not None else cell.soft_cap(seats)  # (levels reads it only then)
        charged = ruling.granted * rule.cost
        found = levels(used, charged, cap, soft, limit)
        if not found:
            continue
        resets = limit.window.span(counters[limit.name], now)[1]
        who = "" if limit.scope == "account" or user is None else user
        data: dict[str, Any] = {"feature": feature, "used": used + charged}
        if who:
            data["user"] = who
        if cap is None:
            data.update(fair_use=soft, resets_at=_iso(resets))
        else:
            upgrade = _upgrade(policy, plan, seats, rule, cap)
            data.update(max=cap, resets_at=_iso(resets), upgrade=upgrade)
        until = now if resets is None else resets
        for kind, threshold in found:
            extra = {} if threshold is None else {"threshold": threshold}
            mark = f"{kind}|{limit.name}|{'' if threshold is None else repr(threshold)}|{who}"
            out.append(NewEvent(kind, now, account, limit.name, {**data, **extra}, mark, until))
    return out


def expired(hold: Hold, now: float) -> NewEvent:
    data: dict[str, Any] = {
        "reservation": hold.id,
        "feature": hold.feature,
        "amount": hold.amount,
        "expires_at": _iso(hold.expires_at),
    }
    if hold.user is not None:
        data["user"] = hold.user
    return NewEvent(RESERVATION_EXPIRED, now, hold.account, None, data)


def plan_changed(account: str, old: str, new: str, seats: int, now: float) -> NewEvent:
    data = {"from": old, "to": new, "seats": seats}
    return NewEvent(PLAN_CHANGED, now, account, None, data)


def _iso(ts: float | None) -> str | None:
    return iso(to_datetime(ts))


def _upgrade(policy: Policy, plan: str, seats: int, rule: Rule, cap: int) -> str | None:
    """The cheapest higher plan giving more of this limit (None: none does)."""
    rank = policy.plan_by_name[plan].rank
    for other in policy.plans[rank + 1 :]:
        cell = rule.limit.cells[other.name]
        if cell.access:
            more = cell.cap(seats)
            if more is None or more > cap:
                return other.name
    return None
