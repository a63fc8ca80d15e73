"""Value objects returned to callers: ``Decision``, ``Meter``, ``Account``, ``Grant``.

All datetimes are timezone-aware UTC; ``retry_after`` is seconds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum
from typing import Any, Final, Literal

Reason = Literal["ok", "limit_reached", "no_access", "request_too_large"]


class Unchanged(Enum):
    """The default of a setting a call leaves as it was, where None means: remove it."""

    UNCHANGED = "unchanged"


UNCHANGED: Final = Unchanged.UNCHANGED
Anchor = datetime | Unchanged | None  # a billing anchor to set, remove (None) or keep


def _waited(quota: Quota | None, elapsed: float) -> Quota | None:
    """``quota`` read ``elapsed`` seconds later."""
    if quota is None:
        return None
    return Quota(
        quota.limit, quota.max, quota.window, quota.remaining, max(0.0, quota.reset_after - elapsed)
    )


def to_datetime(ts: float | None) -> datetime | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC)


def iso(dt: datetime | None) -> str | None:
    """ISO 8601 in UTC with a Z, e.g. 2026-11-24T15:10:00Z."""
    if dt is None:
        return None
    text = dt.astimezone(UTC).isoformat()
    return text.removesuffix("+00:00") + "Z"


def parse_iso(text: str | None) -> datetime | None:
    if text is None:
        return None
    dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return dt.astimezone(UTC) if dt.tzinfo else dt.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Quota:
    """The limit that binds a decision, for rate-limit headers: the one with the least left
    after a grant, or the one that blocked a denial. ``max`` is effective (× seats),
    ``window`` its length in seconds (a calendar period's own length), ``reset_after`` the
    seconds from the decision until units come back to it."""

    limit: str
    max: int
    window: float
    remaining: int
    reset_after: float

    def to_json(self, at: float | None = None) -> dict[str, Any]:
        """With ``at`` (the decision's time), also ``reset_at``, so a decision read back later
        (an idempotent replay) can say how long is left from then."""
        data = {
            "limit": self.limit,
            "max": self.max,
            "window": self.window,
            "remaining": self.remaining,
            "reset_after": self.reset_after,
        }
        if at is not None:
            data["reset_at"] = at + self.reset_after
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any], now: float | None = None) -> Quota:
        reset_after = float(data["reset_after"])
        if now is not None and data.get("reset_at") is not None:
            reset_after = max(0.0, float(data["reset_at"]) - now)
        return cls(
            str(data["limit"]),
            int(data["max"]),
            float(data["window"]),
            int(data["remaining"]),
            reset_after,
        )


# Not frozen: building a frozen dataclass costs ~1 µs, a seventh of a decision. Treat it as
# read-only all the same.
@dataclass(slots=True, eq=False, repr=False)
class Decision:
    """The answer to ``consume`` / ``check`` / ``reserve``.

    ``granted`` units were charged (0 when denied). ``remaining`` is the least left over the
    charged limits after this decision (None when all are unlimited or for ``no_access``).
    ``resets_at`` / ``retry_after`` say when this same request would fit again (None when
    granted, or when it can never fit under the plan). ``upgrade`` is the cheapest higher plan
    on which it would be granted now. ``message`` is one sentence for a person. ``degraded``:
    granted without the store, by the feature's ``on_store_error: allow``.
    """

    allowed: bool
    granted: int
    reason: Reason
    limit: str | None
    remaining: int | None
    resets_at: datetime | None
    retry_after: float | None
    upgrade: str | None
    # the sentence, or a function that writes it: most callers of a hot endpoint never read it,
    # and formatting dates is a third of a denial's cost
    _message: str | Callable[[], str]
    fair_use_exceeded: bool = False
    # the binding limit (None for no_access or when every limit is unlimited); lazy like the
    # message where a store's fast path would have to replay the engine for it
    _quota: Quota | Callable[[], Quota | None] | None = None
    # granted without the store (it failed and the feature's on_store_error is "allow"): the
    # grant is journaled and charged when the store is back
    degraded: bool = False

    @classmethod
    def grant(
        cls,
        granted: int,
        remaining: int | None,
        message: str | Callable[[], str],
        *,
        fair_use_exceeded: bool = False,
        quota: Quota | Callable[[], Quota | None] | None = None,
        degraded: bool = False,
    ) -> Decision:
        """A grant of ``granted`` units; ``message`` and ``quota`` may be functions, called
        only if read."""
        return cls(
            True,
            granted,
            "ok",
            None,
            remaining,
            None,
            None,
            None,
            message,
            fair_use_exceeded,
            quota,
            degraded,
        )

    @classmethod
    def denial(
        cls,
        reason: Reason,
        message: str | Callable[[], str],
        *,
        limit: str | None = None,
        remaining: int | None = None,
        fits_at: float | None = None,
        now: float = 0.0,
        upgrade: str | None = None,
        quota: Quota | Callable[[], Quota | None] | None = None,
    ) -> Decision:
        """A denial; ``fits_at`` (epoch seconds) is when the same request would fit again
        (None: never on this plan), said as ``resets_at`` and as ``retry_after`` from ``now``."""
        return cls(
            False,
            0,
            reason,
            limit,
            remaining,
            to_datetime(fits_at),
            None if fits_at is None else max(0.0, fits_at - now),
            upgrade,
            message,
            False,
            quota,
        )

    def later(self, since: float, now: float) -> Decision:
        """This denial, decided at ``since``, as it reads at a later ``now`` when nothing but
        the time has changed (``engine.steady_until``): the same, but for the wait."""
        elapsed = now - since
        retry_after = self.retry_after
        quota = self._quota
        return Decision(
            False,
            0,
            self.reason,
            self.limit,
            self.remaining,
            self.resets_at,
            None if retry_after is None else max(0.0, retry_after - elapsed),
            self.upgrade,
            self._message if isinstance(self._message, str) else lambda: self.message,
            False,
            None if quota is None else lambda: _waited(self.quota, elapsed),
        )

    @property
    def message(self) -> str:
        message = self._message
        if not isinstance(message, str):
            message = self._message = message()
        return message

    @property
    def outcome(self) -> str:
        """ "granted", else the reason (the label of metrics and access lines)."""
        return "granted" if self.allowed else self.reason

    @property
    def quota(self) -> Quota | None:
        quota = self._quota
        if quota is not None and not isinstance(quota, Quota):
            quota = self._quota = quota()
        return quota

    def _key(self) -> tuple[Any, ...]:
        return (
            self.allowed,
            self.granted,
            self.reason,
            self.limit,
            self.remaining,
            self.resets_at,
            self.retry_after,
            self.upgrade,
            self.message,
            self.fair_use_exceeded,
            self.degraded,
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Decision) and self._key() == other._key()

    def __repr__(self) -> str:
        fields = ", ".join(
            f"{name}={value!r}"
            for name, value in zip(
                (
                    "allowed",
                    "granted",
                    "reason",
                    "limit",
                    "remaining",
                    "resets_at",
                    "retry_after",
                    "upgrade",
                    "message",
                    "fair_use_exceeded",
                    "degraded",
                ),
                self._key(),
                strict=True,
            )
        )
        return f"Decision({fields})"

    def to_json(self, *, quota: bool = False, at: float | None = None) -> dict[str, Any]:
        """The fields of CONTRACT section 4 (what HTTP bodies and ``simulate`` show); with
        ``quota``, also the binding limit (for stored idempotency records: over HTTP it
        travels in the RateLimit headers), and with ``at`` (the decision's time) when it
        resets (see ``from_json``)."""
        data: dict[str, Any] = {
            "allowed": self.allowed,
            "granted": self.granted,
            "reason": self.reason,
            "limit": self.limit,
            "remaining": self.remaining,
            "resets_at": iso(self.resets_at),
            "retry_after": self.retry_after,
            "upgrade": self.upgrade,
            "message": self.message,
            "fair_use_exceeded": self.fair_use_exceeded,
            "degraded": self.degraded,
        }
        if quota:
            binding = self.quota
            data["quota"] = None if binding is None else binding.to_json(at)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any], now: float | None = None) -> Decision:
        """The decision as ``to_json`` wrote it. Read back at ``now``, its quota counts down
        from then; the section-4 fields stay the first decision's (CONTRACT: an idempotent
        replay returns the first decision again)."""
        quota = data.get("quota")
        return cls(
            allowed=bool(data["allowed"]),
            granted=int(data["granted"]),
            reason=data["reason"],
            limit=data.get("limit"),
            remaining=data.get("remaining"),
            resets_at=parse_iso(data.get("resets_at")),
            retry_after=data.get("retry_after"),
            upgrade=data.get("upgrade"),
            _message=data.get("message", ""),
            fair_use_exceeded=bool(data.get("fair_use_exceeded", False)),
            _quota=None if quota is None else Quota.from_json(quota, now),
            degraded=bool(data.get("degraded", False)),
        )


@dataclass(frozen=True, slots=True)
class Meter:
    """One limit's usage for an account. ``max`` is effective (× seats, the account's override
    in its place, lowered by a load factor, plus ``granted`` units); None = unlimited."""

    limit: str
    features: tuple[str, ...]
    used: int
    max: int | None
    remaining: int | None
    window_start: datetime | None
    resets_at: datetime | None
    override: int | None = None  # the account's own max for this limit
    granted: int = 0  # extra units granted to the account, in force now

    def to_json(self) -> dict[str, Any]:
        return {
            "limit": self.limit,
            "features": list(self.features),
            "used": self.used,
            "max": self.max,
            "remaining": self.remaining,
            "window_start": iso(self.window_start),
            "resets_at": iso(self.resets_at),
            "override": self.override,
            "granted": self.granted,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Meter:
        return cls(
            limit=str(data["limit"]),
            features=tuple(data["features"]),
            used=int(data["used"]),
            max=data.get("max"),
            remaining=data.get("remaining"),
            window_start=parse_iso(data.get("window_start")),
            resets_at=parse_iso(data.get("resets_at")),
            override=data.get("override"),
            granted=int(data.get("granted") or 0),
        )


@dataclass(frozen=True, slots=True)
class Grant:
    """Extra units of a limit granted to one account, on top of its max until ``expires_at``."""

    limit: str
    amount: int
    expires_at: datetime

    def to_json(self) -> dict[str, Any]:
        return {"limit": self.limit, "amount": self.amount, "expires_at": iso(self.expires_at)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Grant:
        expires = parse_iso(data["expires_at"])
        assert expires is not None
        return cls(str(data["limit"]), int(data["amount"]), expires)


@dataclass(frozen=True, slots=True)
class Account:
    """An account; ``overrides`` (its own max by limit) and ``grants`` are its own terms;
    ``billing_anchor`` is when its billing periods renew (None: calendar months and weeks)."""

    id: str
    plan: str
    seats: int = 1
    overrides: dict[str, int] = field(default_factory=dict)
    grants: tuple[Grant, ...] = ()
    billing_anchor: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "plan": self.plan,
            "seats": self.seats,
            "overrides": dict(self.overrides),
            "grants": [g.to_json() for g in self.grants],
            "billing_anchor": iso(self.billing_anchor),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Account:
        return cls(
            str(data["id"]),
            str(data["plan"]),
            int(data["seats"]),
            {str(k): int(v) for k, v in (data.get("overrides") or {}).items()},
            tuple(Grant.from_json(g) for g in data.get("grants") or ()),
            parse_iso(data["billing_anchor"]) if data.get("billing_anchor") else None,
        )
