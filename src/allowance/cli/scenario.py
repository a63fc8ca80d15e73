"""Scenarios for ``allowance simulate``: read and check a timeline of events (every problem
with its line), then replay it on a private in-memory store with a manual clock.

A scenario is a YAML list of events, or a mapping whose ``events`` key holds that list::

    - {at: 2026-11-23T15:10:00Z, account: acme, plan: pro}
    - {at: 2026-11-23T15:10:00Z, account: acme, feature: transform.virtual_model, amount: 2}
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from typing import Any

from allowance import validation
from allowance.clock import ManualClock
from allowance.errors import AllowanceError, InvalidRequest
from allowance.limiter import Limiter
from allowance.policy import Policy
from allowance.types import UNCHANGED, Decision, iso
from allowance.yamlsource import Path, SourceMap, YamlSyntaxError, load_with_lines

EVENT_KEYS = (
    "at",
    "account",
    "user",
    "feature",
    "amount",
    "plan",
    "seats",
    "billing_anchor",
    "partial",
)
SETTINGS = ("plan", "seats", "billing_anchor")  # applied before a feature is consumed


class ScenarioError(Exception):
    """The scenario cannot be replayed; ``lines`` holds one ``FILE:LINE: message`` each."""

    def __init__(self, lines: list[str]) -> None:
        self.lines = lines
        super().__init__("\n".join(lines))


@dataclass(frozen=True, slots=True)
class Event:
    number: int  # 1-based, as a person counts them
    line: int
    at: datetime  # aware, UTC
    account: str
    feature: str | None
    amount: int
    partial: bool
    plan: str | None  # set before consuming; None = the account is left as it is
    seats: int
    billing_anchor: datetime | None = None  # set with the plan; None = as it was
    user: str | None = None  # who consumes (a limit counted per user needs one)


@dataclass(frozen=True, slots=True)
class Outcome:
    event: Event
    decision: Decision | None  # None for an event that only sets the plan


def parse_time(value: object) -> datetime:
    """An ISO 8601 time (naive = UTC) from YAML: a string, or the datetime / date that YAML
    makes of an unquoted timestamp."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            value = None
    elif isinstance(value, date) and not isinstance(value, datetime):
        value = datetime.combine(value, time())
    if not isinstance(value, datetime):
        raise ValueError
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


class _Reader:
    """Checks events one by one, remembering each account's plan and the last time seen."""

    def __init__(self, source: str, policy: Policy, smap: SourceMap) -> None:
        self.source = source
        self.policy = policy
        self.smap = smap
        self.issues: list[tuple[int, str]] = []
        self.accounts: dict[str, tuple[str, int]] = {}
        self.last: datetime | None = None

    def line(self, path: Path, *, key: bool = False) -> int:
        return self.smap.line_of(path, key=key) or 1

    def add(self, line: int, message: str) -> None:
        self.issues.append((line, f"{self.source}:{line}: {message}"))

    def event(self, raw: object, base: Path, number: int) -> Event | None:
        where = f"event {number}"
        line = self.line(base)
        if not isinstance(raw, dict):
            self.add(line, f"{where}: expected a mapping such as {{at: ..., account: ..., ...}}")
            return None
        bad = False
        for key in raw:
            if key not in EVENT_KEYS:
                close = difflib.get_close_matches(str(key), EVENT_KEYS, n=1)
                hint = f"did you mean {close[0]!r}?" if close else f"keys: {', '.join(EVENT_KEYS)}"
                self.add(
                    self.line((*base, key), key=True), f"{where}: unknown key {key!r} ({hint})"
                )
                bad = True
        for key in ("at", "account"):
            if key not in raw:
                self.add(line, f"{where}: missing key {key!r}")
                bad = True
        if bad:
            return None
        try:
            at = parse_time(raw["at"])
        except ValueError:
            self.add(
                self.line((*base, "at")),
                f"{where}: at: expected an ISO 8601 time such as 2026-11-23T15:10:00Z "
                f"(got {raw['at']!r})",
            )
            return None
        if self.last is not None and at < self.last:
            self.add(
                self.line((*base, "at")),
                f"{where}: at: times go backwards ({iso(at)} is before the previous event's "
                f"{iso(self.last)}); list events in time order",
            )
            return None
        self.last = at
        try:
            return self._settings(raw, base, number, line, at)
        except InvalidRequest as exc:  # on the field's line, or the event's for a missing one
            self.add(self.smap.line_of((*base, exc.field)) or line, f"{where}: {exc}")
            return None

    def _settings(
        self, raw: dict[Any, Any], base: Path, number: int, line: int, at: datetime
    ) -> Event | None:
        where = f"event {number}"
        account = validation.text("account", raw["account"])
        assert account is not None
        feature = raw.get("feature")
        if feature is None:
            for key in ("amount", "partial", "user"):
                if key in raw:
                    self.add(self.line((*base, key), key=True), f"{where}: {key} needs a feature")
                    return None
            if not any(key in raw for key in SETTINGS):
                self.add(
                    line, f"{where}: give a feature to consume, or a plan, seats or billing_anchor"
                )
                return None
        plan: str | None = None
        current = self.accounts.get(account)
        seats = current[1] if current else 1
        anchor = None
        if "billing_anchor" in raw:
            try:
                anchor = parse_time(raw["billing_anchor"])
            except ValueError:
                raise InvalidRequest(
                    "billing_anchor", raw["billing_anchor"], "expected an ISO 8601 time"
                ) from None
        if any(key in raw for key in SETTINGS):  # applied first, as the replay does
            plan = raw.get("plan", current[0] if current else None)
            if plan is None:
                self.add(line, f"{where}: account {account!r} has no plan yet; give it 'plan'")
                return None
            plan, seats = validation.account_settings(self.policy, plan, raw.get("seats", seats))
            self.accounts[account] = (plan, seats)
        elif current is None:
            self.add(
                line,
                f"{where}: account {account!r} has no plan yet; give it 'plan' on its first event",
            )
            return None
        amount = raw.get("amount", 1)
        partial = raw.get("partial", False)
        user = raw.get("user")
        if feature is not None:  # the limiter's own checks, run now to report every event
            req = validation.request(self.policy, account, feature, amount, partial, None, user)
            user = req.user
        return Event(number, line, at, account, feature, amount, partial, plan, seats, anchor, user)


