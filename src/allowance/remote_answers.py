"""What the service answered, read for ``Client`` and ``AsyncClient`` (``remote.py`` builds
what they send): an ``Op``, the value its answer carries or the ``AllowanceError`` the
service reports (mapped back by the problem's ``type`` URN and, for ``invalid-request``, its
``field``, never by its wording), the RateLimit headers as a ``Quota``, and when to retry."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, TypeVar

import httpx

from allowance.errors import (
    AllowanceError,
    AuthenticationError,
    ConfigurationError,
    IdempotencyConflict,
    InvalidAmount,
    InvalidRequest,
    LimitExceeded,
    NotSupported,
    PermissionDenied,
    ReservationExpired,
    ReservationNotFound,
    ServiceUnavailable,
    UnknownAccount,
    UnknownFeature,
    UnknownPlan,
)
from allowance.types import Decision, Quota, parse_iso

T = TypeVar("T")

PROBLEM_TYPE = "urn:allowance:problem:"  # = http.problems.TYPE_PREFIX (a test pins it)
RETRY_STATUSES = frozenset({502, 503, 504})  # the service or a proxy in front: try again
# what is safe to retry even for a charge without a key: a connection that was never made
# carried nothing (a 503 may come after the store ran the charge and its reply was lost)
UNSENT = (httpx.ConnectError, httpx.ConnectTimeout)
BACKOFF = 0.05  # seconds before the first retry; doubled each time
MAX_PAUSE = 2.0  # the longest wait between tries, whatever Retry-After says

SIMPLE_ERRORS: dict[str, type[AllowanceError]] = {
    "unknown-reservation": ReservationNotFound,
    "reservation-expired": ReservationExpired,
    "idempotency-conflict": IdempotencyConflict,
    "unauthorized": AuthenticationError,
    "insufficient-scope": PermissionDenied,
    "not-supported": NotSupported,  # by the service's store (events on a store without)
}
FIELD_ERRORS: dict[str, type[InvalidRequest]] = {
    "amount": InvalidAmount,
    "feature": UnknownFeature,
    "plan": UnknownPlan,
}

Reserved = tuple[str | None, Decision, datetime | None]  # id, decision, expires_at


@dataclass(slots=True)
class Op(Generic[T]):
    """One call: the request, and ``read(status, json)`` for an answer in ``statuses``.

    ``sent`` holds the arguments by field name, so an error can name the value that was
    wrong. ``retry`` is False when sending twice could charge twice."""

    method: str
    path: str
    statuses: tuple[int, ...]
    read: Callable[[httpx.Response, Any], T]
    body: dict[str, Any] | None = None
    sent: dict[str, Any] = field(default_factory=dict)
    retry: bool = True


_POLICY = re.compile(r'^"((?:[^"\\]|\\.)*)";q=(\d+);w=(\d+)$')
_STATE = re.compile(r'^"(?:[^"\\]|\\.)*";r=(\d+);t=(\d+)$')


def quota_of(answer: httpx.Response) -> Quota | None:
    """``Decision.quota`` from the RateLimit-Policy / RateLimit headers (whole seconds)."""
    policy = _POLICY.match(answer.headers.get("ratelimit-policy", ""))
    state = _STATE.match(answer.headers.get("ratelimit", ""))
    if policy is None or state is None:
        return None
    name = re.sub(r"\\(.)", r"\1", policy.group(1))
    return Quota(
        name,
        int(policy.group(2)),
        float(policy.group(3)),
        int(state.group(1)),
        float(state.group(2)),
    )


def read_decision(answer: httpx.Response, data: Any) -> Decision:
    decision = Decision.from_json(data)
    decision._quota = quota_of(answer)
    return decision


def read_reserved(answer: httpx.Response, data: Any) -> Reserved:
    return data["id"], read_decision(answer, data["decision"]), parse_iso(data["expires_at"])


def read_nothing(answer: httpx.Response, data: Any) -> None:
    return None


def is_problem(response: httpx.Response) -> bool:
    media = str(response.headers.get("content-type", "")).split(";")[0].strip().lower()
    return media == "application/problem+json"


Outcome = httpx.Response | httpx.RequestError  # an answer, or none (connection, timeout)


def result(op: Op[T], response: Outcome) -> T:
    """What the answer means: the value ``op`` reads, or the error it reports (raised)."""
    if isinstance(response, httpx.RequestError):
        kind = type(response).__name__
        raise ServiceUnavailable(
            f"{op.method} {op.path}: the service did not answer ({kind}: {response})"
        ) from response
    if is_problem(response) or response.status_code not in op.statuses:
        raise error(op, response)
    try:
        data = response.json() if response.content else None
        return op.read(response, data)
    except (ValueError, KeyError, TypeError) as exc:
        raise ServiceUnavailable(
            f"{op.method} {op.path}: the answer is not one allowance sends "
            f"({response.status_code}, {response.text[:200]!r})"
        ) from exc


def _problem(response: httpx.Response) -> dict[str, Any]:
    if not is_problem(response):
        return {}
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def error(op: Op[Any], response: httpx.Response) -> AllowanceError:
    """The ``AllowanceError`` that ``Limiter`` would raise for what the service reports."""
    status = response.status_code
    problem = _problem(response)
    kind = str(problem.get("type", ""))
    slug = kind.removeprefix(PROBLEM_TYPE) if kind.startswith(PROBLEM_TYPE) else ""
    detail = str(problem.get("detail") or response.reason_phrase or status)
    if slug == "invalid-request":
        return _invalid(op, str(problem.get("field") or "body"), detail)
    if slug == "unknown-account":
        return UnknownAccount(str(op.sent.get("account")))
    if slug == "limit-exceeded" and isinstance(problem.get("decision"), dict):
        return LimitExceeded(Decision.from_json(problem["decision"]))
    if slug in SIMPLE_ERRORS:
        return SIMPLE_ERRORS[slug](detail)
    if slug == "not-found":  # no such route: the URL is not an allowance service's
        return ConfigurationError(f"url: {detail}; is it an allowance service's URL?")
    if status == 401:
        return AuthenticationError(detail)
    if status >= 500:
        asked = str(response.headers.get("retry-after", ""))
        return ServiceUnavailable(
            f"{op.method} {op.path}: the service answered {status}: {detail}",
            retry_after=float(asked) if asked.isdigit() else 1.0,
        )
    return AllowanceError(f"{op.method} {op.path}: unexpected answer {status}: {detail}")


def _invalid(op: Op[Any], name: str, detail: str) -> InvalidRequest:
    """The service's 422 as ``Limiter``'s error: the class by field, the value as sent, and
    the service's sentence as the message."""
    value = op.sent.get(name)
    problem = detail.removeprefix(f"{name}: ").removesuffix(f" (got {value!r})")
    exc = FIELD_ERRORS.get(name, InvalidRequest)(name, value, problem)
    exc.args = (detail,)
    return exc


# retries ----------------------------------------------------------------------------------
def pause(op: Op[Any], attempt: int, retries: int, response: Outcome) -> float | None:
    """Seconds to wait before sending ``op`` again after try number ``attempt`` (from 0), or
    None to stop and read ``response``: a connection that failed, timed out or dropped, or
    a 502/503/504, is tried again; a call that charges without an idempotency key
    (``op.retry`` False) only when nothing can have been charged."""
    if attempt >= retries:
        return None
    wait: float = BACKOFF * 2**attempt
    if isinstance(response, httpx.Response):
        status = response.status_code
        if status not in RETRY_STATUSES or not op.retry:
            return None
        asked = str(response.headers.get("retry-after", ""))
        if asked.isdigit():  # the other form, an HTTP date, is not worth a clock read here
            wait = max(wait, float(asked))
    elif not op.retry and not isinstance(response, UNSENT):
        return None
    return min(wait, MAX_PAUSE)
