"""The decision rules: pure, no I/O, no clock. This is the rule; everything else follows it.

Given the policy, an account's plan and seats, the counters of the limits a feature touches,
the request and ``now`` (epoch seconds, UTC), ``decide`` returns the decision; ``charge`` then
applies a grant to the counters. Stores call these inside their atomic step and persist the
counters they handed in. Every limit listing a feature counts it whatever the plan, so counters
are keyed by limit name and survive plan changes.

What is repeated elsewhere, and why. A store that decides in one round trip cannot call back
into Python between reading the counters and charging them, so its kernel (Redis:
``stores/lua/decide.lua``, PostgreSQL: ``stores/sql/decide.sql``) repeats exactly this much:
the window arithmetic of ``windows.py`` (what an anchored, sliding or period counter holds at
``now`` and how a charge changes it, a later period kept after a clock step back), the grant
(every capped counter has room, ``partial`` takes what fits), the all-or-nothing charge, and
for a grant the least remaining and whether a soft (fair-use) level is passed. It reads the
rules as data compiled by ``rules.py`` (one encoder for both), so it names no policy concept:
no plan ranks, no messages, no upgrade, no quota. Everything else (a denial's blocking limit,
its reset, the upgrade, the sentence) is this module's, replayed on the counters the kernel
saw (``ops.replay``), which must agree with the kernel's grant.
``tests/model/test_kernel_parity.py`` holds the kernels equal to this module.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace

from allowance import messages
from allowance.policy import Limit, Plan, Policy, Rule
from allowance.state import Counter, Hold
from allowance.types import Decision, Meter, Quota, to_datetime
from allowance.windows import KEEP_AFTER


@dataclass(slots=True)
class Ruling:
    """A decision plus what a grant must charge."""

    decision: Decision
    granted: int
    rules: tuple[Rule, ...]
    # per rule of a grant: its counter's usage before the charge where it has a cap or a
    # soft level (0 elsewhere): what ``events.crossings`` compares the charge with
    used: tuple[int, ...] = ()


def decide(
    policy: Policy,
    plan: str,
    seats: int,
    feature: str,
    amount: int,
    partial: bool,
    counters: Mapping[str, Counter],
    now: float,
) -> Ruling:
    """Decide a request of ``amount`` units (``partial``: as many as fit, at least 1).

    A grant needs every limited rule to have room; what it returns describes the state after
    the grant would be charged. Nothing is changed here.
    """
    rules = policy.rules(plan, feature)
    if rules is None:
        return _no_access(policy, plan, feature)
    grant = amount
    room: list[tuple[Rule, int, int]] = []  # (rule, cap, used) of each limited rule
    blocked = False
    too_large: Rule | None = None  # the rule of the least per-request cap below ``amount``
    before: list[int] = []  # Ruling.used
    for rule in rules:
        cell, cost = rule.cell, rule.cost  # a grant of g charges g * cost here
        most = cell.per_request
        if most is not None and grant * cost > most:
            if partial and most >= cost:
                grant = most // cost
            elif too_large is None or most // cost < _admitted(too_large):
                too_large = rule
        # × seats, or the account's override; a load factor; granted units (Cell.cap)
        cap = cell.cap(seats)
        if cap is None:
            before.append(
                0
                if cell.fair_use is None
                else rule.limit.window.used(counters[rule.limit.name], now)
            )
            continue
        used = rule.limit.window.used(counters[rule.limit.name], now)
        before.append(used)
        room.append((rule, cap, used))
        fits = (cap - used) // cost
        if fits < grant:
            if partial and fits >= 1:
                grant = fits
            else:
                blocked = True
    if too_large is not None:  # asking again later will not help: only another plan can
        return _request_too_large(policy, plan, seats, feature, amount, too_large, room)
    if blocked:
        return _limit_reached(policy, plan, seats, feature, amount, partial, counters, now, room)
    # the binding limit: the fewest units of the feature left after the grant
    binding: tuple[Rule, int, int] | None = None  # (rule, cap, units of the feature left)
    for rule, cap, used in room:
        remaining = (cap - used) // rule.cost - grant
        if binding is None or remaining < binding[2]:
            binding = (rule, cap, remaining)
    fair_use = _fair_use(rules, seats, grant, counters, now)
    quota = None
    shown: tuple[Limit, int, int, int] | None = None  # (limit, cap, its units left, cost)
    if binding is not None:
        rule, cap, _ = binding
        left = cap - rule.limit.window.used(counters[rule.limit.name], now) - grant * rule.cost
        quota = _quota(rule, cap, left, counters[rule.limit.name], now, None)
        shown = (rule.limit, cap, left, rule.cost)
    feature_title = policy.features[feature].title

    def message() -> str:
        return messages.granted(feature_title, amount, grant, shown, fair_use)

    decision = Decision.grant(
        grant,
        None if binding is None else binding[2],
        message,
        fair_use_exceeded=fair_use is not None,
        quota=quota,
    )
    return Ruling(decision, grant, rules, tuple(before))


def _admitted(rule: Rule) -> int:
    """The most units of the feature one request may ask for under ``rule``'s ceiling."""
    return (rule.cell.per_request or 0) // rule.cost