def parse_scenario(text: str, source: str, policy: Policy) -> list[Event]:
    """The events of a scenario, checked against ``policy``; ``ScenarioError`` lists every
    problem found, each with its line."""
    try:
        data, smap, dupes = load_with_lines(text)
    except YamlSyntaxError as exc:
        raise ScenarioError([f"{source}:{exc.line or 1}: {exc.message}"]) from None
    reader = _Reader(source, policy, smap)
    for path, message in dupes:
        reader.add(reader.line(path, key=True), message)
    base: Path = ()
    if isinstance(data, dict):
        for key in data:
            if key != "events":
                reader.add(reader.line((key,), key=True), f"unknown key {key!r} (only 'events')")
        base = ("events",)
        data = data.get("events")
    if not isinstance(data, list) or not data:
        if base and data is None:
            problem = "missing key 'events'"
        else:
            problem = "no events" if data in (None, [], {}) else "not a list of events"
        reader.add(reader.line(base), f"{problem}: a scenario is a non-empty list of events")
        data = []
    events = [reader.event(raw, (*base, i), i + 1) for i, raw in enumerate(data)]
    if reader.issues:
        raise ScenarioError([msg for _, msg in sorted(reader.issues, key=lambda i: i[0])])
    return [e for e in events if e is not None]


def replay(events: list[Event], policy: Policy, source: str) -> list[Outcome]:
    """Run the events in order on a fresh in-memory store, the clock at each event's time."""
    clock = ManualClock(events[0].at if events else 0.0)
    with Limiter(policy, store="memory://", clock=clock) as limiter:
        return play(events, limiter, clock, source)


def play(events: list[Event], limiter: Limiter, clock: ManualClock, source: str) -> list[Outcome]:
    """Run the events in order on ``limiter``, whose clock is set to each event's time."""
    outcomes: list[Outcome] = []
    for event in events:
        clock.set(event.at)
        try:
            if event.plan is not None:
                anchor = event.billing_anchor
                limiter.set_account(
                    event.account,
                    event.plan,
                    event.seats,
                    billing_anchor=UNCHANGED if anchor is None else anchor,
                )
                outcomes.append(Outcome(event, None))
            if event.feature is not None:
                decision = limiter.consume(
                    event.account,
                    event.feature,
                    event.amount,
                    partial=event.partial,
                    user=event.user,
                )
                outcomes.append(Outcome(event, decision))
        except AllowanceError as exc:
            line = f"{source}:{event.line}: event {event.number}: {exc}"
            raise ScenarioError([line]) from None
    return outcomes
