"""``redis://host:port/db`` and ``redis+cluster://host:port``: many app servers, one truth.

Why two paths. A plain ``consume`` or ``check`` is one ``EVALSHA`` of ``lua/decide.lua``: the
script reads the account and its counters, applies the grant arithmetic (the all-or-nothing or
partial check over every limit of the feature, the same IEEE operations as ``windows.py``),
charges, and returns the counters as they were before. Python then replays ``engine.decide`` on
those counters at the script's time, which yields the whole decision (blocking limit,
``resets_at``, upgrade, message) and must agree on the grant. So the rules that need atomicity
exist twice (Lua and ``windows.py``), held equal by the shared conformance and hypothesis
suites, and everything else stays in the engine. Idempotent requests, reservations, usage and
expired holds take the slow path: ``lua/load.lua`` reads the state, ``ops.py`` runs exactly as
for the other stores, and ``lua/apply.lua`` writes the result only if the account's version is
unchanged (every write bumps it), else Python retries on fresh state. Two round trips, rare.

Keys. All keys of an account share one hash tag, ``{account}``, so every script touches one
Redis Cluster slot. ``P:{a}:a`` is the account hash (plan, seats, version, held reservations),
``P:{a}:c`` its counters (expires when the last window closes), ``P:{a}:i:KEY`` an idempotency
record (24 h), ``P:{a}:r:ID`` a reservation record (until 24 h after its expiry). ``P`` is the
``prefix`` URL option (default ``allowance``). Times are epoch seconds written with 17
significant digits, so they survive Lua and back exactly.

Time is Redis ``TIME`` inside the scripts, unless the Limiter has a clock.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib import resources
from math import ceil
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import redis
import redis.cluster
from redis.exceptions import RedisClusterException, RedisError

from allowance import engine, ops
from allowance.clock import system_clock as _local
from allowance.errors import ConfigurationError, StoreError, UnknownAccount
from allowance.ops import HOLD_KEEP, Request
from allowance.policy import Policy
from allowance.state import HELD, Counter, Hold, IdempotencyRecord
from allowance.stores.base import AccountView, Store
from allowance.types import Account, Decision
from allowance.windows import CalendarWindow

T = TypeVar("T")
MAX_ATTEMPTS = 50
_PREFIX = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")


def _script(name: str) -> str:
    return resources.files("allowance.stores").joinpath(f"lua/{name}.lua").read_text("utf-8")


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
        out[name] = Counter(float(start) if start else None, int(used), entries or None)
    return out


def _tag(account: str) -> str:
    # a brace inside the id would end the hash tag early; such ids are tagged by their digest
    if "{" in account or "}" in account:
        return "#" + hashlib.sha1(account.encode()).hexdigest()
    return account


def _ms(seconds: float) -> int:
    return max(1, ceil(seconds * 1000))


@contextmanager
def _translate() -> Iterator[None]:
    """redis-py errors become ``StoreError`` at this one point (the cluster client's own
    errors are not ``RedisError`` subclasses)."""
    try:
        yield
    except (RedisError, RedisClusterException) as exc:
        raise StoreError(f"redis: {exc}") from exc


class RedisView(AccountView):
    def __init__(self, store: RedisStore, account_id: str, loaded: list[Any]) -> None:
        self._store = store
        self.account_id = account_id
        _, self.version, self.plan, seats, nh, holds, raw = (
            v.decode() if isinstance(v, bytes) else v for v in loaded
        )
        self.seats = int(seats)
        self.next_hold_expiry = float(nh) if nh else None
        self.held: dict[str, dict[str, Any]] = json.loads(holds) if holds else {}
        self._counters = decode_counters(raw)
        self.counters_dirty = False
        self.holds_dirty = False
        self.writes: dict[str, tuple[str, float]] = {}  # key -> (value, expires at)

    def counters(self, names: Any) -> dict[str, Counter]:
        stored = self._counters
        return {n: stored.setdefault(n, Counter()) for n in names}

    def save_counters(self, counters: dict[str, Counter]) -> None:
        self.counters_dirty = True

    def get_idempotency(self, key: str) -> IdempotencyRecord | None:
        raw = self._store.get(self._store.key(self.account_id, "i:" + key))
        return None if raw is None else IdempotencyRecord.from_json(json.loads(raw))

    def put_idempotency(self, key: str, record: IdempotencyRecord) -> None:
        value = json.dumps(record.to_json())
        self.writes[self._store.key(self.account_id, "i:" + key)] = (value, record.expires_at)

    def get_hold(self, hold_id: str) -> Hold | None:
        if hold_id in self.held:
            return Hold.from_json(self.held[hold_id])
        raw = self._store.get(self._store.key(self.account_id, "r:" + hold_id))
        return None if raw is None else Hold.from_json(json.loads(raw))

    def put_hold(self, hold: Hold) -> None:
        if hold.state == HELD:
            self.held[hold.id] = hold.to_json()
        else:
            self.held.pop(hold.id, None)
        self.holds_dirty = True
        self.next_hold_expiry = min((h["expires_at"] for h in self.held.values()), default=None)
        key = self._store.key(self.account_id, "r:" + hold.id)
        self.writes[key] = (json.dumps(hold.to_json()), hold.expires_at + HOLD_KEEP)

    def due_holds(self, now: float) -> list[Hold]:
        return [Hold.from_json(h) for h in self.held.values() if h["expires_at"] <= now]

    def apply_args(self, policy: Policy, now: float) -> tuple[list[str], list[Any]] | None:
        """KEYS and ARGV for apply.lua, or None when nothing changed."""
        if not (self.counters_dirty or self.holds_dirty or self.writes):
            return None
        counters_value, ttl = "=", 0
        if self.counters_dirty:
            keep, last = {}, now
            for name, c in self._counters.items():
                limit = policy.limits.get(name)
                expires = None if limit is None else limit.window.expires_at(c)
                if expires is not None and expires > now:
                    keep[name] = c
                    last = max(last, expires)
            counters_value, ttl = encode_counters(keep), _ms(last - now)
        keys = [self._store.key(self.account_id, "a"), self._store.key(self.account_id, "c")]
        argv: list[Any] = [
            self.version,
            counters_value,
            ttl,
            "" if self.next_hold_expiry is None else _num(self.next_hold_expiry),
            json.dumps(self.held) if self.held else "",
        ]
        for key, (value, expires_at) in self.writes.items():
            keys.append(key)
            argv += [value, _ms(expires_at - now)]
        return keys, argv


class RedisStore(Store):
    scheme = "redis"
    fast = True

    def __init__(self, client: Any, prefix: str = "allowance", cluster: bool = False) -> None:
        if not _PREFIX.match(prefix):
            raise ConfigurationError(
                f"store: prefix must be letters, digits, _.:- (got {prefix!r})"
            )
        self.client = client
        self.prefix = prefix
        self.cluster = cluster
        self._load = client.register_script(_script("load"))
        self._apply = client.register_script(_script("apply"))
        self._account = client.register_script(_script("account"))
        self._decide_by_policy: dict[int, Any] = {}
        self._calendar_features: dict[str, bool] = {}  # feature -> has a calendar limit

    @classmethod
    def from_url(cls, url: str) -> RedisStore:
        parts = urlsplit(url)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        prefix = query.pop("prefix", "allowance")
        cluster = parts.scheme == "redis+cluster"
        rest = urlunsplit(
            ("redis" if cluster else parts.scheme, parts.netloc, parts.path, urlencode(query), "")
        )
        try:
            if cluster:
                client: Any = redis.cluster.RedisCluster.from_url(rest)
            else:
                client = redis.Redis.from_url(rest)
        except (RedisError, RedisClusterException) as exc:
            raise StoreError(f"redis: cannot connect to {parts.netloc}: {exc}") from exc
        except ValueError as exc:
            raise ConfigurationError(f"store: {exc} in {url!r}") from None
        return cls(client, prefix, cluster)

    def key(self, account: str, suffix: str) -> str:
        return f"{self.prefix}:{{{_tag(account)}}}:{suffix}"

    def get(self, key: str) -> bytes | None:
        with _translate():
            value: bytes | None = self.client.get(key)
        return value

    def now(self) -> float:
        with _translate():
            seconds, micros = self.client.time()
        return float(seconds) + float(micros) / 1_000_000

    def put_account(self, account_id: str, plan: str, seats: int) -> bool:
        with _translate():
            created = self._account(
                keys=[self.key(account_id, "a")], args=[plan, seats, account_id]
            )
        return bool(created)

    def get_account(self, account_id: str) -> Account | None:
        with _translate():
            plan, seats = self.client.hmget(self.key(account_id, "a"), ["p", "s"])
        if plan is None:
            return None
        return Account(account_id, plan.decode(), int(seats))

    # the fast path -------------------------------------------------------------------------
    def _compiled(self, policy: Policy) -> Any:
        """decide.lua with this policy's limits compiled in, registered once per policy."""
        script = self._decide_by_policy.get(id(policy))
        if script is None:
            text = _script("decide").replace("--SPEC--", lua_spec(policy), 1)
            script = self._decide_by_policy[id(policy)] = self.client.register_script(text)
        return script

    def _boundaries(self, policy: Policy, feature: str, now: float) -> list[str]:
        """Four period boundaries around ``now`` per calendar limit of the feature (a local
        estimate: the script picks the period holding its own time, or takes the slow path)."""
        out = []
        for limit in policy.limits_of(feature):
            window = limit.window
            if isinstance(window, CalendarWindow):
                start, end = window.period(now)
                before, after = window.period(start - 1)[0], window.period(end)[1]
                out += [_num(before), _num(start), _num(end), _num(after)]
        return out

    def fast_decide(
        self, policy: Policy, req: Request, now: float | None, charge: bool
    ) -> Decision | None:
        """One round trip; None when the slow path must decide (reservations due, ...)."""
        argv = [
            "" if now is None else _num(now),
            req.amount,
            1 if req.partial else 0,
            1 if charge else 0,
            req.feature,
        ]
        if self._calendar_features.get(req.feature, True):
            bounds = self._boundaries(policy, req.feature, now if now is not None else _local())
            self._calendar_features[req.feature] = bool(bounds)
            argv += bounds
        keys = [self.key(req.account, "a"), self.key(req.account, "c")]
        with _translate():
            reply = self._compiled(policy)(keys=keys, args=argv)
        status = reply[0]
        if status == b"unknown":
            raise UnknownAccount(req.account)
        if status == b"slow":
            return None
        at = float(reply[1])
        counters = decode_counters(reply[2].decode())
        plan, seats = reply[4].decode(), int(reply[5])
        view = {n: counters.get(n) or Counter() for n in policy.limit_names(req.feature)}
        ruling = engine.decide(policy, plan, seats, req.feature, req.amount, req.partial, view, at)
        if ruling.granted != int(reply[3]):
            raise StoreError(
                f"redis: the script granted {int(reply[3])} where the engine grants "
                f"{ruling.granted} ({req.feature} x{req.amount} for {req.account!r})"
            )
        return ruling.decision

    # the slow path -------------------------------------------------------------------------
    def transact(
        self, account_id: str, now: float | None, fn: Callable[[AccountView, float], T]
    ) -> T:
        policy = self.policy
        assert policy is not None
        keys = [self.key(account_id, "a"), self.key(account_id, "c")]
        with _translate():
            for _ in range(MAX_ATTEMPTS):
                loaded = self._load(keys=keys, args=["" if now is None else _num(now)])
                if not loaded:
                    raise UnknownAccount(account_id)
                at = float(loaded[0])
                view = RedisView(self, account_id, loaded)
                result = fn(view, at)
                apply = view.apply_args(policy, at)
                if apply is None or self._apply(keys=apply[0], args=apply[1]) == 1:
                    return result
        raise StoreError(f"redis: account {account_id!r} kept changing; gave up after retries")

    def sweep(self, now: float | None = None) -> int:
        """Settle expired reservations nobody touched (everything else expires by TTL)."""
        policy = self.policy
        if policy is None:
            return 0
        settled = 0
        with _translate():
            for key in self.client.scan_iter(match=f"{self.prefix}:*:a", count=500):
                raw = self.client.hget(key, "nh")
                if raw is None:
                    continue
                at = self.now() if now is None else now
                if float(raw) > at:
                    continue
                account = self.client.hget(key, "id")
                if account is None:
                    continue
                self.transact(
                    account.decode(), now, lambda view, t: ops.settle_due_holds(policy, view, t)
                )
                settled += 1
        return settled

    def close(self) -> None:
        self.client.close()


