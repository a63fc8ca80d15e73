"""``allowance policy diff OLD NEW [--store URL]``: what a policy change changes, plan by plan,
and which accounts in a store would be over their new max (CONTRACT section 9).

A limit is matched by name across the two policies, as the stores match counters; a cell is
compared as the plan table words it (``policy show``), so every setting of it counts (max,
per seat, fair use, per request). Limit-wide settings (window, features and costs, label) are
one row each, for all plans.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from rich.table import Table

from allowance import calls
from allowance.plan_text import cell_text, features_text, n, window_text
from allowance.policy import Limit, Policy
from allowance.stores import store_from_url

ALL_PLANS = "all plans"
NONE = "—"


@dataclass(frozen=True, slots=True)
class Change:
    plan: str  # a plan's name, or ALL_PLANS for a limit-wide setting
    limit: str  # "" for a plan added or removed as a whole
    what: str  # the setting: the plan's cell, "window", "features", "label", "plan"
    old: str
    new: str


@dataclass(frozen=True, slots=True)
class Over:
    """An account that the new policy puts over a max (or on a plan it lacks)."""

    account: str
    plan: str
    limit: str
    used: int
    old_max: int | None
    new_max: int | None  # None with limit "": the plan is not in the new policy


def changes(old: Policy, new: Policy) -> list[Change]:
    out: list[Change] = []
    names = [*new.limits, *(name for name in old.limits if name not in new.limits)]
    for name in names:
        was, now = old.limits.get(name), new.limits.get(name)
        if was is not None and now is not None:
            for what, text in (("window", window_text), ("features", features_text)):
                if text(was) != text(now):
                    out.append(Change(ALL_PLANS, name, what, text(was), text(now)))
            if was.label != now.label:
                out.append(Change(ALL_PLANS, name, "label", was.label, now.label))
    for plan in (p.name for p in new.plans):
        if plan not in old.plan_by_name:
            out.append(Change(plan, "", "plan", NONE, "added"))
        for name in names:
            before = _cell(old.limits.get(name), plan)
            after = _cell(new.limits.get(name), plan)
            if before != after:
                out.append(Change(plan, name, "max", before, after))
    for plan in (p.name for p in old.plans if p.name not in new.plan_by_name):
        out.append(Change(plan, "", "plan", "a plan", "removed"))
    return out


def _cell(limit: Limit | None, plan: str) -> str:
    if limit is None:
        return NONE
    cell = limit.cells.get(plan)
    return NONE if cell is None else cell_text(cell)


def over_new_max(old: Policy, new: Policy, store_url: str) -> list[Over]:
    """Each account of the store that ``new`` would put over a limit's max (its usage as it
    stands, the plan's max without load factors), or whose plan ``new`` lacks. The meters
    are worked out with ``new`` itself, not through a Limiter, which would decide with a
    policy the store holds (``PUT /v1/policy``) instead."""
    out: list[Over] = []
    store = store_from_url(store_url)
    store.policy = new
    try:
        for account_id in store.account_ids():
            account = store.get_account(account_id)
            if account is None:  # deleted since it was listed
                continue
            if account.plan not in new.plan_by_name:
                out.append(Over(account.id, account.plan, "", 0, None, None))
                continue
            for meter in calls.run(store, calls.usage(new, account.id), None):
                if meter.max is not None and meter.used > meter.max:
                    was = old.limits.get(meter.limit)
                    cell = None if was is None else was.cells.get(account.plan)
                    old_max = None if cell is None else cell.cap(account.seats)
                    out.append(
                        Over(account.id, account.plan, meter.limit, meter.used, old_max, meter.max)
                    )
    finally:
        store.close()
    return out


def change_table(found: list[Change]) -> Table:
    table = Table(title="what changes, plan by plan")
    for column in ("plan", "limit", "setting", "old", "new"):
        table.add_column(column, style="bold" if column == "plan" else None)
    for c in found:
        table.add_row(c.plan, c.limit or NONE, c.what, c.old, c.new)
    return table


def over_table(found: list[Over]) -> Table:
    table = Table(title="accounts over their new max")
    for column in ("account", "plan", "limit"):
        table.add_column(column)
    for column in ("used", "old max", "new max"):
        table.add_column(column, justify="right")
    for o in found:
        if not o.limit:
            table.add_row(o.account, o.plan, NONE, NONE, NONE, "plan not in the new policy")
            continue
        old = "unlimited" if o.old_max is None else n(o.old_max)
        new = "unlimited" if o.new_max is None else n(o.new_max)
        table.add_row(o.account, o.plan, o.limit, n(o.used), old, new)
    return table


def as_json(found: list[Change], over: list[Over] | None) -> dict[str, Any]:
    data: dict[str, Any] = {"changes": [asdict(c) for c in found]}
    if over is not None:
        data["over"] = [asdict(o) for o in over]
    return data
