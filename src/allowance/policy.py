"""Policies: load a policy file (YAML) with an error per problem and its line, and compile it
into the lookup tables the engine reads on every decision.
"""

from __future__ import annotations

import difflib
import math
import re
import weakref
from dataclasses import dataclass, field, replace
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pydantic
import yaml

from allowance.errors import PolicyError, PolicyIssue
from allowance.policy_schema import (
    NAME_PATTERN,
    FeatureSpec,
    LimitSpec,
    PlanSpec,
    PolicySpec,
    StoreErrorMode,
    WindowSpec,
    spec_to_data,
)
from allowance.windows import AnchoredWindow, CalendarWindow, SlidingWindow, Window
from allowance.yamlsource import Path as DataPath
from allowance.yamlsource import SourceMap, YamlSyntaxError, load_with_lines

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
    in force (``Policy.scaled``), the effective max being floor(max × seats × load)."""

    access: bool
    max: int | None
    per_seat: bool
    fair_use: int | None
    per_request: int | None = None
    load: float = 1.0

    def cap(self, seats: int) -> int | None:
        if self.max is None:
            return None
        cap = self.max * seats if self.per_seat else self.max
        return cap if self.load == 1.0 else math.floor(cap * self.load)

    def soft_cap(self, seats: int) -> int | None:
        if self.fair_use is None:
            return None
        return self.fair_use * seats if self.per_seat else self.fair_use


MAX_COST = 1_000_000  # credits one unit of a feature may cost


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
                name, lim.label or name, tuple(lim.features), window, cells, dict(lim.costs)
            )
        self.limits = limits
        self.load_factors: dict[str, float] = {}  # by limit: those in force (``scaled``)
        self._index()

    def _index(self) -> None:
        """The lookup tables the engine reads, from ``limits``."""
        limits = self.limits
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
        cache = _scaled.setdefault(self, {})
        found = cache.get(key)
        if found is None:
            if len(cache) >= _SCALED_KEPT:  # factors change seldom; keep the latest few
                cache.pop(next(iter(cache)))
            found = cache[key] = Policy(self.spec, self.source_text, self.source_name)
            found.limits = {
                name: replace(
                    lim,
                    cells={
                        plan: replace(cell, load=dict(key).get(name, 1.0))
                        for plan, cell in lim.cells.items()
                    },
                )
                for name, lim in self.limits.items()
            }
            found.load_factors = dict(key)
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
_scaled: weakref.WeakKeyDictionary[Policy, dict[tuple[tuple[str, float], ...], Policy]] = (
    weakref.WeakKeyDictionary()
)


def _dotted(path: DataPath) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


_KEYS_AT_DEPTH: dict[tuple[str | None, ...], tuple[str, ...]] = {
    (): tuple(PolicySpec.model_fields),
    ("plans", None): tuple(PlanSpec.model_fields),
    ("features", None): tuple(FeatureSpec.model_fields),
    ("limits", None): tuple(LimitSpec.model_fields),
    ("limits", None, "window"): tuple(WindowSpec.model_fields),
    ("limits", None, "plans", None): ("max", "per_seat", "fair_use", "per_request"),
}


def _allowed_keys(parent: DataPath) -> tuple[str, ...]:
    shape = tuple(
        p if i % 2 == 0 and p in ("plans", "features", "limits", "window") else None
        for i, p in enumerate(parent)
    )
    return _KEYS_AT_DEPTH.get(shape, ())


def _wording(err: Any) -> str:
    """pydantic's error in the words of a policy file."""
    kind, ctx = err["type"], err.get("ctx") or {}
    if kind == "greater_than_equal":
        return f"must be at least {ctx.get('ge')}"
    if kind == "less_than_equal":
        return f"must be at most {ctx.get('le')}"
    if kind in ("int_type", "int_from_float", "int_parsing"):
        return "must be a whole number"
    if kind == "bool_type":
        return "must be true or false"
    if kind == "string_type":
        return "must be text"
    if kind in ("list_type", "tuple_type"):
        return "must be a list"
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return "must be a mapping"
    if kind in ("too_short", "string_too_short"):
        return "must not be empty"
    if kind == "string_too_long":
        return f"is too long (at most {ctx.get('max_length')} characters)"
    if kind == "string_pattern_mismatch":
        return "must be lower-case letters, digits and _, in words joined by dots"
    if kind == "literal_error":
        return f"must be {ctx.get('expected')}"
    return str(err["msg"]).removeprefix("Value error, ")


def _pydantic_issues(
    exc: pydantic.ValidationError, data: Any, smap: SourceMap
) -> list[PolicyIssue]:
    issues = []
    for err in exc.errors(include_url=False):
        loc: DataPath = tuple(p for p in err["loc"] if isinstance(p, str | int))
        kind = err["type"]
        if kind == "extra_forbidden":
            msg = f"unknown key {loc[-1]!r}"
            close = difflib.get_close_matches(str(loc[-1]), _allowed_keys(loc[:-1]), n=1)
            if close:
                msg += f" (did you mean {close[0]!r}?)"
            line = smap.line_of(loc, key=True)
        elif kind == "missing":
            msg = f"missing key {loc[-1]!r}"
            line = smap.line_of(loc[:-1], key=True)
        else:
            if loc[-1:] == ("max",) and not isinstance(_at(data, loc[:-1]), dict):
                loc = loc[:-1]  # a short-form cell such as `free: -2` has no `max` key
            value = err.get("input")
            shown = f" (got {value!r})" if isinstance(value, str | int | float | bool) else ""
            msg = _wording(err) + shown
            line = smap.line_of(loc)
        issues.append(PolicyIssue(_dotted(loc), msg, line))
    return issues