def _quota(
    rule: Rule, cap: int, remaining: int, counter: Counter, now: float, fits: float | None
) -> Quota:
    """The binding limit as the rate-limit headers show it, in its own units (credits);
    ``fits`` is when a denied request would fit (the reset that matters to its client), else
    the window's own reset."""
    length, resets = rule.limit.window.quota_span(counter, now)
    if fits is not None:
        resets = fits
    return Quota(rule.limit.name, cap, length, max(0, remaining), max(0.0, resets - now))


def _fair_use(
    rules: tuple[Rule, ...], seats: int, grant: int, counters: Mapping[str, Counter], now: float
) -> tuple[Limit, int] | None:
    for rule in rules:
        cell = rule.cell
        if cell.fair_use is not None and cell.cap(seats) is None:
            soft = cell.soft_cap(seats) or 0
            used = rule.limit.window.used(counters[rule.limit.name], now)
            if used + grant * rule.cost > soft:
                return rule.limit, soft
    return None


def _would_grant(
    rules: tuple[Rule, ...] | None,
    seats: int,
    need: int,
    used_by: dict[str, int],
    counters: Mapping[str, Counter],
    now: float,
) -> bool:
    if rules is None:
        return False
    for rule in rules:
        units = need * rule.cost
        most = rule.cell.per_request
        if most is not None and units > most:
            return False
        cap = rule.cell.cap(seats)
        if cap is None:
            continue
        name = rule.limit.name
        used = used_by.get(name)
        if used is None:  # capped here but not on the plan denied: not counted yet
            used = used_by[name] = rule.limit.window.used(counters[name], now)
        if cap - used < units:
            return False
    return True


def _upgrade_plan(
    policy: Policy,
    plan: str,
    seats: int,
    feature: str,
    need: int,
    used_by: dict[str, int],
    counters: Mapping[str, Counter],
    now: float,
) -> Plan | None:
    """The cheapest higher plan that would grant the request now. Counters are by limit, so
    every plan reads the same usage: what the denied plan counted is not counted again."""
    rank = policy.plan_by_name[plan].rank
    for other in policy.plans[rank + 1 :]:
        if _would_grant(policy.rules(other.name, feature), seats, need, used_by, counters, now):
            return other
    return None


