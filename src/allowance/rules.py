"""The decision rules compiled once, for the one-step kernels (``stores/lua/decide.lua``,
``stores/sql/decide.sql``) to run.

For a feature, ``FeatureRules`` is what a decision touches on each plan: the counters (one per
limit counting the feature, whatever the plan, so counters survive plan changes), each with its
window, and per plan the cap rule of each (a cap or none, a soft level whose passing is only
flagged, both per seat or not) or no access at all. The engine evaluates the same ``Rule``
objects (``Policy.rules``); ``encode`` flattens them into ``Encoded``, plain lists of numbers
and names that both kernels read the same way and that name no policy concept: a kernel knows
window arithmetic (anchored, sliding, period), caps, per-request ceilings, soft levels, a
per-account scale, a load factor, a per-counter cost, which of the request's records holds a
counter (the account's or a user's: ``owners.py``) and an all-or-nothing charge, nothing
else. Period
bounds (calendar days, weeks, months in a time zone) are worked out here and handed to the
kernel with each call (``bounds``), so no kernel does time zone arithmetic.

A new policy concept is a field here and in ``Encoded``, read by at most one generic mechanism
in each kernel; ``tests/model/test_kernel_parity.py`` holds the kernels equal to the engine.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar, cast

from allowance import owners
from allowance.policy import Limit, Policy, Rule
from allowance.state import Counter
from allowance.windows import KEEP_AFTER, CalendarWindow

__all__ = ["KEEP_AFTER", "Encoded", "FeatureRules", "compiled", "encode"]

# how the kernels name a window's arithmetic: anchored (opened by its first charge), sliding
# (each grant's time kept), period (bounds supplied by the caller; a counter's period only
# moves forward)
KernelKind = Literal["a", "s", "p"]
Owner = TypeVar("Owner")
V = TypeVar("V")
# (a billing period is a period too, but its features never reach a kernel: ``one_step``)
KINDS: dict[str, KernelKind] = {"anchored": "a", "sliding": "s", "calendar": "p", "billing": "p"}
NONE = -1  # in Encoded's integer lists: no cap, no soft level


@dataclass(frozen=True, eq=False)
class FeatureRules:
    """What a decision on ``feature`` touches. ``counters``: the limits counting it, in policy
    order; ``plans``: plan names in policy order; ``by_plan``: each plan's rules (one per
    counter, same order), None for a plan without access; ``periods``: the windows of the
    period counters, whose bounds the caller supplies (``bounds``); ``records``: per
    counter, the record of a request holding it (``owners.records_of``)."""

    feature: str
    counters: tuple[Limit, ...]
    plans: tuple[str, ...]
    by_plan: dict[str, tuple[Rule, ...] | None]
    periods: tuple[CalendarWindow, ...]
    records: tuple[int, ...]
    events: bool = True  # the policy's ``events``: whether a charge may write any
    # formatted bounds by formatter: (the bounds, their text), see ``bounds_as``
    _formatted: dict[Callable[[tuple[float, ...]], Any], tuple[tuple[float, ...], Any]] = field(
        default_factory=dict, repr=False
    )

    def bounds(self, now: float) -> tuple[float, ...]:
        """For each period counter: the starts of the periods before, holding and after
        ``now``, and the end of that last one. A kernel deciding on its own clock picks the
        period holding its time from these (``now`` is a local estimate of that clock)."""
        out: tuple[float, ...] = ()
        for window in self.periods:
            out += window.bounds(now)
        return out

    def merged(self, stored: list[dict[str, Counter]]) -> dict[str, Counter]:
        """The counters a kernel decided on, by limit name, from the records it read
        (the account's first, then the user's: ``owners.merged``)."""
        names = tuple(limit.name for limit in self.counters)
        return owners.merged(names, self.records, stored)

    def bounds_as(self, now: float, fmt: Callable[[tuple[float, ...]], V]) -> V:
        """``fmt(self.bounds(now))``, kept while the bounds stay the same: every one-step
        decision on a period feature sends them, and writing out 4 doubles per period costs
        more than the rest of its arguments. ``fmt``: a module-level function (the key)."""
        bounds = self.bounds(now)
        found = self._formatted.get(fmt)
        if found is not None and found[0] == bounds:
            return cast(V, found[1])
        text = fmt(bounds)
        self._formatted[fmt] = (bounds, text)
        return text


@dataclass(frozen=True, slots=True)
class Encoded:
    """``FeatureRules`` as the kernels read them. Per counter ``i`` (0-based): ``names[i]``,
    ``kinds[i]`` (a letter of ``KINDS``), ``lengths[i]`` (seconds; 0 for a period),
    ``costs[i]`` (the counter's units one unit of the feature takes: a grant of g charges
    g * cost, caps, soft levels and ceilings are in the counter's units), ``records[i]``
    (the record holding the counter: 0 the account's, k the k-th record the caller names
    beside it, each read and written back in the same step). Per plan
    ``p`` (0-based, ``plans`` order): ``access[p]`` (0: no access, nothing is granted). Per
    counter and plan, at ``i * len(plans) + p``: ``caps`` and ``soft`` (``NONE``: none),
    ``scale`` (1: both are per unit of the account's seats), ``load`` (the load factor in
    force: the cap is floor(cap × seats × load), in IEEE doubles like ``Cell.cap``) and
    ``most``, the most units one request may be granted (``NONE``: any; never scaled: asking
    for more is denied, or with ``partial`` granted at most that)."""

    plans: tuple[str, ...]
    names: tuple[str, ...]
    kinds: str
    lengths: tuple[float, ...]
    costs: tuple[int, ...]
    records: tuple[int, ...]
    access: tuple[int, ...]
    caps: tuple[int, ...]
    soft: tuple[int, ...]
    scale: tuple[int, ...]
    load: tuple[float, ...]
    most: tuple[int, ...]
    reach: tuple[int, ...] = ()
    levels: tuple[float, ...] = ()
    level_at: tuple[int, ...] = (0,)


_compiled: weakref.WeakKeyDictionary[Policy, dict[str, FeatureRules]] = weakref.WeakKeyDictionary()


def compiled(policy: Policy, feature: str) -> FeatureRules:
    """The feature's rules, compiled once per policy object (kept as long as the policy)."""
    return derived(_compiled, policy, feature, _compile)


def derived(
    cache: weakref.WeakKeyDictionary[Owner, dict[str, V]],
    owner: Owner,
    name: str,
    make: Callable[[Owner, str], V],
) -> V:
    """``make(owner, name)``, made once and kept as long as ``owner`` lives (a cache by
    ``id()`` would hand a dead owner's value to a new object at the same address)."""
    values = cache.get(owner)
    if values is None:
        values = cache.setdefault(owner, {})
    found = values.get(name)
    if found is None:
        found = values[name] = make(owner, name)
    return found


def _compile(policy: Policy, feature: str) -> FeatureRules:
    counters = policy.limits_of(feature)
    plans = tuple(p.name for p in policy.plans)
    periods = tuple(limit.window for limit in counters if isinstance(limit.window, CalendarWindow))
    by_plan = {plan: policy.rules(plan, feature) for plan in plans}
    records = owners.records_of(counters)
    return FeatureRules(feature, counters, plans, by_plan, periods, records, policy.events)


def encode(rules: FeatureRules) -> Encoded:
    """The one encoder of the rules for both kernels."""
    caps: list[int] = []
    soft: list[int] = []
    scale: list[int] = []
    load: list[float] = []
    most: list[int] = []
    for i in range(len(rules.counters)):
        for plan in rules.plans:
            plan_rules = rules.by_plan[plan]
            cell = None if plan_rules is None else plan_rules[i].cell
            caps.append(NONE if cell is None or cell.max is None else cell.max)
            soft.append(NONE if cell is None or cell.fair_use is None else cell.fair_use)
            scale.append(1 if cell is not None and cell.per_seat else 0)
            load.append(1.0 if cell is None else cell.load)
            most.append(NONE if cell is None or cell.per_request is None else cell.per_request)
    events = rules.events
    levels: list[float] = []
    level_at = [0]
    for limit in rules.counters:
        levels += limit.thresholds if events else ()
        level_at.append(len(levels))
    return Encoded(
        plans=rules.plans,
        names=tuple(limit.name for limit in rules.counters),
        kinds="".join(KINDS[limit.window.kind] for limit in rules.counters),
        lengths=tuple(float(limit.window.length) for limit in rules.counters),
        costs=tuple(limit.cost(rules.feature) for limit in rules.counters),
        records=rules.records,
        access=tuple(0 if rules.by_plan[plan] is None else 1 for plan in rules.plans),
        caps=tuple(caps),
        soft=tuple(soft),
        scale=tuple(scale),
        load=tuple(load),
        most=tuple(most),
        reach=tuple(limit.least_cost if events else 0 for limit in rules.counters),
        levels=tuple(levels),
        level_at=tuple(level_at),
    )
