"""What the FastAPI dependency (``allowance.fastapi``) and the ASGI middleware
(``allowance.asgi``) share: a ``Guard`` reads the account (and amount, user, idempotency key)
from a request, asks the limiter, and turns every refusal into a ``Problem`` whose status,
headers and body are the service's (``http/answers.py``, ``http/problems.py``).

Each of ``account``, ``amount``, ``user`` and ``idempotency_key`` is a constant or a callable
taking the Starlette ``Request`` (sync or async). What the guard answers when it cannot decide:

- the ``account`` callable raises, or returns None or "": 403 ``account-unresolved`` (the
  request does not say who it is for; the guard fails closed). An ``HTTPException`` raised
  by any callable passes through untouched, so an app's own 401 stays a 401.
- another callable raises: 422 ``invalid-request`` naming the field.
- the account is not in the store: 403 ``unknown-account`` (the app has not created it).
- an unknown feature or no limiter at all: 500 ``guard-misconfigured``, logged at ERROR on
  ``allowance.guard``; the client sees no traceback and nothing about the app's code.
- a bad amount, user or idempotency key: 422; a reused idempotency key: 409; a store that
  does not answer: 503 with ``Retry-After: 1`` (as the service answers).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeAlias, TypedDict, TypeVar, Unpack, cast

from starlette.exceptions import HTTPException
from starlette.requests import Request

from allowance.aio import AsyncLimiter
from allowance.errors import AllowanceError, UnknownAccount, UnknownFeature
from allowance.http.answers import decision_problem
from allowance.http.problems import (
    account_unresolved,
    account_without_plan,
    from_error,
    guard_misconfigured,
    invalid,
)
from allowance.limiter import Limiter
from allowance.types import Decision

log = logging.getLogger("allowance.guard")

T = TypeVar("T")
Source: TypeAlias = T | Callable[[Request], T | Awaitable[T]]
"""A value, or a callable that reads it from the request (sync or async)."""
AnyLimiter: TypeAlias = AsyncLimiter | Limiter


class MissingValue(LookupError):
    """Raised by an extractor such as ``header()`` when the request lacks the value; its
    message is shown to the client (other exceptions' messages are only logged)."""


def header(name: str) -> Callable[[Request], str]:
    """An extractor: the value of header ``name``, else ``MissingValue``."""

    def read(request: Request) -> str:
        value = request.headers.get(name)
        if not value:
            raise MissingValue(f"the {name} header is missing")
        return value

    return read


class Options(TypedDict, total=False):
    """The keyword options of a guard (``limit(...)``, ``Rule(...)``)."""

    idempotency_key: Source[str | None]
    user: Source[str | None]
    check_only: bool


class Guard:
    """One feature and how to read a request's account, amount, user and idempotency key."""

    def __init__(
        self,
        feature: str,
        account: Source[str | None],
        amount: Source[int] = 1,
        **options: Unpack[Options],
    ) -> None:
        self.feature = feature
        self.account = account
        self.amount = amount
        self.idempotency_key = options.get("idempotency_key")
        self.user = options.get("user")
        self.check_only = options.get("check_only", False)

    async def decide(self, limiter: AnyLimiter | None, request: Request) -> Decision:
        """The granted decision (charged unless ``check_only``); raises ``Problem`` for a
        denial (429/403 with the decision's headers and fields) and for every error."""
        if limiter is None:
            log.error("no limiter for %s: pass limiter= or set app.state.allowance", self.feature)
            raise guard_misconfigured("no limiter is configured for this route")
        account = await self._account(request)
        amount = await read(self.amount, request, "amount")
        user = await read(self.user, request, "user")
        key = await read(self.idempotency_key, request, "idempotency_key")
        try:
            decision = await self._ask(limiter, account, amount, user, key)
        except UnknownAccount as exc:
            log.warning("guard on %s: account %r is not in the store", self.feature, account)
            detail = f"the account {account!r} has no plan here"
            raise account_without_plan(detail) from exc
        except UnknownFeature as exc:
            log.error("guard misconfigured: %s", exc)
            raise guard_misconfigured(
                f"the guard names an unknown feature {self.feature!r}"
            ) from exc
        except AllowanceError as exc:
            raise from_error(exc, f"the guard of {self.feature}") from exc
        if not decision.allowed:
            raise decision_problem(decision)
        return decision

    async def _account(self, request: Request) -> str:
        try:
            account = await resolve(self.account, request)
        except HTTPException:
            raise
        except MissingValue as exc:
            raise account_unresolved(str(exc)) from exc
        except Exception as exc:
            log.warning("guard on %s: the account extractor failed", self.feature, exc_info=True)
            raise account_unresolved("the request does not identify an account") from exc
        if account is None or account == "":
            raise account_unresolved("the request does not identify an account")
        return account

    async def _ask(
        self,
        limiter: AnyLimiter,
        account: str,
        amount: Any,
        user: Any,
        key: Any,
    ) -> Decision:
        if isinstance(limiter, AsyncLimiter):
            if self.check_only:
                return await limiter.check(account, self.feature, amount, user=user)
            return await limiter.consume(
                account, self.feature, amount, idempotency_key=key, user=user
            )
        if self.check_only:
            return await asyncio.to_thread(limiter.check, account, self.feature, amount, user=user)
        return await asyncio.to_thread(
            limiter.consume, account, self.feature, amount, idempotency_key=key, user=user
        )


async def resolve(source: Source[T], request: Request) -> T:
    if not callable(source):
        return source
    value = source(request)
    if inspect.isawaitable(value):
        value = await value
    return cast(T, value)


async def read(source: Source[T], request: Request, field: str) -> T:
    """``resolve`` for the fields other than the account: a failure is the client's 422."""
    try:
        return await resolve(source, request)
    except HTTPException:
        raise
    except MissingValue as exc:
        raise invalid(field, str(exc)) from exc
    except Exception as exc:
        log.warning("guard: the %s extractor failed: %r", field, exc)
        raise invalid(field, "could not be read from the request") from exc
