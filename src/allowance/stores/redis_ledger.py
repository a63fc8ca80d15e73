"""The ledger on Redis (``ledger.py``): each account's rows are a stream in its own slot
(``P:{account}:l``), appended by the script that makes the change (``lua/ledger.lua``: by
decide.lua, apply.lua and account.lua), so a row is written in the same step as its change
on Redis Cluster too. Its ids ("<ms>-<n>", from the row's time, never going back) are the
rows' cursors. Each append drops the rows older than the policy's ``keep``; the sweep does
the same for accounts no longer charged, and an idle stream expires ``keep`` after its last
row."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

from allowance import ledger
from allowance.ledger import Row
from allowance.policy import Policy
from allowance.stores.redis_events import AT, FROM

__all__ = ["account_args", "read_page", "trim_args"]

Command = Callable[..., Any]  # (*args) -> the reply of one command


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


def trim_args(key: str, before: float) -> list[Any]:
    """The XTRIM that drops a stream's rows from before ``before`` (epoch seconds)."""
    return ["XTRIM", key, "MINID", max(0, math.floor(before * 1000))]


def read_page(
    command: Command,
    key: str,
    account: str,
    after: str | None,
    limit: int,
    since: float | None,
    until: float | None,
) -> list[Row]:
    """At most ``limit`` rows after the cursor ``after`` from ``since`` to ``until``. An id
    is never below its row's time, so ``since`` bounds the range read from below; above,
    rows are filtered by their time (after a clock step back, a row's id may be later than
    it), reading on until ``limit`` are found or the stream ends."""
    start = "-" if after is None else "(" + after
    if since is not None and (after is None or int(after.split("-")[0]) < since * 1000):
        start = str(max(0, math.floor(since * 1000)))
    out: list[Row] = []
    while len(out) < limit:
        found = command("XRANGE", key, start, "+", "COUNT", limit)
        for entry_id, fields in found:
            cursor = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
            body = fields[b"r"] if isinstance(fields, dict) else fields[1]
            row = Row.stored(cursor, account, body)
            if row.within(since, until) and len(out) < limit:
                out.append(row)
            start = "(" + cursor
        if len(found) < limit:
            break
    return out
