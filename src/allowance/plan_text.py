"""How the plan table words a policy's settings (``policy show``, ``policy diff``, the
dashboard)."""

from __future__ import annotations

from allowance.policy import Cell, Limit
from allowance.windows import BillingWindow, CalendarWindow


def n(count: int) -> str:
    return f"{count:,}"


def cell_text(cell: Cell) -> str:
    """One plan's setting as the seed's table words it: '30 per seat', 'no access'..."""
    if not cell.access:
        return "no access"
    per_seat = " per seat" if cell.per_seat else ""
    at_once = "" if cell.per_request is None else f", {n(cell.per_request)} at once"
    if cell.max is None:
        if cell.fair_use is None:
            return f"unlimited{at_once}"
        return f"unlimited (fair use {n(cell.fair_use)}{per_seat}){at_once}"
    return f"{n(cell.max)}{per_seat}{at_once}"


def length_text(seconds: float) -> str:
    """'7 days', '24 h', '90 min', '60 s': a whole day is said as 24 h, like the seed."""
    if seconds % 86400 == 0 and seconds > 86400:
        return f"{int(seconds // 86400)} days"
    if seconds % 3600 == 0:
        return f"{int(seconds // 3600)} h"
    if seconds % 60 == 0 and seconds > 60:
        return f"{int(seconds // 60)} min"
    return f"{seconds:g} s"


SCOPE_TEXT = {"user": "per user", "user_global": "per user, all accounts"}


def window_text(limit: Limit) -> str:
    """The limit's window, and on a line of its own whose counter it is when not the
    account's (its scope)."""
    window = limit.window
    if isinstance(window, BillingWindow):
        text = f"billing {window.unit}, the account's"
    elif isinstance(window, CalendarWindow):
        text = f"calendar {window.unit}, {window.tz}"
    else:
        text = f"{length_text(window.length)}, {window.kind}"
    scope = SCOPE_TEXT.get(limit.scope)
    return text if scope is None else f"{text}\n{scope}"


def features_text(limit: Limit) -> str:
    """The features a limit counts, one a line, each with its cost when it is not 1 (credits:
    'ai.video × 25')."""
    return "\n".join(
        f if (cost := limit.cost(f)) == 1 else f"{f} × {n(cost)}" for f in limit.features
    )