def _at(data: Any, path: DataPath) -> Any:
    for part in path:
        try:
            data = data[part]
        except (KeyError, IndexError, TypeError):
            return None
    return data


def _semantic_issues(spec: PolicySpec, smap: SourceMap) -> list[PolicyIssue]:
    issues: list[PolicyIssue] = []

    def add(path: DataPath, message: str, *, key: bool = False) -> None:
        issues.append(PolicyIssue(_dotted(path), message, smap.line_of(path, key=key)))

    def check_zone(path: DataPath, tz: str) -> None:
        try:
            ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError):
            add(path, f"unknown time zone {tz!r}")

    check_zone(("timezone",), spec.timezone)
    plan_names = [p.name for p in spec.plans]
    for i, name in enumerate(plan_names):
        if name in plan_names[:i]:
            add(("plans", i, "name"), f"plan {name!r} is listed twice")
    for fname in spec.features:
        if not re.match(NAME_PATTERN, fname) or len(fname) > 100:
            add(
                ("features", fname),
                f"bad feature name {fname!r} (lower-case words joined by dots)",
                key=True,
            )
    for lname, lim in spec.limits.items():
        base: DataPath = ("limits", lname)
        if not re.match(r"^[a-z][a-z0-9_]*$", lname) or len(lname) > 64:
            add(base, f"bad limit name {lname!r} (lower-case letters, digits, _)", key=True)
        for i, feature in enumerate(lim.features):
            if feature not in spec.features:
                add((*base, "features", i), f"unknown feature {feature!r} (not in 'features')")
            elif feature in lim.features[:i]:
                add((*base, "features", i), f"feature {feature!r} is listed twice")
        w = lim.window
        wpath = (*base, "window")
        if w.type in ("anchored", "sliding"):
            if w.length is None:
                add((*wpath, "type"), f"a {w.type} window needs 'length' (such as 24h)")
            if w.unit is not None:
                add((*wpath, "unit"), f"'unit' is for calendar windows, not {w.type}", key=True)
            if w.timezone is not None:
                add((*wpath, "timezone"), "'timezone' is for calendar windows", key=True)
        else:
            if w.unit is None:
                add((*wpath, "type"), "a calendar window needs 'unit' (day, week or month)")
            if w.length is not None:
                add((*wpath, "length"), "'length' is for anchored and sliding windows", key=True)
            if w.timezone is not None:
                check_zone((*wpath, "timezone"), w.timezone)
        for plan in lim.plans:
            if plan not in plan_names:
                add(
                    (*base, "plans", plan),
                    f"unknown plan {plan!r} (plans: {', '.join(plan_names)})",
                    key=True,
                )
        for plan in plan_names:
            if plan not in lim.plans:
                add(
                    (*base, "plans"),
                    f"missing plan {plan!r}: say its max, unlimited or no_access",
                    key=True,
                )
        for feature, cost in lim.costs.items():
            if feature not in lim.features:
                add(
                    (*base, "costs", feature),
                    f"a cost for {feature!r}, which this limit does not list in 'features'",
                    key=True,
                )
            if not 1 <= cost <= MAX_COST:
                add((*base, "costs", feature), f"a cost must be 1 to {MAX_COST:,} (got {cost})")
        for plan, cell in lim.plans.items():
            if (
                cell.access
                and cell.per_request is not None
                and cell.max is not None
                and not (lim.per_seat if cell.per_seat is None else cell.per_seat)
                and cell.per_request > cell.max
            ):
                add(
                    (*base, "plans", plan, "per_request"),
                    f"per_request ({cell.per_request}) is above max ({cell.max})",
                )
            if cell.fair_use is not None and cell.max is not None:
                add((*base, "plans", plan, "fair_use"), "fair_use is only for an unlimited max")
            if not cell.access and (
                cell.per_seat is not None
                or cell.fair_use is not None
                or cell.per_request is not None
            ):
                add((*base, "plans", plan), "a no_access cell takes no other setting")
    for fname in spec.features:
        limits = [lim for lim in spec.limits.values() if fname in lim.features]
        if limits and not any(
            all(lim.plans.get(p, None) is None or lim.plans[p].access for lim in limits)
            for p in plan_names
        ):
            add(
                ("features", fname),
                f"feature {fname!r} is in no plan: every plan has no_access",
                key=True,
            )
    return issues


def parse_policy(text: str, source: str = "<policy>") -> Policy:
    """Validate policy-file text; raise ``PolicyError`` listing every problem with its line."""
    try:
        data, smap, dupes = load_with_lines(text)
    except YamlSyntaxError as exc:
        raise PolicyError([PolicyIssue("", exc.message, exc.line)], source) from None
    issues = [PolicyIssue(_dotted(p), m, smap.line_of(p, key=True)) for p, m in dupes]
    if not isinstance(data, dict):
        issues.append(PolicyIssue("", "a policy file is a mapping with plans, features, limits", 1))
        raise PolicyError(issues, source)
    try:
        spec = PolicySpec.model_validate(data)
    except pydantic.ValidationError as exc:
        issues.extend(_pydantic_issues(exc, data, smap))
        raise PolicyError(sorted(issues, key=lambda i: i.line or 0), source) from None
    issues.extend(_semantic_issues(spec, smap))
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
