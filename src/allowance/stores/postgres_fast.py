"""The PostgreSQL fast path, free of I/O, shared by the sync and async stores: a feature's
decide() statement (its limits written in as constants) and its parameters, and the decision
from decide()'s row. See ``postgres.py`` and ``sql/decide.sql``."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from psycopg import sql

from allowance import engine, ops
from allowance.clock import system_clock
from allowance.errors import UnknownAccount
from allowance.ops import Request
from allowance.policy import Policy
from allowance.state import Counter
from allowance.types import Decision
from allowance.windows import CalendarWindow

DECIDE = (
    "SELECT status, at, before, granted, plan, seats, remaining, fair FROM {s}.decide("
    "%s, %s::float8, %s, %s, %s, {plans}::text[], {names}::text[], {kinds}, {lengths}::float8[],"
    " {caps}::bigint[], {seat}::boolean[], {fair}::bigint[], {bounds}::float8[])"
)


@dataclass(frozen=True, slots=True)
class FastSpec:
    """A feature's decide() statement: its limits written in as constants, so they are parsed
    once, when the statement is prepared; ``calendar``: it takes the period bounds."""

    query: str
    calendar: bool


def fast_spec(policy: Policy, feature: str, schema: str) -> FastSpec:
    """The decide() statement of one feature (see sql/decide.sql)."""
    kinds = {"anchored": "a", "sliding": "s", "calendar": "c"}
    limits = policy.limits_of(feature)
    cells = [limit.cells[p.name] for limit in limits for p in policy.plans]
    calendar = any(isinstance(limit.window, CalendarWindow) for limit in limits)
    query = sql.SQL(DECIDE).format(
        s=sql.Identifier(schema),
        plans=sql.Literal([p.name for p in policy.plans]),
        names=sql.Literal([limit.name for limit in limits]),
        kinds=sql.Literal("".join(kinds[limit.window.kind] for limit in limits)),
        lengths=sql.Literal([float(limit.window.length) for limit in limits]),
        caps=sql.Literal([-2 if not c.access else (-1 if c.max is None else c.max) for c in cells]),
        seat=sql.Literal([c.per_seat for c in cells]),
        fair=sql.Literal([-1 if c.fair_use is None else c.fair_use for c in cells]),
        bounds=sql.Placeholder() if calendar else sql.Literal([]),
    )
    return FastSpec(query.as_string(), calendar)


def fast_args(
    policy: Policy, spec: FastSpec, req: Request, now: float | None, charge: bool
) -> tuple[Any, ...]:
    """Parameters of a feature's decide() statement for one request."""
    if not spec.calendar:
        return (req.account, now, req.amount, req.partial, charge)
    at = system_clock() if now is None else now  # a local estimate; see sql/decide.sql
    bounds = engine.calendar_bounds(policy, req.feature, at)
    return (req.account, now, req.amount, req.partial, charge, bounds)


def fast_decision(policy: Policy, req: Request, row: Any) -> Decision | None:
    """The decision from decide()'s row; None when it asked for the slow path. A grant is
    built from the row (its sentence and quota are the engine's, worked out when read); a
    denial is the engine's, replayed on the counters decide() saw, which must agree."""
    status, at, before, granted, plan, seats, remaining, fair = row
    if status == "unknown":
        raise UnknownAccount(req.account)
    if status == "slow":
        return None

    def replay() -> Decision:
        counters = {
            name: Counter(start, used, entries)
            for name, (start, used, entries) in json.loads(before).items()
        }
        return ops.replay(policy, req, plan, seats, counters, at, granted, "postgresql")

    return ops.one_step_decision(granted, remaining, fair, replay)
