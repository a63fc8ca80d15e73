"""A client's mistakes: each gets its problem+json (never a 5xx, never a traceback) and
changes nothing."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from .service import Service

PROBLEM = "application/problem+json"


@pytest.fixture(scope="module")
def svc(sqlite_service: Service) -> Iterator[Service]:
    sqlite_service.account("bad", "pro")
    yield sqlite_service


def used(service: Service) -> dict[str, int]:
    usage = service.call("GET", "/v1/accounts/bad/usage").json()
    return {m["limit"]: m["used"] for m in usage["meters"]}


def assert_problem(r: httpx.Response, status: int, field: str | None = None) -> dict[str, object]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == PROBLEM
    body: dict[str, object] = r.json()
    assert {"type", "title", "status", "detail"} <= set(body) and body["status"] == status
    assert "Traceback" not in r.text
    if field is not None:
        assert body["field"] == field, body
    return body


GOOD = {"account": "bad", "feature": "export.ai"}
BODIES: list[tuple[str, object, int, str | None]] = [
    ("amount zero", {**GOOD, "amount": 0}, 422, "amount"),
    ("amount huge", {**GOOD, "amount": 10**30}, 422, "amount"),
    ("amount as text", {**GOOD, "amount": "1"}, 422, "amount"),
    ("amount as float", {**GOOD, "amount": 1.5}, 422, "amount"),
    ("amount as bool", {**GOOD, "amount": True}, 422, "amount"),
    ("partial as text", {**GOOD, "partial": "yes"}, 422, "partial"),
    ("unknown feature", {**GOOD, "feature": "export.aii"}, 422, "feature"),
    ("account missing", {"feature": "export.ai"}, 422, "account"),
    ("account empty", {**GOOD, "account": ""}, 422, "account"),
    ("account too long", {**GOOD, "account": "a" * 201}, 422, "account"),
    ("account with control chars", {**GOOD, "account": "a\nb"}, 422, "account"),
    ("unknown member", {**GOOD, "ammount": 2}, 422, "ammount"),
    ("a list", [GOOD], 422, "body"),
    ("null", None, 422, "body"),
]


@pytest.mark.parametrize(("case", "body", "status", "field"), BODIES, ids=[b[0] for b in BODIES])
def test_bad_bodies(svc: Service, case: str, body: object, status: int, field: str) -> None:
    before = used(svc)
    for path in ("/v1/consume", "/v1/check", "/v1/reservations"):
        r = svc.call(
            "POST", path, content=json.dumps(body), headers={"content-type": "application/json"}
        )
        assert_problem(r, status, field)
    assert used(svc) == before


def test_malformed_json_is_400(svc: Service) -> None:
    before = used(svc)
    r = svc.call(
        "POST",
        "/v1/consume",
        content=b'{"account": "bad",',
        headers={"content-type": "application/json"},
    )
    assert_problem(r, 400)
    assert used(svc) == before


def test_not_json_is_415(svc: Service) -> None:
    r = svc.call(
        "POST",
        "/v1/consume",
        content=b"account=bad",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert_problem(r, 415)


def test_a_megabyte_body_is_413(svc: Service) -> None:
    before = used(svc)
    big = json.dumps({**GOOD, "user": "x" * (1 << 20)})
    r = svc.call("POST", "/v1/consume", content=big, headers={"content-type": "application/json"})
    assert_problem(r, 413)

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        yield b'{"account": "bad", "feature": "export.ai", "user": "'
        for _ in range(16):
            yield b"x" * 65536
        yield b'"}'

    r = svc.call(
        "POST", "/v1/consume", content=chunks(), headers={"content-type": "application/json"}
    )
    assert_problem(r, 413)
    assert used(svc) == before


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/nowhere", 404),
        ("GET", "/v1/nowhere", 404),
        ("GET", "/v1/consume", 405),
        ("PATCH", "/v1/accounts/bad", 405),
        ("DELETE", "/healthz", 405),
    ],
)
def test_unknown_routes_and_methods(svc: Service, method: str, path: str, status: int) -> None:
    assert_problem(svc.call(method, path), status)


def test_bad_account_settings(svc: Service) -> None:
    assert_problem(svc.call("PUT", "/v1/accounts/x1", json={"plan": "gold"}), 422, "plan")
    assert_problem(
        svc.call("PUT", "/v1/accounts/x1", json={"plan": "pro", "seats": 0}), 422, "seats"
    )
    assert svc.call("GET", "/v1/accounts/x1").status_code == 404  # nothing was created


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Bearer",
        "Bearer  x y",
        "Basic YWxhZGRpbjpvcGVuc2VzYW1l",
        "Bearer alw_wrong",
        "alw_x",
    ],
)
def test_missing_and_bad_keys_are_401(svc: Service, authorization: str | None) -> None:
    before = used(svc)
    headers = {} if authorization is None else {"Authorization": authorization}
    r = svc.call("POST", "/v1/consume", key=None, json=GOOD, headers=headers)
    assert_problem(r, 401)
    assert r.headers["WWW-Authenticate"].startswith("Bearer")
    assert used(svc) == before


def test_malformed_json_without_a_key_is_still_401(svc: Service) -> None:
    r = svc.call(
        "POST", "/v1/consume", key=None, content=b"{", headers={"content-type": "application/json"}
    )
    assert_problem(r, 401)


def test_wrong_scopes_are_403(svc: Service) -> None:
    read, decide = svc.new_key("read"), svc.new_key("decide")
    before = used(svc)
    assert_problem(svc.call("POST", "/v1/consume", key=read, json=GOOD), 403)
    assert_problem(svc.call("PUT", "/v1/accounts/bad", key=decide, json={"plan": "max"}), 403)
    assert_problem(svc.call("POST", "/v1/keys", key=decide, json={"scope": "admin"}), 403)
    assert_problem(svc.call("DELETE", "/v1/keys/key_x", key=read), 403)
    assert svc.call("GET", "/v1/accounts/bad", key=read).json()["plan"] == "pro"
    assert svc.call("POST", "/v1/consume", key=decide, json=GOOD).status_code == 200
    after = used(svc)
    assert after["ai_exports"] == before["ai_exports"] + 1


def test_store_outage_is_503_then_recovers(tmp_path_factory: pytest.TempPathFactory) -> None:
    import servers

    try:
        redis = servers.start_redis()
    except servers.ServerUnavailable as exc:
        pytest.skip(f"no redis-server: {exc}")
    tmp = tmp_path_factory.mktemp("outage")
    service = Service.start(redis.url + "?prefix=outage", tmp)
    try:
        service.account("o", "pro")
        assert service.call("POST", "/v1/consume", json={**GOOD, "account": "o"}).status_code == 200
        redis.stop()
        r = service.call("POST", "/v1/consume", json={**GOOD, "account": "o"})
        body = assert_problem(r, 503)
        assert r.headers["Retry-After"] == "1" and "127.0.0.1" not in str(body)
        assert service.call("GET", "/readyz", key=None).status_code == 503
        assert service.call("GET", "/healthz", key=None).status_code == 200
    finally:
        service.stop()
        redis.stop()
    assert "store error" in service.log and "Traceback" not in service.log
