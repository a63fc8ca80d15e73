"""Request and response bodies of the HTTP API, for validation and for /openapi.json.

Requests are strict (``"1"`` is not an amount, unknown members are refused, so a typo never
passes silently). Responses are built as plain dicts on the hot path; these models document
them, and the schemathesis run checks that what is sent matches.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
)

from allowance import ledger
from allowance.keys import MAX_BOUND
from allowance.validation import MAX_AMOUNT, MAX_ID, MAX_SEATS, MAX_TTL

Text = Field(min_length=1, max_length=MAX_ID)


def _iso_text(value: object) -> object:
    # a number would pass as epoch seconds in pydantic's lax mode; the schema says a string
    if not isinstance(value, str):
        raise ValueError("expected ISO 8601 text with a zone")
    return value


# an aware time given as ISO 8601 text, nothing else
IsoTime = Annotated[AwareDatetime, BeforeValidator(_iso_text)]
_DATE_FIRST = re.compile(r"\d{4}-\d{2}-\d{2}")


def _iso_query(value: object) -> object:
    # a query parameter is always text: "0.5" would still pass as epoch seconds
    if not isinstance(value, str) or not _DATE_FIRST.match(value):
        raise ValueError("expected ISO 8601 text with a zone")
    return value


# the same in a query string
QueryTime = Annotated[AwareDatetime, BeforeValidator(_iso_query)]
EXAMPLE_DECISION = {
    "allowed": False,
    "granted": 0,
    "reason": "limit_reached",
    "limit": "transform_daily",
    "remaining": 0,
    "resets_at": "2026-11-24T15:10:00Z",
    "retry_after": 84240.0,
    "upgrade": "max",
    "message": "You have reached your daily limit of 30 generations for image transformation "
    "tools. It resets on Tue 24 Nov at 15:10 UTC, or upgrade to Max for 60 a day.",
    "fair_use_exceeded": False,
    "degraded": False,
}


def _examples(*examples: dict[str, Any]) -> ConfigDict:
    return ConfigDict(json_schema_extra={"examples": list(examples)})


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DecisionRequest(Strict):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"account": "acme", "feature": "transform.virtual_model"},
                {
                    "account": "acme",
                    "feature": "export.ai",
                    "amount": 5,
                    "partial": True,
                    "idempotency_key": "export-7f3a",
                    "user": "u-42",
                },
            ]
        },
    )

    account: str = Text
    feature: str = Field(min_length=1, max_length=MAX_ID, examples=["transform.virtual_model"])
    amount: StrictInt = Field(1, ge=1, le=MAX_AMOUNT)
    partial: StrictBool = False
    idempotency_key: str | None = Field(None, min_length=1, max_length=MAX_ID)
    user: str | None = Field(None, min_length=1, max_length=MAX_ID)


class ReservationRequest(DecisionRequest):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"account": "acme", "feature": "background.studio", "amount": 4}]
        },
    )

    # strict: true and "5" are refused, as the library refuses them (a whole number is fine)
    ttl: StrictFloat = Field(900.0, gt=0, le=MAX_TTL, description="seconds the units are held")


class CommitRequest(Strict):
    model_config = ConfigDict(extra="forbid", **_examples({"amount": 1200}))

    amount: StrictInt | None = Field(
        None,
        ge=0,
        le=MAX_AMOUNT,
        description="the units really used: fewer go back, more are charged if they fit",
    )


class LoadFactorRequest(Strict):
    model_config = ConfigDict(
        extra="forbid", **_examples({"factor": 0.5, "limits": ["transform_daily"]})
    )

    # checked by the Limiter (load.checked_factor, checked_limits), which names the field
    factor: StrictFloat = Field(description="0 < factor <= 1: effective max = floor(max × factor)")
    limits: list[str] | None = Field(
        None, max_length=1000, description="the limits it applies to; none: every limit"
    )


class LoadFactorBody(BaseModel):
    factors: dict[str, float] = Field(description="the factor in force for each limit")


class AccountRequest(Strict):
    model_config = ConfigDict(extra="forbid", **_examples({"plan": "pro", "seats": 3}))

    plan: str = Field(min_length=1, max_length=MAX_ID)
    seats: StrictInt = Field(1, ge=1, le=MAX_SEATS)
    billing_anchor: IsoTime | None = Field(
        None,
        description="ISO 8601 with a zone: when the account's billing months (on its day, the"
        " 31st a shorter month's last) and weeks (on its weekday) renew; null removes it"
        " (calendar months and ISO weeks in UTC); left out: as it was",
    )


class KeyRequest(Strict):
    model_config = ConfigDict(
        extra="forbid", **_examples({"scope": "decide", "name": "app servers"})
    )

    scope: Literal["read", "decide", "admin"]
    name: str = Field("", max_length=MAX_ID)
    accounts: list[str] | None = Field(
        None,
        min_length=1,
        max_length=MAX_BOUND,
        description="the accounts the key acts for: ids, or prefixes ending in * (team-*);"
        " left out: every account",
    )


class DecisionBody(BaseModel):
    model_config = _examples(EXAMPLE_DECISION)

    allowed: bool
    granted: int
    reason: Literal["ok", "limit_reached", "no_access", "request_too_large"]
    limit: str | None
    remaining: int | None
    resets_at: str | None = Field(description="ISO 8601, UTC")
    retry_after: float | None = Field(description="seconds")
    upgrade: str | None
    message: str
    fair_use_exceeded: bool
    degraded: bool = Field(
        description="granted without the store (its on_store_error is allow); charged later"
    )


class ReservationBody(BaseModel):
    model_config = _examples(
        {
            "id": "rsv_…",
            "expires_at": "2026-11-23T15:25:00Z",
            "decision": {**EXAMPLE_DECISION, "allowed": True, "reason": "ok"},
        }
    )

    id: str | None
    expires_at: str | None
    decision: DecisionBody


class CommitBody(BaseModel):
    model_config = _examples({"id": "rsv_…", "status": "committed"})

    id: str
    status: Literal["committed"]


class OverrideRequest(Strict):
    model_config = ConfigDict(extra="forbid", **_examples({"max": 100}))

    # checked by the Limiter (validation.override_max), which names the field
    max: StrictInt | None = Field(
        description="the account's own max for the limit, whatever its plan (for the whole"
        " account, not per seat); null: the plan's again"
    )


class GrantRequest(Strict):
    model_config = ConfigDict(
        extra="forbid",
        **_examples({"limit": "ai_exports", "amount": 10, "expires_at": "2026-12-31T00:00:00Z"}),
    )

    limit: str = Field(min_length=1, max_length=MAX_ID)
    amount: StrictInt = Field(description="units on top of the max")
    expires_at: IsoTime | None = Field(
        None, description="ISO 8601 with a zone; none: when the window open now closes"
    )


class GrantBody(BaseModel):
    limit: str
    amount: int
    expires_at: str = Field(description="ISO 8601, UTC")


class AccountBody(BaseModel):
    model_config = _examples(
        {
            "id": "acme",
            "plan": "pro",
            "seats": 3,
            "overrides": {},
            "grants": [],
            "billing_anchor": "2026-11-15T09:30:00Z",
        }
    )

    id: str
    plan: str
    seats: int
    overrides: dict[str, int] = Field(description="the account's own max, by limit")
    grants: list[GrantBody] = Field(description="extra units in force, soonest ending first")
    billing_anchor: str | None = Field(
        description="ISO 8601, UTC: when its billing periods renew; null: calendar months and"
        " ISO weeks in UTC"
    )


class AccountPageBody(BaseModel):
    accounts: list[AccountBody]
    next_cursor: str | None = Field(description="pass as cursor for the next page; null: last")


class EventBody(BaseModel):
    id: int = Field(description="ids increase: pass the last one read as after")
    type: str = Field(description="usage.threshold, usage.limit_reached, ... (CONTRACT 8)")
    at: str
    account: str
    limit: str | None
    data: dict[str, Any] = Field(description="used, max, threshold, resets_at, upgrade, ...")


class EventPageBody(BaseModel):
    events: list[EventBody]


class LedgerRowBody(BaseModel):
    cursor: str = Field(description="the row's place: pass it as cursor for the rows after it")
    at: str
    kind: str = Field(description=", ".join(ledger.KINDS))
    account: str
    feature: str | None
    limit: str | None
    amount: int = Field(description="units the limit counted (negative: returned)")
    key_id: str | None = Field(description="the API key the change was made with")
    idempotency_key: str | None
    user: str | None
    data: dict[str, Any]


class LedgerPageBody(BaseModel):
    rows: list[LedgerRowBody]
    next_cursor: str | None = Field(description="None: this was the last page")


class MeterBody(BaseModel):
    limit: str
    features: list[str]
    used: int
    max: int | None
    remaining: int | None
    window_start: str | None
    resets_at: str | None
    override: int | None = Field(description="the account's own max for this limit")
    granted: int = Field(description="extra units granted to the account, in max")


class UsageBody(BaseModel):
    model_config = _examples(
        {
            "account": "acme",
            "plan": "pro",
            "meters": [
                {
                    "limit": "transform_daily",
                    "features": ["transform.virtual_model"],
                    "used": 30,
                    "max": 30,
                    "remaining": 0,
                    "window_start": "2026-11-23T15:10:00Z",
                    "resets_at": "2026-11-24T15:10:00Z",
                }
            ],
        }
    )

    account: str
    plan: str
    meters: list[MeterBody]


class KeyBody(BaseModel):
    id: str
    scope: str
    name: str
    created_at: str | None
    last_used_at: str | None
    revoked_at: str | None
    accounts: list[str] | None = None


class NewKeyBody(KeyBody):
    model_config = _examples(
        {
            "id": "key_5f1c0a9e2b7d4c3a",
            "key": "alw_…",
            "scope": "decide",
            "name": "app servers",
            "created_at": "2026-11-23T15:10:00Z",
            "last_used_at": None,
            "revoked_at": None,
        }
    )

    key: str = Field(description="the secret; shown this once only")


class ProblemBody(BaseModel):
    model_config = _examples(
        {
            "type": "urn:allowance:problem:invalid-request",
            "title": "Invalid request",
            "status": 422,
            "detail": "amount: expected a whole number from 1 to 1,000,000 (got 0)",
            "field": "amount",
            "errors": [{"field": "amount", "message": "must be at least 1"}],
        }
    )

    type: str
    title: str
    status: int
    detail: str
    field: str | None = None


class HealthBody(BaseModel):
    status: str
