"""Who is calling: ``Authorization: Bearer <key>`` on every ``/v1`` route.

``AuthMiddleware`` answers 401 before a body is even read (a missing, unknown or revoked
key); a route's ``require(scope)`` dependency answers 403 for a key whose scope is too
small. Keys are looked up by digest through ``KeyCache``: a few seconds of caching keeps the
store out of the hot path, so a revocation made through another process takes effect within
``ttl`` seconds (at once in the process that revoked it).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Annotated, Any

from fastapi import Depends
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.requests import Request
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Receive, Scope, Send

from allowance.errors import AllowanceError, StoreError
from allowance.http.problems import Problem, for_status, from_error
from allowance.keys import ApiKey, allows, digest
from allowance.keys import Scope as KeyScope
from allowance.ledger import acting_as
from allowance.stores.keyring import KeyRing

log = logging.getLogger("allowance.http")
CACHE_TTL = 5.0
TOUCH_EVERY = 60.0  # last-used time is recorded at most this often per key and process
MAX_CACHED = 10_000
CHALLENGE = {"WWW-Authenticate": 'Bearer realm="allowance"'}
# for /openapi.json (and the docs' Authorize button) only: AuthMiddleware has checked the key
BEARER = HTTPBearer(auto_error=False, description="an API key: alw_...")


class KeyCache:
    def __init__(self, ring: KeyRing, now: Callable[[], float], ttl: float = CACHE_TTL) -> None:
        self._ring = ring
        self._now = now  # the store's (or injected) clock, for last-used times
        self._ttl = ttl
        self._entries: dict[str, tuple[ApiKey | None, float]] = {}  # digest -> (key, until)
        self._touched: dict[str, float] = {}  # key id -> monotonic time of the last touch
        self._tasks: set[asyncio.Task[None]] = set()

    async def resolve(self, secret: str) -> ApiKey | None:
        """The active key for this secret, or None."""
        presented = digest(secret)
        mono = time.monotonic()
        entry = self._entries.get(presented)
        if entry is None or entry[1] < mono:
            try:
                key = await asyncio.to_thread(self._ring.find, presented)
            except StoreError:
                if entry is None:
                    raise
                key = entry[0]  # the store is down: a key known a moment ago still counts
            if key is None and len(self._entries) >= MAX_CACHED:
                # unknown keys tried at random must not grow memory, nor push out known ones
                for d in [d for d, (k, _) in self._entries.items() if k is None]:
                    del self._entries[d]
            self._entries[presented] = (key, mono + self._ttl)
        else:
            key = entry[0]
        if key is None or key.revoked_at is not None or not key.matches(presented):
            return None
        if mono - self._touched.get(key.id, -TOUCH_EVERY) >= TOUCH_EVERY:
            self._touched[key.id] = mono
            task = asyncio.create_task(asyncio.to_thread(self._touch, key.id))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return key

    def _touch(self, key_id: str) -> None:
        try:
            self._ring.touch(key_id, self._now())
        except AllowanceError as exc:  # only the last-used time is lost
            log.warning("could not record the use of key %s: %s", key_id, exc)

    def forget(self, key_id: str) -> None:
        for d, (key, _) in list(self._entries.items()):
            if key is not None and key.id == key_id:
                del self._entries[d]


def bearer(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


Needs = Callable[[Scope], "KeyScope | None"]


class AuthMiddleware:
    """401 for ``/v1`` requests without an active key, 403 for a key whose scope is too small
    for the route (``needs``), both before a body is read; the key goes to ``request.state``."""

    def __init__(
        self,
        app: ASGIApp,
        cache: Callable[[], KeyCache],
        needs: Needs = lambda scope: None,
        prefix: str = "/v1/",
    ) -> None:
        self.app = app
        self.cache = cache
        self.needs = needs
        self.prefix = prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(self.prefix):
            await self.app(scope, receive, send)
            return
        header = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                header = value.decode("latin-1")
                break
        secret = bearer(header)
        if secret is None:
            problem = for_status(401, "send Authorization: Bearer <key>", CHALLENGE)
        else:
            try:
                key = await self.cache().resolve(secret)
            except AllowanceError as exc:  # the store is down: 503, as for a decision
                problem = from_error(exc, "the key lookup")
            else:
                needed = None if key is None else self.needs(scope)
                if key is None:
                    problem = for_status(401, "the key is unknown or revoked", CHALLENGE)
                elif needed is not None and not allows(key.scope, needed):
                    problem = insufficient_scope(needed, key.scope)
                else:
                    scope.setdefault("state", {})["api_key"] = key
                    with acting_as(key.id):  # the ledger's key_id for what this request does
                        await self.app(scope, receive, send)
                    return
        await problem.response()(scope, receive, send)


def require(needed: KeyScope) -> Callable[[Request], Awaitable[ApiKey]]:
    """A dependency: the caller's key, which must hold ``needed`` (or a wider scope)."""

    async def dependency(
        request: Request,
        _documented: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)] = None,
    ) -> ApiKey:
        key: Any = getattr(request.state, "api_key", None)
        if not isinstance(key, ApiKey):  # a route outside /v1 asked; never expected
            raise for_status(401, "send Authorization: Bearer <key>", CHALLENGE)
        if not allows(key.scope, needed):
            raise insufficient_scope(needed, key.scope)
        return key

    dependency.__name__ = f"require_{needed}"
    _NEEDED[dependency] = needed
    return dependency


def insufficient_scope(needed: KeyScope, held: str) -> Problem:
    return Problem(
        403,
        "insufficient-scope",
        "Insufficient scope",
        f"this route needs a {needed!r} key; this key is {held!r}",
    )


_NEEDED: dict[Callable[..., Any], KeyScope] = {}  # each require() dependency: its scope


def route_scopes(routes: Sequence[BaseRoute]) -> Needs:
    """``needs`` for ``AuthMiddleware``: the scope the route a request finds requires (read
    from its ``require`` dependency), so a small key is refused before its body is parsed."""
    table = []
    for route in routes:
        needed = _needed(route.dependant) if isinstance(route, APIRoute) else None
        if needed is not None:
            table.append((route, needed))

    def needs(scope: Scope) -> KeyScope | None:
        for route, needed in table:
            if route.matches(scope)[0] is Match.FULL:
                return needed
        return None

    return needs


def _needed(dependant: Dependant) -> KeyScope | None:
    for dep in dependant.dependencies:
        found = _NEEDED.get(dep.call) if dep.call is not None else None
        if found is None:
            found = _needed(dep)
        if found is not None:
            return found
    return None
