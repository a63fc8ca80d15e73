"""``GET /v1/events`` (read): the events (CONTRACT 8, ``events.py``) a page at a time. A key
bound to accounts reads its accounts' only, one at a time (``bound.py``). And
``GET /v1/accounts/{id}/ledger`` (read): an account's ledger (``ledger.py``), paged."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query
from starlette.responses import Response

from allowance import events, listing
from allowance.http import schemas
from allowance.http.routes import MAX_ID, AccountId, Read, Svc, _json, problems, router
from allowance.http.segments import account_from_segment


@router.get(
    "/events",
    summary="Events, oldest first, after an id",
    dependencies=[Read],
    response_model=schemas.EventPageBody,
    responses=problems(403, 404, 501),
)
async def list_events(
    svc: Svc,
    after: Annotated[int | None, Query(ge=0, description="the last event id read")] = None,
    limit: Annotated[int, Query(ge=1, le=events.MAX_PAGE)] = 100,
    account: Annotated[
        str | None, Query(min_length=1, max_length=MAX_ID, description="this account's only")
    ] = None,
) -> Response:
    found = await svc.run("events", svc.limiter.events(after, limit, account))
    return _json({"events": [e.to_json() for e in found]})


@router.get(
    "/accounts/{account_id}/ledger",
    summary="An account's ledger, oldest first, a page at a time",
    dependencies=[Read],
    response_model=schemas.LedgerPageBody,
    responses=problems(403, 404, 501),
)
async def ledger(
    account_id: AccountId,
    svc: Svc,
    cursor: Annotated[str | None, Query(max_length=41, description="a page's next_cursor")] = None,
    limit: Annotated[int, Query(ge=1, le=listing.MAX_PAGE)] = 100,
    since: Annotated[
        schemas.QueryTime | None, Query(description="rows at or after (ISO 8601, with a zone)")
    ] = None,
    until: Annotated[
        schemas.QueryTime | None, Query(description="rows before (ISO 8601, with a zone)")
    ] = None,
) -> Response:
    account_id = account_from_segment(account_id)
    page = await svc.run(
        "ledger", svc.limiter.ledger(account_id, cursor, limit, since=since, until=until)
    )
    return _json(page.to_json())
