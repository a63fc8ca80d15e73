"""A validated request, the value every layer passes down (``validation.request`` makes one):
a leaf module, so the stores, the operations and the HTTP client share it without importing
one another."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)  # not frozen: a frozen dataclass costs ~1 µs to build, per decision
class Request:
    """A validated request; treated as read-only."""

    account: str
    feature: str
    amount: int
    partial: bool
    idempotency_key: str | None
    user: str | None
