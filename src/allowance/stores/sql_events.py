"""Events in the SQL stores (SQLite, PostgreSQL): an ``events`` table written in the same
transaction as the charge (the outbox, ``events.py``), and ``event_marks``, the marks still
standing (one per kind, limit, threshold and user of an account), which an upsert takes only
from a mark that stopped standing, so an event of a standing mark is not written twice.

Ids increase in the order the events became visible: SQLite has one writer at a time; on
PostgreSQL a transaction writing events takes one transaction-level lock for it
(``lock_events``) just before it commits, so no lower id commits after a higher one is read.
A statement's placeholders are written ``%s``: ``statements`` gives them in the store's style.
"""

from __future__ import annotations

from allowance.events import Event, NewEvent

__all__ = ["Query", "event_writes", "read_events", "statements"]

Query = tuple[str, tuple[object, ...]]

_STATEMENTS = {
    # the mark taken (inserted, or one that stopped standing replaced): 1 row back
    "take_mark": (
        "INSERT INTO {s}event_marks AS m (account, mark, until) VALUES (%s, %s, %s)"
        " ON CONFLICT (account, mark) DO UPDATE SET until = excluded.until"
        " WHERE m.until <= %s RETURNING 1"
    ),
    "put_event": "INSERT INTO {s}events (at, account, body) VALUES (%s, %s, %s)",
    "events": "SELECT id, body FROM {s}events WHERE id > %s ORDER BY id LIMIT %s",
    "newest": "SELECT coalesce(max(id), 0) FROM {s}events",
    "account_events": (
        "SELECT id, body FROM {s}events WHERE account = %s AND id > %s ORDER BY id LIMIT %s"
    ),
}


def statements(prefix: str, placeholder: str) -> dict[str, str]:
    """The statements for tables named after ``prefix`` (``'"schema".'``; '' for SQLite's
    main database)."""
    return {
        name: sql.replace("{s}", prefix).replace("%s", placeholder)
        for name, sql in _STATEMENTS.items()
    }


def event_writes(q: dict[str, str], event: NewEvent) -> tuple[Query | None, Query]:
    """The mark to take first (None: the event has none) and the event's insert, to run only
    when the mark was taken."""
    put = (q["put_event"], (event.at, event.account, event.body()))
    if event.mark is None:
        return None, put
    return (q["take_mark"], (event.account, event.mark, event.until, event.at)), put


def read_events(q: dict[str, str], after: int, limit: int, account: str | None) -> Query:
    if account is None:
        return q["events"], (after, limit)
    return q["account_events"], (account, after, limit)


def events_of(rows: list[tuple[object, ...]]) -> list[Event]:
    return [Event.stored(int(r[0]), str(r[1])) for r in rows]  # type: ignore[call-overload]
