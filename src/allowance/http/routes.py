"""The ``/v1`` routes of CONTRACT.md section 5. Each validates, calls ``AsyncLimiter`` and
answers; errors are raised and become problem+json in ``app.py``."""

from __future__ import annotations

import time
from collections.abc import Awaitable
from dataclasses import dataclass, replace
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, Header, Path, Query, Request
from starlette.responses import JSONResponse, Response

from allowance import listing
from allowance.aio import AsyncLimiter
from allowance.errors import StoreError
from allowance.http import schemas
from allowance.http.answers import decision_answer, decision_headers, decision_status
from allowance.http.auth import KeyCache, require
from allowance.http.bound import AccountBoundLimiter
from allowance.http.metrics import Metrics
from allowance.http.problems import Problem, invalid
from allowance.http.segments import account_from_segment
from allowance.keys import ApiKey
from allowance.stores.keyring import KeyRing
from allowance.types import UNCHANGED, Decision, iso

T = TypeVar("T")
MAX_ID = 200


@dataclass
class Service:
    """What the routes share; one per app, on ``app.state.service``. A caller whose key is
    bound to accounts gets a copy whose ``limiter`` acts for those only (``for_key``)."""

    limiter: AsyncLimiter
    ring: KeyRing
    keys: KeyCache
    metrics: Metrics
    root: AsyncLimiter | None = None  # the service's own limiter (None: ``limiter``)

    def __post_init__(self) -> None:
        if self.root is None:
            self.root = self.limiter

    @property
    def whole(self) -> AsyncLimiter:
        """The service's limiter, for every account: its clock, its readiness."""
        assert self.root is not None
        return self.root

    def for_key(self, key: ApiKey) -> Service:
        if key.accounts is None:
            return self
        return replace(self, limiter=AccountBoundLimiter(self.whole, key))

    def now(self) -> float:
        """The limiter's clock (injected, or the store's); blocking: call in a thread."""
        injected = self.whole.sync._now()
        return self.whole.store.now() if injected is None else injected

    async def run(self, operation: str, call: Awaitable[T]) -> T:
        try:
            return await call
        except StoreError:
            self.metrics.store_errors.labels(operation).inc()
            raise


async def service(request: Request) -> Service:
    # async on purpose: FastAPI runs a plain ``def`` dependency in its thread pool, a thread
    # hop on every request (bench_http.py measured it)
    found: Service = request.app.state.service
    key = request.scope.get("state", {}).get("api_key")  # AuthMiddleware's, on every /v1
    return found.for_key(key) if isinstance(key, ApiKey) else found


Svc = Annotated[Service, Depends(service)]
Read = Depends(require("read"))
Decide = Depends(require("decide"))
Admin = Depends(require("admin"))
IdHeader = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=MAX_ID,
        description="works like the body's idempotency_key",
    ),
]
# "/" in an id is sent as %2F (see segments.py); the limiter checks its length once decoded
# the user whose counters a limit with scope user or user_global meters (left out without)
UserQuery = Annotated[
    str | None,
    Query(min_length=1, max_length=MAX_ID, description="meter this user's per-user limits"),
]
AccountId = Annotated[
    str,
    Path(
        min_length=1,
        max_length=3 * MAX_ID,  # each character escaped at most once: "/" -> %2F
        description=f"the account id, percent-encoded (at most {MAX_ID} characters decoded)",
        examples=["acme", "team%2F42"],
    ),
]
ObjectId = Annotated[str, Path(min_length=1, max_length=MAX_ID)]


def problem_content() -> dict[str, Any]:
    """The problem+json media type with its schema (FastAPI's ``model`` only fills
    application/json), so a checker validates the bodies of problems too."""
    return {"application/problem+json": {"schema": {"$ref": "#/components/schemas/ProblemBody"}}}


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    out: dict[int | str, dict[str, Any]] = {}
    for status in (401, 422, 503, *statuses):
        out[status] = {
            "model": schemas.ProblemBody,
            "content": problem_content(),
            "description": "a problem (RFC 9457)",
        }
    return out


DENIALS: dict[int | str, dict[str, Any]] = {
    403: {
        "model": schemas.DecisionBody,
        "content": problem_content(),  # a key without the decide scope gets a problem
        "description": "no access on this plan (a decision), or a key's scope is too small",
    },
    429: {"model": schemas.DecisionBody, "description": "a limit is reached; see Retry-After"},
}

