"""Keys bound to accounts (``POST /v1/keys {accounts}``): such a key acts for its accounts
only. Every route of the service (read from its own OpenAPI, so a new route must be placed
in ROUTES) is tried with a key bound to other accounts: any other account is a 404, what
concerns every account is a 403 to change and a 200 to read, and nothing changes."""

from __future__ import annotations

import inspect
from typing import Any

import pytest

from allowance.aio import AsyncLimiter
from allowance.http.bound import AccountBoundLimiter

from .service import Service

POLICY_TEXT = "version: 1\nplans: [free]\nfeatures: {x: {}}\n"
DECISION = {"account": "other", "feature": "export.ai"}
# (method, path): (the body, what a key bound to other accounts gets)
ROUTES: dict[tuple[str, str], tuple[dict[str, Any], int]] = {
    ("POST", "/v1/consume"): ({"json": DECISION}, 404),
    ("POST", "/v1/check"): ({"json": DECISION}, 404),
    ("POST", "/v1/reservations"): ({"json": DECISION}, 404),
    ("POST", "/v1/reservations/{reservation_id}/commit"): ({}, 404),
    ("DELETE", "/v1/reservations/{reservation_id}"): ({}, 404),
    ("PUT", "/v1/accounts/{account_id}"): ({"json": {"plan": "max"}}, 404),
    ("GET", "/v1/accounts"): ({}, 200),  # its own accounts only
    ("GET", "/v1/events"): ({"params": {"account": "other"}}, 404),
    ("GET", "/v1/accounts/{account_id}"): ({}, 404),
    ("GET", "/v1/accounts/{account_id}/usage"): ({}, 404),
    ("GET", "/v1/accounts/{account_id}/ledger"): ({}, 404),
    ("GET", "/v1/accounts/{account_id}/answers"): ({}, 404),
    ("PUT", "/v1/accounts/{account_id}/overrides/{limit}"): ({"json": {"max": 1}}, 404),
    ("POST", "/v1/accounts/{account_id}/grants"): (
        {"json": {"limit": "ai_exports", "amount": 5}},
        404,
    ),
    ("PUT", "/v1/load-factor"): ({"json": {"factor": 0.5}}, 403),
    ("GET", "/v1/load-factor"): ({}, 200),
    ("PUT", "/v1/policy"): ({"content": POLICY_TEXT}, 403),
    ("GET", "/v1/policy"): ({}, 200),
    ("GET", "/v1/policy/table"): ({}, 200),
    ("POST", "/v1/keys"): ({"json": {"scope": "admin"}}, 403),
    ("GET", "/v1/keys"): ({}, 403),
    ("DELETE", "/v1/keys/{key_id}"): ({}, 403),
    ("POST", "/v1/webhooks"): ({"json": {"url": "http://127.0.0.1:9/hook"}}, 403),
    ("GET", "/v1/webhooks"): ({}, 403),
    ("DELETE", "/v1/webhooks/{hook_id}"): ({}, 403),
    ("GET", "/v1/webhooks/{hook_id}/deliveries"): ({}, 403),
}


def bound_key(svc: Service, scope: str, accounts: list[str]) -> str:
    r = svc.call("POST", "/v1/keys", json={"scope": scope, "name": "bound", "accounts": accounts})
    assert r.status_code == 201, r.text
    assert r.json()["accounts"] == accounts
    secret: str = r.json()["key"]
    return secret


def state(svc: Service) -> dict[str, Any]:
    """What the routes could change, read with the admin key."""
    return {
        "account": svc.call("GET", "/v1/accounts/other").json(),
        "usage": svc.call("GET", "/v1/accounts/other/usage").json(),
        # all but when each was last used (the bound key was, to be refused)
        "keys": [
            {k: v for k, v in key.items() if k != "last_used_at"}
            for key in svc.call("GET", "/v1/keys").json()
        ],
        "policy": svc.call("GET", "/v1/policy").json(),
        "factors": svc.call("GET", "/v1/load-factor").json(),
        "webhooks": svc.call("GET", "/v1/webhooks").json(),
    }


