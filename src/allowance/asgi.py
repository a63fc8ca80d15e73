"""``LimitMiddleware``: a plain ASGI middleware that guards any ASGI app (Starlette, FastAPI,
Django, ...)::

    app = LimitMiddleware(app, limiter, rules=[
        Rule("/exports", "export.ai", account=header("X-Account"), methods=["POST"]),
    ])

The first rule that matches a request (its methods, and its path prefix, whole segments only,
or predicate) names the feature; the middleware decides before the app sees the request and
answers a denial itself: 429 (with ``Retry-After``) or 403, ``application/problem+json``,
with the service's headers and body. A granted request goes to the app and its response
gains the ``RateLimit-Policy`` / ``RateLimit`` headers (unless the app set them). Requests
that match no rule, and non-HTTP traffic (websockets, lifespan), pass through untouched.
Extractors get a ``Request`` without a body (the app reads it); ``guard.py`` lists what each
configuration or input mistake answers.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from typing import Unpack

from allowance.extras import needs

with needs("server", "allowance.asgi"):
    from starlette.datastructures import MutableHeaders
    from starlette.exceptions import HTTPException
    from starlette.requests import Request
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

    from allowance.guard import AnyLimiter, Guard, MissingValue, Options, Source, header
    from allowance.http.answers import decision_headers
    from allowance.http.problems import Problem, for_status

__all__ = ["LimitMiddleware", "MissingValue", "Rule", "header"]


class Rule:
    """Requests to ``path`` (a prefix such as ``/exports``, or a predicate taking the
    ``Request``) with one of ``methods`` (None: any) spend ``amount`` of ``feature``;
    ``idempotency_key``, ``user``, ``check_only`` as for ``allowance.fastapi.limit``."""

    def __init__(
        self,
        path: str | Callable[[Request], bool],
        feature: str,
        account: Source[str | None],
        amount: Source[int] = 1,
        *,
        methods: Collection[str] | None = None,
        **options: Unpack[Options],
    ) -> None:
        self.path = path
        self.methods = None if methods is None else {m.upper() for m in methods}
        self.guard = Guard(feature, account, amount, **options)

    def matches(self, request: Request) -> bool:
        if self.methods is not None and request.method not in self.methods:
            return False
        if callable(self.path):
            return self.path(request)
        path: str = request.scope["path"]
        prefix = self.path.rstrip("/")
        return path == prefix or path.startswith(prefix + "/")


class LimitMiddleware:
    def __init__(self, app: ASGIApp, limiter: AnyLimiter, rules: Sequence[Rule]) -> None:
        self.app = app
        self.limiter = limiter
        self.rules = list(rules)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        rule = next((r for r in self.rules if r.matches(request)), None)
        if rule is None:
            await self.app(scope, receive, send)
            return
        try:
            decision = await rule.guard.decide(self.limiter, request)
        except Problem as problem:
            await problem.response()(scope, receive, send)
            return
        except HTTPException as exc:  # an extractor's own answer, e.g. the app's 401
            await for_status(exc.status_code, exc.detail, dict(exc.headers or {})).response()(
                scope, receive, send
            )
            return
        extra = decision_headers(decision)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in extra.items():
                    if name not in headers:
                        headers[name] = value
            await send(message)

        await self.app(scope, receive, send_with_headers)
