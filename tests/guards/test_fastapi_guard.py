"""``allowance.fastapi.limit`` in the example app (real socket) and in small apps built here."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from fastapi import Depends, FastAPI, HTTPException, Request

from allowance import AsyncLimiter, Decision, Limiter, ManualClock
from allowance.fastapi import header, install, limit

from .support import START

PROBLEM = "urn:allowance:problem:"
ACME = {"X-Account": "acme"}  # Pro: 2 transforms a minute, 30 a day


def problem(response: httpx.Response, status: int, slug: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["type"] == PROBLEM + slug
    assert body["status"] == status
    assert "Traceback" not in response.text
    return body


def test_grant_answers_200_with_rate_limit_headers(client: httpx.Client) -> None:
    r = client.post("/generate", headers=ACME)
    assert r.status_code == 200, r.text
    assert r.json() == {"images": 1, "remaining": 1}
    assert r.headers["RateLimit-Policy"] == '"transform_rate";q=2;w=60'
    assert r.headers["RateLimit"] == '"transform_rate";r=1;t=60'
    assert "Retry-After" not in r.headers


def test_the_dependencies_form_guards_and_adds_headers(client: httpx.Client) -> None:
    r = client.post("/backgrounds/studio", headers=ACME)
    assert r.status_code == 200, r.text
    assert r.headers["RateLimit"] == '"studio";r=3999;t=86400'
    denied = client.post("/backgrounds/studio", headers={"X-Account": "nobody"})
    problem(denied, 403, "unknown-account")


def test_limit_reached_answers_429_with_the_decision(
    client: httpx.Client, clock: ManualClock
) -> None:
    for _ in range(2):
        assert client.post("/generate", headers=ACME).status_code == 200
    r = client.post("/generate", headers=ACME)
    body = problem(r, 429, "limit-reached")
    assert r.headers["Retry-After"] == "60"
    assert r.headers["RateLimit"] == '"transform_rate";r=0;t=60'
    assert body["reason"] == "limit_reached"
    assert body["limit"] == "transform_rate"
    assert body["resets_at"] == "2026-11-23T15:11:00Z"
    assert body["upgrade"] == "max"
    assert body["granted"] == 0
    assert body["detail"] == body["message"]
    assert "upgrade to Max for 5 a minute" in body["message"]
    clock.advance(60)  # resets_at: the request fits again
    assert client.post("/generate", headers=ACME).status_code == 200


def test_a_batch_that_does_not_fit_charges_nothing(client: httpx.Client) -> None:
    problem(client.post("/generate?count=3", headers=ACME), 429, "limit-reached")
    r = client.post("/generate?count=2", headers=ACME)
    assert r.status_code == 200
    assert r.json() == {"images": 2, "remaining": 0}


def test_no_access_answers_403_with_the_upgrade(client: httpx.Client) -> None:
    r = client.post("/generate", headers={"X-Account": "corner-shop"})
    body = problem(r, 403, "no-access")
    assert body["reason"] == "no_access"
    assert body["upgrade"] == "pro"
    assert "Retry-After" not in r.headers


def test_a_request_without_its_account_gets_a_problem(client: httpx.Client) -> None:
    body = problem(client.post("/generate"), 403, "account-unresolved")
    assert body["detail"] == "the X-Account header is missing"
    assert body["field"] == "account"


def test_a_bad_amount_is_the_clients_422(client: httpx.Client) -> None:
    for count in ("x", "0", "2000000"):
        body = problem(
            client.post(f"/generate?count={count}", headers=ACME), 422, "invalid-request"
        )
        assert body["field"] == "amount"
    assert client.post("/generate?count=2", headers=ACME).status_code == 200  # none charged


def test_concurrent_requests_never_over_grant(client: httpx.Client) -> None:
    with ThreadPoolExecutor(20) as pool:
        codes = list(
            pool.map(lambda _: client.post("/generate", headers=ACME).status_code, range(20))
        )
    assert sorted(codes) == [200] * 2 + [429] * 18


# --- small apps: the guard's options, with and without install() ------------------------------


def run(app: FastAPI, method: str, path: str, **kwargs: Any) -> httpx.Response:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as http:
            return await http.request(method, path, **kwargs)

    return asyncio.run(go())


def guarded(
    dependency: Callable[..., Any], *, installed: bool = True, default: Any = None
) -> FastAPI:
    """An app with one guarded route; ``default``: its ``app.state.allowance``."""
    app = FastAPI()
    if installed:
        install(app, default)
    elif default is not None:
        app.state.allowance = default

    @app.post("/run")
    async def route(decision: Decision = Depends(dependency)) -> dict[str, Any]:  # noqa: B008
        return {"remaining": decision.remaining}

    return app


@pytest.fixture
def limiter() -> Limiter:
    lim = Limiter(clock=ManualClock(START))
    lim.set_account("acme", "free")  # 2 AI exports a week
    return lim


def test_without_install_fastapi_still_answers_the_status_and_headers(limiter: Limiter) -> None:
    app = guarded(limit("export.ai", account="acme", limiter=limiter), installed=False)
    for _ in range(2):
        assert run(app, "POST", "/run").status_code == 200
    r = run(app, "POST", "/run")
    assert r.status_code == 429
    assert r.headers["Retry-After"] == str(7 * 86400)
    assert r.headers["RateLimit-Policy"] == '"ai_exports";q=2;w=604800'
    detail = r.json()["detail"]  # FastAPI's own body shape, the problem inside
    assert detail["type"] == PROBLEM + "limit-reached"
    assert detail["resets_at"] == "2026-11-30T15:10:00Z"
    assert detail["upgrade"] == "pro"


def test_the_limiter_comes_from_app_state_and_extractors_may_be_async() -> None:
    lim = AsyncLimiter(clock=ManualClock(START))
    asyncio.run(lim.set_account("acme", "free"))

    async def account(request: Request) -> str:
        return request.query_params["account"]

    app = guarded(limit("export.ai", account=account, amount=2), default=lim)
    assert run(app, "POST", "/run?account=acme").json() == {"remaining": 0}
    assert run(app, "POST", "/run?account=acme").status_code == 429


def test_check_only_charges_nothing(limiter: Limiter) -> None:
    app = guarded(limit("export.ai", account="acme", limiter=limiter, check_only=True))
    for _ in range(3):
        assert run(app, "POST", "/run").json() == {"remaining": 1}
    assert limiter.usage("acme")[0].used == 0


def test_an_idempotent_retry_charges_once(limiter: Limiter) -> None:
    dep = limit("export.ai", account="acme", limiter=limiter, idempotency_key=header("Job"))
    app = guarded(dep)
    for _ in range(3):
        assert run(app, "POST", "/run", headers={"Job": "j-1"}).json() == {"remaining": 1}
    assert [m.used for m in limiter.usage("acme") if m.limit == "ai_exports"] == [1]


def test_an_extractors_http_exception_passes_through(limiter: Limiter) -> None:
    def account(request: Request) -> str:
        raise HTTPException(401, "log in first")

    r = run(guarded(limit("export.ai", account=account, limiter=limiter)), "POST", "/run")
    assert r.status_code == 401
    assert r.json() == {"detail": "log in first"}


def test_a_crashing_extractor_is_a_403_not_a_traceback(
    limiter: Limiter, caplog: pytest.LogCaptureFixture
) -> None:
    def account(request: Request) -> str:
        return request.headers["X-Account"]  # KeyError: the app's own mistake

    r = run(guarded(limit("export.ai", account=account, limiter=limiter)), "POST", "/run")
    assert problem(r, 403, "account-unresolved")["detail"] == (
        "the request does not identify an account"
    )
    assert "KeyError" not in r.text
    assert "KeyError" in caplog.text  # the app's developer gets the traceback in the log


def test_an_account_extractor_that_finds_nothing_is_a_403(limiter: Limiter) -> None:
    dep = limit("export.ai", account=lambda request: request.headers.get("X-Account"))
    r = run(guarded(dep, default=limiter), "POST", "/run")
    problem(r, 403, "account-unresolved")
    assert limiter.usage("acme")[0].used == 0


@pytest.mark.parametrize(
    ("dependency", "why"),
    [
        (limit("export.nope", account="acme"), "unknown feature 'export.nope'"),
        (limit("export.ai", account="acme"), "no limiter is configured"),
    ],
)
def test_a_misconfigured_guard_is_a_500_problem_and_an_error_log(
    limiter: Limiter, dependency: Any, why: str, caplog: pytest.LogCaptureFixture
) -> None:
    default = limiter if "unknown" in why else None
    r = run(guarded(dependency, default=default), "POST", "/run")
    body = problem(r, 500, "guard-misconfigured")
    assert why in body["detail"]
    assert [r.levelname for r in caplog.records if r.name == "allowance.guard"] == ["ERROR"]
