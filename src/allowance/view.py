"""What an operation (``ops.py``) sees of one account inside a store's atomic step, and what
it names up front so a store can fetch it in the same round trip. Stores implement these
(``stores/base.py`` is the rest of their contract); the operations need nothing else of them."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass

from allowance.state import Counter, Hold, IdempotencyRecord, Terms

__all__ = ["NO_PRELOAD", "AccountView", "Preload"]


@dataclass(frozen=True, slots=True)
class Preload:
    """What an operation will look up besides the account and its counters, so a store can
    fetch it in the same round trip (and an async store needs no I/O inside ``ops``)."""

    idempotency_key: str | None = None
    hold_id: str | None = None
    held: bool = False  # every hold still held, expired or not (``due_holds(math.inf)``)


NO_PRELOAD = Preload()


class AccountView(ABC):
    """One account inside an atomic step: what the operations in ``ops.py`` read and write."""

    account_id: str
    plan: str
    seats: int
    next_hold_expiry: float | None
    adjustments: Terms  # the account's own terms, by limit (``adjust.py``)

    _counters: dict[str, Counter]  # every counter of the account the view has loaded

    def counters(self, names: Iterable[str]) -> dict[str, Counter]:
        """The account's counters for these limits (blank ones where none is stored yet)."""
        stored = self._counters
        out = {}
        for name in names:
            counter = stored.get(name)
            if counter is None:
                counter = stored[name] = Counter()
            out[name] = counter
        return out

    @abstractmethod
    def save_counters(self, counters: dict[str, Counter]) -> None:
        """Persist these counters (changed in place by the engine)."""

    @abstractmethod
    def save_adjustments(self) -> None:
        """Persist ``adjustments`` (changed in place)."""

    @abstractmethod
    def get_idempotency(self, key: str) -> IdempotencyRecord | None: ...

    @abstractmethod
    def put_idempotency(self, key: str, record: IdempotencyRecord) -> None: ...

    @abstractmethod
    def get_hold(self, hold_id: str) -> Hold | None: ...

    @abstractmethod
    def put_hold(self, hold: Hold) -> None:
        """Insert or update a hold (and keep ``next_hold_expiry`` right)."""

    @abstractmethod
    def due_holds(self, now: float) -> list[Hold]:
        """Held holds whose expiry has passed."""
