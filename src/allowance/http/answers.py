"""A Decision as an HTTP answer, shared by the service and the guards: the status, the
``Retry-After`` header and the IETF rate-limit headers (draft-ietf-httpapi-ratelimit-headers:
``RateLimit-Policy: "name";q=max;w=window`` and ``RateLimit: "name";r=remaining;t=reset``,
for the limit that binds the decision)."""

from __future__ import annotations

from math import ceil
from typing import Any

from allowance.http.problems import ENCODE, Problem
from allowance.types import Decision


def decision_status(decision: Decision) -> int:
    """200 granted; 429 for a limit that frees again (``Retry-After``); 403 when only another
    plan would grant it (no access, or more in one request than the plan allows)."""
    if decision.allowed:
        return 200
    return 429 if decision.reason == "limit_reached" else 403


def decision_headers(decision: Decision) -> dict[str, str]:
    headers = {}
    quota = decision.quota
    if quota is not None:
        name = quota.limit.replace("\\", "\\\\").replace('"', '\\"')
        headers["RateLimit-Policy"] = f'"{name}";q={quota.max};w={ceil(quota.window)}'
        headers["RateLimit"] = f'"{name}";r={quota.remaining};t={ceil(quota.reset_after)}'
    if not decision.allowed and decision.retry_after is not None:
        headers["Retry-After"] = str(ceil(decision.retry_after))
    return headers


def decision_answer(decision: Decision, charged: bool) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and JSON body of a decision route (``charged``: consume or reserve,
    whose denials answer 429/403; a check always answers 200). The one encoding of a
    decision body, for the FastAPI routes and the plain-ASGI fast path alike."""
    headers = decision_headers(decision)
    headers["content-type"] = "application/json"
    body = ENCODE(decision.to_json()).encode()
    return decision_status(decision) if charged else 200, headers, body


def decision_problem(decision: Decision) -> Problem:
    """A denial as a problem body (for guarded app routes): the decision's fields ride along
    as extension members, so a client reads the same ``resets_at`` and ``upgrade``."""
    fields: dict[str, Any] = decision.to_json()
    if decision.reason == "no_access":
        slug, title = "no-access", "Feature not in plan"
    elif decision.reason == "request_too_large":
        slug, title = "request-too-large", "Request too large for the plan"
    else:
        slug, title = "limit-reached", "Limit reached"
    return Problem(
        decision_status(decision),
        slug,
        title,
        decision.message,
        fields,
        decision_headers(decision),
    )
