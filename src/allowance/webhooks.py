"""Webhooks (CONTRACT section 8): events POSTed to a product's URL, signed, retried.

Everything a webhook needs is kept in the store's settings, which every store has and every
server on a store shares, changed only by compare-and-set (``Store.swap_setting``), so no
store needs tables of its own and several servers agree without talking to each other:

* ``webhooks``: the registrations, ``{id: {url, events, secret, created_at}}``;
* ``webhooks.state.<id>``: one webhook's cursor (the last event id it has taken in) and its
  deliveries, newest first: the pending ones (with their next try) and the last ``LOG_SIZE``
  done, delivered or given up;
* ``webhooks.lease``: which server's worker delivers now, until when (``webhook_worker.py``).

An event is taken in (the cursor moves past it) in the same write that records its pending
delivery, and a delivery leaves "pending" only in the write after its answer, so a server
killed at any point loses none; one killed between a receiver's 2xx and that write sends it
again (at least once; a receiver deduplicates by ``Allowance-Event-Id``).

Signing: ``Allowance-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`` with
the webhook's secret, shown once when it is added (``verify`` checks one, for receivers).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlsplit

from allowance import events
from allowance.errors import InvalidRequest, StoreUnavailable
from allowance.stores.base import Store
from allowance.types import iso, to_datetime

__all__ = [
    "FIRST_RETRY",
    "TRIES",
    "Delivery",
    "Webhook",
    "add",
    "deliveries",
    "registered",
    "remove",
    "sign",
    "verify",
]

REGISTRY = "webhooks"
LEASE = "webhooks.lease"
FIRST_RETRY = 1.0  # seconds before the first retry; each next waits twice as long
MAX_PAUSE = 3600.0  # the longest wait between two tries
TRIES = 8  # tries of one delivery before it is given up (1 s, 2 s, ... 64 s: ~2 min)
LOG_SIZE = 100  # finished deliveries kept per webhook
MAX_URL = 2048
SWAP_TRIES = 50  # compare-and-set rounds before a settings change gives up


def state_name(hook_id: str) -> str:
    return f"webhooks.state.{hook_id}"


@dataclass(frozen=True, slots=True)
class Webhook:
    id: str
    url: str
    events: tuple[str, ...] | None  # None: every type
    created_at: float
    secret: str

    def wants(self, event_type: str) -> bool:
        return self.events is None or event_type in self.events

    def to_json(self) -> dict[str, Any]:
        """As the API shows it: never the secret (shown once, by ``add``)."""
        return {
            "id": self.id,
            "url": self.url,
            "events": None if self.events is None else list(self.events),
            "created_at": iso(to_datetime(self.created_at)),
        }

    def record(self) -> dict[str, Any]:
        return {"url": self.url, "events": self.events, "created_at": self.created_at,
                "secret": self.secret}  # fmt: skip

    @classmethod
    def of(cls, hook_id: str, r: dict[str, Any]) -> Webhook:
        kinds = None if r["events"] is None else tuple(r["events"])
        return cls(hook_id, r["url"], kinds, float(r["created_at"]), r["secret"])


@dataclass(slots=True)
class Delivery:
    """One event's delivery to one webhook."""

    event_id: int
    type: str
    status: str = "pending"  # pending | delivered | failed
    attempts: int = 0
    next_at: float = 0.0  # when the next try is due (pending only)
    last_at: float | None = None  # when it was last tried
    code: int | None = None  # the last answer's HTTP status
    error: str | None = None  # the last try's failure, in words
    event: dict[str, Any] = field(default_factory=dict)  # the body sent (pending only)

    def to_json(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "type": self.type,
            "status": self.status,
            "attempts": self.attempts,
            "next_at": iso(to_datetime(self.next_at)) if self.status == "pending" else None,
            "last_at": iso(to_datetime(self.last_at)),
            "code": self.code,
            "error": self.error,
        }

    def record(self) -> dict[str, Any]:
        return asdict(self)  # every field, as ``of`` reads it back

    @classmethod
    def of(cls, r: dict[str, Any]) -> Delivery:
        return cls(**r)


