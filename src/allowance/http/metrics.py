"""Prometheus metrics of one service process, in a registry of its own (so two apps in one
process, as in tests, do not collide)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from allowance.resilience import StoreGuard
from allowance.types import Decision

PRUNE_AT = 10_000
LATENCY_BUCKETS = (0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.decisions = Counter(
            "allowance_decisions",
            "Decisions by operation, feature, blocking limit and outcome",
            ["operation", "feature", "limit", "outcome"],
            registry=r,
        )
        self.latency = Histogram(
            "allowance_decision_seconds",
            "Time to decide, the store's round trip included",
            ["operation"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.store_errors = Counter(
            "allowance_store_errors", "Operations the store failed", ["operation"], registry=r
        )
        self.requests = Counter(
            "allowance_http_requests",
            "HTTP requests by route and status",
            ["route", "status"],
            registry=r,
        )
        self._open: dict[str, float] = {}  # reservation id -> monotonic expiry
        self._decisions: dict[tuple[str, str, str, str], Any] = {}
        self._latency: dict[str, Any] = {}
        self._requests: dict[tuple[str, int], Any] = {}
        gauge = Gauge(
            "allowance_reservations_open",
            "Reservations made through this process, neither settled nor expired yet",
            registry=r,
        )
        gauge.set_function(self._count_open)

    def watch(self, guard: StoreGuard) -> None:
        """Expose the limiter's breaker and journal (read at each scrape)."""
        self.registry.register(GuardCollector(guard))

    def decided(self, operation: str, feature: str, decision: Decision, seconds: float) -> None:
        outcome = decision.outcome
        labels = (operation, feature, decision.limit or "", outcome)
        # labels() looks its child up under a lock each time: a few µs a decision, so the
        # children are kept here (bounded: features and limits come from the policy)
        child = self._decisions.get(labels)
        if child is None:
            child = self._decisions[labels] = self.decisions.labels(*labels)
        child.inc()
        timer = self._latency.get(operation)
        if timer is None:
            timer = self._latency[operation] = self.latency.labels(operation)
        timer.observe(seconds)

    def request(self, route: str, status: int) -> None:
        child = self._requests.get((route, status))
        if child is None:
            child = self._requests[route, status] = self.requests.labels(route, str(status))
        child.inc()

    def reserved(self, reservation_id: str, ttl: float) -> None:
        if len(self._open) >= PRUNE_AT:  # bounded even when nobody scrapes /metrics
            self._count_open()
        self._open[reservation_id] = time.monotonic() + ttl

    def settled(self, reservation_id: str) -> None:
        self._open.pop(reservation_id, None)

    def _count_open(self) -> int:
        now = time.monotonic()
        for rid in [rid for rid, until in self._open.items() if until <= now]:
            del self._open[rid]
        return len(self._open)


class GuardCollector(Collector):
    """The failure-mode figures of CONTRACT section 7, read from the limiter's ``StoreGuard``
    when scraped (the decision path only bumps plain integers)."""

    def __init__(self, guard: StoreGuard) -> None:
        self.guard = guard

    def collect(self) -> Iterator[Any]:
        guard = self.guard
        yield GaugeMetricFamily(
            "allowance_store_breaker_open",
            "1 while the store's circuit breaker is open (decisions do not wait on the store)",
            value=1.0 if guard.breaker.is_open else 0.0,
        )
        yield CounterMetricFamily(
            "allowance_degraded_decisions",
            "Decisions granted without the store (on_store_error: allow)",
            value=guard.degraded,
        )
        yield GaugeMetricFamily(
            "allowance_journal_entries",
            "Degraded grants waiting to be charged to the store",
            value=len(guard.journal),
        )
        yield CounterMetricFamily(
            "allowance_degraded_unrecorded",
            "Degraded grants not journaled: their request may have reached the store already",
            value=guard.journal.unrecorded,
        )
