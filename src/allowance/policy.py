"""Policies: load a policy file (YAML) with an error per problem and its line (the checks are
in ``policy_check.py``), and compile it into the lookup tables the engine reads on every
decision.
"""

from __future__ import annotations

import copy
import math
import weakref
from collections.abc import Callable, Collection, Hashable
from dataclasses import dataclass, field, replace
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import pydantic
import yaml

from allowance.errors import PolicyError, PolicyIssue
from allowance.policy_check import dotted, pydantic_issues, salvaged, semantic_issues
from allowance.policy_schema import (
    PolicySpec,
    Scope,
    StoreErrorMode,
    spec_to_data,
)
from allowance.windows import (
    AnchoredWindow,
    BillingWindow,
    CalendarWindow,
    SlidingWindow,
    Window,
)
from allowance.yamlsource import YamlSyntaxError, load_with_lines

__all__ = ["Cell", "Feature", "Limit", "Plan", "Policy", "Rule", "builtin_policy", "load_policy"]


@dataclass(frozen=True, slots=True)
class Plan:
    name: str
    title: str
    rank: int  # 0 = cheapest


@dataclass(frozen=True, slots=True)
class Feature:
    name: str
    title: str
    on_store_error: StoreErrorMode | None = None  # None: the policy's (or the Limiter's)


@dataclass(frozen=True, slots=True)
class Cell:
    """One plan's setting for one limit. ``max`` None = unlimited; ``per_request``: the most
    units one request may ask for (not scaled by seats; None = any); ``load``: the load factor
    in force (``Policy.scaled``), the effective max being floor(max × seats × load). One
    account's own terms (``Policy.adjusted``): ``override`` replaces max × seats, ``extra``
    (granted units) is added after the load factor."""

    access: bool
    max: int | None
    per_seat: bool
    fair_use: int | None
    per_request: int | None = None
    load: float = 1.0
    override: int | None = None
    extra: int = 0

    def cap(self, seats: int) -> int | None:
        if self.override is not None:
            cap = self.override
        elif self.max is None:
            return None
        else:
            cap = self.max * seats if self.per_seat else self.max
        if self.load != 1.0:
            cap = math.floor(cap * self.load)
        return cap + self.extra

    def soft_cap(self, seats: int) -> int | None:
        if self.fair_use is None:
            return None
        return self.fair_use * seats if self.per_seat else self.fair_use


@dataclass(frozen=True, slots=True)
class Limit:
    """``costs``: credits, what one unit of a listed feature counts here (absent: 1); the
    limit's max, usage and meters are in these units."""

    name: str
    label: str
    features: tuple[str, ...]
    window: Window
    cells: dict[str, Cell]
    costs: dict[str, int] = field(default_factory=dict)
    # "account": one counter per account; "user": one per user of the account; "user_global":
    # one per user across every account (``owners.py`` says where each is kept)
    scope: Scope = "account"
    # the fractions of the max whose crossing is a ``usage.threshold`` event (``events.py``)
    thresholds: tuple[float, ...] = ()
    # what the cheapest of its features costs: with less left, nothing fits (``events.py``);
    # worked out once here, since every charge with events on reads it
    least_cost: int = 1

    def cost(self, feature: str) -> int:
        return self.costs.get(feature, 1)


@dataclass(frozen=True, slots=True)
class Rule:
    """A limit as it applies to one plan and one feature: what the engine evaluates. ``cost``:
    the limit's units one unit of the feature takes."""

    limit: Limit
    cell: Cell
    cost: int = 1


