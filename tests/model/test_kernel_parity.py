"""The decision rules exist three times: the Python engine (engine.py + windows.py, the rule),
decide.lua (Redis) and decide.sql (PostgreSQL). Random counter states are written raw into
each store, decided by its one-step kernel (``fast_decide``, charge on and off) and by the
engine on the same state; decisions and the counters written back must be identical.

States cover what a stepped clock and old kernels leave behind: unsorted sliding entries
(distinct times, some after ``now``), anchored windows opened in the past or the future,
calendar counters of the previous, current, next or 2-ahead period, partial requests,
per-seat, fair-use and per-request cells, credits (a feature costing more than one unit of a
limit), load factors, an account's own terms (an override of a max, grants ending before,
at or after ``now``; a billing anchor beside them) and scopes (counters kept per user in the
account and per user across accounts, in records of their own, beside the account's; each
record charged must live at least as long as its windows count, ``KEEP_AFTER`` included).
The one allowed difference: a kernel answers None (the slow path) for a calendar counter two or
more periods ahead of ``now``, whose period end is not among the bounds it is given
(decide.lua, decide.sql).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from allowance import Policy, adjust, builtin_policy, engine, events, owners, parse_policy
from allowance.request import Request
from allowance.state import Adjustment, Counter, Terms
from allowance.stores.base import Store
from allowance.types import Decision
from allowance.windows import KEEP_AFTER, AnchoredWindow, CalendarWindow, SlidingWindow
from conftest import STORE_FACTORIES

from .drivers import DECISION_FIELDS

PARITY_POLICY = """\
version: 1
plans: [basic, plus, top]
features:
  doc.all: {title: All}
  doc.cal: {title: Calendar}
limits:
  day:
    features: [doc.all, doc.cal]
    window: {type: calendar, unit: day, timezone: Europe/Paris}
    plans: {basic: 6, plus: {max: 3, per_seat: true}, top: {max: unlimited, fair_use: 5}}
  week:
    features: [doc.all, doc.cal]
    window: {type: calendar, unit: week}
    plans:
      basic: {max: 9, per_request: 3}
      plus: 20
      top: {max: unlimited, per_seat: true, fair_use: 4, per_request: 5}
  month:
    features: [doc.cal]
    window: {type: calendar, unit: month, timezone: America/New_York}
    plans: {basic: 12, plus: {max: 8, per_seat: true}, top: unlimited}
  slide:
    features: [doc.all]
    window: {type: sliding, length: 60s}
    plans: {basic: 5, plus: {max: 2, per_seat: true, per_request: 1}, top: {max: 7, per_seat: true}}
  anchor:
    features: [doc.all]
    window: {type: anchored, length: 1h}
    plans: {basic: 4, plus: 6, top: {max: unlimited, fair_use: 3}}
"""

# credits: one pool that features draw on at different costs, beside limits of their own
CREDITS_POLICY = """\
version: 1
plans: [free, pro, max]
features:
  ai.gen: {title: Generation}
  ai.video: {title: Video}
  ai.cheap: {title: Cheap}
limits:
  credits:
    label: AI credits
    features: [ai.gen, ai.video, ai.cheap]
    costs: {ai.gen: 3, ai.video: 7}
    window: {type: calendar, unit: month}
    plans:
      free: 20
      pro: {max: 16, per_seat: true, per_request: 15}
      max: {max: unlimited, fair_use: 12}
  gen_rate:
    features: [ai.gen]
    window: {type: sliding, length: 60s}
    plans: {free: 3, pro: {max: 5, per_request: 4}, max: 9}
  video_hour:
    features: [ai.video]
    costs: {ai.video: 2}
    window: {type: anchored, length: 1h}
    plans:
      free: 4
      pro: {max: 5, per_seat: true}
      max: {max: unlimited, per_seat: true, fair_use: 6}
"""

# scopes: counters per member of the space and per user across spaces, beside the space's
SCOPED_POLICY = """\
version: 1
plans: [free, team]
features:
  ai.gen: {title: Generation}
  export.hd: {title: HD export}
  share: {title: Share}
