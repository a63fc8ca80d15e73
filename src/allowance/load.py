"""Load factors: limits lowered for everyone at once in periods of high demand (the seed's
"limits can vary with system conditions"). A factor f in (0, 1] makes a limit's effective max
floor(max × seats × f) in decisions, meters, messages and the rate-limit headers
(``Policy.scaled``, ``Cell.load``; the kernels read it as data).

The factors live in the store, as one setting (``SETTING``): a default for every limit and
factors by limit name, which win. Every Limiter on the store reads them at most ``REFRESH``
seconds apart (on every call where reading costs nothing, the memory store), inside a
decision call, so all servers apply a change within that time; the Limiter that set them
applies them at once. A read that fails keeps the factors last read: a lowered limit stays
lowered while the store is away, and decisions do not wait for the setting.
"""

from __future__ import annotations

import json
import math
import time
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


class LoadState:
    """The factors one Limiter decides with, and when it read them."""

    __slots__ = ("base", "factors", "policy", "raw", "read_at")

    def __init__(self, base: Policy) -> None:
        self.base = base
        self.factors = Factors()
        self.raw: str | None = None
        self.policy = base
        self.read_at = -math.inf

    def due(self) -> bool:
        """Whether the factors are to be read again now. The first caller to see them older
        than REFRESH takes the read on: the others go on with these meanwhile (a burst of
        calls reads once), and so does everyone if that read fails."""
        now = time.monotonic()
        if now - self.read_at < REFRESH:
            return False
        self.read_at = now
        return True

    def apply_text(self, raw: str | None) -> Policy:
        """Decide with the factors of the setting as read (``raw``) from now on."""
        if raw != self.raw:  # the same text again (nearly always): nothing to work out
            factors = parse(raw)
            self.policy = self.base.scaled({name: factors.of(name) for name in self.base.limits})
            self.factors, self.raw = factors, raw
        self.read_at = time.monotonic()
        return self.policy

    def by_limit(self) -> dict[str, float]:
        """The factor in force for each limit of the policy."""
        return {name: self.factors.of(name) for name in self.base.limits}