@dataclass(slots=True)
class State:
    """A webhook's cursor and deliveries, newest first, as kept in its setting."""

    cursor: int = 0
    deliveries: list[Delivery] = field(default_factory=list)

    def dump(self) -> str:
        return json.dumps({"cursor": self.cursor,
                           "deliveries": [d.record() for d in self.deliveries]})  # fmt: skip

    @classmethod
    def load(cls, raw: str | None) -> State:
        if raw is None:
            return cls()
        d = json.loads(raw)
        return cls(int(d["cursor"]), [Delivery.of(r) for r in d["deliveries"]])

    def trimmed(self) -> State:
        """The pending ones and the last ``LOG_SIZE`` finished (newest first)."""
        kept, finished = [], 0
        for d in self.deliveries:
            if d.status != "pending":
                finished += 1
                if finished > LOG_SIZE:
                    continue
            kept.append(d)
        return State(self.cursor, kept)


def sign(secret: str, t: int, body: bytes) -> str:
    """The ``Allowance-Signature`` header of ``body`` sent at unix time ``t``."""
    mac = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def verify(secret: str, header: str, body: bytes, now: float, tolerance: float = 300) -> bool:
    """Whether ``header`` signs ``body`` with ``secret`` within ``tolerance`` seconds of
    ``now`` (for a receiver: an old signature replayed is refused)."""
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    try:
        t = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs(now - t) > tolerance:
        return False
    return hmac.compare_digest(sign(secret, t, body), f"t={t},v1={parts.get('v1', '')}")


def update(store: Store, name: str, change: Callable[[str | None], str | None]) -> bool:
    """Apply ``change`` to a setting by compare-and-set, again while others change it;
    ``change`` returning None writes nothing (returns False)."""
    for _ in range(SWAP_TRIES):
        old = store.get_setting(name)
        new = change(old)
        if new is None:
            return False
        if store.swap_setting(name, old, new):
            return True
    raise StoreUnavailable(f"store: setting {name!r} kept changing; nothing was written")


def registered(store: Store) -> list[Webhook]:
    raw = store.get_setting(REGISTRY)
    found = {} if raw is None else json.loads(raw)
    hooks = [Webhook.of(i, r) for i, r in found.items()]
    return sorted(hooks, key=lambda h: (h.created_at, h.id))


def add(store: Store, url: str, kinds: list[str] | None, now: float) -> Webhook:
    """Register ``url`` for the events of ``kinds`` (None: all). The returned webhook holds
    its secret, which nothing shows again."""
    checked_url(url)
    if kinds is not None:
        if not kinds:
            raise InvalidRequest("events", kinds, "expected at least one event type (or none)")
        for kind in kinds:
            if kind not in events.TYPES:
                expected = f"expected one of {', '.join(events.TYPES)}"
                raise InvalidRequest("events", kind, expected)
        kinds = list(dict.fromkeys(kinds))
    hook = Webhook(
        "wh_" + secrets.token_hex(8), url, None if kinds is None else tuple(kinds), now,
        "whsec_" + secrets.token_urlsafe(24),
    )  # fmt: skip
    # from the events written from now on: the cursor starts at the last one there is
    store.put_setting(state_name(hook.id), State(store.newest_event_id()).dump())

    def put(raw: str | None) -> str:
        found = {} if raw is None else json.loads(raw)
        return json.dumps({**found, hook.id: hook.record()})

    update(store, REGISTRY, put)
    return hook


def remove(store: Store, hook_id: str) -> bool:
    def drop(raw: str | None) -> str | None:
        found = {} if raw is None else json.loads(raw)
        if hook_id not in found:
            return None
        del found[hook_id]
        return json.dumps(found)

    if not update(store, REGISTRY, drop):
        return False
    # after the registry: a worker finding a listed hook with no state takes it as removed
    store.delete_setting(state_name(hook_id))
    return True


def deliveries(store: Store, hook_id: str) -> list[Delivery] | None:
    """A webhook's deliveries, newest first (None: no such webhook)."""
    if all(h.id != hook_id for h in registered(store)):
        return None
    return State.load(store.get_setting(state_name(hook_id))).deliveries


def checked_url(url: object) -> str:
    if not isinstance(url, str) or len(url) > MAX_URL:
        raise InvalidRequest("url", url, f"expected an http(s) URL of at most {MAX_URL} characters")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidRequest("url", url, "expected an http:// or https:// URL with a host")
    return url
