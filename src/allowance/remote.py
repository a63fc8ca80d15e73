"""The HTTP side of ``Client`` and ``AsyncClient``, written once: each method as an ``Op``
(what to send, how to read the answer), the problem+json -> error table, and when to retry.
The two clients only send ``Op``s and sleep; everything here is plain functions of data.

Arguments are checked with ``allowance.validation`` against the service's policy before
anything is sent, so a bad argument raises exactly what ``Limiter`` raises and the service
never sees it. Errors the service reports are mapped back by the problem's ``type`` URN (and,
for ``invalid-request``, its ``field``), never by its wording.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, TypeVar
from urllib.parse import quote, urlencode

import httpx

from allowance import ids, listing, load, validation
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
from allowance.events import Event, after_id, page_size
from allowance.ledger import LedgerPage, Row, after_cursor
from allowance.listing import AccountPage
from allowance.policy import Policy, parse_policy
from allowance.request import Request
from allowance.types import (
    UNCHANGED,
    Account,
    Decision,
    Meter,
    Quota,
    iso,
    parse_iso,
    to_datetime,
)

T = TypeVar("T")

PROBLEM_TYPE = "urn:allowance:problem:"  # = http.problems.TYPE_PREFIX (a test pins it)
RETRY_STATUSES = frozenset({502, 503, 504})  # the service or a proxy in front: try again
# what is safe to retry even for a charge without a key: a connection that was never made
# carried nothing (a 503 may come after the store ran the charge and its reply was lost)
UNSENT = (httpx.ConnectError, httpx.ConnectTimeout)
BACKOFF = 0.05  # seconds before the first retry; doubled each time
MAX_PAUSE = 2.0  # the longest wait between tries, whatever Retry-After says
DECISION_STATUSES = (200, 403, 429)  # 403/429: a denial, when the body is not a problem

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


# requests ---------------------------------------------------------------------------------
def _segment(value: str) -> str:
    return quote(value, safe="")


def _decision_body(req: Request, key: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {"account": req.account, "feature": req.feature, "amount": req.amount}
    if req.partial:
        body["partial"] = True
    if key is not None:
        body["idempotency_key"] = key
    if req.user is not None:
        body["user"] = req.user
    return body


def _key(given: str | None, auto: bool) -> str | None:
    """The idempotency key to send: the caller's, else (when retrying) a fresh one, so that
    a retry of a request whose answer was lost is recognised and charges nothing more."""
    if given is not None or not auto:
        return given
    return "auto-" + secrets.token_urlsafe(18)


def _charge(
    path: str,
    statuses: tuple[int, ...],
    read: Callable[[httpx.Response, Any], T],
    req: Request,
    auto_key: bool,
    **extra: Any,
) -> Op[T]:
    """A call that charges: retried only under an idempotency key (see ``_key``)."""
    key = _key(req.idempotency_key, auto_key)
    body = {**_decision_body(req, key), **extra}
    return Op("POST", path, statuses, read, body, body, retry=key is not None)


def consume(
    policy: Policy,
    account: object,
    feature: object,
    amount: object,
    partial: object,
    idempotency_key: object,
    user: object,
    auto_key: bool,
) -> Op[Decision]:
    req = validation.request(policy, account, feature, amount, partial, idempotency_key, user)
    return _charge("/v1/consume", DECISION_STATUSES, _decision, req, auto_key)


def check(
    policy: Policy, account: object, feature: object, amount: object, partial: object, user: object
) -> Op[Decision]:
    req = validation.request(policy, account, feature, amount, partial, None, user)
    body = _decision_body(req, None)
    return Op("POST", "/v1/check", DECISION_STATUSES, _decision, body, body)


def reserve(
    policy: Policy,
    account: object,
    feature: object,
    amount: object,
    ttl: object,
    partial: object,
    idempotency_key: object,
    user: object,
    auto_key: bool,
) -> Op[Reserved]:
    req = validation.request(policy, account, feature, amount, partial, idempotency_key, user)
    seconds = validation.ttl(ttl)
    return _charge("/v1/reservations", (201, 403, 429), _reserved, req, auto_key, ttl=seconds)


def commit(reservation_id: str, amount: object = None) -> Op[None]:
    """Committing twice is harmless (a second amount changes nothing), so a retry is safe."""
    ids.reservation_account(reservation_id)  # ReservationNotFound for what is not an id
    units = validation.settled_amount(amount)
    path = f"/v1/reservations/{_segment(reservation_id)}/commit"
    body = None if units is None else {"amount": units}
    return Op("POST", path, (200,), _nothing, body, body or {})


def release(reservation_id: str) -> Op[None]:
    ids.reservation_account(reservation_id)
    return Op("DELETE", f"/v1/reservations/{_segment(reservation_id)}", (204,), _nothing)


def put_account(
    policy: Policy, account: object, plan: object, seats: object, billing_anchor: object = UNCHANGED
) -> Op[tuple[Account, bool]]:
    account_id = validation.text("account", account)
    plan_name, seat_count = validation.account_settings(policy, plan, seats)
    body: dict[str, Any] = {"plan": plan_name, "seats": seat_count}
    if billing_anchor is None:  # removed: JSON null; left out: as it was
        body["billing_anchor"] = None
    elif billing_anchor is not UNCHANGED:
        body["billing_anchor"] = iso(to_datetime(validation.billing_anchor(billing_anchor)))
    return Op(
        "PUT",
        f"/v1/accounts/{_segment(account_id)}",
        (200, 201),
        lambda answer, data: (Account.from_json(data), answer.status_code == 201),
        body,
        {**body, "account": account_id},
    )


def get_account(account: object) -> Op[Account]:
    account_id = validation.text("account", account)
    return Op(
        "GET",
        f"/v1/accounts/{_segment(account_id)}",
        (200,),
        lambda answer, data: Account.from_json(data),
        sent={"account": account_id},
    )


def set_override(policy: Policy, account: object, limit: object, most: object) -> Op[Account]:
    account_id = validation.text("account", account)
    name, units = validation.limit(policy, limit), validation.override_max(most)
    return Op(
        "PUT",
        f"/v1/accounts/{_segment(account_id)}/overrides/{_segment(name)}",
        (200,),
        lambda answer, data: Account.from_json(data),
        {"max": units},
        {"account": account_id, "limit": name, "max": units},
    )


def grant(
    policy: Policy, account: object, limit: object, amount: object, expires_at: object
) -> Op[Account]:
    account_id = validation.text("account", account)
    name, units = validation.limit(policy, limit), validation.grant_amount(amount)
    until = validation.expires_at(expires_at)
    body = {"limit": name, "amount": units, "expires_at": iso(to_datetime(until))}
    return Op(
        "POST",
        f"/v1/accounts/{_segment(account_id)}/grants",
        (201,),
        lambda answer, data: Account.from_json(data),
        body,
        {**body, "account": account_id},
    )


def events(after: object, limit: object, account: object) -> Op[list[Event]]:
    query: dict[str, Any] = {"limit": page_size(limit)}
    if after is not None:
        query["after"] = after_id(after)
    if account is not None:
        query["account"] = account
    return Op(
        "GET",
        "/v1/events?" + urlencode(query),
        (200,),
        lambda answer, data: [Event.from_json(e) for e in data["events"]],
    )


def accounts(prefix: object, cursor: object, limit: object) -> Op[AccountPage]:
    query = {"prefix": listing.prefix(prefix), "limit": listing.size(limit)}
    if cursor is not None:
        listing.after_cursor(cursor)  # a mistake is the caller's before anything is sent
        query["cursor"] = cursor
    return Op(
        "GET",
        "/v1/accounts?" + urlencode(query),
        (200,),
        lambda answer, data: AccountPage(
            [Account.from_json(a) for a in data["accounts"]], data["next_cursor"]
        ),
    )


def usage(account: object, user: object = None) -> Op[list[Meter]]:
    account_id = validation.text("account", account)
    query = "" if user is None else "?user=" + quote(validation.text("user", user), safe="")
    return Op(
        "GET",
        f"/v1/accounts/{_segment(account_id)}/usage{query}",
        (200,),
        lambda answer, data: [Meter.from_json(m) for m in data["meters"]],
        sent={"account": account_id},
    )


def ledger(
    account: object, cursor: object, limit: object, since: object, until: object
) -> Op[LedgerPage]:
    account_id = validation.text("account", account)
    query: dict[str, Any] = {"limit": page_size(limit)}
    if cursor is not None:
        query["cursor"] = after_cursor(cursor)
    for name, value in (("since", since), ("until", until)):
        if value is not None:
            query[name] = iso(to_datetime(validation.aware_time(name, value)))
    return Op(
        "GET",
        f"/v1/accounts/{_segment(account_id)}/ledger?" + urlencode(query),
        (200,),
        lambda answer, data: LedgerPage(
            [Row.from_json(r) for r in data["rows"]], data["next_cursor"]
        ),
        sent={"account": account_id},
    )


def set_load_factor(policy: Policy, factor: object, limits: object) -> Op[dict[str, float]]:
    f = load.checked_factor(factor)
    names = load.checked_limits(policy, limits)  # type: ignore[arg-type]
    body = {"factor": f, "limits": None if names is None else list(names)}
    return Op("PUT", "/v1/load-factor", (200,), lambda answer, data: dict(data["factors"]), body)


def load_factors() -> Op[dict[str, float]]:
    return Op("GET", "/v1/load-factor", (200,), lambda answer, data: dict(data["factors"]))


def policy() -> Op[dict[str, Any]]:
    return Op("GET", "/v1/policy", (200,), lambda answer, data: dict(data))


def compile_policy(data: dict[str, Any], source: str) -> Policy:
    """The service's policy as a ``Policy``, to check arguments against (JSON is YAML)."""
    return parse_policy(json.dumps(data), source)


# answers ----------------------------------------------------------------------------------
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


def _decision(answer: httpx.Response, data: Any) -> Decision:
    decision = Decision.from_json(data)
    decision._quota = quota_of(answer)
    return decision


def _reserved(answer: httpx.Response, data: Any) -> Reserved:
    return data["id"], _decision(answer, data["decision"]), parse_iso(data["expires_at"])


def _nothing(answer: httpx.Response, data: Any) -> None:
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


def check_url(url: object) -> str:
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise ConfigurationError(f"url: expected http:// or https://... (got {url!r})")
    return url


def headers(key: object) -> dict[str, str]:
    if not isinstance(key, str) or not key or not key.isprintable():
        raise ConfigurationError("key: expected an API key (alw_...) as a string")
    return {"Authorization": f"Bearer {key}", "User-Agent": "allowance-client"}
