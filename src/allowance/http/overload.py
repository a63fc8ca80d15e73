"""``--max-inflight``: beyond ``limit`` requests in flight under ``/v1/``, answer 503 with
``Retry-After`` at once instead of queueing them.

A queue in front of a saturated store only adds latency: every caller waits longer and the
ones at the back time out anyway. Refusing at once lets a client retry elsewhere or later,
and keeps the latency of the requests taken bounded by ``limit`` over the service's rate.
The count is per process (each ``--workers`` process has its own), kept in a plain integer:
one comparison and two additions a request. ``/healthz``, ``/readyz`` and ``/metrics`` are
never refused, so an overloaded service is seen as alive and busy, not dead.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Receive, Scope, Send

from allowance.http.logs import write_access_line
from allowance.http.metrics import Metrics
from allowance.http.problems import Problem

RETRY_AFTER = 1  # seconds: a decision takes milliseconds, so the pile-up clears quickly
SUMMARY_EVERY = 1.0  # seconds: refusals are logged as one line per reason and period


def busy_detail(limit: int) -> str:
    return f"{limit} requests are in flight already; retry in {RETRY_AFTER} s"


@functools.cache
def busy_response(limit: int, keep_alive: bool) -> bytes:
    """The whole 503 as bytes, for the HTTP protocol to write without starting the app."""
    headers, body = _answer(busy_detail(limit))
    lines = [b"HTTP/1.1 503 Service Unavailable", *(k + b": " + v for k, v in headers)]
    if not keep_alive:
        lines.append(b"connection: close")
    return b"\r\n".join([*lines, b"", b""]) + body


def _answer(detail: str) -> tuple[list[tuple[bytes, bytes]], bytes]:
    _, headers, body = Problem(
        503, "overloaded", "Overloaded", detail, headers={"Retry-After": str(RETRY_AFTER)}
    ).parts()
    raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    return [*raw, (b"content-length", str(len(body)).encode())], body


class _Refusals:
    """Refusals counted, and logged as one access line per reason each ``SUMMARY_EVERY``
    seconds (``{"status": 503, "refused": "overloaded", "count": 4180}``): a line each would
    cost as much as the refusal itself, when refusing must stay cheap."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.total: dict[str, int] = {}

    def add(self, why: str) -> None:
        if not self.counts:
            with contextlib.suppress(RuntimeError):  # no loop (a test): counted only
                asyncio.get_running_loop().call_later(SUMMARY_EVERY, self.flush)
        self.counts[why] = self.counts.get(why, 0) + 1
        self.total[why] = self.total.get(why, 0) + 1

    def flush(self) -> None:
        counts, self.counts = self.counts, {}
        for why, count in counts.items():
            write_access_line({"status": 503, "refused": why, "count": count})


refusals = _Refusals()


class RefusalCollector(Collector):
    """``allowance_http_refused_total{reason}``: requests refused before any route ran, in
    the HTTP protocol or here (``overloaded``, ``shutting down``), read at each scrape. They
    are not in ``allowance_http_requests_total``, which counts the requests a route answered."""

    def collect(self) -> Iterator[Any]:
        family = CounterMetricFamily(
            "allowance_http_refused",
            "Requests refused before a route ran (--max-inflight, shutdown), by reason",
            labels=["reason"],
        )
        for reason, count in sorted(refusals.total.items()):
            family.add_metric([reason], count)
        yield family


class Admission:
    """In front of the service: the ``limit`` (0: none) on requests in flight, and an answer
    for a request cut when a graceful shutdown runs out of time (uvicorn cancels it: without
    this the client gets a plain-text 500 and the log a traceback per request)."""

    def __init__(self, app: ASGIApp, limit: int, metrics: Metrics, prefix: str = "/v1/") -> None:
        self.app = app
        self.limit = limit
        self.metrics = metrics
        self.prefix = prefix
        self.inflight = 0
        metrics.registry.register(RefusalCollector())
        # built once
        self._busy = _answer(busy_detail(limit))
        self._cut = _answer("the service is shutting down; retry on another instance")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        counted = self.limit > 0 and scope["path"].startswith(self.prefix)
        if counted:
            if self.inflight >= self.limit:
                await self._refuse(scope, send, self._busy, "overloaded")
                return
            self.inflight += 1
        try:
            await self.app(scope, receive, send)
        except asyncio.CancelledError:
            # only uvicorn cancels a request, once --graceful-timeout has passed
            with contextlib.suppress(RuntimeError):  # the answer had begun: it stays cut
                await self._refuse(scope, send, self._cut, "shutting down")
        finally:
            if counted:
                self.inflight -= 1

    async def _refuse(
        self, scope: Scope, send: Send, answer: tuple[list[tuple[bytes, bytes]], bytes], why: str
    ) -> None:
        headers, body = answer
        await send({"type": "http.response.start", "status": 503, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        refusals.add(why)