class Policy:
    """A validated, compiled policy. Build one with ``load_policy``, ``parse_policy`` or
    ``builtin_policy``; it is immutable and safe to share between threads."""

    def __init__(self, spec: PolicySpec, source_text: str | None, source_name: str) -> None:
        self.spec = spec
        self.source_text = source_text
        self.source_name = source_name
        self.timezone = spec.timezone
        self.plans: tuple[Plan, ...] = tuple(
            Plan(p.name, p.title or p.name.capitalize(), i) for i, p in enumerate(spec.plans)
        )
        self.plan_by_name = {p.name: p for p in self.plans}
        self.on_store_error: StoreErrorMode = spec.on_store_error
        self.events = spec.events  # whether decisions write events (``events.py``)
        # how long the ledger keeps rows (``ledger.py``); None: no ledger is written
        self.ledger_keep = spec.ledger.keep if spec.ledger.enabled else None
        self.features = {
            name: Feature(
                name,
                (f.title if f is not None and f.title else name),
                None if f is None else f.on_store_error,
            )
            for name, f in spec.features.items()
        }
        limits: dict[str, Limit] = {}
        for name, lim in spec.limits.items():
            w = lim.window
            window: Window
            if w.type == "anchored":
                window = AnchoredWindow(w.length or 0.0)
            elif w.type == "sliding":
                window = SlidingWindow(w.length or 0.0)
            elif w.type == "billing":
                window = BillingWindow("week" if w.unit == "week" else "month")
            else:
                window = CalendarWindow(w.unit or "day", w.timezone or spec.timezone)
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
            limits[name] = Limit(
                name,
                lim.label or name,
                tuple(lim.features),
                window,
                cells,
                dict(lim.costs),
                lim.scope,
                tuple(spec.thresholds if lim.thresholds is None else lim.thresholds),
                min((lim.costs.get(f, 1) for f in lim.features), default=1),
            )
        self.limits = limits
        self.load_factors: dict[str, float] = {}  # by limit: those in force (``scaled``)
        self._index()

    def _index(self) -> None:
        """The lookup tables the engine reads, from ``limits``."""
        limits = self.limits
        # what an account's billing anchor moves (``anchored``), and the features it decides
        # (no one-step kernel decides them: ``calls.one_step``)
        self._billed = frozenset(
            name for name, lim in limits.items() if isinstance(lim.window, BillingWindow)
        )
        self.billed_features = frozenset(f for name in self._billed for f in limits[name].features)
        # the features a decision needs a ``user`` for: they count per user somewhere
        self.user_features = frozenset(
            f for lim in limits.values() if lim.scope != "account" for f in lim.features
        )
        # decided on the transaction path only (``calls.one_step``)
        self.slow_features = self.billed_features
        self._feature_limits = {
            f: tuple(lim for lim in limits.values() if f in lim.features) for f in self.features
        }
        self._feature_limit_names = {
            f: tuple(lim.name for lim in limits) for f, limits in self._feature_limits.items()
        }
        # (plan, feature) -> the rules to check, or None when the plan has no access
        self._rules: dict[tuple[str, str], tuple[Rule, ...] | None] = {}
        for plan in self.plans:
            for feature, flimits in self._feature_limits.items():
                rules = tuple(Rule(lim, lim.cells[plan.name], lim.cost(feature)) for lim in flimits)
                access = all(r.cell.access for r in rules)
                self._rules[(plan.name, feature)] = rules if access else None

    def rules(self, plan: str, feature: str) -> tuple[Rule, ...] | None:
        """The rules for ``feature`` on ``plan``; None when the plan has no access to it."""
        return self._rules[(plan, feature)]

    def limit_names(self, feature: str) -> tuple[str, ...]:
        """Names of the limits counting ``feature`` (the counters a decision reads)."""
        return self._feature_limit_names[feature]

    def limits_of(self, feature: str) -> tuple[Limit, ...]:
        """Every limit that counts ``feature``, whatever the plan (counters are by limit)."""
        return self._feature_limits[feature]

    def plan_limits(self, plan: str) -> list[Rule]:
        """The rules of every limit the plan has access to, in policy order (for meters)."""
        return [
            Rule(lim, lim.cells[plan]) for lim in self.limits.values() if lim.cells[plan].access
        ]

    def scaled(self, factors: dict[str, float]) -> Policy:
        """This policy with load factors in force: each limit named in ``factors`` has its
        effective max floor(max × seats × factor) on every plan (``Cell.load``). The same
        factors give the same object back (so rules compiled for it are reused); factors of
        1 give this policy itself."""
        key = tuple(sorted((name, f) for name, f in factors.items() if f != 1.0))
        if not key:
            return self

        def make() -> Policy:
            found = self._derived({name: {"load": f} for name, f in key})
            found.load_factors = dict(key)
            return found

        return _kept(_scaled, self, key, _SCALED_KEPT, make)

    def adjusted(self, terms: tuple[tuple[str, int | None, int], ...]) -> Policy:
        """This policy as one account's own terms make it: for each (limit, override, extra)
        of ``terms`` (``adjust.in_force``), every plan's cell of that limit gets them. The same
        terms give the same object back while it is among the last few hundred asked for."""
        if not terms:
            return self
        changes = {name: {"override": most, "extra": extra} for name, most, extra in terms}
        return _kept(_adjusted, self, terms, _ADJUSTED_KEPT, lambda: self._derived(changes))

    def anchored(self, anchor: float) -> Policy:
        """This policy for an account whose billing periods renew at ``anchor``: each
        billing window anchored there (the same anchor gives the same object back while it is
        among the last few hundred asked for); a policy without billing windows is itself."""
        if not self._billed:
            return self

        def at(lim: Limit) -> Limit:
            assert isinstance(lim.window, BillingWindow)
            return replace(lim, window=lim.window.at(anchor))

        return _kept(
            _anchored, self, anchor, _ADJUSTED_KEPT, lambda: self._replaced(self._billed, at)
        )

    def _derived(self, changes: dict[str, dict[str, Any]]) -> Policy:
        """A copy with the cells of the named limits changed, on every plan."""

        def changed(lim: Limit) -> Limit:
            cells = {plan: replace(cell, **changes[lim.name]) for plan, cell in lim.cells.items()}
            return replace(lim, cells=cells)

        return self._replaced(changes, changed)

    def _replaced(self, names: Collection[str], change: Callable[[Limit], Limit]) -> Policy:
        """A copy with each limit named in ``names`` changed by ``change``."""
        found = copy.copy(self)
        found.limits = {
            name: change(lim) if name in names else lim for name, lim in self.limits.items()
        }
        found._index()
        return found

    def to_data(self) -> dict[str, Any]:
        return spec_to_data(self.spec)

    def to_yaml(self) -> str:
        """The policy as a policy file. A policy read from a file gives that file's text."""
        if self.source_text is not None:
            return self.source_text
        return yaml.safe_dump(self.to_data(), sort_keys=False, allow_unicode=True)

    def __repr__(self) -> str:
        return f"<Policy {self.source_name}: {len(self.plans)} plans, {len(self.limits)} limits>"


