"""The HTTP side of ``Client`` and ``AsyncClient``, written once: each method as an ``Op``
(what to send, how to read the answer; the answers, errors and retries: ``remote_answers``).
The two clients only send ``Op``s and sleep; everything here is plain functions of data.

Arguments are checked with ``allowance.validation`` against the service's policy before
anything is sent, so a bad argument raises exactly what ``Limiter`` raises and the service
never sees it. Errors the service reports are mapped back by the problem's ``type`` URN (and,
for ``invalid-request``, its ``field``), never by its wording.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import quote, urlencode

import httpx

from allowance import ids, listing, load, validation
from allowance.errors import (
    ConfigurationError,
)
from allowance.events import Event, after_id, page_size
from allowance.ledger import LedgerPage, Row, after_cursor
from allowance.listing import AccountPage
from allowance.policy import Policy, parse_policy
from allowance.remote_answers import Op, Reserved, read_decision, read_nothing, read_reserved
from allowance.request import Request
from allowance.types import (
    UNCHANGED,
    Account,
    Decision,
    Meter,
    iso,
    to_datetime,
)

T = TypeVar("T")

DECISION_STATUSES = (200, 403, 429)  # 403/429: a denial, when the body is not a problem


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
    return _charge("/v1/consume", DECISION_STATUSES, read_decision, req, auto_key)


def check(
    policy: Policy, account: object, feature: object, amount: object, partial: object, user: object
) -> Op[Decision]:
    req = validation.request(policy, account, feature, amount, partial, None, user)
    body = _decision_body(req, None)
    return Op("POST", "/v1/check", DECISION_STATUSES, read_decision, body, body)


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
    return _charge("/v1/reservations", (201, 403, 429), read_reserved, req, auto_key, ttl=seconds)


def commit(reservation_id: str, amount: object = None) -> Op[None]:
    """Committing twice is harmless (a second amount changes nothing), so a retry is safe."""
    ids.reservation_account(reservation_id)  # ReservationNotFound for what is not an id
    units = validation.settled_amount(amount)
    path = f"/v1/reservations/{_segment(reservation_id)}/commit"
    body = None if units is None else {"amount": units}
    return Op("POST", path, (200,), read_nothing, body, body or {})


def release(reservation_id: str) -> Op[None]:
    ids.reservation_account(reservation_id)
    return Op("DELETE", f"/v1/reservations/{_segment(reservation_id)}", (204,), read_nothing)


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


def check_url(url: object) -> str:
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise ConfigurationError(f"url: expected http:// or https://... (got {url!r})")
    return url


def headers(key: object) -> dict[str, str]:
    if not isinstance(key, str) or not key or not key.isprintable():
        raise ConfigurationError("key: expected an API key (alw_...) as a string")
    return {"Authorization": f"Bearer {key}", "User-Agent": "allowance-client"}
