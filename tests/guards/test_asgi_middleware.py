"""``allowance.asgi.LimitMiddleware``: the example app's /exports routes (real socket) and a
bare ASGI app without any framework."""

from __future__ import annotations

import asyncio
import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import Receive, Scope, Send

from allowance import AsyncLimiter, Limiter, ManualClock
from allowance.asgi import LimitMiddleware, Rule, header

from .support import START
from .test_fastapi_guard import problem

ACME = {"X-Account": "acme"}  # Pro: 30 AI exports a week
SHOP = {"X-Account": "corner-shop"}  # Free: 2 AI exports a week


def test_grant_reaches_the_app_with_rate_limit_headers(client: httpx.Client) -> None:
    r = client.post("/exports/report", headers=ACME)
    assert r.status_code == 200, r.text
    assert r.json() == {"exported": "report"}
    assert r.headers["RateLimit-Policy"] == '"ai_exports";q=30;w=604800'
    assert r.headers["RateLimit"] == '"ai_exports";r=29;t=604800'


def test_limit_reached_is_answered_by_the_middleware(
    client: httpx.Client, clock: ManualClock
) -> None:
    for _ in range(2):
        assert client.post("/exports/a", headers=SHOP).status_code == 200
    clock.advance(3600)
    r = client.post("/exports/b", headers=SHOP)
    body = problem(r, 429, "limit-reached")
    assert r.headers["Retry-After"] == str(7 * 86400 - 3600)
    assert r.headers["RateLimit"] == f'"ai_exports";r=0;t={7 * 86400 - 3600}'
    assert body["limit"] == "ai_exports"
    assert body["resets_at"] == "2026-11-30T15:10:00Z"
    assert body["upgrade"] == "pro"
    assert "exported" not in body


def test_unmatched_requests_pass_through_untouched(client: httpx.Client) -> None:
    r = client.get("/health")
    assert r.status_code == 200
    assert "RateLimit" not in r.headers
    assert client.get("/exports/a", headers=SHOP).status_code == 405  # POST only
    assert client.post("/exportsx", headers=SHOP).status_code == 404  # not under /exports
    for _ in range(2):  # none of the above was charged
        assert client.post("/exports/a", headers=SHOP).status_code == 200


def test_a_request_without_its_account_gets_a_problem(client: httpx.Client) -> None:
    body = problem(client.post("/exports/a"), 403, "account-unresolved")
    assert body["detail"] == "the X-Account header is missing"


def test_concurrent_requests_never_over_grant(client: httpx.Client) -> None:
    with ThreadPoolExecutor(10) as pool:
        codes = list(
            pool.map(lambda _: client.post("/exports/a", headers=SHOP).status_code, range(10))
        )
    assert sorted(codes) == [200] * 2 + [429] * 8


# --- a bare ASGI app ------------------------------------------------------------------------


class Counter:
    """An ASGI app that counts its calls and sets one header of its own."""

    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.calls += 1
        headers = [(b"content-type", b"application/json"), (b"ratelimit", b"app's own")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": json.dumps({"ok": True}).encode()})


def run(app: Any, method: str, path: str, **kwargs: Any) -> httpx.Response:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as http:
            return await http.request(method, path, **kwargs)

    return asyncio.run(go())


@pytest.fixture
def limiter() -> Limiter:
    lim = Limiter(clock=ManualClock(START))
    lim.set_account("shop", "free")
    lim.set_account("acme", "pro")
    return lim


def test_no_access_is_answered_403_and_the_app_is_not_called(limiter: Limiter) -> None:
    inner = Counter()
    app = LimitMiddleware(inner, limiter, [Rule("/tools", "transform.virtual_model", "shop")])
    body = problem(run(app, "POST", "/tools/model"), 403, "no-access")
    assert body["upgrade"] == "pro"
    assert inner.calls == 0


def test_predicate_rules_and_the_apps_own_headers() -> None:
    def studio(request: Request) -> bool:
        return request.query_params.get("quality") == "studio"

    inner = Counter()
    rules = [Rule(studio, "background.studio", header("X-Account"), amount=4)]
    lim = AsyncLimiter(clock=ManualClock(START))
    asyncio.run(lim.set_account("acme", "pro"))
    app = LimitMiddleware(inner, lim, rules)
    r = run(app, "POST", "/bg?quality=studio", headers=ACME)
    assert r.status_code == 200
    assert r.headers["RateLimit"] == "app's own"  # the app's header wins
    assert r.headers["RateLimit-Policy"] == '"studio";q=4000;w=86400'
    assert run(app, "POST", "/bg?quality=plain").status_code == 200  # no rule: no account needed
    assert inner.calls == 2


def test_first_matching_rule_wins_and_methods_filter(limiter: Limiter) -> None:
    rules = [
        Rule("/x", "export.ai", "shop", methods=["post"]),
        Rule("/", "transform.virtual_model", "shop"),
    ]
    app = LimitMiddleware(Counter(), limiter, rules)
    assert run(app, "POST", "/x/1").status_code == 200  # export.ai
    assert run(app, "GET", "/x/1").status_code == 403  # falls to the catch-all transform rule
    assert [m.used for m in limiter.usage("shop") if m.limit == "ai_exports"] == [1]


def test_an_extractors_http_exception_is_answered_as_a_problem(limiter: Limiter) -> None:
    def account(request: Request) -> str:
        raise HTTPException(401, "log in first", {"WWW-Authenticate": "Bearer"})

    inner = Counter()
    r = run(LimitMiddleware(inner, limiter, [Rule("/", "export.ai", account)]), "POST", "/")
    assert problem(r, 401, "unauthorized")["detail"] == "log in first"
    assert r.headers["WWW-Authenticate"] == "Bearer"
    assert inner.calls == 0
