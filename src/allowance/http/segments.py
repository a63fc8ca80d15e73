"""Paths as the routes need them. Account ids are any text (the Python API takes them as they
are), so one may hold a "/", sent as ``%2F``. The server decodes the path before routing, which
would make ``/v1/accounts/team%2F42`` three segments and no route. Routing here is on the raw
path's segments instead: each is decoded, then "%" and "/" in it are escaped again, so a segment
stays one segment and the handler decodes it once (``account_from_segment``). Only paths under
``/v1/accounts/`` that hold an escape are touched. (uvicorn, like any ASGI server that follows
the spec, passes the raw path.)

An escape that decodes to bytes which are not UTF-8 is refused with 400: the server would turn
``%ff`` and ``%fe`` alike into U+FFFD, two ids becoming one."""

from __future__ import annotations

from urllib.parse import unquote, unquote_to_bytes

from starlette.types import ASGIApp, Receive, Scope, Send

from allowance.http.problems import for_status

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
        if raw and b"%" in raw:
            path = raw.split(b"?", 1)[0]
            try:
                unquote_to_bytes(path).decode("utf-8")
            except UnicodeDecodeError:
                detail = "the path is not UTF-8 once its %-escapes are decoded"
                await for_status(400, detail).response()(scope, receive, send)
                return
            if path.startswith(PREFIX):
                segments = path.decode("latin-1").split("/")
                scope = dict(scope, path="/".join(escaped(unquote(s)) for s in segments))
        await self.app(scope, receive, send)
