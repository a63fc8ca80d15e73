"""Events on Redis (``events.py``; CONTRACT section 8), free of I/O.

An event is written with its charge into the account's outbox (``apply.lua``,
``account.lua``: a list in the account's slot, each entry numbered by the account's own
sequence), then relayed into the store's log (``relay.lua``: a stream in a slot of its own,
ids from one counter, so they increase in the order events reach it; and per account a sorted
set of its ids, for ``events(account=...)``, ``events_page.lua``: a stream per account, as
before, cost 4.7 KB for an account with one event), then trimmed from the outbox. Where one
script can reach both slots (plain Redis, Sentinel) ``apply.lua`` relays a charge's events
itself, in the same step; on Redis Cluster the log's slot is another node's, so the relay
(``events.lua``) and the trim (``outbox.lua``) are two more round trips, and so they are for
a plan change everywhere (rare; one path).

A process that stops between those steps leaves entries in the outbox (its account's hash
says so: ``ob``): the next event of that account relays them with its own, and ``sweep``
relays what is left. The log remembers each account's last sequence relayed, so an entry
relayed twice (a relay whose trim did not happen) is logged once.
"""

from __future__ import annotations

import json
from typing import Any

from allowance import events
from allowance.events import Event, NewEvent
from allowance.policy import Policy
from allowance.stores.redis_scripts import lua

__all__ = [
    "DROP",
    "OUTBOX",
    "PAGE_EVENTS",
    "RELAY",
    "EventKeys",
    "apply_fields",
    "drop_call",
    "outbox_of",
    "plan_change_template",
    "range_args",
    "read",
    "too_old",
]

RELAY = lua("events")
OUTBOX = lua("outbox")
DROP = lua("events_drop")
PAGE_EVENTS = lua("events_page")
FROM, AT = "\x00from\x00", "\x00at\x00"  # account.lua puts the old plan and the time there


class EventKeys:
    """The event log's keys for one store prefix: one hash tag, so one slot."""

    def __init__(self, prefix: str) -> None:
        base = "{" + prefix + ":events}"
        self.log, self.last_id, self.relayed = base + ":log", base + ":id", base + ":relayed"
        self._index, self._stream = base + ":ai:", base + ":a:"

    def index(self, account: str) -> str:
        """One account's event ids, a sorted set (the braces of an id do not matter: the tag
        is the first pair)."""
        return self._index + account

    def stream_of(self, account: str) -> str:
        """One account's events as a stream, as relayed before there was an index (read and
        dropped, never written)."""
        return self._stream + account

    def relay_keys(self, account: str) -> list[str]:
        return [self.log, self.last_id, self.relayed, self.index(account)]

    def page_call(self, account: str, after: int, limit: int) -> tuple[list[str], list[Any]]:
        """KEYS and ARGV of ``events_page.lua``."""
        return [self.log, self.index(account), self.stream_of(account)], [after, limit]


def apply_fields(found: list[NewEvent], ms: Any, inline: bool) -> list[Any]:
    """apply.lua's event arguments: their number, whether the log's keys follow the outbox's
    (``inline``), then per event mark, until, the mark's TTL in ms, time and body. ``ms``:
    seconds -> a TTL in whole ms (at least 1)."""
    out: list[Any] = [len(found), "1" if inline else "0"]
    for event in found:
        out += [
            event.mark or "",
            f"{event.until:.17g}",
            ms(event.until - event.at),
            f"{event.at:.17g}",
            event.body(),
        ]
    return out


def plan_change_template(
    policy: Policy | None, account: str, plan: str, seats: int, now: float | None
) -> str:
    """account.lua's last argument: the account.plan_changed event's body with the old plan
    (and, when ``now`` is None, the time) left for the script to put in; '' when the store's
    policy has events off (or it has none, as in ``allowance accounts set`` run without one:
    no event, as on every store)."""
    if policy is None or not policy.events:
        return ""
    body = events.plan_changed(account, FROM, plan, seats, 0.0 if now is None else now).body()
    return body if now is not None else body.replace('"at":0.0', '"at":' + json.dumps(AT), 1)


def outbox_of(reply: Any) -> list[bytes] | None:
    """The outbox entries a script returned for the relay (None: it wrote no event)."""
    return list(reply[1:]) if isinstance(reply, list) and len(reply) > 1 else None


def read(entries: list[Any]) -> list[Event]:
    """Events from XRANGE entries (of the log, or ``events_page.lua``'s)."""
    out = []
    for entry_id, fields in entries:
        raw = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
        body = fields[b"b"] if isinstance(fields, dict) else fields[1]
        out.append(Event.stored(int(raw.split("-", 1)[0]), body))
    return out


def range_args(keys: EventKeys, after: int, limit: int) -> list[Any]:
    """The XRANGE command of one page of the log: ids above ``after``, oldest first."""
    return ["XRANGE", keys.log, f"({after}-0", "+", "COUNT", limit]


def too_old(entries: list[Any], cutoff: float) -> list[tuple[str, str]]:
    """(id, account) of the leading entries of a log page older than ``cutoff`` (the log is
    in id order, which follows time: the sweep drops from the front until a newer one)."""
    out = []
    for event in read(entries):
        if event.at >= cutoff:
            break
        out.append((f"{event.id}-0", event.account))
    return out


def drop_call(keys: EventKeys, old: list[tuple[str, str]]) -> tuple[list[str], list[str]]:
    """KEYS and ARGV of ``events_drop.lua`` for the events ``too_old`` picked."""
    accounts = [k for _, a in old for k in (keys.index(a), keys.stream_of(a))]
    return [keys.log, *accounts], [i for i, _ in old]
