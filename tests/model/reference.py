"""A plain, slow reference model of allowance's semantics, written from CONTRACT sections 2-4
and the clock-step rule of issue 10 (not from ``engine.py`` / ``windows.py``): a log of every
grant per account, in the order made, and every answer computed from it each time.

- sliding window of length L, at t: units of the grants with time in (t - L, ...), later ones
  included; a grant that a write (a grant or a hold's units going back, on this limit, at time
  T) saw leave, T - L >= its time, is gone for good.
- anchored window of length L: replay the grants in the order made; a grant opens a window
  [s, s + L) when none is open at its time (none yet, or its time >= s + L); otherwise it joins
  the open one, even from before s. At t: the open window's units if t < s + L. A released or
  expired reservation's units go back, but a window it opened stays open.
- calendar day / ISO week / month in the policy's time zone: each grant counts in its own
  period or the latest one a grant of this limit counted in before, whichever is later. At t:
  the units counted in t's period or, when later, that latest one (the meter shows that one).
- billing month / week: the same, with periods from the account's billing anchor in UTC
  (a month renews on the anchor's day, or the month's last day when shorter; a week on its
  weekday; at its time of day), or calendar months and ISO weeks in UTC without one. A new
  anchor moves the units the period in force has counted into the period it puts now in,
  when that began later (they are never counted again).
- a hold is settled (its units go back for good) by the first operation on its account at a
  time >= its expiry; a step back afterwards does not revive it.
- a load factor f (for every limit, or one by name, which wins) makes a limit's max
  floor(max × seats × f) from the moment it is set.
- scopes: a limit with ``scope: user`` counts each (account, user) apart, one with
  ``scope: user_global`` each user across every account (a request without a user counts in
  the account); everything above holds per counter, the account's plan, seats, overrides,
  grants, load factor and billing anchor those of the account deciding. Meters of such a
  limit are shown only when a user is asked about. A hold is settled by an operation on its
  own account (until then its units count, in every account the user works in).
- the clock never goes more than ``KEEP_AFTER`` (windows.py, 5 minutes) behind the latest time
  it has shown: a store drops a counter that long after its window closed.

So a clock that steps back never revives usage that left, never hides usage made at a later
time, and never grants it twice. Times are epoch seconds (float).
"""

from __future__ import annotations

import calendar
import math
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from allowance import Policy

IDEMPOTENCY_SECONDS = 86400.0


class ModelConflict(Exception):
    """An idempotency key re-used for another request."""


class ModelExpired(Exception):
    """Commit after a reservation's expiry."""


class ModelLimitExceeded(Exception):
    """A commit for more than was held, whose extra does not fit; the hold is kept."""

    def __init__(self, decision: Decision) -> None:
        super().__init__(decision)
        self.decision = decision


@dataclass(frozen=True)
class Cell:
    access: bool
    max: int | None  # None = unlimited
    per_seat: bool
    fair_use: int | None
    per_request: int | None = None  # the most one request may ask for (not per seat)

    def cap(self, seats: int) -> int | None:
        if self.max is None:
            return None
        return self.max * seats if self.per_seat else self.max

    def soft_cap(self, seats: int) -> int | None:
        if self.fair_use is None:
            return None
        return self.fair_use * seats if self.per_seat else self.fair_use


@dataclass(frozen=True)
class Limit:
    name: str
    features: tuple[str, ...]
    kind: str  # anchored | sliding | calendar | billing
    length: float  # seconds (anchored, sliding)
    unit: str  # day | week | month (calendar), week | month (billing)
    tz: ZoneInfo
    cells: dict[str, Cell]
    costs: dict[str, int] = field(default_factory=dict)  # units a feature's unit counts here
    scope: str = "account"  # account | user | user_global

    def cost(self, feature: str) -> int:
        return self.costs.get(feature, 1)


