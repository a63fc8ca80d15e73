"""The PostgreSQL stores' cleanup queries (see ``upkeep.py``): one batch deletes expired
idempotency records and settled reservations, then drops the spent counters of the next
accounts; rows another transaction holds are skipped (``SKIP LOCKED``), never waited on."""

from __future__ import annotations

import json
from functools import cache
from typing import Any

from allowance.ops import HOLD_KEEP
from allowance.policy import Policy
from allowance.stores.postgres_common import Query, render
from allowance.stores.upkeep import live_stored

_encode = json.JSONEncoder(separators=(",", ":")).encode
TEMPLATES = {
    "accounts": "SELECT id, counters FROM {s}.accounts WHERE id > %s"
    " AND counters <> '{{}}'::jsonb ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED",
    "write": "UPDATE {s}.accounts SET counters = %s::jsonb WHERE id = %s",
}


@cache
def upkeep_queries(schema: str) -> dict[str, str]:
    return {name: render(template, schema) for name, template in TEMPLATES.items()}


def deletes(q: dict[str, str], now: float, batch: int) -> list[Query]:
    """The store's ``sweep_*`` statements (``q``: its rendered queries) for one batch."""
    return [
        (q["sweep_idempotency"], (now, batch)),
        (q["sweep_holds"], (now - HOLD_KEEP, batch)),
    ]


def counter_writes(
    policy: Policy, schema: str, rows: list[Any], now: float
) -> tuple[list[Query], int]:
    """The writes that drop the spent counters of ``rows`` (id, counters), and how many."""
    write = upkeep_queries(schema)["write"]
    out, removed = [], 0
    for account_id, counters in rows:
        keep = live_stored(policy, counters, now)
        if keep is not None:
            out.append((write, (_encode(keep), account_id)))
            removed += len(counters) - len(keep)
    return out, removed