limits:
  space_credits:
    features: [ai.gen, export.hd]
    costs: {ai.gen: 3}
    window: {type: calendar, unit: month}
    plans: {free: 20, team: {max: 16, per_seat: true}}
  member_day:
    scope: user
    features: [ai.gen]
    window: {type: calendar, unit: day, timezone: Europe/Paris}
    plans: {free: 4, team: {max: 9, per_request: 5}}
  member_minute:
    scope: user
    features: [ai.gen, export.hd]
    window: {type: sliding, length: 60s}
    plans: {free: 2, team: 5}
  exports_anywhere:
    scope: user_global
    features: [export.hd, share]
    costs: {export.hd: 2}
    window: {type: anchored, length: 1h}
    plans: {free: 6, team: {max: unlimited, fair_use: 8}}
"""

POLICIES: dict[str, Policy] = {
    "builtin": builtin_policy(),
    "custom": parse_policy(PARITY_POLICY, "parity"),
    "credits": parse_policy(CREDITS_POLICY, "credits"),
    "scoped": parse_policy(SCOPED_POLICY, "scoped"),
}
# load factors in force: caps lowered to floor(cap × seats × factor), per seat ones included
POLICIES["loaded"] = POLICIES["custom"].scaled({"day": 0.5, "week": 0.3, "slide": 0.7})
POLICIES["credits_loaded"] = POLICIES["credits"].scaled({"credits": 0.55, "video_hour": 0.9})
POLICIES["scoped_loaded"] = POLICIES["scoped"].scaled({"member_day": 0.5, "space_credits": 0.8})
KERNELS = ("redis", "postgres")
# Instants on or near window boundaries: midnight in Paris, a Monday, a New York month start
# (a DST change in March), and an ordinary afternoon.
BASES = (
    1796079600.0,  # 2026-11-30T23:00:00Z: Paris midnight, 1 Dec
    1795478400.0,  # 2026-11-24T00:00:00Z: UTC midnight, Tuesday
    1795392000.0,  # 2026-11-23T00:00:00Z: Monday, a week starts (UTC)
    1772341200.0,  # 2026-03-01T05:00:00Z: New York month start
    1795533000.0,  # 2026-11-24T15:10:00Z
)
SETTINGS = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
_accounts = itertools.count()
OWNER_PREFIX = {"user": owners.USER, "user_global": owners.GLOBAL}


@dataclass
class Case:
    policy: str
    plan: str
    seats: int
    feature: str
    amount: int
    partial: bool
    now: float
    counters: dict[str, tuple[float | None, int, list[list[Any]]]]  # raw, entries unsorted
    terms: Terms  # the account's own (adjust.py)
    user: str = ""  # made unique per run (``check_parity``)


@st.composite
def cases(draw: st.DrawFn, names: tuple[str, ...] = tuple(sorted(POLICIES))) -> Case:
    name = draw(st.sampled_from(names))
    policy = POLICIES[name]
    feature = draw(st.sampled_from(sorted(policy.features)))
    now = draw(st.sampled_from(BASES)) + draw(
        st.one_of(
            st.sampled_from((0.0, -0.5, 0.25, -1.0, 1.0, 59.75)),
            st.integers(-3 * 86400, 3 * 86400).map(float),
            st.floats(-90.0, 90.0, allow_nan=False).map(lambda x: round(x, 6)),
        )
    )
    counters: dict[str, tuple[float | None, int, list[list[Any]]]] = {}
    for limit in policy.limits_of(feature):
        if not draw(st.booleans()) and draw(st.booleans()):
            continue  # no counter yet
        window = limit.window
        used = draw(st.integers(0, 14))
        if isinstance(window, CalendarWindow):
            bounds = window.bounds(now)  # previous, current, next start; end of next
            k = draw(st.sampled_from((0, 1, 1, 2, 2, 3)))
            counters[limit.name] = (bounds[k], used, [])  # k = 3: two periods ahead
        elif isinstance(window, AnchoredWindow):
            offset = draw(
                st.one_of(
                    st.sampled_from((-3600.0, -3599.5, 0.0, 30.0, -1.0)),
                    st.floats(-5000.0, 400.0, allow_nan=False).map(lambda x: round(x, 3)),
                )
            )
            counters[limit.name] = (now + offset, used, [])
        else:
            assert isinstance(window, SlidingWindow)
            length = window.length
            offsets = draw(
                st.lists(
                    st.one_of(
                        st.sampled_from((-length, -length + 0.5, 0.0, -0.25, 5.0)),
                        st.floats(-1.5 * length, 40.0, allow_nan=False).map(lambda x: round(x, 3)),
                    ),
                    max_size=6,
                    unique=True,
                )
            )
            entries: list[list[Any]] = [[now + o, draw(st.integers(1, 4))] for o in offsets]
            times = [e[0] for e in entries]
            if len(set(times)) != len(times):  # offsets distinct, sums may collide
                entries = [e for i, e in enumerate(entries) if e[0] not in times[:i]]
            counters[limit.name] = (None, sum(int(e[1]) for e in entries), entries)
    terms = Terms()
    if draw(st.booleans()):  # an anchor, which a kernel must pass over beside the limits' terms
        terms.billing_anchor = draw(st.sampled_from((now - 86400 * 40, now - 0.5)))
    for limit in policy.limits_of(feature):
        if draw(st.integers(0, 3)) == 0:
            most = draw(st.one_of(st.none(), st.integers(0, 20)))
            grants = draw(
                st.lists(
                    st.tuples(
                        st.sampled_from((-30.0, 0.0, 0.5, 3600.0)).map(lambda o: now + o),
                        st.integers(1, 6),
                    ).map(list),
                    max_size=3,
                )
            )
            terms[limit.name] = Adjustment(most, grants)
    return Case(
        name,
        draw(st.sampled_from([p.name for p in policy.plans])),
        draw(st.integers(1, 3)),
        feature,
        draw(st.one_of(st.integers(1, 4), st.integers(1, 30))),
        draw(st.booleans()),
        now,
        counters,
        terms,
    )


def engine_ruling(case: Case) -> tuple[Policy, engine.Ruling, dict[str, Counter]]:
    """The engine's ruling on the case's counters, with the policy its terms make and the
    counters it read."""
    policy = adjust.applied(POLICIES[case.policy], case.terms, case.now)
    counters = {
        name: Counter.stored(start, used, [list(e) for e in entries] or None)
        for name, (start, used, entries) in case.counters.items()
    }
    view = {n: counters.get(n) or Counter() for n in policy.limit_names(case.feature)}
    ruling = engine.decide(
        policy, case.plan, case.seats, case.feature, case.amount, case.partial, view, case.now
    )
    return policy, ruling, view


def engine_run(case: Case, charge: bool) -> tuple[Decision, dict[str, Counter]]:
    _, ruling, view = engine_ruling(case)
    if charge and ruling.granted:
        engine.charge(ruling, view, case.now)
    after = {n: c for n, c in view.items() if n in case.counters or (charge and ruling.granted)}
    return ruling.decision, after


def crosses_a_level(case: Case) -> bool:
    """Whether charging the engine's grant crosses an event level (``events.crosses``), which
    a kernel that leaves those charges to the transaction path answers with 'slow'."""
    policy, ruling, _ = engine_ruling(case)
    if not ruling.granted or not policy.events:
        return False
    return any(
        events.crosses(
            used, ruling.granted * r.cost, r.cell.cap(case.seats), r.cell.soft_cap(case.seats),
            r.limit,
        )
        for r, used in zip(ruling.rules, ruling.used, strict=True)
    )  # fmt: skip


# the kernels that leave a charge crossing an event level to the transaction path
PUNTING = ("postgres", "redis")


def fields(d: Decision) -> dict[str, Any]:
    q = d.quota
    return {f: getattr(d, f) for f in DECISION_FIELDS} | {
        "quota": None if q is None else (q.limit, q.max, q.window, q.remaining, q.reset_after),
        "message": d.message,
    }


def shape(c: Counter, window: object) -> tuple[Any, ...]:
    """A counter as compared: what a window reads of it. Sliding entries keep the order they
    were written in (not sorted); floats are compared as numbers (%.17g and JSON both
    round-trip). The engine keeps entries a decision did not prune (only those at the
    front that left); a kernel keeps the same ones, pruning only on a charge."""
    entries = [(float(t), int(n)) for t, n in c.entries or ()]
    if isinstance(window, SlidingWindow):
        return (None, c.used, entries)
    return (None if c.start is None else float(c.start), c.used, [])


def is_two_ahead(case: Case) -> bool:
    policy = POLICIES[case.policy]
    for name, (start, _, _) in case.counters.items():
        window = policy.limits[name].window
        if (
            isinstance(window, CalendarWindow)
            and start is not None
            and start >= window.bounds(case.now)[3]
        ):
            return True
    return False


class Kernel:
    """One store's raw counter access, beside its fast path."""

    def __init__(self, kind: str, url: str) -> None:
        from allowance.stores import store_from_url

        self.kind = kind
        # the arithmetic is under test, not latency: a loaded machine must not time it out
        self.store: Store = store_from_url(url, timeout=10.0)
        if kind == "redis":
            import redis

            self.redis = redis.Redis.from_url(url.split("?")[0])
        else:
            import psycopg

            from allowance.stores.postgres_url import parse_url

            settings = parse_url(url)
            conninfo, self.schema = settings.conninfo, settings.schema
            self.pg = psycopg.connect(conninfo, autocommit=True)

    def close(self) -> None:
        self.store.close()
        if self.kind == "redis":
            self.redis.close()
        else:
            self.pg.close()

    def _owned_key(self, account: str, owner: str) -> str:
        if self.kind == "redis":
            return str(self.store.owner_key(account, owner))  # type: ignore[attr-defined]
        return owners.record_key(account, owner)

    def seed(self, account: str, case: Case) -> None:
        """The case's counters, each in the record its limit's scope names (a user's records
        are written only when they hold one: a missing record is a case too)."""
        self.store.put_account(account, case.plan, case.seats)
        by_record: dict[str | None, dict[str, Any]] = {}
        for name, counter in case.counters.items():
            by_record.setdefault(owner_of(case, name), {})[name] = counter
        for owner, counters in by_record.items():
            if self.kind == "redis":
                key = (
                    self.store.key(account, "c")  # type: ignore[attr-defined]
                    if owner is None
                    else self._owned_key(account, owner)
                )
                parts = []
                for name, (start, used, entries) in counters.items():
                    items = ";".join(f"{t!r}:{n}" for t, n in entries)
                    parts.append(f"{name}={'' if start is None else repr(start)},{used},{items}")
                self.redis.set(key, "|".join(parts))
            else:
                body = json.dumps({n: [s, u, e] for n, (s, u, e) in counters.items()})
                if owner is None:
                    self.pg.execute(
                        f"UPDATE {self.schema}.accounts SET counters = %s::jsonb WHERE id = %s",
                        (body, account),
                    )
                else:  # drop_after in the past: only a charge may push it out
                    self.pg.execute(
                        f"INSERT INTO {self.schema}.owned (owner, counters, drop_after)"
                        " VALUES (%s, %s::jsonb, 0)",
                        (self._owned_key(account, owner), body),
                    )
        terms = adjust.encode(case.terms)
        if self.kind == "redis" and terms is not None:
            self.redis.hset(self.store.key(account, "a"), "t", terms)  # type: ignore[attr-defined]
        elif self.kind != "redis":
            self.pg.execute(
                f"UPDATE {self.schema}.accounts SET adjustments = %s::jsonb WHERE id = %s",
                (terms, account),
            )

    def read(self, account: str, case: Case) -> tuple[dict[str, Counter], dict[str, float]]:
        """The counters as stored, each from its limit's record (entries in the stored order),
        and for each user's record that exists, the seconds after ``case.now`` it is kept
        (Redis: its TTL; PostgreSQL: its drop_after)."""
        out: dict[str, Counter] = {}
        kept: dict[str, float] = {}
        for owner in (None, *(o for o in case_owners(case))):
            if self.kind == "redis":
                key = (
                    self.store.key(account, "c")  # type: ignore[attr-defined]
                    if owner is None
                    else self._owned_key(account, owner)
                )
                got = self.redis.get(key)
                if owner is not None and got is not None:
                    kept[owner] = self.redis.pttl(key) / 1000
                raw = got.decode() if isinstance(got, bytes) else (got or "")
                stored = {}
                for part in raw.split("|") if raw else ():
                    name, body = part.split("=", 1)
                    start, used, items = body.split(",", 2)
                    entries = [
                        [float(t), int(n)] for t, n in (i.split(":") for i in items.split(";") if i)
                    ]
                    stored[name] = Counter(float(start) if start else None, int(used), entries)
            else:
                if owner is None:
                    row = self.pg.execute(
                        f"SELECT counters, 0 FROM {self.schema}.accounts WHERE id = %s", (account,)
                    ).fetchone()
                    assert row is not None
                else:
                    row = self.pg.execute(
                        f"SELECT counters, drop_after FROM {self.schema}.owned WHERE owner = %s",
                        (self._owned_key(account, owner),),
                    ).fetchone()
                    if row is not None:
                        kept[owner] = row[1] - case.now
                stored = {
                    name: Counter(start, used, [list(e) for e in entries or []])
                    for name, (start, used, entries) in (row[0] if row else {}).items()
                }
            out.update((n, c) for n, c in stored.items() if owner_of(case, n) == owner)
        return out, kept


