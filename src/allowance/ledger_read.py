"""Reading the ledger back (``Limiter.ledger``, ``GET /v1/accounts/{id}/ledger``, ``allowance
ledger export``): a page of one account's rows, or every row of a time range streamed account
by account (in id order, each account's rows in the order written), a page at a time, so an
export of millions of rows holds one page in memory."""

from __future__ import annotations

from collections.abc import Iterator

from allowance import ledger, listing, validation
from allowance.errors import UnknownAccount
from allowance.ledger import LedgerPage, Row
from allowance.stores.base import Store

__all__ = ["EXPORT_PAGE", "page", "rows"]

EXPORT_PAGE = 1000  # rows (and accounts) read per round trip by an export


def page(
    store: Store,
    account: str,
    cursor: object,
    limit: object,
    since: float | None = None,
    until: float | None = None,
) -> LedgerPage:
    """The rows after ``cursor`` (None: from the first), at most ``limit``; ``next_cursor``
    is None on the last page. An unknown account raises ``UnknownAccount``."""
    after = ledger.after_cursor(cursor)
    size = listing.size(limit)
    account_id = validation.text("account", account)
    found = store.ledger(account_id, after, size + 1, since, until)
    if not found and store.get_account(account_id) is None:
        raise UnknownAccount(account_id)
    more = len(found) > size
    del found[size:]
    return LedgerPage(found, found[-1].cursor if more else None)


def rows(
    store: Store,
    account: str | None = None,
    since: float | None = None,
    until: float | None = None,
    batch: int = EXPORT_PAGE,
) -> Iterator[Row]:
    """Every row from ``since`` to ``until`` (None: unbounded), of ``account`` or of every
    account, read ``batch`` at a time."""
    if account is not None:
        yield from _account_rows(store, validation.text("account", account), since, until, batch)
        return
    after: str | None = None
    while True:
        ids = store.account_page("", after, batch)
        for account_id in ids:
            yield from _account_rows(store, account_id, since, until, batch)
        if len(ids) < batch:
            return
        after = ids[-1]


def _account_rows(
    store: Store, account: str, since: float | None, until: float | None, batch: int
) -> Iterator[Row]:
    cursor: str | None = None
    while True:
        found = store.ledger(account, cursor, batch, since, until)
        yield from found
        if len(found) < batch:
            return
        cursor = found[-1].cursor
