"""The policy file's schema (pydantic). ``policy.py`` turns a validated file into a ``Policy``.

A limit cell is written as a whole number, ``unlimited``, ``no_access`` or a mapping
``{max: N | unlimited, per_seat: bool, fair_use: N, per_request: N}``; the before-validator
normalises the short forms so that every error still points at the cell's own line.
"""

from __future__ import annotations

import re
from itertools import pairwise
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    field_validator,
)

Scope = Literal["account", "user", "user_global"]


def _rising(value: list[float] | None) -> list[float] | None:
    if value is not None and any(b <= a for a, b in pairwise(value)):
        raise ValueError(f"thresholds must rise, each given once (got {value})")
    return value


# a fraction of a limit's max, as an event threshold: 0.8 is 80 %
Fraction = Annotated[StrictFloat, Field(gt=0, lt=1)]
Thresholds = Annotated[list[Fraction], Field(max_length=10), AfterValidator(_rising)]
NAME_PATTERN = r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$"
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(value: object) -> float:
    """'60s', '24h', '7d', '2w', '90m' or a number of seconds -> seconds (> 0)."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 60s, 24h or 7d")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (m := _DURATION.match(value)):
        seconds = float(m.group(1)) * _UNIT_SECONDS[m.group(2)]
    else:
        raise ValueError("expected a duration such as 60s, 24h or 7d")
    if seconds <= 0:
        raise ValueError("a window length must be more than 0")
    return seconds


def format_duration(seconds: float) -> str:
    """The shortest exact spelling: 604800 -> '7d', 60 -> '60s'."""
    for unit in ("d", "h", "m", "s"):
        size = _UNIT_SECONDS[unit]
        if seconds >= size and seconds % size == 0:
            if unit == "m" and seconds < 3600:
                break  # "60s" reads better than "1m" for a rate
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class PlanSpec(_Strict):
    name: str = Field(pattern=NAME_PATTERN, max_length=64)
    title: str | None = Field(default=None, min_length=1, max_length=100)


StoreErrorMode = Literal["deny", "allow"]


class FeatureSpec(_Strict):
    title: str | None = Field(default=None, min_length=1, max_length=100)
    on_store_error: StoreErrorMode | None = None  # None: the policy's


class WindowSpec(_Strict):
    type: Literal["anchored", "sliding", "calendar", "billing"]
    length: float | None = None
    unit: Literal["day", "week", "month"] | None = None
    timezone: str | None = None

    @field_validator("length", mode="before")
    @classmethod
    def _length(cls, value: object) -> float | None:
        return None if value is None else parse_duration(value)


class CellSpec(_Strict):
    access: StrictBool = True
    max: StrictInt | None = Field(default=None, ge=0, le=10**12)  # None: unlimited
    per_seat: StrictBool | None = None
    fair_use: StrictInt | None = Field(default=None, ge=1, le=10**12)
    per_request: StrictInt | None = Field(default=None, ge=1, le=10**12)  # units in one request

    @field_validator("max", mode="before")
    @classmethod
    def _unlimited(cls, value: object) -> object:
        return None if value == "unlimited" else value


def _cell_before(value: object) -> object:
    if isinstance(value, bool):
        raise ValueError("expected a whole number, 'unlimited', 'no_access' or a mapping")
    if isinstance(value, int):
        return {"max": value}
    if value == "unlimited":
        return {"max": None}
    if value == "no_access":
        return {"access": False}
    if isinstance(value, dict):
        if "max" not in value:
            raise ValueError("a cell mapping needs 'max' (a whole number or 'unlimited')")
        return value
    raise ValueError(
        "expected a whole number >= 0, 'unlimited', 'no_access' or a mapping "
        "{max: N | unlimited, per_seat: true, fair_use: N, per_request: N}"
    )


class LimitSpec(_Strict):
    label: str | None = Field(default=None, min_length=1, max_length=200)
    features: list[str] = Field(min_length=1)
    window: WindowSpec
    per_seat: StrictBool = False
    # credits: what one unit of a feature costs in this limit's units (default 1)
    costs: dict[str, StrictInt] = Field(default_factory=dict)
    # whose usage one counter holds: the account's, each user's in it, or each user's in all
    scope: Scope = "account"
    # the fractions of the max at which a charge crossing them emits ``usage.threshold``
    # (None: the policy's ``thresholds``; []: none for this limit)
    thresholds: Thresholds | None = None
    plans: dict[str, CellSpec]

    @field_validator("plans", mode="before")
    @classmethod
    def _cells(cls, value: object) -> object:
        if not isinstance(value, dict):
            return value
        return {plan: _cell_before(cell) for plan, cell in value.items()}


class LedgerSpec(_Strict):
    """The ledger (CONTRACT 8): whether it is written, and how long its rows are kept."""

    enabled: StrictBool = True
    keep: float = 90 * 86400.0

    @field_validator("keep", mode="before")
    @classmethod
    def _keep(cls, value: object) -> float:
        try:
            return parse_duration(value)
        except ValueError:
            raise ValueError("expected a retention such as 90d or 400d (more than 0)") from None


def _ledger_before(value: object) -> object:
    """``ledger: false`` turns it off; ``true`` keeps the default retention."""
    if isinstance(value, bool):
        return {"enabled": value}
    return value


class PolicySpec(_Strict):
    version: Literal[1] = 1
    timezone: str = "UTC"
    on_store_error: StoreErrorMode = "deny"
    plans: list[PlanSpec] = Field(min_length=1)
    features: dict[str, FeatureSpec | None] = Field(min_length=1)
    limits: dict[str, LimitSpec] = Field(default_factory=dict)
    # events (CONTRACT 8): off, no decision writes any; thresholds: every limit's default
    events: StrictBool = True
    thresholds: Thresholds = Field(default_factory=lambda: [0.8])
    # the ledger (CONTRACT 8): false, nothing is recorded; else how long rows are kept
    ledger: Annotated[LedgerSpec, BeforeValidator(_ledger_before)] = Field(
        default_factory=LedgerSpec
    )

    @field_validator("plans", mode="before")
    @classmethod
    def _plan_names(cls, value: object) -> object:
        if isinstance(value, list):
            return [{"name": p} if isinstance(p, str) else p for p in value]
        return value


def spec_to_data(spec: PolicySpec) -> dict[str, Any]:
    """The spec as policy-file data, in the short forms a person would write."""

    def cell(c: CellSpec, default_per_seat: bool) -> Any:
        if not c.access:
            return "no_access"
        cap: Any = "unlimited" if c.max is None else c.max
        extra: dict[str, Any] = {}
        if c.per_seat is not None and c.per_seat != default_per_seat:
            extra["per_seat"] = c.per_seat
        if c.fair_use is not None:
            extra["fair_use"] = c.fair_use
        if c.per_request is not None:
            extra["per_request"] = c.per_request
        return {"max": cap, **extra} if extra else cap

    limits: dict[str, Any] = {}
    for name, lim in spec.limits.items():
        window: dict[str, Any] = {"type": lim.window.type}
        if lim.window.length is not None:
            window["length"] = format_duration(lim.window.length)
        if lim.window.unit is not None:
            window["unit"] = lim.window.unit
        if lim.window.timezone is not None:
            window["timezone"] = lim.window.timezone
        entry: dict[str, Any] = {}
        if lim.label is not None:
            entry["label"] = lim.label
        entry["features"] = list(lim.features)
        entry["window"] = window
        if lim.per_seat:
            entry["per_seat"] = True
        if lim.costs:
            entry["costs"] = dict(lim.costs)
        if lim.scope != "account":
            entry["scope"] = lim.scope
        if lim.thresholds is not None:
            entry["thresholds"] = list(lim.thresholds)
        entry["plans"] = {p: cell(c, lim.per_seat) for p, c in lim.plans.items()}
        limits[name] = entry
    data: dict[str, Any] = {
        "version": spec.version,
        "timezone": spec.timezone,
        "plans": [{"name": p.name, **({"title": p.title} if p.title else {})} for p in spec.plans],
        "features": {f: _feature_data(s) for f, s in spec.features.items()},
        "limits": limits,
    }
    if spec.on_store_error != "deny":
        data["on_store_error"] = spec.on_store_error
    if not spec.events:
        data["events"] = False
    if spec.thresholds != [0.8]:
        data["thresholds"] = list(spec.thresholds)
    if not spec.ledger.enabled:
        data["ledger"] = False
    elif spec.ledger != LedgerSpec():
        data["ledger"] = {"keep": format_duration(spec.ledger.keep)}
    return data


def _feature_data(spec: FeatureSpec | None) -> dict[str, Any] | None:
    if spec is None:
        return None
    data: dict[str, Any] = {}
    if spec.title:
        data["title"] = spec.title
    if spec.on_store_error is not None:
        data["on_store_error"] = spec.on_store_error
    return data or None
