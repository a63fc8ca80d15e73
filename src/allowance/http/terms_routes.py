"""The ``/v1`` routes of an account's own terms (CONTRACT section 9): an override of a limit's
max and grants of extra units, admin only. They answer the account as it stands after the
change (``GET /v1/accounts/{id}`` shows the same)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path
from starlette.responses import JSONResponse, Response

from allowance.http import schemas
from allowance.http.routes import MAX_ID, AccountId, Admin, Svc, problems, router
from allowance.http.segments import account_from_segment

LimitName = Annotated[str, Path(min_length=1, max_length=MAX_ID, examples=["ai_exports"])]


@router.put(
    "/accounts/{account_id}/overrides/{limit}",
    summary="Replace a limit's max for one account (null: the plan's again)",
    dependencies=[Admin],
    response_model=schemas.AccountBody,
    responses=problems(403, 404),
)
async def put_override(
    account_id: AccountId, limit: LimitName, body: schemas.OverrideRequest, svc: Svc
) -> Response:
    account_id = account_from_segment(account_id)
    account = await svc.run("set_override", svc.limiter.set_override(account_id, limit, body.max))
    return JSONResponse(account.to_json())


@router.post(
    "/accounts/{account_id}/grants",
    summary="Give one account extra units of a limit, on top of its max, for a while",
    dependencies=[Admin],
    response_model=schemas.AccountBody,
    status_code=201,
    responses=problems(403, 404),
)
async def post_grant(account_id: AccountId, body: schemas.GrantRequest, svc: Svc) -> Response:
    account_id = account_from_segment(account_id)
    account = await svc.run(
        "grant", svc.limiter.grant(account_id, body.limit, body.amount, body.expires_at)
    )
    return JSONResponse(account.to_json(), status_code=201)
