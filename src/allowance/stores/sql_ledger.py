"""The ledger in the SQL stores (SQLite, PostgreSQL): a ``ledger`` table of rows (``ledger.py``)
written in the same transaction as the change, read per account by id, the cursor.

Retention drops rows from the oldest id on (the ``drop_rows`` batch looks only at the first
``batch`` ids): ids follow time, so no index on ``at`` is kept for it, one index fewer on the
decision path. A placeholder is written ``%s``: ``statements`` gives it in the store's style.
"""

from __future__ import annotations

import math

from allowance.ledger import Entry, Row, seq_of

__all__ = ["Query", "read_rows", "row_writes", "rows_of", "statements"]

Query = tuple[str, tuple[object, ...]]

_STATEMENTS = {
    "put_row": "INSERT INTO {s}ledger (at, account, body) VALUES (%s, %s, %s)",
    "rows": (
        "SELECT id, body FROM {s}ledger WHERE account = %s AND id > %s"
        " AND at >= %s AND at < %s ORDER BY id LIMIT %s"
    ),
    "drop_rows": (
        "DELETE FROM {s}ledger WHERE id IN (SELECT id FROM"
        " (SELECT id, at FROM {s}ledger ORDER BY id LIMIT %s) AS oldest WHERE at < %s)"
    ),
}


def statements(prefix: str, placeholder: str) -> dict[str, str]:
    """The statements for a table named after ``prefix`` (``'"schema".'``; '' for SQLite)."""
    return {
        name: sql.replace("{s}", prefix).replace("%s", placeholder)
        for name, sql in _STATEMENTS.items()
    }


def row_writes(rows: list[Entry]) -> list[tuple[object, ...]]:
    """The arguments of ``put_row`` for each row."""
    return [(e.at, e.account, e.body()) for e in rows]


def read_rows(
    q: dict[str, str],
    account: str,
    after: str | None,
    limit: int,
    since: float | None,
    until: float | None,
) -> Query:
    low = -math.inf if since is None else since
    high = math.inf if until is None else until
    return q["rows"], (account, seq_of(after), low, high, limit)


def rows_of(account: str, found: list[tuple[object, ...]]) -> list[Row]:
    return [Row.stored(str(r[0]), account, str(r[1])) for r in found]