_SCALED_KEPT = 8
_ADJUSTED_KEPT = 512  # accounts with terms of their own that decide often
_adjusted: weakref.WeakKeyDictionary[
    Policy, dict[tuple[tuple[str, int | None, int], ...], Policy]
] = weakref.WeakKeyDictionary()
_anchored: weakref.WeakKeyDictionary[Policy, dict[float, Policy]] = weakref.WeakKeyDictionary()
_scaled: weakref.WeakKeyDictionary[Policy, dict[tuple[tuple[str, float], ...], Policy]] = (
    weakref.WeakKeyDictionary()
)
K = TypeVar("K", bound=Hashable)


def _kept(
    caches: weakref.WeakKeyDictionary[Policy, dict[K, Policy]],
    policy: Policy,
    key: K,
    most: int,
    make: Callable[[], Policy],
) -> Policy:
    """The policy derived from ``policy`` for ``key``, made once and kept among the last
    ``most`` keys asked for (so rules, scripts and statements compiled for it are reused)."""
    kept = caches.setdefault(policy, {})
    found = kept.get(key)
    if found is None:
        if len(kept) >= most:
            kept.pop(next(iter(kept)))
        found = kept[key] = make()
    return found


def parse_policy(text: str, source: str = "<policy>") -> Policy:
    """Validate policy-file text; raise ``PolicyError`` listing every problem with its line."""
    try:
        data, smap, dupes = load_with_lines(text)
    except YamlSyntaxError as exc:
        raise PolicyError([PolicyIssue("", exc.message, exc.line)], source) from None
    issues = [PolicyIssue(dotted(p), m, smap.line_of(p, key=True)) for p, m in dupes]
    if not isinstance(data, dict):
        issues.append(PolicyIssue("", "a policy file is a mapping with plans, features, limits", 1))
        raise PolicyError(issues, source)
    try:
        spec = PolicySpec.model_validate(data)
    except pydantic.ValidationError as exc:
        issues.extend(pydantic_issues(exc, data, smap))
        rest = salvaged(data, exc)  # the checks the schema cannot make, on what it took
        if rest is not None:
            issues.extend(i for i in semantic_issues(rest[0], smap) if not rest[1](i))
        raise PolicyError(sorted(issues, key=lambda i: i.line or 0), source) from None
    issues.extend(semantic_issues(spec, smap))
    if issues:
        raise PolicyError(sorted(issues, key=lambda i: i.line or 0), source)
    return Policy(spec, text, source)


def load_policy(path: str | Path) -> Policy:
    """Read and validate a policy file; ``PolicyError`` names each problem and its line."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyError([PolicyIssue("", f"cannot read {p}: {exc}")], str(p)) from None
    return parse_policy(text, str(p))


@cache
def builtin_policy() -> Policy:
    """The seed's plan table (``builtin.yaml`` inside the package)."""
    text = resources.files("allowance").joinpath("builtin.yaml").read_text(encoding="utf-8")
    return parse_policy(text, "builtin.yaml")
