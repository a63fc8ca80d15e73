"""What the sync and async Redis stores share, free of I/O: key names, the counters codec, the
view the slow path runs ``ops`` on, and how a fast-path reply becomes a Decision (the URL is
``redis_url.py``'s). The
scripts are ``redis_scripts.py``'s, the in-process serialisation ``redis_serial.py``'s. See
``redis.py`` for the design."""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections.abc import Callable, Iterable
from math import ceil
from typing import Any

from allowance import adjust, engine, ledger, ops, owners, rules
from allowance.clock import system_clock
from allowance.errors import ConfigurationError, StoreError, StoreUnavailable, UnknownAccount
from allowance.events import NewEvent
from allowance.ledger import Entry
from allowance.ops import HOLD_KEEP
from allowance.policy import Policy
from allowance.request import Request
from allowance.state import HELD, Counter, Hold, IdempotencyRecord
from allowance.stores.redis_events import EventKeys, apply_fields
from allowance.types import Decision
from allowance.view import AccountView, NotLoaded, Preload

# the first pause after a lost race on an account's version (seconds); it doubles, with
# random jitter, up to RETRY_PAUSE_MAX, for as long as the call's deadline allows
RETRY_PAUSE = 0.0005
RETRY_PAUSE_MAX = 0.02
_PREFIX = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")


def _num(x: float) -> str:
    return f"{x:.17g}"


def encode_counters(counters: dict[str, Counter]) -> str:
    """``name=start,used,t:n;t:n|...``: the format decide.lua reads and writes."""
    parts = []
    for name, c in counters.items():
        items = ";".join(f"{_num(t)}:{int(n)}" for t, n in c.entries or ())
        start = "" if c.start is None else _num(c.start)
        parts.append(f"{name}={start},{c.used},{items}")
    return "|".join(parts)


def decode_counters(raw: str) -> dict[str, Counter]:
    out = {}
    for part in raw.split("|") if raw else ():
        name, body = part.split("=", 1)
        start, used, items = body.split(",", 2)
        entries = [[float(t), int(n)] for t, n in (i.split(":") for i in items.split(";") if i)]
        out[name] = Counter.stored(float(start) if start else None, int(used), entries or None)
    return out


def _tag(account: str) -> str:
    # a brace inside the id would end the hash tag early; such ids are tagged by their digest
    if "{" in account or "}" in account:
        return "#" + hashlib.sha1(account.encode()).hexdigest()
    return account


def _ms(seconds: float) -> int:
    return max(1, ceil(seconds * 1000))


def retry_pause(attempt: int) -> float:
    """Seconds to wait before the next try after ``attempt`` lost races on one account: a
    random share of an exponentially growing cap, so writers that collided spread out."""
    return random.uniform(0, min(RETRY_PAUSE_MAX, RETRY_PAUSE * 2**attempt))


def gave_up(account: str, timeout: float) -> StoreUnavailable:
    return StoreUnavailable(
        f"redis: account {account!r} kept changing for {timeout:g} s; nothing was written",
        maybe_applied=False,
    )


