"""The PostgreSQL stores' cleanup (see ``upkeep.py``), its queries and its protocol, written
once and free of I/O like the decision's transaction (``postgres_transaction.py``): ``sweep``
yields the steps, a thin driver in each store runs them (``postgres.py`` on connections,
``postgres_async.py`` awaiting them).

A sweep first settles the reservations past their expiry, each account in a transaction of
its own (``Settle``: the store's own ``_transact``, on a connection of its own). Then one
batch deletes expired idempotency records and settled reservations (autocommit, a statement
each), and drops the spent counters of the next accounts after the store's ``_scan_from``
in one transaction; rows another transaction holds are skipped (``SKIP LOCKED``), never
waited on. With ``batch`` None, batches follow from the first account until nothing is left.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Generator
from contextlib import suppress
from dataclasses import dataclass
from functools import cache, partial
from typing import Any, Protocol

import psycopg

from allowance import events, ledger
from allowance.errors import UnknownAccount
from allowance.ops import HOLD_KEEP, settle_due_holds
from allowance.policy import Policy
from allowance.stores.postgres_common import BEGIN, COMMIT, ROLLBACK, Query, render
from allowance.stores.postgres_transaction import Rows, Send
from allowance.stores.upkeep import live_stored
from allowance.view import AccountView

_encode = json.JSONEncoder(separators=(",", ":")).encode
TEMPLATES = {
    "accounts": "SELECT id, counters FROM {s}.accounts WHERE id > %s"
    " AND counters <> '{{}}'::jsonb ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED",
    "write": "UPDATE {s}.accounts SET counters = %s::jsonb WHERE id = %s",
}


@cache
def upkeep_queries(schema: str) -> dict[str, str]:
    return {name: render(template, schema) for name, template in TEMPLATES.items()}


def deletes(q: dict[str, str], policy: Policy | None, now: float, batch: int) -> list[Query]:
    """The store's ``sweep_*`` statements (``q``: its rendered queries) for one batch."""
    return [
        (q["sweep_idempotency"], (now, batch)),
        (q["sweep_holds"], (now - HOLD_KEEP, batch)),
        (q["sweep_owned"], (now, batch)),
        (q["sweep_events"], (now - events.KEEP, batch)),
        (q["sweep_marks"], (now, batch)),
        (q["sweep_ledger"], (batch, now - ledger.retention(policy))),
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


@dataclass(frozen=True, slots=True)
class Settle:
    """Run ``fn`` on ``account`` at ``now`` in a transaction of its own: the driver calls its
    store's ``_transact``, and throws its error into the protocol (an ``UnknownAccount`` is
    passed over: the account is gone)."""

    account: str
    now: float
    fn: Callable[[AccountView, float], Any]


class Swept(Protocol):
    """What a sweep reads of its store, and ``_scan_from``, where it resumes, which it moves."""

    sql: dict[str, str]
    schema: str
    policy: Policy | None
    _scan_from: str


Sweep = Generator[Send | Rows | Settle, Any, int]


def sweep(store: Swept, now: float, batch: int | None, size: int) -> Sweep:
    """Settle the due reservations, then delete what has expired: one batch of ``batch``
    rows of each kind, or (``batch`` None) batches of ``size`` until nothing is left; returns
    how many records and counters were removed. ``Send`` is answered with a cursor (its
    ``rowcount`` read), ``Rows`` with all the rows; the driver runs the statements between
    two ``Settle`` steps on one connection, in autocommit."""
    q, policy = store.sql, store.policy
    if policy is not None:
        due = yield Rows((yield Send(q["due_accounts"], (now, batch))), one=False)
        settle = partial(settle_due_holds, policy)
        for (account,) in due:  # each with the account locked
            with suppress(UnknownAccount):
                yield Settle(account, now, settle)
    removed, size = 0, batch or size
    if batch is None:
        store._scan_from = ""  # every account, from the first
    while True:
        deleted = 0
        for st, args in deletes(q, policy, now, size):
            deleted += (yield Send(st, args)).rowcount
        wrapped, counters = True, 0
        if policy is not None:
            yield Send(BEGIN)
            try:
                read = Send(upkeep_queries(store.schema)["accounts"], (store._scan_from, size))
                rows = yield Rows((yield read), one=False)
                writes, counters = counter_writes(policy, store.schema, rows, now)
                for st, args in writes:
                    yield Send(st, args)
            except BaseException:
                with suppress(psycopg.Error):  # the connection may be gone
                    yield Send(ROLLBACK)
                raise
            yield Send(COMMIT)
            wrapped = len(rows) < size
            store._scan_from = "" if wrapped else rows[-1][0]
        removed += deleted + counters
        if batch is not None or (deleted == 0 and wrapped):
            return removed
