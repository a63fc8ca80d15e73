"""Guard FastAPI routes with a dependency::

    from allowance.fastapi import header, install, limit

    install(app, AsyncLimiter(store="sqlite:///allowance.db"))
    guard = Depends(limit("transform.virtual_model", account=header("X-Account")))
    @app.post("/generate", dependencies=[guard])

``limit(...)`` consumes before the route runs (``check_only=True``: only checks) and, as a
parameter (``decision: Decision = Depends(limit(...))``), hands the route the decision. On a
grant the ``RateLimit-Policy`` / ``RateLimit`` headers join the route's response (unless the
route returns a ``Response`` object itself; then copy ``decision_headers(decision)`` onto it).
On a denial or an error it raises ``Rejected``, an ``HTTPException`` carrying the service's
answer: 429 (with ``Retry-After``) or 403, the same rate-limit headers, and the decision's
fields (``resets_at``, ``upgrade``, ``message``, ...) in an ``application/problem+json``
body. ``guard.py`` lists what each configuration or input mistake answers.

The limiter is ``limit(limiter=...)`` when given, else ``app.state.allowance``, which
``install(app, limiter)`` sets. ``install`` also registers the handler that writes the
problem body; without it FastAPI's default handler still answers with the right status and
headers, but the body is FastAPI's ``{"detail": {...problem...}}``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from allowance.extras import needs
from allowance.types import Decision

with needs("server", "allowance.fastapi"):
    from fastapi import FastAPI, Request, Response
    from starlette.exceptions import HTTPException

    from allowance.guard import AnyLimiter, Guard, MissingValue, Source, header
    from allowance.http.answers import decision_headers
    from allowance.http.problems import Problem, internal

__all__ = ["MissingValue", "Rejected", "header", "install", "limit"]


class Rejected(HTTPException):
    """A guard's refusal: ``problem`` is the answer (status, headers, body); ``detail`` is
    its body, for apps that handle ``HTTPException`` themselves."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(problem.status, None, problem.headers)
        self.detail: Any = problem.body()
        self.problem = problem


async def _answer(request: Request, exc: Exception) -> Response:
    problem = exc.problem if isinstance(exc, Rejected) else internal()  # only Rejected comes
    return problem.response()


def install(app: FastAPI, limiter: AnyLimiter | None = None) -> None:
    """Answer ``Rejected`` as problem+json; with ``limiter``, make it the app's default
    (``app.state.allowance``). The app still closes the limiter (e.g. in its lifespan)."""
    app.add_exception_handler(Rejected, _answer)
    if limiter is not None:
        app.state.allowance = limiter


def limit(
    feature: str,
    account: Source[str | None],
    amount: Source[int] = 1,
    *,
    limiter: AnyLimiter | None = None,
    idempotency_key: Source[str | None] = None,
    user: Source[str | None] = None,
    check_only: bool = False,
) -> Callable[[Request, Response], Awaitable[Decision]]:
    """A dependency that decides ``feature`` for the request's account before the route runs.
    ``account``, ``amount``, ``user``, ``idempotency_key``: constants or callables taking the
    ``Request`` (sync or async); ``header(name)`` reads a header."""
    guard = Guard(
        feature,
        account,
        amount,
        idempotency_key=idempotency_key,
        user=user,
        check_only=check_only,
    )

    async def allowance_limit(request: Request, response: Response) -> Decision:
        chosen = limiter if limiter is not None else getattr(request.app.state, "allowance", None)
        try:
            decision = await guard.decide(chosen, request)
        except Problem as problem:
            raise Rejected(problem) from problem
        response.headers.update(decision_headers(decision))
        return decision

    return allowance_limit