def lua_spec(policy: Policy) -> str:
    """The policy as Lua: ``PLANS`` (name -> index) and ``spec(feature)`` -> its limits. Names
    match the policy's name pattern (lower case, digits, ``_`` and ``.``), so quoting is safe."""
    plans = ", ".join(f"['{p.name}'] = {i + 1}" for i, p in enumerate(policy.plans))
    lines = [f"local PLANS = {{{plans}}}", "local function spec(feature)"]
    for i, feature in enumerate(policy.features):
        items = []
        for limit in policy.limits_of(feature):
            cells = [limit.cells[p.name] for p in policy.plans]
            caps = ", ".join(
                "-2" if not c.access else ("-1" if c.max is None else str(c.max)) for c in cells
            )
            seats = ", ".join("1" if c.per_seat else "0" for c in cells)
            kind = {"anchored": "a", "sliding": "s", "calendar": "c"}[limit.window.kind]
            items.append(
                f"{{name = '{limit.name}', kind = '{kind}', length = {limit.window.length!r},"
                f" caps = {{{caps}}}, seat = {{{seats}}}}}"
            )
        keyword = "if" if i == 0 else "elseif"
        lines.append(f"  {keyword} feature == '{feature}' then return {{{', '.join(items)}}}")
    lines += ["  end", "  return nil", "end"]
    return "\n".join(lines)