class RedisView(AccountView):
    """An account loaded by load.lua. Records named in the preload came with it; another one
    is read on demand (sync store only; the version check covers it either way)."""

    def __init__(
        self,
        keys: KeySpace,
        account_id: str,
        loaded: list[Any],
        preloaded: dict[str, bytes | None],
        fetch: Callable[[str], bytes | None] | None,
    ) -> None:
        self._keys = keys
        self._preloaded = preloaded
        self._fetch = fetch
        self.account_id = account_id
        _, self.version, self.plan, seats, nh, holds, raw, terms = (
            v.decode() if isinstance(v, bytes) else v for v in loaded[:8]
        )
        self.adjustments = adjust.decode(terms)
        self.terms_dirty = False
        self.seats = int(seats)
        self.next_hold_expiry = float(nh) if nh else None
        self.held: dict[str, dict[str, Any]] = json.loads(holds) if holds else {}
        self._counters = decode_counters(raw)
        self.counters_dirty = False
        self.holds_dirty = False
        self.writes: dict[str, tuple[str, float]] = {}  # key -> (value, expires at)
        self._owned = {}
        self._owned_dirty: set[str] = set()
        self.events: list[NewEvent] = []  # written by apply.lua, into the outbox
        self.rows: list[Entry] = []  # the ledger's, appended by apply.lua

    def save_counters(self, counters: dict[str, Counter]) -> None:
        self.counters_dirty = True

    def emit(self, event: NewEvent) -> None:
        self.events.append(event)

    def record(self, rows: list[Entry]) -> None:
        self.rows += rows

    def save_adjustments(self) -> None:
        self.terms_dirty = True

    def load_owned(self, owner: str) -> dict[str, Counter]:
        key = self._keys.owner_key(self.account_id, owner)
        if key not in self._preloaded:
            raise NotLoaded([owner])  # the transaction loads it with the account, and again
        raw = self._preloaded[key]
        return decode_counters(raw.decode() if isinstance(raw, bytes) else (raw or ""))

    def save_owned(self, owner: str) -> None:
        self._owned_dirty.add(owner)

    def _read(self, key: str) -> bytes | str | None:
        if key in self.writes:  # written earlier in this operation (a hold just settled)
            return self.writes[key][0]
        if key in self._preloaded:
            return self._preloaded[key]
        if self._fetch is None:
            raise StoreError(f"redis: {key} was not preloaded for this operation")
        return self._fetch(key)

    def get_idempotency(self, key: str) -> IdempotencyRecord | None:
        raw = self._read(self._keys.key(self.account_id, "i:" + key))
        return None if raw is None else IdempotencyRecord.from_json(json.loads(raw))

    def put_idempotency(self, key: str, record: IdempotencyRecord) -> None:
        value = json.dumps(record.to_json())
        self.writes[self._keys.key(self.account_id, "i:" + key)] = (value, record.expires_at)

    def get_hold(self, hold_id: str) -> Hold | None:
        if hold_id in self.held:
            return Hold.from_json(self.held[hold_id])
        raw = self._read(self._keys.key(self.account_id, "r:" + hold_id))
        return None if raw is None else Hold.from_json(json.loads(raw))

    def put_hold(self, hold: Hold) -> None:
        if hold.state == HELD:
            self.held[hold.id] = hold.to_json()
        else:
            self.held.pop(hold.id, None)
        self.holds_dirty = True
        self.next_hold_expiry = min((h["expires_at"] for h in self.held.values()), default=None)
        key = self._keys.key(self.account_id, "r:" + hold.id)
        self.writes[key] = (json.dumps(hold.to_json()), hold.expires_at + HOLD_KEEP)

    def due_holds(self, now: float) -> list[Hold]:
        return [Hold.from_json(h) for h in self.held.values() if h["expires_at"] <= now]

    def apply_args(self, policy: Policy, now: float) -> tuple[list[str], list[Any]] | None:
        """KEYS and ARGV for apply.lua, or None when nothing changed."""
        if not (
            self.counters_dirty
            or self.holds_dirty
            or self.writes
            or self.terms_dirty
            or self._owned_dirty
            or self.events
            or self.rows
        ):
            return None
        counters_value, ttl = "=", 0
        if self.counters_dirty:
            keep, last = engine.live_counters(policy, self._counters, now)
            counters_value, ttl = encode_counters(keep), _ms(last - now)
        # where the event log is in the script's reach (not on Redis Cluster), its keys too:
        # the events are relayed in the same step, two round trips fewer
        inline = bool(self.events) and not self._keys.cluster
        keys = [
            self._keys.key(self.account_id, "a"),
            self._keys.key(self.account_id, "c"),
            *self._keys.event_keys(self.account_id),
            *(self._keys.event_log.relay_keys(self.account_id) if inline else ()),
            self._keys.ledger_key(self.account_id),
        ]
        argv: list[Any] = [
            self.version,
            counters_value,
            ttl,
            "" if self.next_hold_expiry is None else _num(self.next_hold_expiry),
            json.dumps(self.held) if self.held else "",
            (adjust.encode(self.adjustments) or "") if self.terms_dirty else "=",
            *apply_fields(self.events, _ms, inline),
            len(self.rows),
            repr(ledger.retention(policy)),
            repr(self.rows[0].at if self.rows else now),
            *(row.body() for row in self.rows),
        ]
        for key, (value, expires_at) in self.writes.items():
            keys.append(key)
            argv += [value, _ms(expires_at - now), ""]
        for owner in sorted(self._owned_dirty):
            keep, last = engine.live_counters(policy, self._owned[owner], now)
            key = self._keys.owner_key(self.account_id, owner)
            keys.append(key)
            expect = ""  # an account's own user record: its version covers it
            if owner.startswith(owners.GLOBAL):  # written by other accounts: unchanged since read
                raw = self._preloaded[key]
                expect = (
                    "0" if raw is None else "1" + (raw.decode() if isinstance(raw, bytes) else raw)
                )
            argv += [encode_counters(keep), _ms(last - now), expect]
        return keys, argv


