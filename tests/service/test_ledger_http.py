"""``GET /v1/accounts/{id}/ledger`` and ``Client.ledger`` on a real service: the rows of
what the service's callers did, each with the id of the key it was done with."""

from __future__ import annotations

import pytest

from allowance import Client

from .service import Service

GEN = "transform.virtual_model"


def test_each_change_is_a_row_with_the_key_that_made_it(service: Service) -> None:
    svc = service
    svc.account("ledger-acme", "pro")
    r = svc.call("POST", "/v1/keys", json={"scope": "decide", "name": "app"})
    assert r.status_code == 201, r.text
    app_key, app_id = r.json()["key"], r.json()["id"]
    decision = {"account": "ledger-acme", "feature": GEN}
    r = svc.call("POST", "/v1/consume", key=app_key, json=decision)  # the plain-ASGI path
    assert r.status_code == 200, r.text
    r = svc.call(
        "POST", "/v1/consume", key=app_key, json=decision, headers={"Idempotency-Key": "job-1"}
    )  # the routes' path
    assert r.status_code == 200, r.text
    r = svc.call("PUT", "/v1/accounts/ledger-acme/overrides/transform_daily", json={"max": 50})
    assert r.status_code == 200, r.text

    r = svc.call("GET", "/v1/accounts/ledger-acme/ledger", params={"limit": 3})
    assert r.status_code == 200, r.text
    first = r.json()
    assert first["next_cursor"] is not None
    r = svc.call("GET", "/v1/accounts/ledger-acme/ledger", params={"cursor": first["next_cursor"]})
    rest = r.json()
    assert rest["next_cursor"] is None
    rows = first["rows"] + rest["rows"]
    assert [(x["kind"], x["limit"], x["amount"]) for x in rows] == [
        ("charge", "transform_rate", 1),
        ("charge", "transform_daily", 1),
        ("charge", "transform_rate", 1),
        ("charge", "transform_daily", 1),
        ("override", "transform_daily", 50),
    ]
    assert [x["key_id"] for x in rows[:4]] == [app_id] * 4
    assert rows[4]["key_id"] not in (None, app_id)  # the admin key's
    assert [x["idempotency_key"] for x in rows[:4]] == [None, None, "job-1", "job-1"]
    assert rows[0]["at"].endswith("Z") and rows[0]["feature"] == GEN
    with Client(svc.url, svc.admin) as lim:
        page = lim.ledger("ledger-acme", limit=1000)
    assert [row.to_json() for row in page.rows] == rows and page.next_cursor is None


@pytest.mark.parametrize(
    ("params", "field"),
    [({"limit": 0}, "limit"), ({"limit": 1001}, "limit"), ({"cursor": "x"}, "cursor"),
     ({"since": "2026-12-01T00:00:00"}, "since"), ({"until": "soon"}, "until")],
)  # fmt: skip
def test_bad_paging_is_a_422_naming_the_field(
    sqlite_service: Service, params: dict[str, object], field: str
) -> None:
    sqlite_service.account("ledger-bad", "pro")
    r = sqlite_service.call("GET", "/v1/accounts/ledger-bad/ledger", params=params)
    assert r.status_code == 422, r.text
    assert r.json()["field"] == field


def test_an_unknown_account_is_a_404(sqlite_service: Service) -> None:
    r = sqlite_service.call("GET", "/v1/accounts/nobody-here/ledger")
    assert r.status_code == 404, r.text
