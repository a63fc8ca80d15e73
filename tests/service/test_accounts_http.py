"""``GET /v1/accounts?prefix=&cursor=&limit=`` and ``Client.accounts``."""

from __future__ import annotations

from urllib.parse import quote

import pytest

from allowance import Client, InvalidRequest

from .service import Service


def test_pages_of_accounts(sqlite_service: Service) -> None:
    svc = sqlite_service
    for account in ("list-b", "list-a", "list-c.eu", "lister"):
        svc.account(account, "pro")
    first = svc.call("GET", "/v1/accounts", params={"prefix": "list-", "limit": 2})
    assert first.status_code == 200, first.text
    body = first.json()
    assert [a["id"] for a in body["accounts"]] == ["list-a", "list-b"]
    assert body["accounts"][0]["plan"] == "pro" and body["next_cursor"]
    second = svc.call(
        "GET", "/v1/accounts", params={"prefix": "list-", "cursor": body["next_cursor"]}
    ).json()
    assert [a["id"] for a in second["accounts"]] == ["list-c.eu"]
    assert second["next_cursor"] is None


@pytest.mark.parametrize(
    ("params", "field"),
    [({"limit": 0}, "limit"), ({"limit": 1001}, "limit"), ({"limit": "x"}, "limit"),
     ({"cursor": "!!"}, "cursor"), ({"prefix": "a\u0007"}, "prefix")],
)  # fmt: skip
def test_bad_paging_is_a_422_naming_the_field(  # as sent: limit, not query.limit
    sqlite_service: Service, params: dict[str, object], field: str
) -> None:
    r = sqlite_service.call("GET", "/v1/accounts", params=params)
    assert r.status_code == 422, r.text
    assert r.json()["field"] == field


def test_the_client_pages_the_same(sqlite_service: Service) -> None:
    svc = sqlite_service
    for account in ("client-1", "client-2", "client-3"):
        svc.account(account, "free")
    with Client(svc.url, svc.admin) as lim:
        first = lim.accounts("client-", limit=2)
        second = lim.accounts("client-", first.next_cursor)
        assert [a.id for a in first.accounts + second.accounts] == [
            "client-1", "client-2", "client-3"
        ]  # fmt: skip
        assert second.next_cursor is None
        with pytest.raises(InvalidRequest) as info:
            lim.accounts(limit=0)  # refused before anything is sent
        assert info.value.field == "limit"


def test_the_cursor_after_the_longest_id_is_taken(sqlite_service: Service) -> None:
    """200 characters of four UTF-8 bytes each: the longest cursor there can be."""
    svc = sqlite_service
    longest = "\U0001f600" * 200
    for account in (longest, longest[:-1] + "\U0001f601"):
        r = svc.call("PUT", "/v1/accounts/" + quote(account, safe=""), json={"plan": "free"})
        assert r.status_code == 201, r.text
    first = svc.call("GET", "/v1/accounts", params={"prefix": "\U0001f600", "limit": 1}).json()
    assert [a["id"] for a in first["accounts"]] == [longest]
    cursor = first["next_cursor"]
    rest = svc.call("GET", "/v1/accounts", params={"prefix": "\U0001f600", "cursor": cursor})
    assert rest.status_code == 200, rest.text
    assert [a["id"] for a in rest.json()["accounts"]] == [longest[:-1] + "\U0001f601"]


def test_answers_name_a_bad_user(sqlite_service: Service) -> None:
    """Schemathesis found it: a user with a control character was a note on every feature
    and a 200, where it is the caller's mistake."""
    svc = sqlite_service
    svc.account("answers-1", "pro")
    bad = svc.call("GET", "/v1/accounts/answers-1/answers", params={"user": "a\u0008b"})
    assert bad.status_code == 422, bad.text
    assert bad.json()["field"] == "user"
    good = svc.call("GET", "/v1/accounts/answers-1/answers").json()["answers"]
    assert {a["feature"] for a in good} >= {"export.ai", "transform.virtual_model"}
    assert all(a["decision"] is not None for a in good)  # the built-in policy: no per-user
