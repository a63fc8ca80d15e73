"""Account ids are any text (the Python API takes them as they are), so one may hold a "/",
sent as ``%2F``. The server decodes the path before routing, which would make
``/v1/accounts/team%2F42`` three segments and no route. Routing here is on the raw path's
segments instead: each is decoded, then "%" and "/" in it are escaped again, so a segment stays
one segment and the handler decodes it once (``account_from_segment``). Only paths under
``/v1/accounts/`` that hold an escape are touched. (uvicorn, like any ASGI server that
follows the spec, passes the raw path.)"""

from __future__ import annotations

from urllib.parse import unquote

from starlette.types import ASGIApp, Receive, Scope, Send

PREFIX = b"/v1/accounts/"


def escaped(segment: str) -> str:
    """A decoded segment, with the two characters routing cares about escaped again."""
    return segment.replace("%", "%25").replace("/", "%2F")


def account_from_segment(segment: str) -> str:
    """The account id from its route segment (see above). With no escape in the raw path
    the segment has no "%" either, and is the id as it is."""
    return unquote(segment) if "%" in segment else segment


class AccountSegments:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        raw = scope.get("raw_path") if scope["type"] == "http" else None
        if raw and raw.startswith(PREFIX) and b"%" in raw:
            path = raw.split(b"?", 1)[0].decode("latin-1")
            scope = dict(scope, path="/".join(escaped(unquote(s)) for s in path.split("/")))
        await self.app(scope, receive, send)
