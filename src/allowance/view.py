"""What an operation (``ops.py``) sees of one account inside a store's atomic step, and what
it names up front so a store can fetch it in the same round trip. Stores implement these
(``stores/base.py`` is the rest of their contract); the operations need nothing else of them."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from allowance import ledger
from allowance.state import Counter, Hold, IdempotencyRecord, Terms

if TYPE_CHECKING:
    from allowance.events import NewEvent
    from allowance.ledger import Charge, Entry

__all__ = ["NO_PRELOAD", "AccountView", "NotLoaded", "Preload"]


@dataclass(frozen=True, slots=True)
class Preload:
    """What an operation will look up besides the account and its counters, so a store can
    fetch it in the same round trip (and an async store needs no I/O inside ``ops``)."""

    idempotency_key: str | None = None
    hold_id: str | None = None
    held: bool = False  # every hold still held, expired or not (``due_holds(math.inf)``)
    owners: tuple[str, ...] = ()  # the per-user records (``owners.py``) it reads
    # it charges them unless denied: a store that locks a record to write it (a user's
    # record across accounts on Redis Cluster) takes the lock before reading, not after
    charges: bool = False


class NotLoaded(Exception):
    """A view of a store that fetches up front was asked for records it has not got (a
    reservation's user, known only once it is read): the store fetches them with the rest
    and runs the operation again on a fresh view. Nothing was written."""

    def __init__(self, owners: list[str]) -> None:
        super().__init__(owners)
        self.owners = owners


NO_PRELOAD = Preload()


class AccountView(ABC):
    """One account inside an atomic step: what the operations in ``ops.py`` read and write."""

    account_id: str
    plan: str
    seats: int
    next_hold_expiry: float | None
    adjustments: Terms  # the account's own terms, by limit (``adjust.py``)

    _counters: dict[str, Counter]  # every counter of the account the view has loaded
    _owned: dict[str, dict[str, Counter]]  # per-user records loaded, by owner (owners.py)

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

    def owned(self, owner: str) -> dict[str, Counter]:
        """The counters of one per-user record (``owners.py``), by limit name; changed in
        place, persisted by ``save_owned``."""
        found = self._owned.get(owner)
        if found is None:
            found = self._owned[owner] = self.load_owned(owner)
        return found

    @abstractmethod
    def load_owned(self, owner: str) -> dict[str, Counter]:
        """Read one per-user record inside the step (or raise ``NotLoaded``)."""

    @abstractmethod
    def save_owned(self, owner: str) -> None:
        """Persist the record ``owned(owner)`` returned (changed in place)."""

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

    @abstractmethod
    def emit(self, event: NewEvent) -> None:
        """Write ``event`` with the rest of this step, unless its ``mark`` stands: an event
        of that mark whose ``until`` is later than this one's ``at`` (``events.py``)."""

    @abstractmethod
    def record(self, rows: list[Entry]) -> None:
        """Append ``rows`` to the account's ledger with the rest of this step (``ledger.py``)."""

    def record_charge(self, charge: Charge) -> None:
        """Append a charge's rows (``ledger.charged``); a store may keep them in a smaller
        form."""
        self.record(ledger.charged(self.account_id, charge))
