"""The floor of the HTTP stack for ``bench_http.py``: a FastAPI app whose ``POST /v1/consume``
returns a constant decision, served by uvicorn with ``allowance serve``'s settings. It reads
no body, checks no key and touches no store."""

from __future__ import annotations

from fastapi import FastAPI
from starlette.responses import JSONResponse, Response

DECISION = {
    "allowed": True,
    "granted": 1,
    "reason": "ok",
    "limit": None,
    "remaining": 3999,
    "resets_at": None,
    "retry_after": None,
    "upgrade": None,
    "message": "Granted.",
    "fair_use_exceeded": False,
    "quota": None,
}

app = FastAPI()


@app.post("/v1/consume")
async def consume() -> Response:
    return JSONResponse(DECISION)
