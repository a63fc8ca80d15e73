"""Load factors: limits lowered for everyone at once in periods of high demand (the seed's
"limits can vary with system conditions"). A factor f in (0, 1] makes a limit's effective max
floor(max × seats × f) in decisions, meters, messages and the rate-limit headers
(``Policy.scaled``, ``Cell.load``; the kernels read it as data).

The factors live in the store, as one setting (``SETTING``): a default for every limit and
factors by limit name, which win. ``live.py`` has every Limiter read them at most
``REFRESH`` seconds apart, so all servers apply a change within that time.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass

from allowance.errors import InvalidRequest
from allowance.policy import Policy

SETTING = "load_factor"
REFRESH = 1.0  # seconds a Limiter uses the factors it read before reading them again


@dataclass(frozen=True, slots=True)
class Factors:
    """What the store holds: ``default`` for every limit, ``limits`` by name (they win)."""

    default: float = 1.0
    limits: tuple[tuple[str, float], ...] = ()

    def of(self, limit: str) -> float:
        return dict(self.limits).get(limit, self.default)

    def to_text(self) -> str:
        return json.dumps({"default": self.default, "limits": dict(self.limits)}, sort_keys=True)

    def updated(self, factor: float, limits: tuple[str, ...] | None) -> Factors:
        """``factor`` for every limit (``limits`` None: the by-name ones are dropped), or for
        the named ones."""
        if limits is None:
            return Factors(factor)
        by_name = dict(self.limits)
        for name in limits:
            by_name[name] = factor
        kept = tuple(sorted((n, f) for n, f in by_name.items() if f != self.default))
        return Factors(self.default, kept)


def parse(raw: str | None) -> Factors:
    """The setting as stored; anything unreadable (written by hand, say) counts as none."""
    if raw is None:
        return Factors()
    try:
        data = json.loads(raw)
        default = _factor(data.get("default", 1.0))
        limits = tuple(sorted((str(n), _factor(f)) for n, f in data.get("limits", {}).items()))
    except (ValueError, TypeError, AttributeError):
        return Factors()
    return Factors(default, limits)


def _factor(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(value)
    f = float(value)
    if not 0 < f <= 1:
        raise ValueError(value)
    return f


def checked_factor(value: object) -> float:
    """A load factor given by a caller: a number in (0, 1]."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidRequest("factor", value, "must be a number in (0, 1]")
    if not 0 < value <= 1:
        raise InvalidRequest("factor", value, "must be more than 0 and at most 1")
    return float(value)


def checked_limits(policy: Policy, limits: Iterable[str] | None) -> tuple[str, ...] | None:
    """Limit names given by a caller: each a limit of ``policy``; None means all of them."""
    if limits is None:
        return None
    if isinstance(limits, str):
        raise InvalidRequest("limits", limits, "must be a list of limit names, not one string")
    names = tuple(limits)
    if not names:
        raise InvalidRequest("limits", [], "name at least one limit, or leave it out for all")
    for name in names:
        if name not in policy.limits:
            known = ", ".join(policy.limits)
            raise InvalidRequest("limits", name, f"is not a limit of the policy ({known})")
    return names
