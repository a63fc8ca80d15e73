"""What is wrong with a policy file: pydantic's errors in the words of a policy file, and the
checks a schema cannot express (names, windows, plans, costs, caps), each with its line.
``policy.parse_policy`` reports them all at once."""

from __future__ import annotations

import copy
import difflib
import re
from collections.abc import Callable
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pydantic

from allowance.errors import PolicyIssue
from allowance.policy_schema import (
    NAME_PATTERN,
    FeatureSpec,
    LimitSpec,
    PlanSpec,
    PolicySpec,
    WindowSpec,
)
from allowance.yamlsource import Path as DataPath
from allowance.yamlsource import SourceMap

MAX_COST = 1_000_000  # credits one unit of a feature may cost


def dotted(path: DataPath) -> str:
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


def pydantic_issues(exc: pydantic.ValidationError, data: Any, smap: SourceMap) -> list[PolicyIssue]:
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
        issues.append(PolicyIssue(dotted(loc), msg, line))
    return issues


def _at(data: Any, path: DataPath) -> Any:
    for part in path:
        try:
            data = data[part]
        except (KeyError, IndexError, TypeError):
            return None
    return data


def semantic_issues(spec: PolicySpec, smap: SourceMap) -> list[PolicyIssue]:
    issues: list[PolicyIssue] = []

    def add(path: DataPath, message: str, *, key: bool = False) -> None:
        issues.append(PolicyIssue(dotted(path), message, smap.line_of(path, key=key)))

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
        elif w.type == "billing":
            if w.unit not in ("month", "week"):
                add(
                    (*wpath, "unit") if w.unit else (*wpath, "type"),
                    "a billing window needs 'unit' month or week",
                    key=w.unit is not None,
                )
            if w.length is not None:
                add((*wpath, "length"), "'length' is for anchored and sliding windows", key=True)
            if w.timezone is not None:
                add(
                    (*wpath, "timezone"),
                    "a billing period is in UTC, from the account's billing_anchor",
                    key=True,
                )
            if lim.scope != "account":  # a new anchor moves the account's counters only
                add(
                    (*base, "scope"),
                    f"a billing window counts per account only (got scope {lim.scope!r}): a "
                    "new billing_anchor moves an account's counters, not its users'; use a "
                    "calendar window",
                )
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
                    f"unknown plan {plan!r} (plans: {', '.join(dict.fromkeys(plan_names))})",
                    key=True,
                )
        for plan in dict.fromkeys(plan_names):  # a plan listed twice is reported once
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


# what a part of a policy that failed its schema stands in for while the rest is checked
_STAND_INS: dict[str, Any] = {
    "window": {"type": "anchored", "length": 3600},
    "cell": "unlimited",
    "feature": None,
}
_LEFT_OUT = object()  # a plan entry taken out once the pass over the errors is done


def salvaged(
    data: dict[str, Any], exc: pydantic.ValidationError
) -> tuple[PolicySpec, Callable[[PolicyIssue], bool]] | None:
    """The file's spec with each part its schema refused left out or stood in for, and which
    issues found in it then are only about those parts: so one run of ``policy check`` also
    names the mistakes the schema cannot see (an unknown plan, a cost of 0) beside the ones it
    can. None when what is left is too little to check (no plans or features at all)."""
    data = copy.deepcopy(data)
    repaired: list[str] = []  # dotted paths whose issues are the schema's alone
    dropped_plans: set[str] = set()
    for _ in range(8):  # each pass repairs every error found; a stand-in is always valid
        for err in exc.errors(include_url=False):
            loc: DataPath = tuple(p for p in err["loc"] if isinstance(p, str | int))
            where = _repair(data, loc, dropped_plans)
            if where is None:
                return None
            repaired.append(dotted(where))
        if isinstance(data.get("plans"), list):  # after the pass: the errors' indexes hold
            data["plans"] = [p for p in data["plans"] if p is not _LEFT_OUT]
            if not data["plans"]:
                return None
        try:
            spec = PolicySpec.model_validate(data)
        except pydantic.ValidationError as again:
            exc = again
            continue

        def only_the_schemas(issue: PolicyIssue) -> bool:
            path = issue.path
            if any(path == p or path.startswith((p + ".", p + "[")) for p in repaired if p):
                return True
            return path.startswith("limits.") and any(
                path.endswith(".plans." + name) for name in dropped_plans
            )

        return spec, only_the_schemas
    return None


def _repair(data: Any, loc: DataPath, dropped_plans: set[str]) -> DataPath | None:
    """Leave out or stand in for the part at ``loc``; answer the path repaired (None: give
    up)."""
    if not loc or not isinstance(data, dict):
        return None
    head = loc[0]
    if head in ("plans", "features") and len(loc) == 1:
        return None  # nothing to check the limits against
    if head == "plans":  # left out (see salvaged); a limit's cell for it is not unknown
        plans, index = data["plans"], loc[1]
        if isinstance(plans, list) and isinstance(index, int) and index < len(plans):
            entry = plans[index]
            name = entry.get("name") if isinstance(entry, dict) else entry
            if isinstance(name, str):
                dropped_plans.add(name)
            plans[index] = _LEFT_OUT
        return loc[:2]
    if head == "features":
        if isinstance(data["features"], dict) and loc[1] in data["features"]:
            data["features"][loc[1]] = _STAND_INS["feature"]
        return loc[:2]
    if head == "limits" and len(loc) >= 3 and isinstance(data.get("limits"), dict):
        limit = data["limits"].get(loc[1])
        field = loc[2]
        if (isinstance(limit, dict) and field not in ("features", "plans")) or len(loc) >= 4:
            return _repair_limit_part(limit, loc) if isinstance(limit, dict) else None
        data["limits"].pop(loc[1], None)
        return loc[:2]
    if head == "limits":
        if len(loc) == 1:
            data["limits"] = {}
        elif isinstance(data.get("limits"), dict):
            data["limits"].pop(loc[1], None)
        return loc[:2]
    data.pop(head, None)  # a top-level setting: its default
    return loc[:1]


def _repair_limit_part(limit: dict[str, Any], loc: DataPath) -> DataPath:
    field = loc[2]
    if field == "window":
        limit["window"] = dict(_STAND_INS["window"])
        return loc[:3]
    if field == "plans":  # one cell
        cells = limit.get("plans")
        if isinstance(cells, dict):
            cells[loc[3]] = _STAND_INS["cell"]
        return loc[:4]
    limit.pop(str(field), None)  # an unknown key, or a setting with a default
    return loc[:3]
