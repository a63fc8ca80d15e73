"""Bodies and paths built to break the parser or slip past validation (issue 10, defects 2 and
8): each gets a 4xx problem+json, an access line, no traceback, and no parsing before the key
is known to be good enough."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from .service import Service
from .test_bad_input import GOOD, assert_problem, used

JSON = {"content-type": "application/json"}
DEEP = ("[" * 1000 + "]" * 1000).encode()
NEST = b"[" * 5000 + b"]" * 5000
DEEP_MEMBER = b'{"account": "bad", "feature": "export.ai", "user": %s}' % NEST
DEEP_OBJECT = b'{"a":' * 1000 + b"1" + b"}" * 1000
JSON_ROUTES = [
    ("POST", "/v1/consume"),
    ("POST", "/v1/check"),
    ("POST", "/v1/reservations"),
    ("POST", "/v1/keys"),
    ("PUT", "/v1/accounts/bad"),
]


@pytest.fixture(scope="module")
def svc(sqlite_service: Service) -> Service:
    sqlite_service.account("bad", "pro")
    return sqlite_service


def access_line(service: Service, path: str, status: int) -> dict[str, object]:
    """The service's access line for ``path`` answered ``status`` (lines are batched)."""
    deadline = time.monotonic() + 5
    while True:
        for text in reversed(service.log.splitlines()):
            if text.startswith("{"):
                line = json.loads(text)
                if line.get("path") == path and line.get("status") == status:
                    return dict(line)
        assert time.monotonic() < deadline, f"no access line for {path} {status}"
        time.sleep(0.05)


@pytest.mark.parametrize("body", [DEEP, DEEP_MEMBER, DEEP_OBJECT], ids=["list", "member", "obj"])
@pytest.mark.parametrize(("method", "path"), JSON_ROUTES)
def test_deeply_nested_json_is_400(svc: Service, method: str, path: str, body: bytes) -> None:
    before = used(svc)
    r = svc.call(method, path, content=body, headers=JSON)
    assert "nested too deeply" in str(assert_problem(r, 400)["detail"])
    access_line(svc, path, 400)
    assert used(svc) == before
    assert "Traceback" not in svc.log and "RecursionError" not in svc.log


@pytest.mark.parametrize(("method", "path"), JSON_ROUTES)
def test_an_unknown_key_is_401_before_the_body_is_parsed(
    svc: Service, method: str, path: str
) -> None:
    r = svc.call(method, path, key="alw_nobody", content=DEEP, headers=JSON)
    assert_problem(r, 401)
    access_line(svc, path, 401)
    assert "Traceback" not in svc.log


def test_a_small_scope_is_403_before_the_body_is_parsed(svc: Service) -> None:
    decide, read = svc.new_key("decide"), svc.new_key("read")
    for body in (b"{", DEEP, b'{"scope": 1}'):
        assert_problem(svc.call("POST", "/v1/keys", key=decide, content=body, headers=JSON), 403)
    for path in ("/v1/consume", "/v1/check", "/v1/reservations"):
        assert_problem(svc.call("POST", path, key=read, content=b"{", headers=JSON), 403)
        assert_problem(svc.call("POST", path, key=read, content=DEEP, headers=JSON), 403)
    r = svc.call("PUT", "/v1/accounts/bad", key=decide, content=b"{", headers=JSON)
    assert_problem(r, 403)
    assert svc.call("GET", "/v1/accounts/bad", key=read).json()["plan"] == "pro"


