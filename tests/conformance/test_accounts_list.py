"""Paging through accounts (``Limiter.accounts``) on every store: by id in code point order,
by prefix, a cursor continuing where a page ended, compared with a plain sorted list."""

from __future__ import annotations

import asyncio

import pytest

from allowance import AsyncLimiter, InvalidRequest, Limiter
from allowance.listing import within

IDS = [
    "acme", "acme-2", "acme/eu", "acmé", "b", "team-1", "team-10", "team-2", "team",
    "zz", "Äpfel", "日本", "a b", "acme%", "acme_", "x" * 200,
]  # fmt: skip


def every_page(lim: Limiter, prefix: str, limit: int) -> list[list[str]]:
    pages, cursor = [], None
    while True:
        page = lim.accounts(prefix, cursor, limit)
        pages.append([a.id for a in page.accounts])
        if page.next_cursor is None:
            return pages
        cursor = page.next_cursor
        assert len(pages) < 100


@pytest.fixture
def filled(limiter: Limiter) -> Limiter:
    for i, account in enumerate(IDS):
        limiter.set_account(account, plan=("free", "pro", "max")[i % 3], seats=1 + i % 2)
    return limiter


@pytest.mark.parametrize("prefix", ["", "acme", "team-1", "team", "acmé", "日", "nobody", "%"])
@pytest.mark.parametrize("limit", [1, 3, 100])
def test_pages_are_the_sorted_ids(filled: Limiter, prefix: str, limit: int) -> None:
    expected = sorted(a for a in IDS if a.startswith(prefix))
    pages = every_page(filled, prefix, limit)
    assert [a for p in pages for a in p] == expected  # LIKE's % and _ are not wildcards here
    assert all(len(p) == limit for p in pages[:-1]) and len(pages[-1]) <= limit
    if expected and len(expected) % limit == 0:  # a full last page: the next one says so
        assert pages[-1]


def test_a_page_holds_whole_accounts(filled: Limiter) -> None:
    filled.set_override("acme", "ai_exports", 100)
    first = filled.accounts("acme", limit=1).accounts[0]
    assert first == filled.get_account("acme") and first.overrides == {"ai_exports": 100}


def test_an_empty_store_has_one_empty_page(limiter: Limiter) -> None:
    page = limiter.accounts()
    assert page.accounts == [] and page.next_cursor is None


def test_accounts_made_after_a_page_are_on_the_next_ones(filled: Limiter) -> None:
    page = filled.accounts("team", limit=2)
    assert [a.id for a in page.accounts] == ["team", "team-1"]
    filled.set_account("team-11", "free")  # after the cursor: shows up
    filled.set_account("team-0", "free")  # before it: does not
    rest = filled.accounts("team", page.next_cursor, 3)
    assert [a.id for a in rest.accounts] == ["team-10", "team-11", "team-2"]


@pytest.mark.parametrize(
    ("prefix", "cursor", "limit", "field"),
    [("a\n", None, 10, "prefix"), ("", "%%%", 10, "cursor"), ("", None, 0, "limit"),
     ("", None, 1001, "limit"), ("", None, True, "limit"), (3, None, 10, "prefix")],
)  # fmt: skip
def test_bad_arguments_name_the_field(
    limiter: Limiter, prefix: object, cursor: object, limit: object, field: str
) -> None:
    with pytest.raises(InvalidRequest) as info:
        limiter.accounts(prefix, cursor, limit)  # type: ignore[arg-type]
    assert info.value.field == field


def test_the_async_limiter_pages_the_same(filled: Limiter) -> None:
    async def pages() -> list[str]:
        lim = AsyncLimiter(store=filled.store)  # closed with ``filled``
        first = await lim.accounts("acme", limit=2)
        second = await lim.accounts("acme", first.next_cursor, 10)
        return [a.id for a in first.accounts + second.accounts]

    assert asyncio.run(pages()) == sorted(a for a in IDS if a.startswith("acme"))


@pytest.mark.parametrize(
    "bound",
    [("acme",), ("team-*",), ("acme", "team-1*", "nobody", "t*"), ("x*",), ("acme*", "acme-*")],
)
@pytest.mark.parametrize("prefix", ["", "team", "team-10", "acme-"])
def test_a_page_within_a_keys_accounts(
    filled: Limiter, bound: tuple[str, ...], prefix: str
) -> None:
    def allowed(a: str) -> bool:
        return any(a.startswith(b[:-1]) if b.endswith("*") else a == b for b in bound)

    ids = within(filled.store.account_page, bound)
    got, after = [], None
    while True:
        chunk = ids(prefix, after, 2)
        got += chunk
        if len(chunk) < 2:
            break
        after = chunk[-1]
    existing = sorted(a for a in IDS if a.startswith(prefix) and allowed(a))
    assert [a for a in got if a in IDS] == existing


def test_redis_lists_the_accounts_made_before_its_index(filled: Limiter) -> None:
    """A store whose accounts predate the index of ids (or lost it): the first page builds it
    from a scan, once."""
    from allowance.stores.redis import RedisStore

    store = filled.store
    if not isinstance(store, RedisStore):
        pytest.skip("Redis keeps an index of account ids")
    store.client.delete(store.index_key, store.index_built_key)
    assert [a.id for a in filled.accounts("team").accounts] == [
        "team",
        "team-1",
        "team-10",
        "team-2",
    ]
    assert store.client.exists(store.index_built_key)
    assert store.client.zcard(store.index_key) == len(IDS)