def owner_of(case: Case, name: str) -> str | None:
    """Whose record holds limit ``name``'s counter in ``case`` (None: the account's)."""
    prefix = OWNER_PREFIX.get(POLICIES[case.policy].limits[name].scope)
    return None if prefix is None else prefix + case.user


def case_owners(case: Case) -> tuple[str, ...]:
    return owners.needed(POLICIES[case.policy], case.feature, case.user)


@pytest.fixture(params=KERNELS)
def kernel(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Kernel]:
    k = Kernel(request.param, STORE_FACTORIES[request.param](request, tmp_path))
    yield k
    k.close()


def check_parity(kernel: Kernel, case: Case, charge: bool) -> None:
    policy = POLICIES[case.policy]
    account = f"p{next(_accounts)}"
    case.user = f"m{account}"  # a user's records across accounts are seeded afresh too
    kernel.seed(account, case)
    req = Request(account, case.feature, case.amount, case.partial, None, case.user)
    got = kernel.store.fast_decide(policy, req, case.now, charge)
    crossing = charge and kernel.kind in PUNTING and crosses_a_level(case)
    if got is None:
        assert is_two_ahead(case) or crossing, f"{kernel.kind}: slow path for {case}"
        return
    assert not crossing, f"{kernel.kind} charged a crossing of an event level: {case}"
    want, want_counters = engine_run(case, charge)
    assert fields(got) == fields(want), f"{kernel.kind} charge={charge}: {case}"
    stored, kept = kernel.read(account, case)
    if charge and got.granted:  # a user's record charged lives as long as it counts
        for name, counter in want_counters.items():
            owner = owner_of(case, name)
            expires = policy.limits[name].window.expires_at(counter)
            if owner is not None and expires is not None:
                assert kept[owner] >= expires + KEEP_AFTER - case.now - 1, (name, kernel.kind)
    names = set(want_counters) | set(stored)
    for name in names:
        window = policy.limits[name].window
        a = shape(stored[name], window) if name in stored else None
        b = shape(want_counters[name], window) if name in want_counters else None
        if charge and got.granted:
            assert a == b, f"{kernel.kind}: counter {name} {a} != engine {b}: {case}"
        else:  # nothing written: the state as seeded
            s, u, e = case.counters[name]
            assert a == shape(Counter(s, u, e), window), f"{kernel.kind}: {name} changed: {case}"


@SETTINGS
@given(case=cases(), charge=st.booleans())
def test_kernel_agrees_with_engine(kernel: Kernel, case: Case, charge: bool) -> None:
    check_parity(kernel, case, charge)


@SETTINGS
@given(case=cases(names=("scoped", "scoped_loaded")), charge=st.booleans())
def test_kernel_agrees_with_engine_on_a_users_records(
    kernel: Kernel, case: Case, charge: bool
) -> None:
    """Scoped counters get examples of their own: among every policy's they are too few to
    reach each way a user's record is read, charged and kept."""
    check_parity(kernel, case, charge)


@pytest.mark.faults
@settings(SETTINGS, max_examples=3000, derandomize=False)
@given(case=cases(), charge=st.booleans())
def test_kernel_agrees_with_engine_long(kernel: Kernel, case: Case, charge: bool) -> None:
    check_parity(kernel, case, charge)