STRICT: list[tuple[str, str, dict[str, object], str]] = [
    ("ttl true", "/v1/reservations", {**GOOD, "ttl": True}, "ttl"),
    ("ttl text", "/v1/reservations", {**GOOD, "ttl": "5"}, "ttl"),
    ("ttl null", "/v1/reservations", {**GOOD, "ttl": None}, "ttl"),
    ("amount text on reserve", "/v1/reservations", {**GOOD, "amount": "2"}, "amount"),
    ("amount float on reserve", "/v1/reservations", {**GOOD, "amount": 2.0}, "amount"),
    ("partial number", "/v1/consume", {**GOOD, "partial": 1}, "partial"),
    ("partial text on check", "/v1/check", {**GOOD, "partial": "true"}, "partial"),
    ("account number", "/v1/consume", {**GOOD, "account": 7}, "account"),
    ("user number", "/v1/consume", {**GOOD, "user": 7}, "user"),
    ("idempotency key number", "/v1/consume", {**GOOD, "idempotency_key": 7}, "idempotency_key"),
    ("seats true", "/v1/accounts/bad", {"plan": "pro", "seats": True}, "seats"),
    ("seats text", "/v1/accounts/bad", {"plan": "pro", "seats": "2"}, "seats"),
    ("plan number", "/v1/accounts/bad", {"plan": 1}, "plan"),
    ("key name number", "/v1/keys", {"scope": "read", "name": 5}, "name"),
]


@pytest.mark.parametrize(("case", "path", "body", "field"), STRICT, ids=[s[0] for s in STRICT])
def test_types_are_strict(svc: Service, case: str, path: str, body: object, field: str) -> None:
    before = used(svc)
    method = "PUT" if path.startswith("/v1/accounts/") else "POST"
    assert_problem(svc.call(method, path, json=body), 422, field)
    assert used(svc) == before


def test_a_whole_ttl_is_still_a_ttl(svc: Service) -> None:
    r = svc.call("POST", "/v1/reservations", json={**GOOD, "ttl": 60})
    assert r.status_code == 201, r.text
    assert svc.call("DELETE", f"/v1/reservations/{r.json()['id']}").status_code == 204


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("PATCH", "/v1/accounts/bad", {"GET", "PUT"}),
        ("DELETE", "/v1/accounts/bad", {"GET", "PUT"}),
        ("DELETE", "/v1/keys", {"GET", "POST"}),
        ("PUT", "/v1/keys", {"GET", "POST"}),
        ("GET", "/v1/consume", {"POST"}),
        ("POST", "/v1/accounts/bad/usage", {"GET"}),
    ],
)
def test_405_lists_every_method_of_the_path(
    svc: Service, method: str, path: str, allowed: set[str]
) -> None:
    r = svc.call(method, path)
    assert_problem(r, 405)
    assert {m.strip() for m in r.headers["Allow"].split(",")} == allowed


@pytest.mark.parametrize(
    "path",
    [
        "/v1/accounts/%ff",
        "/v1/accounts/%fe/usage",
        "/v1/accounts/a%c3",
        "/v1/accounts/%ed%a0%80",  # a surrogate, encoded: not UTF-8
        "/v1/keys/%ff",
        "/v1/reservations/%80",
    ],
)
def test_invalid_utf8_in_the_path_is_400(svc: Service, path: str) -> None:
    method = "DELETE" if not path.startswith("/v1/accounts/") else "GET"
    assert_problem(svc.call(method, path), 400)


def test_ff_and_fe_are_not_one_account(svc: Service) -> None:
    for raw in ("%ff", "%fe"):
        r = svc.call("PUT", f"/v1/accounts/{raw}", json={"plan": "pro"})
        assert_problem(r, 400)
    assert svc.call("GET", "/v1/accounts/%EF%BF%BD").status_code == 404  # nothing was created
    ok = svc.call("PUT", "/v1/accounts/caf%C3%A9", json={"plan": "pro"})
    assert ok.status_code in (200, 201), ok.text
    assert svc.call("GET", "/v1/accounts/caf%C3%A9").json()["id"] == "café"


def test_deep_json_over_a_raw_socket_is_not_a_500(svc: Service) -> None:
    """As a client with a valid key and no HTTP library would send it: the status line."""
    with httpx.Client(base_url=svc.url) as plain:
        r = plain.post(
            "/v1/consume",
            content=DEEP,
            headers={**JSON, "Authorization": f"Bearer {svc.admin}"},
        )
    assert r.status_code == 400 and r.headers["content-type"] == "application/problem+json"
