"""The ``/v1/keys`` routes (admin): create a key (its secret shown once), list them, revoke
one. A key bound to accounts is refused here: it could otherwise make itself a key for
every account (``bound.unbound``)."""

from __future__ import annotations

import asyncio
from typing import Annotated

from starlette.responses import JSONResponse, Response

from allowance.http import schemas
from allowance.http.bound import unbound
from allowance.http.problems import Problem
from allowance.http.routes import Admin, ObjectId, Svc, problems, router
from allowance.keys import ApiKey, new_key


@router.post(
    "/keys",
    summary="Create a key (shown once)",
    status_code=201,
    response_model=schemas.NewKeyBody,
    responses=problems(403),
)
async def create_key(
    body: schemas.KeyRequest, svc: Svc, caller: Annotated[ApiKey, Admin]
) -> Response:
    unbound(caller, "creating a key")  # else it could make itself a key for every account
    now = await asyncio.to_thread(svc.now)
    key, secret = new_key(body.scope, body.name, now, body.accounts)
    await asyncio.to_thread(svc.ring.add, key)
    return JSONResponse({**key.to_json(), "key": secret}, status_code=201)


@router.get(
    "/keys",
    summary="Every key (never the secrets)",
    response_model=list[schemas.KeyBody],
    responses=problems(403),
)
async def list_keys(svc: Svc, caller: Annotated[ApiKey, Admin]) -> Response:
    unbound(caller, "the list of keys")
    keys = await asyncio.to_thread(svc.ring.all)
    return JSONResponse([k.to_json() for k in keys])


@router.delete(
    "/keys/{key_id}",
    summary="Revoke a key",
    status_code=204,
    response_class=Response,
    responses=problems(403, 404),
)
async def revoke_key(key_id: ObjectId, svc: Svc, caller: Annotated[ApiKey, Admin]) -> Response:
    unbound(caller, "revoking a key")
    now = await asyncio.to_thread(svc.now)
    if not await asyncio.to_thread(svc.ring.revoke, key_id, now):
        raise Problem(404, "unknown-key", "Unknown key", f"no key {key_id!r}")
    svc.keys.forget(key_id)
    return Response(status_code=204)
