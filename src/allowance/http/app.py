"""The HTTP service: ``create_app(limiter)`` builds the FastAPI app; ``app_from_env`` is the
factory ``allowance serve`` hands to uvicorn (its settings come through ``ALLOWANCE_*``
environment variables, so every worker process builds the same app)."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi_offline import FastAPIOffline
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse, Response
from starlette.routing import Match, Route
from starlette.types import ASGIApp, Scope

from allowance import __version__, webhooks
from allowance.aio import AsyncLimiter
from allowance.clock import FileClock
from allowance.errors import AllowanceError
from allowance.http import (
    dashboard_routes,
    events_routes,  # noqa: F401 - registers its routes on the router
    keys_routes,  # noqa: F401 - registers its routes on the router
    schemas,
    terms_routes,  # noqa: F401 - registers its routes on the router
    webhooks_routes,  # noqa: F401 - registers its routes on the router
)
from allowance.http.auth import CACHE_TTL, AuthMiddleware, KeyCache, route_scopes
from allowance.http.body_limit import BodyLimitMiddleware
from allowance.http.fastpath import FastDecisions
from allowance.http.logs import AccessLogMiddleware, access_log
from allowance.http.logs import configure as configure_logs
from allowance.http.metrics import Metrics
from allowance.http.overload import Admission, refusals
from allowance.http.problems import Problem, for_status, from_error, invalid
from allowance.http.routes import Service, problem_content, router
from allowance.http.segments import AccountSegments
from allowance.http.upkeep import start_sweeping
from allowance.http.webhook_worker import WebhookWorker
from allowance.policy import load_policy
from allowance.stores.upkeep import SWEEP_INTERVAL

log = logging.getLogger("allowance.http")
JSON_TYPES = ("application/json", "application/problem+json", "")

DESCRIPTION = """Plan-based usage limits over HTTP. Every `/v1` route needs
`Authorization: Bearer <key>`; scopes nest: `read` < `decide` < `admin`. Errors are
`application/problem+json` (RFC 9457). Decisions carry `Retry-After` when denied and the IETF
`RateLimit-Policy` / `RateLimit` headers for the limit that binds them."""


def create_app(
    limiter: AsyncLimiter,
    *,
    bootstrap: str | None = None,
    key_cache_ttl: float = CACHE_TTL,
    sweep_interval: float = 0.0,
    policy_file: str | None = None,
    webhook_retry: float | None = webhooks.FIRST_RETRY,
) -> FastAPI:
    """The service over ``limiter``. ``bootstrap``: a secret made an admin key at start-up;
    ``sweep_interval``: seconds between cleanups of expired records (0: none);
    ``policy_file``: the limiter's policy file, read again on SIGHUP; ``webhook_retry``:
    seconds before a failed webhook delivery's first retry (None: no webhook worker here)."""
    metrics = Metrics()
    metrics.watch(limiter.guard)
    ring = limiter.store.keyring()
    svc = Service(limiter, ring, KeyCache(ring, lambda: svc.now(), key_cache_ttl), metrics)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        usable = not bootstrap or await asyncio.to_thread(
            lambda: ring.ensure_bootstrap(bootstrap, svc.now())
        )
        if not usable:
            log.warning("ALLOWANCE_BOOTSTRAP_KEY names a revoked key; it stays revoked")
        sweeper = start_sweeping(limiter, sweep_interval)
        worker = None
        if webhook_retry is not None:
            worker = WebhookWorker(limiter.sync.store, first_retry=webhook_retry).start()
        hup = policy_file is not None and _reload_on_hup(limiter, policy_file)
        yield
        if hup:
            asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
        for task in (sweeper, worker):
            if task is not None:
                task.cancel()
        refusals.flush()  # the 503s of the last second, counted
        for handler in access_log.handlers:
            handler.flush()  # the access lines still batched
        await limiter.close()

    # /docs and /redoc with their scripts served from here, not from a CDN (fastapi-offline)
    app = FastAPIOffline(
        title="allowance",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        responses={
            400: {
                "model": schemas.ProblemBody,
                "content": problem_content(),
                "description": "malformed JSON",
            },
            413: {
                "model": schemas.ProblemBody,
                "content": problem_content(),
                "description": "body over 64 KiB",
            },
            415: {
                "model": schemas.ProblemBody,
                "content": problem_content(),
                "description": "a body that is not application/json",
            },
        },
    )
    app.state.service = svc
    app.include_router(router)
    dashboard_routes.mount(app)  # the page at / (its calls are the /v1 routes')
    _handlers(app, metrics)
    _operations(app, svc)
    # innermost first: keys and scopes (on the route a decoded path finds), paths, sizes,
    # then the log (it sees every answer)
    app.add_middleware(AuthMiddleware, cache=lambda: svc.keys, needs=route_scopes(every_route(app)))
    app.add_middleware(AccountSegments)
    app.add_middleware(BodyLimitMiddleware)
    app.add_middleware(AccessLogMiddleware, metrics=metrics)
    return app


