"""Decisions over HTTP on every server store: every status of CONTRACT section 5, headers,
exactly-the-cap under 16 threads, idempotent retries."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from urllib.parse import quote

import httpx
import pytest

from allowance import Client

from .service import Service


def consume(service: Service, **body: object) -> httpx.Response:
    return service.call("POST", "/v1/consume", json=body)


def test_accounts_are_created_then_changed(service: Service) -> None:
    none: dict[str, object] = {
        "overrides": {},
        "grants": [],
        "billing_anchor": None,
    }  # no own terms
    r = service.call("PUT", "/v1/accounts/acct-a", json={"plan": "pro", "seats": 3})
    assert (r.status_code, r.json()) == (201, {"id": "acct-a", "plan": "pro", "seats": 3, **none})
    r = service.call("PUT", "/v1/accounts/acct-a", json={"plan": "max"})
    assert (r.status_code, r.json()) == (200, {"id": "acct-a", "plan": "max", "seats": 1, **none})
    r = service.call("GET", "/v1/accounts/acct-a")
    assert (r.status_code, r.json()["plan"]) == (200, "max")
    r = service.call("GET", "/v1/accounts/nobody")
    assert r.status_code == 404
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["type"] == "urn:allowance:problem:unknown-account"


@pytest.mark.parametrize("account", ["team/42", "team/42/usage", "50%off", "a%2541", "x y"])
def test_account_ids_with_slashes_and_escapes(service: Service, account: str) -> None:
    """Any text is an account id, "/" and "%" included: percent-encoded in the path, each
    reaches its own account (not two segments, not decoded twice), by the routes and the
    Client alike."""
    path = f"/v1/accounts/{quote(account, safe='')}"
    r = service.call("PUT", path, json={"plan": "free"})
    assert (r.status_code, r.json()["id"]) == (201, account)
    r = service.call("GET", path)
    assert (r.status_code, r.json()["id"]) == (200, account)
    assert consume(service, account=account, feature="export.ai").status_code == 200
    r = service.call("GET", f"{path}/usage")
    assert r.status_code == 200 and r.json()["account"] == account
    assert {m["limit"]: m["used"] for m in r.json()["meters"]}["ai_exports"] == 1
    with Client(service.url, service.admin) as client:
        assert client.get_account(account).id == account
        assert {m.limit: m.used for m in client.usage(account)}["ai_exports"] == 1
    assert service.call("GET", "/v1/accounts/team").status_code == 404  # not a prefix match


def test_grant_denial_and_no_access(service: Service) -> None:
    service.account("acct-b", "free")
    r = consume(service, account="acct-b", feature="export.ai", amount=2)
    assert r.status_code == 200 and r.json()["granted"] == 2
    assert r.headers["RateLimit-Policy"] == '"ai_exports";q=2;w=604800'
    assert r.headers["RateLimit"] == '"ai_exports";r=0;t=604800'
    assert "Retry-After" not in r.headers
    r = consume(service, account="acct-b", feature="export.ai")
    assert r.status_code == 429
    assert r.json()["upgrade"] == "pro" and r.headers["Retry-After"] == "604800"
    r = consume(service, account="acct-b", feature="transform.virtual_model")
    assert r.status_code == 403
    assert (r.json()["reason"], r.json()["upgrade"]) == ("no_access", "pro")
    assert "RateLimit" not in r.headers
    r = service.call(
        "POST", "/v1/check", json={"account": "acct-b", "feature": "export.ai", "amount": 1}
    )
    assert r.status_code == 200 and r.json()["allowed"] is False  # check answers 200 always
    r = consume(service, account="nobody", feature="export.ai")
    assert r.status_code == 404


def test_reservations(service: Service) -> None:
    service.account("acct-c", "pro")
    body = {"account": "acct-c", "feature": "background.studio", "amount": 4, "ttl": 60}
    r = service.call("POST", "/v1/reservations", json=body)
    assert r.status_code == 201
    held = r.json()
    assert held["id"] and held["decision"]["granted"] == 4
    studio = _meter(service, "acct-c", "studio")
    assert studio["used"] == 4  # held units count as used
    r = service.call("POST", f"/v1/reservations/{held['id']}/commit")
    assert (r.status_code, r.json()) == (200, {"id": held["id"], "status": "committed"})
    second = service.call("POST", "/v1/reservations", json=body).json()
    r = service.call("DELETE", f"/v1/reservations/{second['id']}")
    assert r.status_code == 204 and r.content == b""
    assert _meter(service, "acct-c", "studio")["used"] == 4  # released units came back
    r = service.call("POST", "/v1/reservations/rsv_unknown/commit")
    assert r.status_code == 404
    too_many = {**body, "amount": 5000}
    r = service.call("POST", "/v1/reservations", json=too_many)
    assert r.status_code == 429 and r.json()["id"] is None


def test_reservation_commit_after_expiry_is_gone(service: Service) -> None:
    service.account("acct-d", "pro")
    body = {"account": "acct-d", "feature": "background.studio", "amount": 1, "ttl": 1}
    held = service.call("POST", "/v1/reservations", json=body).json()
    r = service.call("GET", "/v1/accounts/acct-d")  # any call; then move time past expiry
    assert r.status_code == 200
    now = _now(service)
    service.set_time(now + 5)
    r = service.call("POST", f"/v1/reservations/{held['id']}/commit")
    assert r.status_code == 410
    assert r.json()["type"] == "urn:allowance:problem:reservation-expired"


def test_exactly_the_cap_from_16_threads(service: Service) -> None:
    service.account("acct-race", "pro")  # 30 AI exports a week

    def one(_: int) -> int:
        with httpx.Client(base_url=service.url, timeout=30) as http:
            r = http.post(
                "/v1/consume",
                json={"account": "acct-race", "feature": "export.ai"},
                headers={"Authorization": f"Bearer {service.admin}"},
            )
            return r.status_code

    with ThreadPoolExecutor(16) as pool:
        statuses = list(pool.map(one, range(80)))
    assert (statuses.count(200), statuses.count(429)) == (30, 50)
    assert _meter(service, "acct-race", "ai_exports")["used"] == 30


def test_idempotent_retries_charge_once(service: Service) -> None:
    service.account("acct-e", "pro")
    body = {"account": "acct-e", "feature": "export.ai", "amount": 3}
    first = service.call("POST", "/v1/consume", json={**body, "idempotency_key": "job-1"})
    again = service.call("POST", "/v1/consume", json={**body, "idempotency_key": "job-1"})
    assert first.json() == again.json() and first.status_code == again.status_code == 200
    by_header = service.call("POST", "/v1/consume", json=body, headers={"Idempotency-Key": "j2"})
    again = service.call("POST", "/v1/consume", json=body, headers={"Idempotency-Key": "j2"})
    assert by_header.json() == again.json()
    assert _meter(service, "acct-e", "ai_exports")["used"] == 6
    r = service.call(
        "POST", "/v1/consume", json={**body, "amount": 4}, headers={"Idempotency-Key": "j2"}
    )
    assert r.status_code == 409
    assert r.json()["type"] == "urn:allowance:problem:idempotency-conflict"
    r = service.call(
        "POST",
        "/v1/consume",
        json={**body, "idempotency_key": "a"},
        headers={"Idempotency-Key": "b"},
    )
    assert r.status_code == 422 and r.json()["field"] == "idempotency_key"
    assert _meter(service, "acct-e", "ai_exports")["used"] == 6


def test_decisions_after_refused_transactions_still_work(service: Service) -> None:
    """A transaction that fails before writing (a reused idempotency key) must leave the
    store's connections fit for every later decision: on PostgreSQL a ROLLBACK there made
    psycopg drop the next statement it prepared ("prepared statement _pg3_N does not
    exist"), which showed under concurrent requests on several connections."""
    service.account("after", "max")
    features = ["background.studio", "background.studio_hd", "transform.product_staging"]
    features += ["export.ai", "export.standard", "background.standard"]

    def one(i: int) -> int:
        with httpx.Client(base_url=service.url, timeout=30) as http:
            body = {"account": "after", "feature": features[i % len(features)]}
            headers = {"Authorization": f"Bearer {service.admin}"}
            return http.post("/v1/consume", json=body, headers=headers).status_code

    statuses: list[int] = []
    for n in range(4):
        for amount in (1, 2):  # the second reuses the key for another amount: refused
            body = {"account": "after", "feature": "export.ai", "amount": amount}
            r = service.call("POST", "/v1/consume", json={**body, "idempotency_key": f"k{n}"})
            assert r.status_code == (200 if amount == 1 else 409)
        with ThreadPoolExecutor(16) as pool:
            statuses += pool.map(one, range(48))
    assert 503 not in statuses and set(statuses) <= {200, 429}


def test_policy_and_health(service: Service) -> None:
    r = service.call("GET", "/v1/policy")
    assert r.status_code == 200 and [p["name"] for p in r.json()["plans"]] == ["free", "pro", "max"]
    assert service.call("GET", "/healthz", key=None).json() == {"status": "ok"}
    assert service.call("GET", "/readyz", key=None).json() == {"status": "ready"}


def _meter(service: Service, account: str, limit: str) -> dict[str, object]:
    usage = service.call("GET", f"/v1/accounts/{account}/usage").json()
    return next(m for m in usage["meters"] if m["limit"] == limit)


def _now(service: Service) -> float:
    return float(service.clock_file.read_text())


def test_the_fast_path_answers_like_the_routes(service: Service) -> None:
    """A whole body in one piece takes the plain-ASGI fast path; the same body sent in chunks
    goes through FastAPI's route. Both must answer byte for byte alike."""
    import json

    def send(path: str, body: dict[str, object], chunked: bool) -> httpx.Response:
        raw = json.dumps(body).encode()
        content = iter([raw[:5], raw[5:]]) if chunked else raw
        return service.call(
            "POST", path, content=content, headers={"content-type": "application/json"}
        )

    cases: list[tuple[str, dict[str, object]]] = [
        ("/v1/consume", {"feature": "export.ai", "amount": 2}),
        ("/v1/consume", {"feature": "export.ai", "amount": 1}),  # the free plan's cap: 429
        ("/v1/consume", {"feature": "transform.virtual_model"}),  # 403 no access
        ("/v1/check", {"feature": "export.ai"}),
        ("/v1/consume", {"feature": "export.ai", "amount": 0}),  # 422
        ("/v1/consume", {"feature": "background.standard", "user": "u1", "partial": True}),
    ]
    for account in ("fast", "slow"):
        service.account(account, "free")
    answers = {}
    for chunked, account in ((False, "fast"), (True, "slow")):
        answers[chunked] = [
            send(path, {**body, "account": account}, chunked) for path, body in cases
        ]
    for fast, slow in zip(answers[False], answers[True], strict=True):
        assert fast.status_code == slow.status_code
        assert fast.content.replace(b"fast", b"slow") == slow.content
        keep = ("content-type", "retry-after", "ratelimit-policy", "ratelimit")
        assert {k: fast.headers.get(k) for k in keep} == {k: slow.headers.get(k) for k in keep}
    assert [a.status_code for a in answers[False]] == [200, 429, 403, 200, 422, 200]
