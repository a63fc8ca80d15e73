"""An app that embeds allowance: a fake "generate image" endpoint guarded by the FastAPI
dependency, and AI exports guarded by the ASGI middleware, on the built-in policy.

    .venv/bin/uvicorn examples.guarded_app:app        # or: .venv/bin/python examples/guarded_app.py
    curl -X POST localhost:8000/generate -H 'X-Account: acme'        # 200, RateLimit headers
    curl -X POST localhost:8000/generate -H 'X-Account: acme'        # 200
    curl -X POST localhost:8000/generate -H 'X-Account: acme'        # 429 problem+json
    curl -X POST localhost:8000/generate -H 'X-Account: corner-shop' # 403: Free has no access
    curl -X POST localhost:8000/exports/report -H 'X-Account: acme'  # the middleware's route

The store is ``ALLOWANCE_STORE`` (default ``memory://``; e.g. ``sqlite:///guarded.db``).
At start-up it creates three demo accounts: acme (Pro), corner-shop (Free) and big-studio
(Max). A real app creates its accounts when customers subscribe.
"""

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import Depends, FastAPI, Request

from allowance import AsyncLimiter, Decision
from allowance.asgi import LimitMiddleware, Rule
from allowance.fastapi import header, install, limit

DEMO_ACCOUNTS = {"acme": "pro", "corner-shop": "free", "big-studio": "max"}


def count(request: Request) -> int:
    """How many images the request asks for (``?count=N``, default 1)."""
    return int(request.query_params.get("count", "1"))


def build_app(limiter: AsyncLimiter | None = None) -> FastAPI:
    if limiter is None:
        limiter = AsyncLimiter(store=os.environ.get("ALLOWANCE_STORE", "memory://"))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        for account, plan in DEMO_ACCOUNTS.items():
            await limiter.set_account(account, plan)
        yield
        await limiter.close()

    app = FastAPI(title="guarded app", lifespan=lifespan)
    install(app, limiter)  # the guards' limiter, and problem+json answers for denials

    generation = limit("transform.virtual_model", account=header("X-Account"), amount=count)

    @app.post("/generate")
    async def generate(decision: Annotated[Decision, Depends(generation)]) -> dict[str, object]:
        return {"images": decision.granted, "remaining": decision.remaining}

    studio = limit("background.studio", account=header("X-Account"))

    @app.post("/backgrounds/studio", dependencies=[Depends(studio)])
    async def background() -> dict[str, str]:
        return {"background": "studio"}

    @app.post("/exports/{name}")
    async def export(name: str) -> dict[str, str]:
        return {"exported": name}

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    # exports are guarded without touching the route: any ASGI app can be wrapped like this
    export_rule = Rule("/exports", "export.ai", account=header("X-Account"), methods=["POST"])
    app.add_middleware(LimitMiddleware, limiter=limiter, rules=[export_rule])
    return app


app = build_app()

if __name__ == "__main__":
    import uvicorn

    uvicorn.run(app, host="127.0.0.1", port=int(os.environ.get("PORT", "8000")))