def serve_app(app: FastAPI, max_inflight: int = 0) -> ASGIApp:
    """What uvicorn runs: the hot routes answered in front of ``app`` (outside FastAPI's own
    per-request wrapping too), everything else by ``app``; beyond ``max_inflight`` requests
    in flight (0: no bound), a 503 at once."""
    svc: Service = app.state.service
    return Admission(FastDecisions(app, svc), max_inflight, svc.metrics)


def _operations(app: FastAPI, svc: Service) -> None:
    @app.get("/healthz", summary="Liveness", response_model=schemas.HealthBody, tags=["ops"])
    async def healthz() -> Response:
        return JSONResponse({"status": "ok"})

    @app.get(
        "/readyz",
        summary="Readiness: the store answers",
        response_model=schemas.HealthBody,
        responses={503: {"model": schemas.ProblemBody}},
        tags=["ops"],
    )
    async def readyz() -> Response:
        await asyncio.to_thread(svc.whole.store.now)
        return JSONResponse({"status": "ready"})

    @app.get("/metrics", summary="Prometheus metrics", tags=["ops"], response_class=Response)
    async def metrics() -> Response:
        return Response(generate_latest(svc.metrics.registry), media_type=CONTENT_TYPE_LATEST)


def _handlers(app: FastAPI, metrics: Metrics) -> None:
    @app.exception_handler(Problem)
    async def on_problem(request: Request, exc: Problem) -> Response:
        return exc.response()

    @app.exception_handler(AllowanceError)
    async def on_error(request: Request, exc: AllowanceError) -> Response:
        return from_error(exc, f"{request.method} {request.url.path}").response()

    @app.exception_handler(RequestValidationError)
    async def on_invalid(request: Request, exc: RequestValidationError) -> Response:
        media = request.headers.get("content-type", "application/json").split(";")[0].strip()
        if request.method in ("POST", "PUT") and media.lower() not in JSON_TYPES:
            # FastAPI leaves such a body unparsed; say what to send instead of "not an object"
            detail = f"send the body as application/json (got {media!r})"
            return for_status(415, detail).response()
        return validation_problem(exc.errors()).response()

    @app.exception_handler(HTTPException)
    async def on_http(request: Request, exc: HTTPException) -> Response:
        headers = dict(exc.headers or {})
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        if exc.status_code == 404:
            detail = f"no route {request.url.path}"
        elif exc.status_code == 405:
            detail = f"{request.method} is not allowed on {request.url.path}"
            # Starlette names the methods of the first route on the path only: name them all
            headers["Allow"] = ", ".join(allowed_methods(app, request.scope))
        elif isinstance(exc.__cause__, RecursionError):  # FastAPI's body parser met it
            detail = "the body is not valid JSON: nested too deeply"
        return for_status(exc.status_code, detail, headers).response()

    @app.exception_handler(Exception)
    async def on_crash(request: Request, exc: Exception) -> Response:
        return from_error(exc, f"{request.method} {request.url.path}").response()