@dataclass
class Grant:
    time: float
    account: str
    user: str | None
    feature: str
    units: int
    state: str = "final"  # final | held | committed | released | expired
    expires_at: float | None = None  # for a reservation
    # sliding limits a write saw this grant leave (their window at the write's time): gone
    forgotten: set[str] = field(default_factory=set)
    # calendar and billing limits: the start of the period each one counts this grant in
    periods: dict[str, float] = field(default_factory=dict)

    @property
    def counted(self) -> int:
        """The units still counted: a released or expired hold counts nothing."""
        return 0 if self.state in ("released", "expired") else self.units


@dataclass(frozen=True)
class Decision:
    allowed: bool
    granted: int
    reason: str
    limit: str | None = None
    remaining: int | None = None
    resets_at: float | None = None
    retry_after: float | None = None
    upgrade: str | None = None
    fair_use_exceeded: bool = False


@dataclass(frozen=True)
class Meter:
    limit: str
    features: tuple[str, ...]
    used: int
    max: int | None
    remaining: int | None
    window_start: float | None
    resets_at: float | None


def period(t: float, unit: str, tz: ZoneInfo) -> tuple[float, float]:
    """The calendar period [start, end) that holds t."""
    day = datetime.fromtimestamp(t, tz).date()
    if unit == "day":
        start = day
        end = day + timedelta(days=1)
    elif unit == "week":
        start = day - timedelta(days=day.weekday())
        end = start + timedelta(days=7)
    else:
        start = day.replace(day=1)
        end = (start + timedelta(days=32)).replace(day=1)

    def epoch(d: date) -> float:
        return datetime(d.year, d.month, d.day, tzinfo=tz).timestamp()

    return epoch(start), epoch(end)


def billing_period(t: float, unit: str, anchor: float | None) -> tuple[float, float]:
    """The billing period [start, end) that holds t for an account anchored at ``anchor``."""
    if anchor is None:
        return period(t, unit, ZoneInfo("UTC"))
    a = datetime.fromtimestamp(anchor, UTC)
    clock = timedelta(hours=a.hour, minutes=a.minute, seconds=a.second, microseconds=a.microsecond)
    at = datetime.fromtimestamp(t, UTC)
    if unit == "week":
        day = at.date() - timedelta(days=(at.weekday() - a.weekday()) % 7)
        start = datetime(day.year, day.month, day.day, tzinfo=UTC) + clock
        if start > at:
            start -= timedelta(days=7)
        return start.timestamp(), (start + timedelta(days=7)).timestamp()

    def renewal(months: int) -> datetime:
        year, month = divmod(at.year * 12 + at.month - 1 + months, 12)
        last = calendar.monthrange(year, month + 1)[1]
        return datetime(year, month + 1, min(a.day, last), tzinfo=UTC) + clock

    renewals = [renewal(k) for k in (-1, 0, 1)]
    start = max(r for r in renewals if r <= at)
    return start.timestamp(), min(r for r in renewals if r > at).timestamp()


def limits_from(policy: Policy) -> list[Limit]:
    """The policy's limits, in policy order, read from its raw spec."""
    spec = policy.spec
    out = []
    for name, lim in spec.limits.items():
        w = lim.window
        cells = {
            plan: Cell(
                c.access,
                c.max,
                lim.per_seat if c.per_seat is None else c.per_seat,
                c.fair_use,
                c.per_request,
            )
            for plan, c in lim.plans.items()
        }
        out.append(
            Limit(
                name,
                tuple(lim.features),
                w.type,
                w.length or 0.0,
                w.unit or "",
                ZoneInfo(w.timezone or spec.timezone),
                cells,
                dict(lim.costs),
                lim.scope,
            )
        )
    return out


Owner = tuple[str, str]  # ("a", account) | ("u", account + "/" + user) | ("g", user)


def owner(lim: Limit, account: str, user: str | None) -> Owner:
    """Whose counter of ``lim`` a request of ``account`` by ``user`` uses."""
    if user is not None and lim.scope == "user":
        return ("u", f"{account}/{user}")
    if user is not None and lim.scope == "user_global":
        return ("g", user)
    return ("a", account)


