"""One readable sentence per decision, in the seed's voice:
"You have reached your daily limit of 30 generations with image transformation tools. It resets
on Tue 24 Nov at 15:10 UTC, or upgrade to Max for 60 a day."
"""

from __future__ import annotations

from datetime import UTC, datetime

from allowance.policy import Cell, Limit, Plan
from allowance.policy_schema import format_duration
from allowance.windows import CalendarWindow, Window

_ADJECTIVE = {60.0: "per-minute", 3600.0: "hourly", 86400.0: "daily", 604800.0: "weekly"}
_RATE = {60.0: "a minute", 3600.0: "an hour", 86400.0: "a day", 604800.0: "a week"}
_CAL_ADJECTIVE = {"day": "daily", "week": "weekly", "month": "monthly"}


def adjective(window: Window) -> str:
    if isinstance(window, CalendarWindow):
        return _CAL_ADJECTIVE[window.unit]
    length = window.length or 0.0
    return _ADJECTIVE.get(length) or f"{format_duration(length)}"


def rate(window: Window) -> str:
    if isinstance(window, CalendarWindow):
        return f"a {window.unit}"
    length = window.length or 0.0
    return _RATE.get(length) or f"every {format_duration(length)}"


def when(ts: float) -> str:
    """'Tue 24 Nov at 15:10 UTC' (seconds shown only when not zero)."""
    dt = datetime.fromtimestamp(ts, UTC)
    clock = f"{dt:%H:%M}" if dt.second == 0 and dt.microsecond == 0 else f"{dt:%H:%M:%S}"
    return f"{dt:%a} {dt.day} {dt:%b} at {clock} UTC"


def n(count: int) -> str:
    return f"{count:,}"


def too_large(
    limit: Limit, most: int, amount: int, upgrade: Plan | None, upgrade_cell: Cell | None
) -> str:
    """A request for more units than one request may ask for on the plan."""
    head = f"A request for {n(amount)} is more than the {n(most)} {limit.label} allowed at once"
    if upgrade is None or upgrade_cell is None:
        return head + "."
    bigger = upgrade_cell.per_request
    size = "any number" if bigger is None else f"up to {n(bigger)}"
    return f"{head}; upgrade to {upgrade.title} for {size} at once."


def no_access(feature_title: str, plan: Plan, upgrade: Plan | None) -> str:
    head = f"{feature_title} is not included in the {plan.title} plan"
    if upgrade is None:
        return head + "."
    return f"{head}; upgrade to {upgrade.title} to use it."


def denied(
    limit: Limit,
    cap: int,
    used: int,
    amount: int,
    fits_at: float | None,
    upgrade: Plan | None,
    upgrade_cell: Cell | None,
    seats: int,
    cost: int = 1,
    full_cap: int | None = None,
) -> str:
    """``amount`` is in the limit's units: ``cost`` of them per unit of the feature;
    ``full_cap``: the max without the load factor in force, when one lowers it."""
    adj = adjective(limit.window)
    left = max(0, cap - used)
    if amount > cap:
        head = f"A request for {n(amount)} is more than your {adj} limit of {n(cap)} {limit.label}"
    elif left == 0:
        head = f"You have reached your {adj} limit of {n(cap)} {limit.label}"
    else:
        head = (
            f"Only {n(left)} of your {adj} limit of {n(cap)} {limit.label} "
            f"{'is' if left == 1 else 'are'} left, not enough for {n(amount)}"
        )
    if cost > 1:
        head += f" ({n(amount // cost)} at {n(cost)} each)"
    if full_cap is not None and full_cap != cap:
        head += f" (lowered from {n(full_cap)} while demand is high)"
    offer = ""
    if upgrade is not None and upgrade_cell is not None:
        up_cap = upgrade_cell.cap(seats)
        amount_text = "unlimited" if up_cap is None else f"{n(up_cap)} {rate(limit.window)}"
        offer = f"upgrade to {upgrade.title} for {amount_text}"
    if fits_at is not None:
        verb = "More frees up" if limit.window.kind == "sliding" else "It resets"
        tail = f"{verb} on {when(fits_at)}"
        return f"{head}. {tail}, or {offer}." if offer else f"{head}. {tail}."
    if offer:
        return f"{head}. {offer[0].upper()}{offer[1:]}."
    return f"{head}."


def granted(
    feature_title: str,
    amount: int,
    granted_units: int,
    binding: tuple[Limit, int, int, int] | None,
    fair_use: tuple[Limit, int] | None,
) -> str:
    """``binding`` is (limit, cap, remaining, cost) of the tightest limit (remaining in its
    units; ``cost``: its units one unit of the feature takes), ``fair_use`` (limit, threshold)
    of an exceeded soft limit."""
    part = f" of {n(amount)}" if granted_units < amount else ""
    text = f"{feature_title}: granted {n(granted_units)}{part}"
    if binding is not None:
        lim, cap, remaining, cost = binding
        text += (
            f"; {n(remaining)} of your {adjective(lim.window)} limit of {n(cap)} {lim.label} left"
        )
        if cost > 1:  # credits: say what they still buy
            text += f", enough for {n(remaining // cost)} more at {n(cost)} each"
    text += "."
    if fair_use is not None:
        lim, threshold = fair_use
        text += (
            f" You are above the fair-use level of {n(threshold)} {lim.label} {rate(lim.window)}."
        )
    return text
