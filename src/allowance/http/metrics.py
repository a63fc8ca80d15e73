"""Prometheus metrics of one service process, in a registry of its own (so two apps in one
process, as in tests, do not collide)."""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from allowance.types import Decision

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
        gauge = Gauge(
            "allowance_reservations_open",
            "Reservations made through this process, neither settled nor expired yet",
            registry=r,
        )
        gauge.set_function(self._count_open)

    def decided(self, operation: str, feature: str, decision: Decision, seconds: float) -> None:
        outcome = "granted" if decision.allowed else decision.reason
        self.decisions.labels(operation, feature, decision.limit or "", outcome).inc()
        self.latency.labels(operation).observe(seconds)

    def reserved(self, reservation_id: str, ttl: float) -> None:
        self._open[reservation_id] = time.monotonic() + ttl

    def settled(self, reservation_id: str) -> None:
        self._open.pop(reservation_id, None)

    def _count_open(self) -> int:
        now = time.monotonic()
        for rid in [rid for rid, until in self._open.items() if until <= now]:
            del self._open[rid]
        return len(self._open)
