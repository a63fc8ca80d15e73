"""Errors as ``application/problem+json`` (RFC 9457): one table from allowance's error tree
to HTTP statuses, shared by the service and the guards. A client's mistake is never a 500,
and no response carries a traceback."""

from __future__ import annotations

import json
import logging
import math
from typing import Any

from starlette.responses import Response

from allowance.errors import (
    AllowanceError,
    IdempotencyConflict,
    InvalidRequest,
    LimitExceeded,
    NotSupported,
    PolicyError,
    ReservationExpired,
    ReservationNotFound,
    StoreError,
    StoreUnavailable,
    UnknownAccount,
)

log = logging.getLogger("allowance.http")
PROBLEM_JSON = "application/problem+json"
TYPE_PREFIX = "urn:allowance:problem:"

# the JSON of answers, built once: json.dumps with non-default options builds a new encoder on
# every call
ENCODE = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


class Problem(Exception):
    """An error answer. ``extra`` members join the body (RFC 9457 extension members)."""

    def __init__(
        self,
        status: int,
        slug: str,
        title: str,
        detail: str,
        extra: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.slug = slug
        self.title = title
        self.detail = detail
        self.extra = extra or {}
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {
            "type": TYPE_PREFIX + self.slug,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            **self.extra,
        }

    def parts(self) -> tuple[int, dict[str, str], bytes]:
        """Status, headers (with the content type) and body, for plain ASGI senders."""
        return (
            self.status,
            {"content-type": PROBLEM_JSON, **self.headers},
            ENCODE(self.body()).encode(),
        )

    def response(self) -> Response:
        status, headers, body = self.parts()
        return Response(body, status_code=status, headers=headers)


def invalid(field: str, message: str, errors: list[dict[str, str]] | None = None) -> Problem:
    """422: the body is well-formed but a field is wrong; ``field`` names the first."""
    errors = errors or [{"field": field, "message": message}]
    return Problem(
        422,
        "invalid-request",
        "Invalid request",
        f"{field}: {message}",
        {"field": field, "errors": errors},
    )


def from_error(exc: BaseException, where: str) -> Problem:
    """The answer for an error raised while serving ``where`` (``"POST /v1/consume"``), and
    the one place such an error is logged: a failing store as a warning, anything else that
    answers 5xx (a bug) with its traceback. A client's mistake is not logged."""
    problem = _answer(exc)
    if isinstance(exc, StoreError):
        log.warning("store error on %s: %s", where, exc)
    elif problem.status >= 500 and not isinstance(exc, NotSupported):  # (not a bug)
        log.error("error on %s", where, exc_info=exc)
    return problem


def _answer(exc: BaseException) -> Problem:
    if not isinstance(exc, AllowanceError):
        return internal()
    if isinstance(exc, InvalidRequest):
        return invalid(exc.field, str(exc).split(": ", 1)[-1])
    if isinstance(exc, PolicyError):  # PUT /v1/policy: each problem with its line
        errors = [{"field": i.path, "message": i.message, "line": i.line} for i in exc.issues]
        first = exc.issues[0] if exc.issues else None
        return Problem(
            422,
            "invalid-policy",
            "Invalid policy",
            str(exc),
            {"field": first.path if first else "", "errors": errors},
        )
    if isinstance(exc, UnknownAccount):
        return Problem(404, "unknown-account", "Unknown account", str(exc), {"field": "account"})
    if isinstance(exc, ReservationNotFound):
        return Problem(404, "unknown-reservation", "Unknown reservation", str(exc))
    if isinstance(exc, ReservationExpired):
        return Problem(410, "reservation-expired", "Reservation expired", str(exc))
    if isinstance(exc, LimitExceeded):  # commit(amount): the extra does not fit; still held
        d = exc.decision
        wait = {} if d.retry_after is None else {"Retry-After": str(math.ceil(d.retry_after))}
        return Problem(
            429 if d.reason == "limit_reached" else 403,
            "limit-exceeded",
            "More than the limits have room for",
            d.message,
            {"decision": d.to_json()},
            wait,
        )
    if isinstance(exc, IdempotencyConflict):
        return Problem(
            409,
            "idempotency-conflict",
            "Idempotency key reused",
            str(exc),
            {"field": "idempotency_key"},
        )
    if isinstance(exc, NotSupported):
        return Problem(501, "not-supported", "Not supported by this store", str(exc))
    if isinstance(exc, StoreError):
        # the store's own words may name hosts; the log keeps them, the client gets a retry
        return Problem(
            503,
            "store-unavailable",
            "Store unavailable",
            "the store did not answer; retry shortly (under the same idempotency key a "
            "retry never charges twice)",
            headers={"Retry-After": retry_after_header(exc)},
        )
    return internal()


def retry_after_header(exc: StoreError) -> str:
    """Whole seconds, at least 1 (the breaker's cooldown when it is open)."""
    seconds = exc.retry_after if isinstance(exc, StoreUnavailable) else 1.0
    return str(max(1, math.ceil(seconds)))


def internal() -> Problem:
    return Problem(500, "internal", "Internal error", "the service failed; see its log")


STATUS_TITLES = {
    400: ("bad-request", "Bad request"),
    401: ("unauthorized", "Unauthorized"),
    403: ("forbidden", "Forbidden"),
    404: ("not-found", "Not found"),
    405: ("method-not-allowed", "Method not allowed"),
    408: ("request-timeout", "Request timeout"),
    413: ("body-too-large", "Body too large"),
    415: ("unsupported-media-type", "Unsupported media type"),
    503: ("overloaded", "Overloaded"),
}


def for_status(status: int, detail: str, headers: dict[str, str] | None = None) -> Problem:
    slug, title = STATUS_TITLES.get(status, ("error", "Error"))
    return Problem(status, slug, title, detail, headers=headers)


# the guards' own answers (allowance.fastapi, allowance.asgi): an app's configuration mistakes
def guard_misconfigured(detail: str) -> Problem:
    return Problem(500, "guard-misconfigured", "Guard misconfigured", detail)


def account_unresolved(detail: str) -> Problem:
    """The request does not say whose it is (a missing header, say): the app refuses it."""
    return Problem(
        403, "account-unresolved", "Account not identified", detail, {"field": "account"}
    )


def account_without_plan(detail: str) -> Problem:
    return Problem(403, "unknown-account", "Unknown account", detail, {"field": "account"})
