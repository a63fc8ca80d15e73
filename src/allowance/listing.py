"""Paging through accounts (``Limiter.accounts``, ``GET /v1/accounts``): by id in code point
order (SQLite's and PostgreSQL's "C" byte order of UTF-8, Redis's lexicographic order), an
optional id prefix, and an opaque cursor that is the last id of the page before."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from allowance.errors import InvalidRequest, UnknownAccount
from allowance.types import Account
from allowance.validation import MAX_ID

__all__ = [
    "DEFAULT_PAGE",
    "MAX_CURSOR",
    "MAX_PAGE",
    "AccountPage",
    "after_cursor",
    "page",
    "prefix",
    "within",
]

Ids = Callable[[str, str | None, int], list[str]]  # (prefix, after, n) -> ids, as page wants

DEFAULT_PAGE = 100
MAX_PAGE = 1000
MAX_CURSOR = 4 * -(-4 * MAX_ID // 3)  # base64 of the longest id: 200 characters of 4 bytes


@dataclass(frozen=True, slots=True)
class AccountPage:
    accounts: list[Account]
    next_cursor: str | None  # None: this was the last page

    def to_json(self) -> dict[str, Any]:
        return {"accounts": [a.to_json() for a in self.accounts], "next_cursor": self.next_cursor}


def cursor_of(account_id: str) -> str:
    return base64.urlsafe_b64encode(account_id.encode()).decode().rstrip("=")


def after_cursor(cursor: object) -> str | None:
    """The id a cursor continues after (None: from the start)."""
    if cursor is None:
        return None
    try:
        if not isinstance(cursor, str) or not cursor:
            raise ValueError
        padded = cursor + "=" * (-len(cursor) % 4)
        found = base64.b64decode(padded, altchars=b"-_", validate=True).decode()
        if not found:
            raise ValueError
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise InvalidRequest("cursor", cursor, "expected a next_cursor of a page") from None
    return found


def prefix(value: object) -> str:
    if not isinstance(value, str) or len(value) > MAX_ID or not value.isprintable():
        raise InvalidRequest("prefix", value, f"expected text of at most {MAX_ID} characters")
    return value


def size(value: object) -> int:
    if type(value) is not int or not 1 <= value <= MAX_PAGE:
        raise InvalidRequest("limit", value, f"expected a whole number from 1 to {MAX_PAGE}")
    return value


def page(
    ids: Ids,
    get: Callable[[str], Account],
    start: object,
    cursor: object,
    limit: object,
) -> AccountPage:
    """``ids(prefix, after, n)``: at most n ids after ``after`` that start with ``prefix``,
    in order (the store's ``account_page``); ``get``: an account by id."""
    wanted, after, count = prefix(start), after_cursor(cursor), size(limit)
    found = ids(wanted, after, count + 1)  # one more: whether a next page exists
    accounts = []
    for account_id in found[:count]:
        try:
            accounts.append(get(account_id))
        except UnknownAccount:  # only in a store that can drop one: not a page's business
            continue
    more = len(found) > count
    return AccountPage(accounts, cursor_of(found[count - 1]) if more else None)


def within(ids: Ids, bound: tuple[str, ...]) -> Ids:
    """``ids`` narrowed to the accounts of a key bound to ``bound`` (ids, and prefixes ending
    in ``*``): each prefix pages the store from the longer of it and the one asked for, an id
    is taken as it is (``page`` leaves out one that does not exist); merged in order."""

    def narrowed(start: str, after: str | None, count: int) -> list[str]:
        found: set[str] = set()
        for entry in bound:
            if not entry.endswith("*"):
                if entry.startswith(start) and (after is None or entry > after):
                    found.add(entry)
                continue
            stem = entry[:-1]
            if stem.startswith(start) or start.startswith(stem):
                found.update(ids(max(stem, start, key=len), after, count))
        return sorted(found)[:count]

    return narrowed
