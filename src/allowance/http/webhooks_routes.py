"""The ``/v1/webhooks`` routes (admin): add a webhook (its secret shown once), list them,
remove one, read one's deliveries (``webhooks.py``; delivered by ``webhook_worker.py``). A
key bound to accounts is refused: a webhook hears every account's events."""

from __future__ import annotations

import asyncio
from typing import Annotated

from pydantic import BaseModel, Field
from starlette.responses import JSONResponse, Response

from allowance import webhooks
from allowance.http.bound import unbound
from allowance.http.problems import Problem
from allowance.http.routes import Admin, ObjectId, Svc, problems, router
from allowance.http.schemas import Strict
from allowance.keys import ApiKey


class WebhookRequest(Strict):
    url: str = Field(max_length=webhooks.MAX_URL, description="where events are POSTed")
    events: list[str] | None = Field(
        None, min_length=1, description="the event types it hears; left out: every type"
    )


class WebhookBody(BaseModel):
    id: str
    url: str
    events: list[str] | None
    created_at: str


class NewWebhookBody(WebhookBody):
    secret: str = Field(description="signs each delivery; shown this once")


class DeliveryBody(BaseModel):
    event_id: int
    type: str
    status: str = Field(description="pending, delivered or failed (given up)")
    attempts: int
    next_at: str | None
    last_at: str | None
    code: int | None = Field(description="the last answer's HTTP status")
    error: str | None


class DeliveriesBody(BaseModel):
    deliveries: list[DeliveryBody]


@router.post(
    "/webhooks",
    summary="Add a webhook (its secret shown once)",
    status_code=201,
    response_model=NewWebhookBody,
    responses=problems(403, 422),
)
async def add_webhook(body: WebhookRequest, svc: Svc, caller: Annotated[ApiKey, Admin]) -> Response:
    unbound(caller, "webhooks")
    now = await asyncio.to_thread(svc.now)
    hook = await asyncio.to_thread(webhooks.add, svc.whole.sync.store, body.url, body.events, now)
    return JSONResponse({**hook.to_json(), "secret": hook.secret}, status_code=201)


@router.get(
    "/webhooks",
    summary="Every webhook (never the secrets)",
    response_model=list[WebhookBody],
    responses=problems(403),
)
async def list_webhooks(svc: Svc, caller: Annotated[ApiKey, Admin]) -> Response:
    unbound(caller, "webhooks")
    hooks = await asyncio.to_thread(webhooks.registered, svc.whole.sync.store)
    return JSONResponse([h.to_json() for h in hooks])


@router.delete(
    "/webhooks/{hook_id}",
    summary="Remove a webhook",
    status_code=204,
    response_class=Response,
    responses=problems(403, 404),
)
async def remove_webhook(hook_id: ObjectId, svc: Svc, caller: Annotated[ApiKey, Admin]) -> Response:
    unbound(caller, "webhooks")
    if not await asyncio.to_thread(webhooks.remove, svc.whole.sync.store, hook_id):
        raise _unknown(hook_id)
    return Response(status_code=204)


@router.get(
    "/webhooks/{hook_id}/deliveries",
    summary="A webhook's deliveries, newest first",
    response_model=DeliveriesBody,
    responses=problems(403, 404),
)
async def list_deliveries(
    hook_id: ObjectId, svc: Svc, caller: Annotated[ApiKey, Admin]
) -> Response:
    unbound(caller, "webhooks")
    found = await asyncio.to_thread(webhooks.deliveries, svc.whole.sync.store, hook_id)
    if found is None:
        raise _unknown(hook_id)
    return JSONResponse({"deliveries": [d.to_json() for d in found]})


def _unknown(hook_id: str) -> Problem:
    return Problem(404, "unknown-webhook", "Unknown webhook", f"no webhook {hook_id!r}")
