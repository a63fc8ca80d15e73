"""schemathesis against a real ``allowance serve`` (SQLite) and its own ``/openapi.json``.

Four passes over every operation, with the admin key, a ``decide`` key, a ``read`` key and
no key. Every answer must be documented: no 5xx, a documented status code and content type,
a body and headers that match the schema, schema-invalid input refused with a 4xx, an
undeclared method answered 405. Where the key is missing or its scope too small, the answer
must also be the documented 401 or 403 problem.

The operations are collected from the app's schema built in this process (pytest needs them
before any fixture runs); ``test_served_schema_is_the_one_tested`` holds the served
``/openapi.json`` equal to it, and every request goes to the served process.

Bounded and reproducible: a fixed number of examples per operation and phase, derandomized
generation with a fixed seed, no shrinking: about 2,500 requests, 15 s.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
import schemathesis
from schemathesis.checks import (
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
)

from allowance.aio import AsyncLimiter
from allowance.http.app import create_app

from .service import Service

if TYPE_CHECKING:  # schemathesis's own name for Case[its OpenAPI APIOperation]
    from schemathesis.specs.openapi.schemas import OpenApiCase

pytestmark = pytest.mark.slow

MAX_EXAMPLES = 15
SEED = 20261123
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
    negative_data_rejection,
    unsupported_method,
]
ADMIN_ONLY = {"PUT /v1/accounts/{account_id}", "GET /v1/keys", "POST /v1/keys"}
ADMIN_ONLY |= {"DELETE /v1/keys/{key_id}"}
DECIDE_ONLY = {"POST /v1/consume", "POST /v1/check", "POST /v1/reservations"}
DECIDE_ONLY |= {"POST /v1/reservations/{reservation_id}/commit"}
DECIDE_ONLY |= {"DELETE /v1/reservations/{reservation_id}"}
PUBLIC = {"/healthz", "/readyz", "/metrics"}

DOCUMENT = create_app(AsyncLimiter(None, "memory://")).openapi()
schema = schemathesis.openapi.from_dict(DOCUMENT)
schema.config.generation.update(max_examples=MAX_EXAMPLES, deterministic=True, no_shrink=True)
schema.config.seed = SEED


@pytest.fixture(scope="module")
def served(sqlite_service: Service) -> Service:
    """The module's service, with accounts the generated requests may hit."""
    for account, plan in (("acme", "pro"), ("free", "free"), ("max", "max")):
        sqlite_service.account(account, plan)
    return sqlite_service


@pytest.fixture(scope="module")
def decide_key(served: Service) -> str:
    return served.new_key("decide")


@pytest.fixture(scope="module")
def read_key(served: Service) -> str:
    return served.new_key("read")


def _call(case: OpenApiCase, service: Service, key: str | None, checks: list[Any] = CHECKS) -> Any:
    headers = {k: v for k, v in (case.headers or {}).items() if k.lower() != "authorization"}
    if key is not None:
        headers["Authorization"] = "Bearer " + key
    # a plain dict, as schemathesis's own Auth examples assign; its annotation says
    # CaseInsensitiveDict only
    case.headers = headers  # type: ignore[assignment]
    return case.call_and_validate(base_url=service.url, checks=checks, timeout=30)


def _refused_for_scope(case: OpenApiCase, response: Any, guarded: set[str]) -> bool:
    """Whether this answer must be the 403 of a too small key: the operation needs more,
    the method is the operation's own (the coverage phase also tries others, for 405), and
    the body was not refused first (too large, not JSON)."""
    own = case.method.upper() == case.operation.method.upper()
    return own and case.operation.label in guarded and response.status_code not in (400, 413)


def _problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"][0].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["status"] == status and body["type"].startswith("urn:allowance:problem:")
    return body


def test_served_schema_is_the_one_tested(served: Service) -> None:
    assert served.http.get("/openapi.json").json() == DOCUMENT


@schema.parametrize()
def test_admin_answers_are_documented(case: OpenApiCase, served: Service) -> None:
    _call(case, served, served.admin)


@schema.parametrize()
def test_decide_key_answers_are_documented(
    case: OpenApiCase, served: Service, decide_key: str
) -> None:
    response = _call(case, served, decide_key)
    if _refused_for_scope(case, response, ADMIN_ONLY):
        _problem(response, 403)


@schema.parametrize()
def test_read_key_answers_are_documented(case: OpenApiCase, served: Service, read_key: str) -> None:
    response = _call(case, served, read_key)
    if _refused_for_scope(case, response, ADMIN_ONLY | DECIDE_ONLY):
        _problem(response, 403)


@schema.parametrize()
def test_no_key_answers_are_documented(case: OpenApiCase, served: Service) -> None:
    # no unsupported_method check: a request without a key is refused (401) before routing,
    # so an unknown method on a /v1 path gets 401, not 405
    response = _call(case, served, None, [c for c in CHECKS if c is not unsupported_method])
    if case.path not in PUBLIC and case.method.upper() == case.operation.method.upper():
        body = _problem(response, 401)
        assert response.headers["www-authenticate"][0].startswith("Bearer")
        assert "key" in body["detail"]
