"""Structured access logs: one JSON line per request on the ``allowance.access`` logger.
Never the Authorization header nor a key, only the key's id."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from allowance.http.metrics import Metrics
from allowance.types import iso, to_datetime

access_log = logging.getLogger("allowance.access")
_direct: BatchedLines | None = None  # the handler configure() installed, written to directly


class AccessLogMiddleware:
    """Logs each request once it is answered; routes add ``account``/``feature``/``outcome``
    /``user`` to ``scope["state"]["log"]``."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        fields: dict[str, Any] = {}
        scope.setdefault("state", {})["log"] = fields
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or "unmatched"
            key = scope["state"].get("api_key")
            log_request(self.metrics, scope, path, status, start, key, fields)


def log_request(
    metrics: Metrics,
    scope: Scope,
    route: str,
    status: int,
    start: float,
    key: Any,
    fields: dict[str, Any],
) -> None:
    """Count the request and write its access line (``start``: its perf_counter)."""
    metrics.request(route, status)
    if access_log.isEnabledFor(logging.INFO):
        line: dict[str, Any] = {
            "method": scope["method"],
            "path": scope["path"],
            "status": status,
            "ms": round((time.perf_counter() - start) * 1000, 3),
            "key": getattr(key, "id", None),
            **fields,
        }
        write_access_line(line)


def write_access_line(line: dict[str, Any]) -> None:
    """One access line (``method``, ``path``, ``status``, ...) as ``log_request`` writes it."""
    if _direct is not None:
        _direct.add(line)  # configure()'s own handler: skip building a LogRecord (~6 µs)
    elif access_log.isEnabledFor(logging.INFO):
        method, path, status = line.get("method"), line.get("path"), line.get("status")
        access_log.info("%s %s %s", method, path, status, extra={"line": line})


# built once: json.dumps with non-default options builds a new encoder on every call
_ENCODE = json.JSONEncoder(separators=(",", ":")).encode


def _line(created: float, line: dict[str, Any]) -> str:
    """One log line: its time (UTC), then its fields."""
    return _ENCODE({"ts": iso(to_datetime(created)), **line})


class JsonLines(logging.Formatter):
    """One JSON object a line: the record's time (UTC) and the request's fields."""

    def format(self, record: logging.LogRecord) -> str:
        line = getattr(record, "line", None)
        if line is None:
            line = {"level": record.levelname.lower(), "message": record.getMessage()}
            if record.exc_info:  # the log's reader needs it; clients never see it
                line["error"] = self.formatException(record.exc_info)
        return _line(record.created, line)


class BatchedLines(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes lines in batches: inside an event loop a line waits at most ``delay`` seconds
    for others to share its write (one system call for all of them instead of one each);
    outside a loop it is written at once. ``flush()`` empties the batch (at shutdown)."""

    def __init__(self, delay: float = 0.05) -> None:
        super().__init__()
        self.delay = delay
        self._lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
        except Exception:
            self.handleError(record)
            return
        self._append(text)

    def add(self, line: dict[str, Any]) -> None:
        """An access line, as ``JsonLines`` would format its record, without the record."""
        self._append(_line(time.time(), line))  # the time logging would stamp a record with

    def _append(self, text: str) -> None:
        self._lines.append(text)
        if len(self._lines) > 1:
            return  # a write is already due
        try:
            asyncio.get_running_loop().call_later(self.delay, self.flush)
        except RuntimeError:  # no loop: write now
            self.flush()

    def flush(self) -> None:
        lines, self._lines = self._lines, []
        if lines:
            with self.lock or contextlib.nullcontext():
                self.stream.write("\n".join(lines) + "\n")
                self.stream.flush()


def configure(level: int = logging.INFO) -> BatchedLines:
    """Access lines as JSON on stderr; returns the handler (flush it at shutdown)."""
    global _direct
    handler = _direct = BatchedLines()
    handler.setFormatter(JsonLines())
    access_log.addHandler(handler)
    access_log.setLevel(level)
    access_log.propagate = False
    # the service's own warnings and errors (a store that fails, a bug) as JSON lines too
    errors = logging.getLogger("allowance.http")
    errors.addHandler(handler)
    errors.setLevel(logging.WARNING)
    errors.propagate = False
    return handler
