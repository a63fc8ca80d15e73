"""The store contract. A store persists accounts, counters, holds and idempotency records and
runs an operation atomically on one account; it never decides anything itself (see engine.py).
What an operation sees of the account meanwhile (``AccountView``, ``Preload``) is in
``allowance/view.py``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from allowance.errors import ConfigurationError, NotSupported
from allowance.events import MAX_PAGE, Event
from allowance.ledger import Row
from allowance.policy import Policy
from allowance.request import Request
from allowance.stores.keyring import KeyRing
from allowance.types import Account, Decision
from allowance.view import NO_PRELOAD, AccountView, Preload

T = TypeVar("T")

#: seconds a networked store (Redis, PostgreSQL) may take for one call, unless ``?timeout=``
#: or ``Limiter(timeout=)`` says otherwise: long enough for a loaded server, short enough that
#: a hung one costs a request well under a second
DEFAULT_TIMEOUT = 0.5


def store_timeout(url_value: str | None, override: float | None, url: str) -> float:
    """The timeout a store uses: ``override`` (from ``Limiter(timeout=)``), else the URL's
    ``?timeout=`` value in seconds, else ``DEFAULT_TIMEOUT``."""
    value: object = override if override is not None else url_value
    if value is None:
        return DEFAULT_TIMEOUT
    try:
        seconds = float("nan") if isinstance(value, bool) else float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        seconds = float("nan")
    if not 0 < seconds <= 3600:  # also rejects NaN
        raise ConfigurationError(
            f"store: timeout must be seconds in (0, 3600] (got {value!r} for {url!r})"
        )
    return seconds


# one ``transact`` call: account id, time (None = the store's), the operation, its preload
Transaction = tuple[str, "float | None", Callable[["AccountView", float], T], Preload]


@dataclass(frozen=True, slots=True)
class Outcome(Generic[T]):
    """What one item of ``transact_many`` gave: its value, or the error it raised."""

    value: T | None
    error: Exception | None = None


class Store(ABC):
    """Base of every store. Subclasses set ``scheme`` and are found by URL (stores/__init__)."""

    scheme: str = ""
    #: set by the Limiter; a sweep needs it to return the units of expired reservations
    policy: Policy | None = None
    #: whether calls may block on I/O (AsyncLimiter then runs them in a worker thread)
    blocking: bool = True

    @abstractmethod
    def now(self) -> float:
        """The store's clock (epoch seconds, UTC)."""

    @abstractmethod
    def put_account(self, account_id: str, plan: str, seats: int, now: float | None = None) -> bool:
        """Create or change an account; True when it was created. A change of plan writes an
        ``account.plan_changed`` event with it, at ``now`` (None: the store's clock)."""

    @abstractmethod
    def get_account(self, account_id: str) -> Account | None: ...

    @abstractmethod
    def transact(
        self,
        account_id: str,
        now: float | None,
        fn: Callable[[AccountView, float], T],
        preload: Preload = NO_PRELOAD,
    ) -> T:
        """Run ``fn(view, now)`` atomically on one account; ``now`` None = the store's clock,
        read inside the atomic step. Raises ``UnknownAccount``."""

    def transact_many(self, items: list[Transaction[Any]]) -> list[Outcome[Any]]:
        """``transact`` for each item, as one batch where the store can (SQLite commits them
        together); each outcome is the item's result or the error it raised."""
        out: list[Outcome[Any]] = []
        for account_id, now, fn, preload in items:
            try:
                out.append(Outcome(self.transact(account_id, now, fn, preload)))
            except Exception as exc:
                out.append(Outcome(None, exc))
        return out

    #: whether ``transact_many`` is worth batching calls for (AsyncLimiter does then)
    batches: bool = False

    #: whether ``fast_decide`` can answer plain consume/check requests in one step
    fast: bool = False

    def fast_decide(
        self, policy: Policy, req: Request, now: float | None, charge: bool
    ) -> Decision | None:
        """Decide a request without an idempotency key in one round trip; None means "use
        ``transact``" (the store cannot, or not this time)."""
        return None

    @abstractmethod
    def sweep(self, now: float | None = None) -> int:
        """Delete expired records (and settle expired holds); return how many were removed."""

    @abstractmethod
    def account_ids(self) -> list[str]:
        """Every account's id, sorted (for tools that look at all of them: ``policy diff``;
        not for the decision path)."""

    def account_page(self, prefix: str, after: str | None, limit: int) -> list[str]:
        """At most ``limit`` ids that start with ``prefix`` and sort after ``after`` (None:
        from the first), in order (``listing.py``). This one reads every id: a store with an
        index answers from it."""
        found = (
            a for a in self.account_ids() if a.startswith(prefix) and (after is None or a > after)
        )
        return [a for a, _ in zip(found, range(limit), strict=False)]

    def events(self, after: int, limit: int, account: str | None) -> list[Event]:
        """At most ``limit`` events with an id above ``after``, in id order (only
        ``account``'s, unless None). An id, once read, is never followed by a lower one.
        Every store here keeps them; one made elsewhere may not, and says so."""
        raise NotSupported(f"store: {self.scheme}:// does not keep events")

    def newest_event_id(self) -> int:
        """The id of the newest event kept (0: none); every later event's is above it.
        This one pages through all of them: a store with an index asks it."""
        last = 0
        while page := self.events(last, MAX_PAGE, None):
            last = page[-1].id
            if len(page) < MAX_PAGE:
                break
        return last

    def ledger(
        self,
        account: str,
        after: str | None,
        limit: int,
        since: float | None = None,
        until: float | None = None,
    ) -> list[Row]:
        """At most ``limit`` of the account's ledger rows after the row at cursor ``after``
        (None: from the first), in the order written, only those from ``since`` (inclusive)
        to ``until`` (exclusive) when given (``ledger.py``)."""
        raise NotSupported(f"store: {self.scheme}:// does not keep a ledger")

    #: whether reading a setting costs no I/O (a Limiter then reads it on every call)
    settings_local: bool = False

    @abstractmethod
    def get_setting(self, name: str) -> str | None:
        """A store-wide setting, the same for every server on the store (the load factors);
        None when it was never set."""

    @abstractmethod
    def put_setting(self, name: str, value: str) -> None: ...

    def swap_setting(self, name: str, old: str | None, new: str) -> bool:
        """Set ``name`` to ``new`` only if it still holds ``old`` (None: unset), atomically;
        whether it did. What servers sharing a store coordinate by (``webhooks.py``)."""
        raise NotSupported(f"store: {self.scheme}:// has no atomic settings")

    def delete_setting(self, name: str) -> None:
        """Remove a setting (nothing when there is none); a ``swap_setting`` from what was
        read before then fails."""
        raise NotSupported(f"store: {self.scheme}:// cannot remove a setting")

    def close(self) -> None:  # noqa: B027 - optional for stores with nothing to release
        """Release connections."""

    _keyring: KeyRing | None = None

    def keyring(self) -> KeyRing:
        """Where this store keeps the HTTP service's API keys (made on first use)."""
        if self._keyring is None:
            self._keyring = self._make_keyring()
        return self._keyring

    @abstractmethod
    def _make_keyring(self) -> KeyRing: ...

    def async_store(self) -> AsyncStore | None:
        """The same store driven by an async client, or None (AsyncLimiter then runs this one
        in a worker thread, or directly when it never blocks)."""
        return None


class AsyncStore(ABC):
    """The async twin of ``Store`` for stores with an async driver. Same semantics: the
    operations of ``ops.py`` run between awaits, on state loaded up front."""

    fast: bool = False

    @abstractmethod
    async def put_account(
        self, account_id: str, plan: str, seats: int, now: float | None = None
    ) -> bool: ...

    @abstractmethod
    async def get_account(self, account_id: str) -> Account | None: ...

    @abstractmethod
    async def transact(
        self,
        account_id: str,
        now: float | None,
        fn: Callable[[AccountView, float], T],
        preload: Preload = NO_PRELOAD,
    ) -> T: ...

    async def fast_decide(
        self, policy: Policy, req: Request, now: float | None, charge: bool
    ) -> Decision | None:
        return None

    @abstractmethod
    async def sweep(self, now: float | None = None) -> int: ...

    @abstractmethod
    async def get_setting(self, name: str) -> str | None: ...

    @abstractmethod
    async def close(self) -> None: ...