class KeySpace:
    """Key names and script arguments for one ``prefix``; no I/O."""

    def __init__(self, prefix: str) -> None:
        if not _PREFIX.match(prefix):
            raise ConfigurationError(
                f"store: prefix must be letters, digits, _.:- (got {prefix!r})"
            )
        self.prefix = prefix
        self.settings_key = "{" + prefix + ":settings}"  # a hash: setting name -> value
        # every account's id, score 0 (ordered by the bytes of the id: ZRANGEBYLEX pages it);
        # "built" once the accounts made before it existed are in it (``account_page``)
        self.index_key = "{" + prefix + ":accounts}"
        self.index_built_key = self.index_key + ":built"
        self.event_log = EventKeys(prefix)  # the log events are relayed to (redis_events)

    cluster = False  # set by a store on Redis Cluster

    def key(self, account: str, suffix: str) -> str:
        return f"{self.prefix}:{{{_tag(account)}}}:{suffix}"

    def account_keys(self, account: str) -> list[str]:
        """``account.lua``'s keys: the account's hash, its outbox, its ledger and, where one
        script may write both, the index of ids (on Redis Cluster it is in another slot:
        ``index_after``)."""
        own = [self.key(account, "a"), self.key(account, "e"), self.ledger_key(account)]
        return own if self.cluster else [*own, self.index_key]

    def ledger_key(self, account: str) -> str:
        """The account's ledger (a stream of rows, ``ledger.lua``)."""
        return self.key(account, "l")

    def event_keys(self, account: str) -> list[str]:
        """The account's event marks (a hash: mark -> until) and outbox (a list)."""
        return [self.key(account, "m"), self.key(account, "e")]

    def outbox_keys(self, account: str) -> list[str]:
        """outbox.lua's keys: the account's hash and outbox."""
        return [self.key(account, "a"), self.key(account, "e")]

    def index_after(self, account: str) -> list[Any] | None:
        """The command that puts ``account`` in the index after ``account.lua`` ran, when
        the script could not (None: it did). A crash in between leaves it out of the list
        until its next change."""
        return ["ZADD", self.index_key, 0, account] if self.cluster else None

    def index_range(self, prefix: str, after: str | None) -> tuple[bytes, bytes]:
        """ZRANGEBYLEX bounds of the ids that start with ``prefix`` and sort after
        ``after``. No UTF-8 text holds the byte 0xff, so ``prefix + 0xff`` is above them all."""
        low = b"[" + prefix.encode()
        if after is not None and after.encode() >= prefix.encode():
            low = b"(" + after.encode()
        high = b"(" + prefix.encode() + b"\xff" if prefix else b"+"
        return low, high

    def owner_key(self, account: str, owner: str) -> str:
        """A per-user record (``owners.py``): a user's in the account shares the account's
        hash tag (one slot, one script); a user's across accounts is tagged by the user, so
        on a Redis Cluster it sits in another slot, out of reach of the account's script
        (``apart``)."""
        if owner.startswith(owners.USER):
            return self.key(account, "o:" + owner)
        return f"{self.prefix}:{{{_tag(owner)}}}:o"

    def apart(self, account: str, names: Iterable[str]) -> list[str]:
        """The keys of the records ``names`` (owners) in another slot than the account's: on
        Redis Cluster, the users' records across accounts (``owner_key``); elsewhere none."""
        if not self.cluster:
            return []
        return [self.owner_key(account, o) for o in names if o.startswith(owners.GLOBAL)]

    def locked_pair(self, key: str) -> list[str]:
        """A record apart and its lock (same hash tag), the KEYS of global.lua."""
        return [key, key + ":lock"]

    def load_keys(self, account: str, preload: Preload, more: Iterable[str] = ()) -> list[str]:
        """The keys load.lua reads: the account's, the records ``preload`` names and the
        per-user records ``more`` names."""
        keys = [self.key(account, "a"), self.key(account, "c")]
        if preload.idempotency_key is not None:
            keys.append(self.key(account, "i:" + preload.idempotency_key))
        if preload.hold_id is not None:
            keys.append(self.key(account, "r:" + preload.hold_id))
        keys += (self.owner_key(account, owner) for owner in (*preload.owners, *more))
        return keys

    def view(
        self,
        account: str,
        keys: list[str],
        loaded: list[Any],
        fetch: Callable[[str], bytes | None] | None,
    ) -> RedisView:
        if not loaded:
            raise UnknownAccount(account)
        extra = {k: (v or None) for k, v in zip(keys[2:], loaded[8:], strict=True)}
        return RedisView(self, account, loaded, extra, fetch)

    def decide_args(
        self, policy: Policy, req: Request, now: float | None, charge: bool
    ) -> tuple[list[str], list[Any]] | None:
        """KEYS and ARGV of decide.lua for one request: the account's keys, then the user's
        records its feature counts in (``owners.needed``, the order ``Encoded.records``
        names them by); None when one of them is in another slot (Redis Cluster: the
        transaction path decides)."""
        argv: list[Any] = [
            "" if now is None else _num(now),
            req.amount,
            1 if req.partial else 0,
            1 if charge else 0,
            req.feature,
            "",
            "",
        ]
        if charge and policy.ledger_keep is not None:
            argv[5] = ledger.head(req.feature, req.idempotency_key, req.user)
            argv[6] = repr(policy.ledger_keep)
        compiled = rules.compiled(policy, req.feature)
        if compiled.periods:
            at = now if now is not None else system_clock()  # a local estimate of Redis TIME
            argv += compiled.bounds_as(at, _bound_args)
        keys = [self.key(req.account, "a"), self.key(req.account, "c")]
        needed = owners.needed(policy, req.feature, req.user)
        if self.cluster and self.apart(req.account, needed):
            return None
        keys += (self.owner_key(req.account, owner) for owner in needed)
        if argv[5]:
            keys.append(self.ledger_key(req.account))
        return keys, argv


def _bound_args(bounds: tuple[float, ...]) -> list[str]:
    return [_num(b) for b in bounds]


def read_decision(policy: Policy, req: Request, reply: list[Any]) -> Decision | None:
    """Replay the engine on the counters decide.lua saw; None when it asked for the slow
    path. The script's grant and the engine's must agree."""
    status = reply[0]
    if status == b"unknown":
        raise UnknownAccount(req.account)
    if status == b"slow":
        return None
    plan, seats, granted = reply[4].decode(), int(reply[5]), int(reply[3])

    def replay() -> Decision:
        counters = decode_counters(reply[2].decode())
        if len(reply) > 9:  # the user's records beside the account's
            stored = [counters, *(decode_counters(raw.decode()) for raw in reply[9:])]
            counters = rules.compiled(policy, req.feature).merged(stored)
        terms = adjust.decode(reply[8].decode())
        at = float(reply[1])
        return ops.replay(policy, req, plan, seats, counters, terms, at, granted, "redis")

    if granted == 0:
        return ops.one_step_decision(0, None, False, replay)
    remaining = None if reply[6] == b"" else int(reply[6])
    return ops.one_step_decision(granted, remaining, reply[7] == 1, replay)
