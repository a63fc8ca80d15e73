"""The ledger on Redis (``ledger.py``): each account's rows are a list in its own slot
(``P:{account}:l``), appended by the script that makes the change (``lua/ledger.lua``: by
decide.lua, apply.lua and account.lua), so a row is written in the same step as its change
on Redis Cluster too. Its ids ("<ms>-<n>", from the row's time, never going back) are the
rows' cursors, found by bisection (``ledger_page.lua``). Each append drops the rows older
than the policy's ``keep``; the sweep does the same for accounts no longer charged
(``ledger_trim.lua``), and an idle list expires ``keep`` after its last row."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

from allowance import ledger
from allowance.ledger import Row
from allowance.policy import Policy
from allowance.stores.redis_events import AT, FROM
from allowance.stores.redis_scripts import lua

__all__ = ["PAGE", "TRIM", "account_args", "read_page", "trim_args"]

Page = Callable[[str, str, int], list[Any]]  # ledger_page.lua: (after, since ms, count)
PAGE = lua("ledger_page")
TRIM = lua("ledger_trim")


def account_args(
    policy: Policy | None, account: str, plan: str, seats: int, now: float | None
) -> list[Any]:
    """account.lua's ledger arguments: the plan change's row with the old plan (and, when
    ``now`` is None, the time) left for the script to put in ('' when the ledger is off),
    the retention in seconds and the time ('' = Redis TIME)."""
    keep = ledger.retention(policy)
    if policy is not None and policy.ledger_keep is None:
        return ["", repr(keep), ""]
    row = ledger.plan_change(account, FROM, plan, seats, 0.0 if now is None else now)
    body = row.body() if now is not None else row.body(json.dumps(AT))
    return [body, repr(keep), "" if now is None else repr(now)]


def trim_args(before: float) -> list[Any]:
    """ledger_trim.lua's ARGV: drop the rows from before ``before`` (epoch seconds)."""
    return [max(0, math.floor(before * 1000))]


def read_page(
    page: Page,
    account: str,
    after: str | None,
    limit: int,
    since: float | None,
    until: float | None,
) -> list[Row]:
    """At most ``limit`` rows after the cursor ``after`` from ``since`` to ``until``;
    ``page(after, since_ms, count)`` runs ledger_page.lua. An id is never below its row's
    time, so ``since`` bounds what is read from below; above, rows are filtered by their time
    (after a clock step back, a row's id may be later than its time), reading on until
    ``limit`` are found or the list ends."""
    since_ms = "" if since is None else str(max(0, math.floor(since * 1000)))
    cursor = "" if after is None else after
    out: list[Row] = []
    while len(out) < limit:
        found = page(cursor, since_ms, limit)
        for entry in found:
            text = entry.decode() if isinstance(entry, bytes) else entry
            cursor, body = text.split(" ", 1)
            row = Row.stored(cursor, account, body)
            if row.within(since, until) and len(out) < limit:
                out.append(row)
        if len(found) < limit:
            break
    return out
