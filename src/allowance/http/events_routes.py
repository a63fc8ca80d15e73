"""``GET /v1/events`` (read): the events (CONTRACT 8, ``events.py``) a page at a time. A key
bound to accounts reads its accounts' only, one at a time (``bound.py``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query
from starlette.responses import Response

from allowance import events
from allowance.http import schemas
from allowance.http.routes import MAX_ID, Read, Svc, _json, problems, router


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