def test_every_route_with_a_key_bound_to_other_accounts(service: Service) -> None:
    svc = service
    svc.account("other", "pro")
    reserved = svc.call(
        "POST", "/v1/reservations", json={"account": "other", "feature": "export.ai", "amount": 3}
    )
    assert reserved.status_code == 201, reserved.text
    reservation = reserved.json()["id"]
    some_key = svc.call("GET", "/v1/keys").json()[0]["id"]
    hook = svc.call("POST", "/v1/webhooks", json={"url": "http://127.0.0.1:9/h"}).json()["id"]
    paths = svc.call("GET", "/openapi.json", key=None).json()["paths"]
    found = {
        (method.upper(), path)
        for path, ops in paths.items()
        if path.startswith("/v1/")
        for method in ops
    }
    assert found == set(ROUTES), "a route to place in ROUTES (what a bound key gets)"
    key = bound_key(svc, "admin", ["mine", "team-*"])
    before = state(svc)
    for (method, path), (body, expected) in ROUTES.items():
        url = path.format(
            account_id="other",
            reservation_id=reservation,
            limit="ai_exports",
            key_id=some_key,
            hook_id=hook,
        )
        answer = svc.call(method, url, key=key, **body)
        assert answer.status_code == expected, (method, path, answer.text)
        if expected != 200:
            assert answer.headers["content-type"] == "application/problem+json"
        assert '"other"' not in answer.text
    assert state(svc) == before
    # the reservation still holds its 3: the service's own key can still commit it
    assert svc.call("POST", f"/v1/reservations/{reservation}/commit").status_code == 200


def test_a_bound_key_acts_for_its_accounts_and_prefixes(service: Service) -> None:
    svc = service
    for account in ("mine", "team-a"):
        svc.account(account, "free")
    key = bound_key(svc, "decide", ["mine", "team-*"])
    for account in ("mine", "team-a"):
        body = {"account": account, "feature": "export.ai"}
        assert svc.call("POST", "/v1/consume", key=key, json=body).status_code == 200
        usage = svc.call("GET", f"/v1/accounts/{account}/usage", key=key)
        assert usage.status_code == 200
        assert next(m["used"] for m in usage.json()["meters"] if m["limit"] == "ai_exports") == 1
    r = svc.call(
        "POST", "/v1/reservations", key=key, json={"account": "mine", "feature": "export.ai"}
    )
    assert r.status_code == 201, r.text
    assert svc.call("DELETE", f"/v1/reservations/{r.json()['id']}", key=key).status_code == 204
    # team (no dash) is not under team-*; an unknown account of its own is a 404 as well
    for account in ("team", "mine2", "team-unknown"):
        body = {"account": account, "feature": "export.ai"}
        assert svc.call("POST", "/v1/consume", key=key, json=body).status_code == 404
    listed = svc.call("GET", "/v1/accounts", key=key, params={"limit": 1})
    assert [a["id"] for a in listed.json()["accounts"]] == ["mine"]
    rest = svc.call("GET", "/v1/accounts", key=key, params={"cursor": listed.json()["next_cursor"]})
    assert [a["id"] for a in rest.json()["accounts"]] == ["team-a"]
    # the scope still counts: a bound decide key cannot change an account
    assert svc.call("PUT", "/v1/accounts/mine", key=key, json={"plan": "pro"}).status_code == 403


def test_a_key_bound_to_accounts_is_listed_with_them(service: Service) -> None:
    made = service.call("POST", "/v1/keys", json={"scope": "read", "accounts": ["acme"]}).json()
    listed = {k["id"]: k["accounts"] for k in service.call("GET", "/v1/keys").json()}
    assert listed[made["id"]] == ["acme"]
    assert listed["key_bootstrap"] is None  # every account


@pytest.mark.parametrize("accounts", [[], ["*"], ["a*b"], [""], "acme", [3], ["x"] * 101])
def test_bad_bindings_are_a_422_naming_accounts(sqlite_service: Service, accounts: object) -> None:
    r = sqlite_service.call("POST", "/v1/keys", json={"scope": "read", "accounts": accounts})
    assert r.status_code == 422, r.text
    assert r.json()["field"].startswith("accounts")  # accounts.0: the item


def test_every_public_method_of_the_limiter_is_bound() -> None:
    """A method added to AsyncLimiter must be placed in bound.py (checked or refused): one
    inherited would run on a limiter with no state (fails closed, but as a 500)."""
    public = {
        name
        for name, _ in inspect.getmembers(AsyncLimiter)
        if not name.startswith("_") or name in ("__aenter__", "__aexit__")
    }
    assert public <= set(vars(AccountBoundLimiter)), public - set(vars(AccountBoundLimiter))
