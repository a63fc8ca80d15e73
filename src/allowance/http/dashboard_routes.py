"""The dashboard (CONTRACT section 8): the page at ``/`` with its script and style (package
data under ``http/dashboard/``, no CDN), and the two read routes it needs beyond the
others: the plan table as the seed words it, and what an account's end user would be told
right now for each feature (a check of one unit: nothing is charged)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.staticfiles import StaticFiles

from allowance import validation
from allowance.errors import InvalidRequest
from allowance.http.routes import AccountId, Read, Svc, UserQuery, problems, router
from allowance.http.segments import account_from_segment
from allowance.plan_text import cell_text, features_text, window_text
from allowance.policy import Policy

PAGES = Path(str(resources.files("allowance.http").joinpath("dashboard")))
pages = APIRouter(include_in_schema=False)


def mount(app: FastAPI) -> None:
    """``/`` and ``/dashboard/...``: outside ``/v1``, so they need no key (the page asks for
    one and sends it with each of its calls)."""
    app.include_router(pages)
    app.mount("/dashboard", StaticFiles(directory=PAGES), name="dashboard")


@pages.get("/")
async def dashboard() -> Response:
    return FileResponse(PAGES / "index.html", headers={"Cache-Control": "no-cache"})


def plan_table(policy: Policy) -> dict[str, Any]:
    rows = [
        {
            "limit": limit.name,
            "label": limit.label,
            "features": features_text(limit).split("\n"),
            "cells": [cell_text(limit.cells[plan.name]) for plan in policy.plans],
            "window": window_text(limit).split("\n"),
        }
        for limit in policy.limits.values()
    ]
    return {
        "plans": [{"name": p.name, "title": p.title} for p in policy.plans],
        "features": [{"name": f.name, "title": f.title} for f in policy.features.values()],
        "timezone": policy.timezone,
        "rows": rows,
    }


@router.get(
    "/policy/table",
    summary="The plan table as the seed's help page words it",
    dependencies=[Read],
    responses=problems(403),
)
async def policy_table(svc: Svc) -> Response:
    return JSONResponse(plan_table(await svc.run("policy", svc.limiter.policy_now())))


@router.get(
    "/accounts/{account_id}/answers",
    summary="What the account's end user would be told now, for each feature (charges nothing)",
    dependencies=[Read],
    responses=problems(403, 404),
)
async def answers(
    account_id: AccountId,
    svc: Svc,
    user: UserQuery = None,
) -> Response:
    account_id = account_from_segment(account_id)
    if user is not None:
        validation.text("user", user)  # a bad one is the caller's 422, not a note per feature
    await svc.run("get_account", svc.limiter.get_account(account_id))  # 404 first
    policy = await svc.run("policy", svc.limiter.policy_now())
    found = []
    for feature in policy.features.values():
        entry: dict[str, Any] = {"feature": feature.name, "title": feature.title}
        try:
            decision = await svc.run(
                "check", svc.limiter.check(account_id, feature.name, 1, user=user)
            )
        except InvalidRequest as exc:
            if user is not None or exc.field != "user":
                raise
            entry.update(decision=None, note=str(exc))  # counted per user, and none named
        else:
            entry["decision"] = decision.to_json()
        found.append(entry)
    return JSONResponse({"account": account_id, "user": user, "answers": found})