def every_route(app: FastAPI) -> list[Route]:
    """The app's routes and the ``/v1`` router's (FastAPI keeps an included router whole)."""
    return [r for r in (*app.routes, *router.routes) if isinstance(r, Route)]


def allowed_methods(app: FastAPI, scope: Scope) -> list[str]:
    """Every method some route answers on this scope's path."""
    methods: set[str] = set()
    for route in every_route(app):
        if route.methods and route.matches(scope)[0] is not Match.NONE:
            methods |= route.methods
    return sorted(methods)


def validation_problem(errors: Any) -> Problem:
    """FastAPI's validation errors as one problem naming each wrong field."""
    listed = []
    for err in errors:
        if err.get("type") == "json_invalid":
            return for_status(400, "the body is not valid JSON: " + str(err.get("msg", "")))
        loc = [str(p) for p in err.get("loc", ()) if p not in ("body",)]
        where = ".".join(loc) or "body"
        if err.get("loc", ())[:1] in (("header",), ("query",)):  # named as the client sends it
            where = loc[-1]
        listed.append({"field": where, "message": str(err.get("msg", "invalid"))})
    if not listed:
        return invalid("body", "invalid")
    first = listed[0]
    return invalid(first["field"], first["message"], listed)


def _reload_on_hup(limiter: AsyncLimiter, path: str) -> bool:
    """Read the policy file again on SIGHUP (one worker; with ``--workers`` uvicorn's
    supervisor restarts the workers on SIGHUP instead, which read it too). A file that does
    not load leaves the policy in force, with a warning; a policy kept in the store (``PUT
    /v1/policy``) still wins over the file."""

    def reload() -> None:
        try:
            policy = load_policy(path)
        except AllowanceError as exc:
            log.warning("SIGHUP: kept the policy in force: %s", exc)
            return
        limiter.sync.use_local_policy(policy)
        log.info("SIGHUP: read %s again (%s)", path, policy)

    try:
        asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, reload)
    except (NotImplementedError, RuntimeError):  # no signals here (not the main thread)
        return False
    return True


def app_from_env() -> ASGIApp:
    """For uvicorn's ``factory=True``: ``ALLOWANCE_STORE``, ``ALLOWANCE_POLICY``,
    ``ALLOWANCE_BOOTSTRAP_KEY``, ``ALLOWANCE_SWEEP_INTERVAL``, ``ALLOWANCE_WEBHOOK_RETRY`` and
    ``ALLOWANCE_MAX_INFLIGHT`` as
    ``allowance serve`` set them; ``ALLOWANCE_CLOCK_FILE`` (tests only) makes the time the
    number in that file."""
    configure_logs()
    clock_file = os.environ.get("ALLOWANCE_CLOCK_FILE")
    limiter = AsyncLimiter(
        os.environ.get("ALLOWANCE_POLICY") or None,
        os.environ.get("ALLOWANCE_STORE", "sqlite:///allowance.db"),
        clock=FileClock(clock_file) if clock_file else None,
    )
    bootstrap = os.environ.get("ALLOWANCE_BOOTSTRAP_KEY") or None
    interval = float(os.environ.get("ALLOWANCE_SWEEP_INTERVAL") or SWEEP_INTERVAL)
    max_inflight = int(os.environ.get("ALLOWANCE_MAX_INFLIGHT") or 0)
    policy_file = os.environ.get("ALLOWANCE_POLICY") or None
    retry = float(os.environ.get("ALLOWANCE_WEBHOOK_RETRY") or webhooks.FIRST_RETRY)
    app = create_app(
        limiter,
        bootstrap=bootstrap,
        sweep_interval=interval,
        policy_file=policy_file,
        webhook_retry=retry,
    )
    return serve_app(app, max_inflight)