def _limit_reached(
    policy: Policy,
    plan: str,
    seats: int,
    feature: str,
    amount: int,
    partial: bool,
    counters: Mapping[str, Counter],
    now: float,
    room: list[tuple[Rule, int, int]],
) -> Ruling:
    need = 1 if partial else amount
    # the blocking limit is the one that frees last; one that never fits frees "last of all"
    worst: tuple[Rule, int, int, float | None] | None = None
    for rule, cap, used in room:
        if cap - used >= need * rule.cost:
            continue
        fits = rule.limit.window.fits_at(counters[rule.limit.name], now, need * rule.cost, cap)
        if worst is None or (worst[3] is not None and (fits is None or fits > worst[3])):
            worst = (rule, cap, used, fits)
    assert worst is not None  # only called when a rule blocks
    rule, cap, used, fits = worst
    remaining = max(0, min((c - u) // r.cost for r, c, u in room))  # units of the feature
    used_by = {r.limit.name: u for r, _, u in room}
    upgrade = _upgrade_plan(policy, plan, seats, feature, need, used_by, counters, now)

    def message() -> str:
        return messages.denied(
            rule.limit,
            cap,
            used,
            need * rule.cost,
            fits,
            upgrade,
            None if upgrade is None else rule.limit.cells[upgrade.name],
            seats,
            rule.cost,
            None if rule.cell.load == 1.0 else replace(rule.cell, load=1.0).cap(seats),
        )

    decision = Decision.denial(
        "limit_reached",
        message,
        limit=rule.limit.name,
        remaining=remaining,
        fits_at=fits,
        now=now,
        upgrade=None if upgrade is None else upgrade.name,
        # read by the HTTP answer's headers, seldom by a library caller: worked out if read
        quota=lambda: _quota(rule, cap, cap - used, counters[rule.limit.name], now, fits),
    )
    return Ruling(decision, 0, ())


def steady_until(
    policy: Policy,
    feature: str,
    counters: Mapping[str, Counter],
    next_hold_expiry: float | None,
    now: float,
) -> float:
    """Until when a denial of ``feature`` decided at ``now`` stays the answer if nothing is
    written meanwhile, the wait excepted: the first time a counter of the feature (on any plan,
    which the upgrade reads) changes by time alone, or a hold expires and returns its units.
    ``ops.denials`` keeps a denial that long (``math.inf``: until a write)."""
    until = math.inf if next_hold_expiry is None else next_hold_expiry
    for limit in policy.limits_of(feature):
        counter = counters.get(limit.name)
        if counter is not None:
            changes = limit.window.changes_at(counter, now)
            if changes is not None and changes < until:
                until = changes
    return until


def _admits(rules: tuple[Rule, ...] | None, seats: int, amount: int) -> bool:
    """Whether a plan with these rules lets one request ask for ``amount`` units at all."""
    if rules is None:
        return False
    for rule in rules:
        most, cap, units = rule.cell.per_request, rule.cell.cap(seats), amount * rule.cost
        if (most is not None and units > most) or (cap is not None and units > cap):
            return False
    return True


def _request_too_large(
    policy: Policy,
    plan: str,
    seats: int,
    feature: str,
    amount: int,
    rule: Rule,
    room: list[tuple[Rule, int, int]],
) -> Ruling:
    most = rule.cell.per_request
    assert most is not None
    rank = policy.plan_by_name[plan].rank
    upgrade = next(
        (
            p
            for p in policy.plans[rank + 1 :]
            if _admits(policy.rules(p.name, feature), seats, amount)
        ),
        None,
    )
    remaining = min(((cap - used) // r.cost for r, cap, used in room), default=None)

    def message() -> str:
        cell = None if upgrade is None else rule.limit.cells[upgrade.name]
        return messages.too_large(rule.limit, most, amount * rule.cost, upgrade, cell)

    decision = Decision.denial(
        "request_too_large",
        message,
        limit=rule.limit.name,
        remaining=None if remaining is None else max(0, remaining),
        upgrade=None if upgrade is None else upgrade.name,
    )
    return Ruling(decision, 0, ())


def _no_access(policy: Policy, plan: str, feature: str) -> Ruling:
    current = policy.plan_by_name[plan]
    upgrade = next(
        (p for p in policy.plans[current.rank + 1 :] if policy.rules(p.name, feature) is not None),
        None,
    )
    message = messages.no_access(policy.features[feature].title, current, upgrade)
    decision = Decision.denial(
        "no_access", message, upgrade=None if upgrade is None else upgrade.name
    )
    return Ruling(decision, 0, ())


def charge(ruling: Ruling, counters: Mapping[str, Counter], now: float) -> dict[str, float]:
    """Charge a granted ruling to every limit it checked (unlimited ones count usage too).
    Returns the mark of each window charged, which a reservation keeps for its release."""
    marks = {}
    units = ruling.granted
    for rule in ruling.rules:
        name = rule.limit.name
        marks[name] = rule.limit.window.charge(counters[name], units * rule.cost, now)
    return marks


def release(
    policy: Policy,
    hold: Hold,
    counters: Mapping[str, Counter],
    now: float,
    units: int | None = None,
) -> None:
    """Return a hold's units (``units`` of them; default all) to the windows they came from
    (those still holding them), each at what it cost there."""
    back = hold.amount if units is None else units
    for name, mark in hold.marks.items():
        limit = policy.limits.get(name)
        if limit is not None and name in counters:
            limit.window.uncharge(counters[name], mark, back * limit.cost(hold.feature), now)


def live_counters(
    policy: Policy, counters: Mapping[str, Counter], now: float
) -> tuple[dict[str, Counter], float]:
    """The counters still holding something at ``now`` or ``KEEP_AFTER`` before (those of
    windows closed longer ago, or of limits the policy no longer has, can be dropped), and
    when the last of them may be dropped."""
    keep, last = {}, now
    for name, counter in counters.items():
        limit = policy.limits.get(name)
        expires = None if limit is None else limit.window.expires_at(counter)
        if expires is not None and expires + KEEP_AFTER > now:
            keep[name] = counter
            last = max(last, expires + KEEP_AFTER)
    return keep, last


def meters(
    policy: Policy, plan: str, seats: int, counters: Mapping[str, Counter], now: float
) -> list[Meter]:
    """One meter per limit the plan has access to, in policy order."""
    out = []
    for rule in policy.plan_limits(plan):
        limit = rule.limit
        counter = counters.get(limit.name) or Counter()
        used = limit.window.used(counter, now)
        cap = rule.cell.cap(seats)
        start, resets = limit.window.span(counter, now)
        out.append(
            Meter(
                limit.name,
                limit.features,
                used,
                cap,
                None if cap is None else max(0, cap - used),
                to_datetime(start),
                to_datetime(resets),
                rule.cell.override,
                rule.cell.extra if cap is not None else 0,
            )
        )
    return out