router = APIRouter(prefix="/v1")


def _log(request: Request, body: schemas.DecisionRequest, decision: Decision | None) -> None:
    fields = request.scope["state"]["log"]
    fields.update(account=body.account, feature=body.feature, user=body.user)
    if decision is not None:
        fields["outcome"] = decision.outcome


def _key(body: schemas.DecisionRequest, header: str | None) -> str | None:
    if header is not None and body.idempotency_key not in (None, header):
        raise invalid("idempotency_key", "differs from the Idempotency-Key header")
    return body.idempotency_key or header


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse(data, status_code=status, headers=headers)


def _decision(decision: Decision, charged: bool = True) -> Response:
    status, headers, body = decision_answer(decision, charged)
    return Response(body, status_code=status, headers=headers)


@router.post(
    "/consume",
    summary="Decide and charge",
    dependencies=[Decide],
    response_model=schemas.DecisionBody,
    responses={**DENIALS, **problems(404, 409)},
)
async def consume(
    request: Request, body: schemas.DecisionRequest, svc: Svc, idempotency_key: IdHeader = None
) -> Response:
    start = time.perf_counter()
    d = await svc.run(
        "consume",
        svc.limiter.consume(
            body.account,
            body.feature,
            body.amount,
            partial=body.partial,
            idempotency_key=_key(body, idempotency_key),
            user=body.user,
        ),
    )
    svc.metrics.decided("consume", body.feature, d, time.perf_counter() - start)
    _log(request, body, d)
    return _decision(d)


@router.post(
    "/check",
    summary="Decide without charging",
    dependencies=[Decide],
    response_model=schemas.DecisionBody,
    responses=problems(403, 404),
)
async def check(request: Request, body: schemas.DecisionRequest, svc: Svc) -> Response:
    start = time.perf_counter()
    d = await svc.run(
        "check",
        svc.limiter.check(body.account, body.feature, body.amount, partial=body.partial),
    )
    svc.metrics.decided("check", body.feature, d, time.perf_counter() - start)
    _log(request, body, d)
    return _decision(d, charged=False)


@router.post(
    "/reservations",
    summary="Hold units until commit, release or expiry",
    dependencies=[Decide],
    status_code=201,
    response_model=schemas.ReservationBody,
    responses={
        403: {
            "model": schemas.ReservationBody,
            "content": problem_content(),  # a key without the decide scope gets a problem
            "description": "no access (id is null), or a key's scope is too small",
        },
        429: {"model": schemas.ReservationBody, "description": "limit reached (id is null)"},
        **problems(404, 409),
    },
)
async def reserve(
    request: Request,
    body: schemas.ReservationRequest,
    svc: Svc,
    idempotency_key: IdHeader = None,
) -> Response:
    start = time.perf_counter()
    r = await svc.run(
        "reserve",
        svc.limiter.reserve(
            body.account,
            body.feature,
            body.amount,
            body.ttl,
            partial=body.partial,
            idempotency_key=_key(body, idempotency_key),
            user=body.user,
        ),
    )
    d = r.decision
    svc.metrics.decided("reserve", body.feature, d, time.perf_counter() - start)
    if r.id is not None:
        svc.metrics.reserved(r.id, body.ttl)
    _log(request, body, d)
    data = {"id": r.id, "expires_at": iso(r.expires_at), "decision": d.to_json()}
    return _json(data, 201 if d.allowed else decision_status(d), decision_headers(d))


@router.post(
    "/reservations/{reservation_id}/commit",
    summary="Make a reservation's units final",
    dependencies=[Decide],
    response_model=schemas.CommitBody,
    responses=problems(403, 404, 410, 429),
)
async def commit(
    reservation_id: ObjectId, svc: Svc, body: schemas.CommitRequest | None = None
) -> Response:
    amount = None if body is None else body.amount
    await svc.run("commit", svc.limiter.commit(reservation_id, amount))
    svc.metrics.settled(reservation_id)
    return _json({"id": reservation_id, "status": "committed"})


