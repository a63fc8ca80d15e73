"""A plain, slow reference model of allowance's semantics, written from CONTRACT sections 2-4
(not from ``engine.py`` / ``windows.py``): a log of every grant per account, and every answer
computed from the definitions each time.

- sliding window of length L: units of grants with time in (t - L, t].
- anchored window of length L: replay the grants in order; a grant opens a window [s, s + L)
  when none is open; used = units of the grants inside the open window. A released or expired
  reservation's units go back, but a window it opened stays open.
- calendar day / ISO week / month in the policy's time zone: units of grants in the period.

Times are epoch seconds (float).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from allowance import Policy

IDEMPOTENCY_SECONDS = 86400.0


class ModelConflict(Exception):
    """An idempotency key re-used for another request."""


class ModelExpired(Exception):
    """Commit after a reservation's expiry."""


@dataclass(frozen=True)
class Cell:
    access: bool
    max: int | None  # None = unlimited
    per_seat: bool
    fair_use: int | None

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
    kind: str  # anchored | sliding | calendar
    length: float  # seconds (anchored, sliding)
    unit: str  # day | week | month (calendar)
    tz: ZoneInfo
    cells: dict[str, Cell]


@dataclass
class Grant:
    time: float
    feature: str
    units: int
    state: str = "final"  # final | held | committed | released
    expires_at: float | None = None  # for a reservation

    def units_at(self, t: float) -> int:
        """The units still counted at time t: a released or expired hold counts nothing."""
        if self.state == "released":
            return 0
        if self.state == "held" and self.expires_at is not None and t >= self.expires_at:
            return 0
        return self.units


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


def limits_from(policy: Policy) -> list[Limit]:
    """The policy's limits, in policy order, read from its raw spec."""
    spec = policy.spec
    out = []
    for name, lim in spec.limits.items():
        w = lim.window
        cells = {
            plan: Cell(
                c.access, c.max, lim.per_seat if c.per_seat is None else c.per_seat, c.fair_use
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
            )
        )
    return out