@dataclass
class Model:
    policy: Policy
    now: float
    accounts: dict[str, tuple[str, int]] = field(default_factory=dict)
    grants: list[Grant] = field(default_factory=list)  # every account's, in the order made
    # (account, key) -> (time, feature, amount, user, decision)
    keys: dict[tuple[str, str], tuple[float, str, int, str | None, Decision]] = field(
        default_factory=dict
    )
    holds: dict[int, Grant] = field(default_factory=dict)
    # (owner, calendar limit) -> the latest period start any grant was counted in
    latest: dict[tuple[Owner, str], float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.plans = [p.name for p in self.policy.spec.plans]  # cheapest first
        self.limits = limits_from(self.policy)
        self.load_default = 1.0
        self.load_by_limit: dict[str, float] = {}
        self.overrides: dict[tuple[str, str], int] = {}  # (account, limit) -> its own max
        self.extras: dict[tuple[str, str], list[tuple[float, int]]] = {}  # granted (until, n)
        self.anchors: dict[str, float] = {}  # account -> its billing anchor
        if any(lim.kind == "billing" and lim.scope != "account" for lim in self.limits):
            raise NotImplementedError("a billing limit counted per user")

    def counted_in(self, account: str, lim: Limit, t: float, user: str | None = None) -> float:
        """The period start a calendar or billing limit's units count in at t: t's, or the
        latest one a grant counted in when later."""
        begin = self.period_of(account, lim, t)[0]
        return max(begin, self.latest.get((owner(lim, account, user), lim.name), begin))

    def period_of(self, account: str, lim: Limit, t: float) -> tuple[float, float]:
        """The calendar or billing period of ``lim`` that holds t for ``account``."""
        if lim.kind == "billing":
            return billing_period(t, lim.unit, self.anchors.get(account))
        return period(t, lim.unit, lim.tz)

    # state ---------------------------------------------------------------------------------
    def set_load_factor(self, factor: float, limit: str | None) -> None:
        """``factor`` for every limit (``limit`` None: those set by name are forgotten) or
        for one: its max is then floor(max × seats × factor) for everyone."""
        if limit is None:
            self.load_default, self.load_by_limit = factor, {}
        else:
            self.load_by_limit[limit] = factor

    def cap(self, account: str, lim: Limit, plan: str, seats: int) -> int | None:
        """The effective max of ``lim`` on ``plan`` for ``account`` now: the account's override
        or the max times the seats, lowered by the load factor in force, plus the units
        granted to the account that have not ended."""
        own = self.overrides.get((account, lim.name))
        cap = own if own is not None else lim.cells[plan].cap(seats)
        if cap is None:
            return None
        factor = self.load_by_limit.get(lim.name, self.load_default)
        extra = sum(n for until, n in self.extras.get((account, lim.name), []) if self.now < until)
        return math.floor(cap * factor) + extra

    def set_override(self, account: str, limit: str, most: int | None) -> None:
        if most is None:
            self.overrides.pop((account, limit), None)
        else:
            self.overrides[(account, limit)] = most

    def grant(self, account: str, limit: str, units: int, until: float | None) -> None:
        """Extra units until ``until``; None: until the window holding now closes (one
        length from now for a sliding window, or an anchored one not open)."""
        lim = next(x for x in self.limits if x.name == limit)
        if until is None:
            resets = self.window(account, lim, self.now)[2]
            until = self.now + lim.length if lim.kind == "sliding" or resets is None else resets
        self.extras.setdefault((account, limit), []).append((until, units))

    def set_account(
        self,
        account: str,
        plan: str,
        seats: int = 1,
        billing_anchor: float | Literal["keep"] | None = "keep",
    ) -> None:
        """``billing_anchor`` None removes the account's anchor (calendar periods again)."""
        self.accounts[account] = (plan, seats)
        if billing_anchor == "keep":
            return
        moves = {}
        for lim in self.limits:
            if lim.kind == "billing":
                used = self.window(account, lim, self.now)[0]
                moves[lim.name] = (used, self.counted_in(account, lim, self.now))
        if billing_anchor is None:
            self.anchors.pop(account, None)
        else:
            self.anchors[account] = billing_anchor
        for name, (used, begin) in moves.items():
            lim = next(x for x in self.limits if x.name == name)
            start = self.period_of(account, lim, self.now)[0]
            if used and begin < start:
                for g in self._grants(account, lim):
                    if g.periods.get(name) == begin:
                        g.periods[name] = start
                self.latest[(("a", account), name)] = start

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def _grants(self, account: str, lim: Limit, user: str | None = None) -> list[Grant]:
        """The grants counted by the counter of ``lim`` that ``account`` and ``user`` use."""
        who = owner(lim, account, user)
        return [
            g
            for g in self.grants
            if g.feature in lim.features and owner(lim, g.account, g.user) == who
        ]

    def _wrote(self, account: str, user: str | None, feature: str) -> None:
        """A write (a grant, or a hold's units going back) to the limits of ``feature`` at
        now: each sliding one forgets the grants that have left its window at now."""
        for lim in self.limits:
            if lim.kind == "sliding" and feature in lim.features:
                for g in self._grants(account, lim, user):
                    if g.time <= self.now - lim.length:
                        g.forgotten.add(lim.name)

    def _append(self, g: Grant) -> None:
        self._wrote(g.account, g.user, g.feature)  # before: a grant never sees itself leave
        for lim in self.limits:
            if lim.kind in ("calendar", "billing") and g.feature in lim.features:
                start = self.period_of(g.account, lim, g.time)[0]
                key = (owner(lim, g.account, g.user), lim.name)
                counted = max(start, self.latest.get(key, start))
                g.periods[lim.name] = self.latest[key] = counted
        self.grants.append(g)

    def settle(self, account: str) -> None:
        """Every operation on an account but an idempotent replay first returns the units of
        its holds whose expiry has come (a write at now); later steps back do not revive them."""
        for g in self.grants:
            if g.account != account or g.state != "held" or g.expires_at is None:
                continue
            if self.now >= g.expires_at:
                g.state = "expired"
                self._wrote(account, g.user, g.feature)

    # windows -------------------------------------------------------------------------------
    def window(
        self, account: str, lim: Limit, t: float, user: str | None = None
    ) -> tuple[int, float | None, float | None]:
        """(used, window_start, resets_at) of ``lim`` at time t, from the log alone. Grants
        later than t count too (the clock stepped back). A hold still held counts whole (at
        a time to come it may have been committed: its expiry is no promise)."""
        grants = self._grants(account, lim, user)
        if lim.kind == "sliding":
            kept = [g for g in grants if t - lim.length < g.time and lim.name not in g.forgotten]
            inside = [g for g in kept if g.counted]
            if not inside:
                return 0, None, None
            oldest = min(g.time for g in inside)
            return sum(g.counted * lim.cost(g.feature) for g in inside), oldest, oldest + lim.length
        if lim.kind == "anchored":
            start: float | None = None
            opened = 0  # index of the grant that opened the window
            for i, g in enumerate(grants):  # in the order they were made
                if start is None or g.time >= start + lim.length:
                    start, opened = g.time, i
            if start is None or t >= start + lim.length:
                return 0, None, None
            return (
                sum(g.counted * lim.cost(g.feature) for g in grants[opened:]),
                start,
                start + lim.length,
            )
        begin = self.counted_in(account, lim, t, user)
        shown, end = self.period_of(account, lim, begin)  # a new anchor's period holding it
        counted = [g for g in grants if g.periods[lim.name] == begin]
        return sum(g.counted * lim.cost(g.feature) for g in counted), shown, end

    def used(self, account: str, lim: Limit, t: float, user: str | None = None) -> int:
        return self.window(account, lim, t, user)[0]

    def first_fit(
        self,
        account: str,
        lims: list[Limit],
        need: int,
        seats: int,
        plan: str,
        feature: str,
        user: str | None,
    ) -> float | None:
        """Brute force: the earliest time >= now at which ``need`` units of ``feature`` fit
        every limit of ``lims``, assuming no other grant; None if never."""
        candidates = {self.now}
        for g in self.grants:
            for lim in self.limits:
                if lim.length:
                    candidates.add(g.time + lim.length)
        for lim in self.limits:
            if lim.kind in ("calendar", "billing"):  # the end of the period counted now
                candidates.add(self.window(account, lim, self.now, user)[2] or self.now)
        for t in sorted(c for c in candidates if c >= self.now):
            fits = True
            for lim in lims:
                cap = self.cap(account, lim, plan, seats)
                used = self.used(account, lim, t, user)
                if cap is not None and used + need * lim.cost(feature) > cap:
                    fits = False
            if fits:
                return t
        return None

    # decisions -----------------------------------------------------------------------------
    def decide(
        self,
        account: str,
        feature: str,
        amount: int,
        partial: bool,
        plan: str | None = None,
        user: str | None = None,
    ) -> Decision:
        """What consume by ``user`` would answer now on ``plan`` (default: the account's)."""
        own_plan, seats = self.accounts[account]
        plan = plan or own_plan
        above = self.plans[self.plans.index(plan) + 1 :]
        lims = [lim for lim in self.limits if feature in lim.features]
        if any(not lim.cells[plan].access for lim in lims):
            upgrade = next(
                (p for p in above if all(lim.cells[p].access for lim in lims)),
                None,
            )
            return Decision(False, 0, "no_access", upgrade=upgrade)
        limited = [lim for lim in lims if self.cap(account, lim, plan, seats) is not None]
        left = {}  # requests of the feature that still fit each capped limit (credits // cost)
        for lim in limited:
            cap = self.cap(account, lim, plan, seats)
            assert cap is not None
            left[lim.name] = (cap - self.used(account, lim, self.now, user)) // lim.cost(feature)
        ceilings = [  # the most units of the feature one request may have, per ceiling
            (most // lim.cost(feature), i, lim)
            for i, lim in enumerate(lims)
            if (most := lim.cells[plan].per_request) is not None
        ]
        too_large = [c for c in ceilings if amount > c[0]]
        # partial takes what fits, but a ceiling that admits not even one unit is too large
        partial_ok = partial and all(c[0] > 0 for c in ceilings)
        if too_large and not partial_ok:  # the least ceiling below the amount (ties: first)
            smallest = min(too_large, key=lambda c: (c[0], c[1]))[2]
            upgrade = next(
                (p for p in above if self._admits(account, lims, p, seats, amount, feature)), None
            )
            return Decision(
                False,
                0,
                "request_too_large",
                limit=smallest.name,
                remaining=max(0, min(left.values())) if left else None,
                upgrade=upgrade,
            )
        need = 1 if partial else amount
        if all(v >= need for v in left.values()):
            ceiling = [c[0] for c in ceilings]
            granted = min([amount, *ceiling, *left.values()]) if partial else amount
            remaining = min((v - granted for v in left.values()), default=None)
            fair = False
            for lim in lims:
                soft = lim.cells[plan].soft_cap(seats)
                if self.cap(account, lim, plan, seats) is None and soft is not None:
                    units = granted * lim.cost(feature)
                    fair = fair or self.used(account, lim, self.now, user) + units > soft
            return Decision(True, granted, "ok", remaining=remaining, fair_use_exceeded=fair)
        blocker: Limit | None = None
        blocker_free = -1.0
        for lim in limited:
            if left[lim.name] >= need:
                continue
            free = self.first_fit(account, [lim], need, seats, plan, feature, user)
            free_key = float("inf") if free is None else free
            if free_key > blocker_free:  # the one that frees last; ties: first in order
                blocker, blocker_free = lim, free_key
        assert blocker is not None
        resets = self.first_fit(account, limited, need, seats, plan, feature, user)
        upgrade = next(
            (p for p in above if self.decide(account, feature, amount, partial, p, user).allowed),
            None,
        )
        return Decision(
            False,
            0,
            "limit_reached",
            limit=blocker.name,
            remaining=max(0, min(left.values())),
            resets_at=resets,
            retry_after=None if resets is None else resets - self.now,
            upgrade=upgrade,
        )

    def _admits(
        self, account: str, lims: list[Limit], plan: str, seats: int, amount: int, feature: str
    ) -> bool:
        """Whether ``plan`` lets one request ask for ``amount`` units of ``feature`` at all."""
        for lim in lims:
            cell = lim.cells[plan]
            cap, units = self.cap(account, lim, plan, seats), amount * lim.cost(feature)
            if not cell.access or (cell.per_request is not None and units > cell.per_request):
                return False
            if cap is not None and units > cap:
                return False
        return True

    def check(
        self,
        account: str,
        feature: str,
        amount: int = 1,
        partial: bool = False,
        user: str | None = None,
    ) -> Decision:
        self.settle(account)
        return self.decide(account, feature, amount, partial, user=user)

    def counts_per_user(self, feature: str) -> bool:
        return any(lim.scope != "account" for lim in self.limits if feature in lim.features)

    def consume(
        self,
        account: str,
        feature: str,
        amount: int = 1,
        partial: bool = False,
        key: str | None = None,
        user: str | None = None,
    ) -> Decision:
        """A key re-used within 24 h answers as first, unless for another feature or amount
        or, when the feature counts per user, another user: a conflict."""
        if key is not None:
            seen = self.keys.get((account, key))
            who = user if self.counts_per_user(feature) else None
            if seen is not None and self.now < seen[0] + IDEMPOTENCY_SECONDS:
                if (seen[1], seen[2], seen[3]) != (feature, amount, who):
                    raise ModelConflict(key)
                return seen[4]
        self.settle(account)
        d = self.decide(account, feature, amount, partial, user=user)
        if d.allowed:
            self._append(Grant(self.now, account, user, feature, d.granted))
        if key is not None:
            self.keys[(account, key)] = (self.now, feature, amount, who, d)
        return d

    def reserve(
        self,
        account: str,
        feature: str,
        amount: int,
        ttl: float,
        partial: bool = False,
        user: str | None = None,
    ) -> tuple[int | None, Decision, float | None]:
        """(hold id or None, decision, expires_at or None)."""
        self.settle(account)
        d = self.decide(account, feature, amount, partial, user=user)
        if not d.allowed:
            return None, d, None
        g = Grant(self.now, account, user, feature, d.granted, "held", self.now + ttl)
        self._append(g)
        hold = len(self.holds)
        self.holds[hold] = g
        return hold, d, g.expires_at

    def is_live(self, hold: int) -> bool:
        """Held, not yet expired (as an operation on its account would find it now)."""
        self.settle(self.holds[hold].account)
        return self.holds[hold].state == "held"

    def commit(self, hold: int, amount: int | None = None) -> None:
        """Make a hold final, settled at ``amount`` units if given: fewer return the rest
        (a write at now, as a release is); more charge the extra now as a request of its own
        (all or nothing, beside the held units), or raise with its denial, the hold kept."""
        g = self.holds[hold]
        assert g.state in ("held", "expired")
        if not self.is_live(hold):
            raise ModelExpired(hold)
        if amount is not None and amount < g.units:
            g.units = amount
            self._wrote(g.account, g.user, g.feature)
        elif amount is not None and amount > g.units:
            extra = amount - g.units
            d = self.decide(g.account, g.feature, extra, False, user=g.user)
            if not d.allowed:
                raise ModelLimitExceeded(d)
            self._append(Grant(self.now, g.account, g.user, g.feature, extra))
        g.state = "committed"

    def release(self, hold: int) -> bool:
        """Return a hold's units; False when it had expired already (nothing to return)."""
        g = self.holds[hold]
        assert g.state in ("held", "expired")
        if not self.is_live(hold):
            return False
        g.state = "released"
        self._wrote(g.account, g.user, g.feature)
        return True

    def usage(self, account: str, user: str | None = None) -> list[Meter]:
        self.settle(account)
        return self.meters(account, user)

    def meters(self, account: str, user: str | None = None) -> list[Meter]:
        """The meters as they stand, settling nothing (for the test to look at); a limit
        counted per user only for a user."""
        plan, seats = self.accounts[account]
        out = []
        for lim in self.limits:
            cell = lim.cells[plan]
            if not cell.access or (user is None and lim.scope != "account"):
                continue
            used, start, resets = self.window(account, lim, self.now, user)
            cap = self.cap(account, lim, plan, seats)
            remaining = None if cap is None else max(0, cap - used)
            out.append(Meter(lim.name, lim.features, used, cap, remaining, start, resets))
        return out
