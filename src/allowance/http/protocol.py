"""Read deadlines for slow clients: the HTTP protocol ``allowance serve`` hands uvicorn.

uvicorn bounds only the idle time between two requests (``timeout_keep_alive``), and that
timer is cancelled by any byte received: a client that opens a connection and sends nothing,
or trickles a request head or body a byte at a time, holds its connection (and its place in
a graceful shutdown) for as long as it likes. An ASGI middleware cannot see a request until
its head is complete, so the deadlines live here, around uvicorn's httptools protocol:

- the request head must be complete within ``header_timeout`` seconds of the connection being
  made, or of the first byte of the next request on a kept-alive connection;
- its body must be complete within ``body_timeout`` seconds of the head.

Each is a deadline, not an idle timer: bytes trickling in do not push it back. When one passes,
the client gets a 408 problem+json (if it sent any part of a request and no answer has begun)
and the connection is closed; the access log gets a line. A request that arrives whole in one
read, the usual case, arms no timer at all (they are set after parsing, only if a part is
still missing). The values come from ``ALLOWANCE_HEADER_TIMEOUT`` / ``ALLOWANCE_BODY_TIMEOUT``
(``allowance serve`` sets them), read once per connection.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from allowance.http.deadlines import BODY_TIMEOUT, HEADER_TIMEOUT
from allowance.http.logs import write_access_line
from allowance.http.overload import busy_response, refusals
from allowance.http.problems import for_status

__all__ = ["BODY_TIMEOUT", "HEADER_TIMEOUT", "TimedHttpToolsProtocol"]

_IDLE, _HEAD, _BODY = 0, 1, 2  # what the connection waits for: nothing, a head, a body


def _seconds(name: str, default: float) -> float:
    return float(os.environ.get(name) or default)


class TimedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the read deadlines above."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.header_timeout = _seconds("ALLOWANCE_HEADER_TIMEOUT", HEADER_TIMEOUT)
        self.body_timeout = _seconds("ALLOWANCE_BODY_TIMEOUT", BODY_TIMEOUT)
        self.max_inflight = int(os.environ.get("ALLOWANCE_MAX_INFLIGHT") or 0)
        self._refusing = False  # the request being read was answered 503 here: skip its body
        self._waiting = _HEAD  # a new connection owes a request head
        self._begun = False  # some byte of the current request has arrived
        self._deadline: asyncio.TimerHandle | None = None
        self._armed_for = _IDLE
        self._since = time.perf_counter()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # type: ignore[arg-type]
        self._arm(_HEAD, self.header_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        waiting = self._waiting
        if waiting == self._armed_for:
            return  # nothing pending and no timer (the usual case), or the same deadline runs
        self._disarm()
        if self.transport.is_closing():
            return
        if waiting == _HEAD:
            self._arm(_HEAD, self.header_timeout)
        elif waiting == _BODY:
            self._arm(_BODY, self.body_timeout)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._waiting = _HEAD
        self._begun = True

    def on_headers_complete(self) -> None:
        self._waiting = _BODY
        if self.max_inflight and len(self.tasks) >= self.max_inflight and self._may_refuse():
            self._refuse()
            return
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if not self._refusing:
            super().on_body(body)

    def on_message_complete(self) -> None:
        self._waiting = _IDLE
        self._begun = False
        if self._refusing:
            self._refusing = False
            if not self.transport.is_closing():  # idle now: uvicorn's keep-alive timer again
                self.timeout_keep_alive_task = self.loop.call_later(
                    self.timeout_keep_alive, self.timeout_keep_alive_handler
                )
            return
        super().on_message_complete()

    def _may_refuse(self) -> bool:
        """A ``/v1`` request with no answer before it still owed on this connection (else the
        503 would overtake it: ``Admission`` refuses that rare one)."""
        previous = self.cycle
        return (
            self.url.startswith(b"/v1/")
            and (previous is None or previous.response_complete)
            and not self.pipeline
            and not self.parser.should_upgrade()
        )

    def _refuse(self) -> None:
        """``--max-inflight`` reached: 503 without starting the app (no task, no ASGI
        messages: a few microseconds, where going through the app cost ~60)."""
        self._refusing = True
        keep = self.parser.should_keep_alive() and not self.expect_100_continue
        self.transport.write(busy_response(self.max_inflight, keep))
        self.server_state.total_requests += 1
        refusals.add("overloaded")
        if not keep:
            self.transport.close()

    def _arm(self, waiting: int, seconds: float) -> None:
        self._armed_for = waiting
        self._since = time.perf_counter()
        self._deadline = self.loop.call_later(seconds, self._expired)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        self._armed_for = _IDLE

    def _expired(self) -> None:
        self._deadline = None
        waiting, self._armed_for = self._armed_for, _IDLE
        if self.transport.is_closing():
            return
        if waiting == _BODY and self.pipeline:
            # a pipelined request's body is not read until the ones before it are answered
            self._arm(_BODY, self.body_timeout)
            return
        cycle = self.cycle if waiting == _BODY else None
        if cycle is not None and cycle.response_started:
            self.transport.close()  # answered already (a 401 sent before the body, say)
            return
        if cycle is not None:
            # the app waits on receive(): it now gets http.disconnect, and its sends are dropped
            cycle.disconnected = True
            cycle.message_event.set()
        if self._begun:
            part = "body" if waiting == _BODY else "head"
            seconds = self.body_timeout if waiting == _BODY else self.header_timeout
            self._answer_408(f"the request {part} did not arrive within {seconds:g} s", part)
        self.transport.close()

    def _answer_408(self, detail: str, part: str) -> None:
        status, headers, body = for_status(408, detail).parts()
        head = [b"HTTP/1.1 408 Request Timeout"]
        head += [f"{k}: {v}".encode() for k, v in headers.items()]
        head += [b"content-length: %d" % len(body), b"connection: close", b"", b""]
        self.transport.write(b"\r\n".join(head) + body)
        scope = self.scope or {}
        line = {
            "method": scope.get("method"),
            "path": scope.get("path"),
            "status": status,
            "ms": round((time.perf_counter() - self._since) * 1000, 3),
            "key": None,
            "timeout": part,
        }
        write_access_line(line)