@dataclass
class Model:
    policy: Policy
    now: float
    accounts: dict[str, tuple[str, int]] = field(default_factory=dict)
    log: dict[str, list[Grant]] = field(default_factory=dict)
    keys: dict[tuple[str, str], tuple[float, str, int, Decision]] = field(default_factory=dict)
    holds: dict[int, Grant] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.plans = [p.name for p in self.policy.spec.plans]  # cheapest first
        self.limits = limits_from(self.policy)

    # state ---------------------------------------------------------------------------------
    def set_account(self, account: str, plan: str, seats: int = 1) -> None:
        self.accounts[account] = (plan, seats)
        self.log.setdefault(account, [])

    def advance(self, seconds: float) -> None:
        self.now += seconds

    # windows -------------------------------------------------------------------------------
    def window(
        self, account: str, lim: Limit, t: float, held_as_of: float | None = None
    ) -> tuple[int, float | None, float | None]:
        """(used, window_start, resets_at) of ``lim`` at time t, from the log alone.

        ``held_as_of``: count each grant's units as they stand at that time (a hold still
        live then counts as if committed), else as they stand at t.
        """
        grants = [g for g in self.log[account] if g.feature in lim.features and g.time <= t]
        as_of = t if held_as_of is None else held_as_of

        def units(g: Grant) -> int:
            return g.units_at(as_of)

        if lim.kind == "sliding":
            inside = [g for g in grants if t - lim.length < g.time and units(g) > 0]
            if not inside:
                return 0, None, None
            oldest = min(g.time for g in inside)
            return sum(units(g) for g in inside), oldest, oldest + lim.length
        if lim.kind == "anchored":
            start: float | None = None
            for g in grants:
                if start is None or g.time >= start + lim.length:
                    start = g.time
            if start is None or t >= start + lim.length:
                return 0, None, None
            used = sum(units(g) for g in grants if g.time >= start)
            return used, start, start + lim.length
        begin, end = period(t, lim.unit, lim.tz)
        return sum(units(g) for g in grants if g.time >= begin), begin, end

    def used(self, account: str, lim: Limit, t: float) -> int:
        return self.window(account, lim, t)[0]

    def first_fit(
        self, account: str, lims: list[Limit], need: int, seats: int, plan: str
    ) -> float | None:
        """Brute force: the earliest time >= now at which ``need`` units fit every limit of
        ``lims``, assuming no other grant and that every hold live now is committed (the
        holder may still commit it, so its expiry is no promise); None if never."""
        candidates = {self.now}
        for g in self.log[account]:
            for lim in self.limits:
                if lim.length:
                    candidates.add(g.time + lim.length)
        for lim in self.limits:
            if lim.kind == "calendar":
                candidates.add(period(self.now, lim.unit, lim.tz)[1])
        for t in sorted(c for c in candidates if c >= self.now):
            fits = True
            for lim in lims:
                cap = lim.cells[plan].cap(seats)
                used = self.window(account, lim, t, held_as_of=self.now)[0]
                if cap is not None and used + need > cap:
                    fits = False
            if fits:
                return t
        return None

    # decisions -----------------------------------------------------------------------------
    def decide(
        self, account: str, feature: str, amount: int, partial: bool, plan: str | None = None
    ) -> Decision:
        """What consume would answer now on ``plan`` (default: the account's)."""
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
        limited = [lim for lim in lims if lim.cells[plan].cap(seats) is not None]
        left = {}
        for lim in limited:
            cap = lim.cells[plan].cap(seats)
            assert cap is not None
            left[lim.name] = cap - self.used(account, lim, self.now)
        need = 1 if partial else amount
        if all(v >= need for v in left.values()):
            granted = min([amount, *left.values()]) if partial else amount
            remaining = min((v - granted for v in left.values()), default=None)
            fair = False
            for lim in lims:
                soft = lim.cells[plan].soft_cap(seats)
                if lim.cells[plan].max is None and soft is not None:
                    fair = fair or self.used(account, lim, self.now) + granted > soft
            return Decision(True, granted, "ok", remaining=remaining, fair_use_exceeded=fair)
        blocker: Limit | None = None
        blocker_free = -1.0
        for lim in limited:
            if left[lim.name] >= need:
                continue
            free = self.first_fit(account, [lim], need, seats, plan)
            free_key = float("inf") if free is None else free
            if free_key > blocker_free:  # the one that frees last; ties: first in order
                blocker, blocker_free = lim, free_key
        assert blocker is not None
        resets = self.first_fit(account, limited, need, seats, plan)
        upgrade = next(
            (p for p in above if self.decide(account, feature, amount, partial, p).allowed), None
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

    def check(self, account: str, feature: str, amount: int = 1, partial: bool = False) -> Decision:
        return self.decide(account, feature, amount, partial)

    def consume(
        self,
        account: str,
        feature: str,
        amount: int = 1,
        partial: bool = False,
        key: str | None = None,
    ) -> Decision:
        if key is not None:
            seen = self.keys.get((account, key))
            if seen is not None and self.now < seen[0] + IDEMPOTENCY_SECONDS:
                if (seen[1], seen[2]) != (feature, amount):
                    raise ModelConflict(key)
                return seen[3]
        d = self.decide(account, feature, amount, partial)
        if d.allowed:
            self.log[account].append(Grant(self.now, feature, d.granted))
        if key is not None:
            self.keys[(account, key)] = (self.now, feature, amount, d)
        return d

    def reserve(
        self, account: str, feature: str, amount: int, ttl: float, partial: bool = False
    ) -> tuple[int | None, Decision, float | None]:
        """(hold id or None, decision, expires_at or None)."""
        d = self.decide(account, feature, amount, partial)
        if not d.allowed:
            return None, d, None
        g = Grant(self.now, feature, d.granted, "held", self.now + ttl)
        self.log[account].append(g)
        hold = len(self.holds)
        self.holds[hold] = g
        return hold, d, g.expires_at

    def is_live(self, hold: int) -> bool:
        """Held, not yet expired."""
        g = self.holds[hold]
        return g.state == "held" and g.units_at(self.now) > 0

    def commit(self, hold: int) -> None:
        g = self.holds[hold]
        assert g.state == "held"
        if not self.is_live(hold):
            raise ModelExpired(hold)
        g.state = "committed"

    def release(self, hold: int) -> None:
        g = self.holds[hold]
        assert g.state == "held"
        g.state = "released"

    def usage(self, account: str) -> list[Meter]:
        plan, seats = self.accounts[account]
        out = []
        for lim in self.limits:
            cell = lim.cells[plan]
            if not cell.access:
                continue
            used, start, resets = self.window(account, lim, self.now)
            cap = cell.cap(seats)
            remaining = None if cap is None else max(0, cap - used)
            out.append(Meter(lim.name, lim.features, used, cap, remaining, start, resets))
        return out