@router.delete(
    "/reservations/{reservation_id}",
    summary="Return a reservation's units",
    dependencies=[Decide],
    status_code=204,
    response_class=Response,
    responses=problems(403, 404),
)
async def release(reservation_id: ObjectId, svc: Svc) -> Response:
    await svc.run("release", svc.limiter.release(reservation_id))
    svc.metrics.settled(reservation_id)
    return Response(status_code=204)


@router.put(
    "/accounts/{account_id}",
    summary="Create or change an account",
    dependencies=[Admin],
    response_model=schemas.AccountBody,
    responses={201: {"model": schemas.AccountBody, "description": "created"}, **problems(403)},
)
async def put_account(account_id: AccountId, body: schemas.AccountRequest, svc: Svc) -> Response:
    account_id = account_from_segment(account_id)
    # a JSON null removes the anchor; a body without the field leaves it as it was
    anchor = body.billing_anchor if "billing_anchor" in body.model_fields_set else UNCHANGED
    account, created = await svc.run(
        "put_account",
        svc.limiter.put_account(account_id, body.plan, body.seats, billing_anchor=anchor),
    )
    return _json(account.to_json(), 201 if created else 200)


@router.get(
    "/accounts",
    summary="Accounts by id, a page at a time",
    dependencies=[Read],
    response_model=schemas.AccountPageBody,
    responses=problems(403),
)
async def list_accounts(
    svc: Svc,
    prefix: Annotated[str, Query(max_length=MAX_ID, description="ids that start so")] = "",
    cursor: Annotated[
        str | None, Query(max_length=listing.MAX_CURSOR, description="a page's next_cursor")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=listing.MAX_PAGE)] = listing.DEFAULT_PAGE,
) -> Response:
    found = await svc.run("accounts", svc.limiter.accounts(prefix, cursor, limit))
    return _json(found.to_json())


@router.get(
    "/accounts/{account_id}",
    summary="An account",
    dependencies=[Read],
    response_model=schemas.AccountBody,
    responses=problems(403, 404),
)
async def get_account(account_id: AccountId, svc: Svc) -> Response:
    account_id = account_from_segment(account_id)
    account = await svc.run("get_account", svc.limiter.get_account(account_id))
    return _json(account.to_json())


@router.get(
    "/accounts/{account_id}/usage",
    summary="An account's meters",
    dependencies=[Read],
    response_model=schemas.UsageBody,
    responses=problems(403, 404),
)
async def usage(account_id: AccountId, svc: Svc, user: UserQuery = None) -> Response:
    account_id = account_from_segment(account_id)
    account = await svc.run("get_account", svc.limiter.get_account(account_id))
    meters = await svc.run("usage", svc.limiter.usage(account_id, user=user))
    return _json(
        {"account": account.id, "plan": account.plan, "meters": [m.to_json() for m in meters]}
    )


@router.put(
    "/load-factor",
    summary="Lower limits for everyone (high demand)",
    dependencies=[Admin],
    response_model=schemas.LoadFactorBody,
    responses=problems(403),
)
async def put_load_factor(body: schemas.LoadFactorRequest, svc: Svc) -> Response:
    factors = await svc.run("load_factor", svc.limiter.set_load_factor(body.factor, body.limits))
    return _json({"factors": factors})


@router.get(
    "/load-factor",
    summary="The load factor of each limit",
    dependencies=[Read],
    response_model=schemas.LoadFactorBody,
    responses=problems(403),
)
async def get_load_factor(svc: Svc) -> Response:
    return _json({"factors": await svc.run("load_factor", svc.limiter.load_factors())})


@router.put(
    "/policy",
    summary="Put a policy in force on every server of the store (a policy file as body)",
    dependencies=[Admin],
    responses=problems(403, 422),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/yaml": {"schema": {"type": "string"}}},
        }
    },
)
async def put_policy(request: Request, svc: Svc) -> Response:
    try:
        text = (await request.body()).decode("utf-8")
    except UnicodeDecodeError:
        raise Problem(400, "bad-request", "Bad request", "a policy file is UTF-8 text") from None
    policy = await svc.run("put_policy", svc.limiter.put_policy(text))
    return _json(policy.to_data())


@router.get("/policy", summary="The policy in force", dependencies=[Read], responses=problems(403))
async def policy(svc: Svc) -> Response:
    await svc.run("policy", svc.limiter.policy_now())  # one put in the store meanwhile, if due
    return _json(svc.limiter.policy.to_data())
