"""The hot routes, ``POST /v1/consume`` and ``POST /v1/check``, answered in plain ASGI.

FastAPI's request handling (dependencies, pydantic models, three middlewares, the response
classes) costs several times a decision, so a well-formed request from a valid key is read,
decided and answered here directly. Anything else — a bad or missing key, a scope too small,
a body that is not a small JSON object of the documented members, an argument the limiter
refuses — is handed, body and all, to the FastAPI app behind, whose routes are the reference
(and the OpenAPI) for these same two operations; so errors read exactly the same either way.
Both paths build the answer with ``answers.decision_answer``.
"""

from __future__ import annotations

import json
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from allowance.errors import AllowanceError, InvalidRequest
from allowance.http.answers import decision_answer
from allowance.http.auth import bearer
from allowance.http.body_limit import MAX_BODY
from allowance.http.logs import log_request
from allowance.http.problems import from_error
from allowance.http.routes import Service
from allowance.keys import ApiKey, allows
from allowance.ledger import acting_as

MEMBERS = frozenset({"account", "feature", "amount", "partial", "idempotency_key", "user"})
HOT = {"/v1/consume": "consume", "/v1/check": "check"}


class FastDecisions:
    def __init__(self, app: ASGIApp, service: Service) -> None:
        self.app = app
        self.svc = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        operation = HOT.get(scope["path"]) if scope["type"] == "http" else None
        if operation is None or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        message = await receive()
        if message["type"] != "http.request":
            return  # the client left (or its body timed out): no one to answer
        accepted = await self._accept(operation, scope, message)
        if accepted is None:  # the full path answers, from the same body
            await self.app(scope, _with_body(message, receive), send)
            return
        request, key = accepted
        fields = {k: request.get(k) for k in ("account", "feature", "user")}
        deciding = time.perf_counter()  # the metric times the decision, as the routes do
        try:
            with acting_as(key.id):  # the ledger's key_id
                decision = await self.svc.run(operation, self._decide(operation, request))
            # built in here: the message of a fast-path grant is written (and the store's
            # grant checked against the engine's) only now
            status, headers, payload = decision_answer(decision, operation == "consume")
        except InvalidRequest:
            await self.app(scope, _with_body(message, receive), send)
            return
        except Exception as exc:
            status, headers, payload = from_error(exc, f"POST {scope['path']}").parts()
        else:
            elapsed = time.perf_counter() - deciding
            self.svc.metrics.decided(operation, request["feature"], decision, elapsed)
            fields["outcome"] = decision.outcome
        raw = [(b"content-length", str(len(payload)).encode())]
        raw += [(k.lower().encode(), v.encode()) for k, v in headers.items()]
        await send({"type": "http.response.start", "status": status, "headers": raw})
        await send({"type": "http.response.body", "body": payload})
        log_request(self.svc.metrics, scope, scope["path"], status, start, key, fields)

    async def _accept(
        self, operation: str, scope: Scope, message: Message
    ) -> tuple[dict[str, Any], ApiKey] | None:
        """The request and the caller's key when this path may answer, else None: a body the
        routes' model would refuse, a key that is missing, unknown or too small."""
        authorization = idempotency = None
        media = b"application/json"
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value
            elif name == b"content-type":
                media = value
            elif name == b"idempotency-key":
                idempotency = value.decode("latin-1")
        body = message.get("body", b"")
        if authorization is None or message.get("more_body", False) or len(body) > MAX_BODY:
            return None
        if media.split(b";")[0].strip().lower() != b"application/json":
            return None
        # the key first: a caller who may not decide never gets a body parsed (the full path
        # answers 401 or 403 without reading it)
        key = await self._key(authorization)
        if key is None or not allows(key.scope, "decide"):
            return None
        try:
            request = json.loads(body)
        except (ValueError, RecursionError):  # deep nesting raises the second: the routes' 400
            return None
        if type(request) is not dict or not MEMBERS.issuperset(request):
            return None
        if "account" not in request or "feature" not in request:
            return None
        if key.accounts is not None and not (
            type(request["account"]) is str and key.acts_for(request["account"])
        ):
            return None  # another account: the routes answer (bound.py)
        if operation == "check" and request.get("idempotency_key") is not None:
            return None  # check ignores the key, yet the model validates it: let it (rare)
        if (
            idempotency is not None
            and operation == "consume"
            and request.setdefault("idempotency_key", idempotency) != idempotency
        ):
            return None  # body and header disagree: the route explains
        return request, key

    async def _key(self, authorization: bytes) -> ApiKey | None:
        secret = bearer(authorization.decode("latin-1"))
        if secret is None:
            return None
        try:
            return await self.svc.keys.resolve(secret)
        except AllowanceError:
            return None  # the full path answers (503 for a store that is down)

    async def _decide(self, operation: str, r: dict[str, Any]) -> Any:
        decide = self.svc.limiter.check if operation == "check" else self.svc.limiter.consume
        return await decide(
            r["account"],
            r["feature"],
            r.get("amount", 1),
            partial=r.get("partial", False),
            idempotency_key=r.get("idempotency_key"),
            user=r.get("user"),
        )


def _with_body(first: Message, receive: Receive) -> Receive:
    """``receive`` that hands out the message already read, then the rest as it comes."""
    pending: list[Message] = [first]

    async def again() -> Message:
        if pending:
            return pending.pop()
        return await receive()

    return again
