"""What a limiter does when its store fails (CONTRACT section 7): a circuit breaker, the
failure modes (``deny`` raises ``StoreUnavailable``; ``allow`` grants a degraded decision) and
the journal of degraded grants, charged to the store once it answers again.

Only ``StoreUnavailable`` (the store down, hung past its timeout, a connection lost) counts as
a failure; a ``StoreError`` such as contention says the store answered and is left alone.

Never charged twice: a grant is journaled only when its request certainly did not reach the
store (``maybe_applied`` False: refused connection, no pooled connection, breaker open), or
when it carries its caller's idempotency key. A request that may have been applied before its
reply was lost, and has no key, is granted degraded but not journaled: its charge is the one
the store may already hold (counted in ``unrecorded``). Each journal entry is charged under an
idempotency key (the caller's or its own), so a charge whose reply is lost is retried safely.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, replace
from typing import Literal

from allowance.errors import StoreUnavailable
from allowance.ledger import acting
from allowance.policy import Policy
from allowance.types import Decision

log = logging.getLogger("allowance.store")

Mode = Literal["deny", "allow"]

FAILURES_TO_OPEN = 3  # consecutive store failures that open the breaker
FIRST_COOLDOWN = 0.5  # seconds before the first probe; doubles per failed probe ...
MAX_COOLDOWN = 5.0  # ... up to this
JOURNAL_SIZE = 10_000  # degraded grants kept at most; beyond, allow answers as deny
FLUSH_BATCH = 100  # journal entries charged per flush step (a decision's worth of extra work)
JOURNAL_PREFIX = "allowance-journal:"


class Breaker:
    """A consecutive-failure circuit breaker, shared by the threads and tasks of one limiter.

    Closed: calls go to the store. After ``FAILURES_TO_OPEN`` failures in a row it opens: calls
    fail at once (no waiting on the store) until the cooldown has passed; then one call at a
    time goes through as a probe. A probe that succeeds closes the breaker; one that fails
    doubles the cooldown (up to ``MAX_COOLDOWN``).
    """

    def __init__(
        self,
        failures_to_open: int = FAILURES_TO_OPEN,
        first_cooldown: float = FIRST_COOLDOWN,
        max_cooldown: float = MAX_COOLDOWN,
    ) -> None:
        self.failures_to_open = failures_to_open
        self.first_cooldown = first_cooldown
        self.max_cooldown = max_cooldown
        self._lock = threading.Lock()
        # read without the lock on the decision path: a closed breaker costs two attribute reads
        self.failures = 0  # in a row
        self._cooldown = first_cooldown
        self.open_until: float | None = None  # monotonic time of the next probe; None: closed
        self._probing = False
        self.opened = 0  # times it opened (for tests and logs)

    @property
    def is_open(self) -> bool:
        return self.open_until is not None

    def before(self) -> None:
        """Raise ``StoreUnavailable`` (never sent) while open, except for one probe at a time
        once the cooldown has passed (callers skip it while ``open_until`` is None)."""
        now = time.monotonic()
        with self._lock:
            until = self.open_until
            if until is None:
                return
            if now >= until and not self._probing:
                self._probing = True
                return
            wait = max(until - now, 0.0) if now < until else self._cooldown
        raise StoreUnavailable(
            "the store failed repeatedly; not waiting on it (circuit breaker open)",
            retry_after=max(wait, 0.05),
            maybe_applied=False,
        )

    def succeeded(self) -> bool:
        """A call reached the store after failures (callers skip it when ``failures`` is 0).
        True when this closed an open breaker."""
        with self._lock:
            reopened = self.open_until is not None
            self.failures = 0
            self._cooldown = self.first_cooldown
            self.open_until = None
            self._probing = False
        if reopened:
            log.warning("store answers again; circuit breaker closed")
        return reopened

    def failed(self) -> float:
        """A call found the store unavailable; returns the seconds until the next probe."""
        now = time.monotonic()
        with self._lock:
            self.failures += 1
            if self.open_until is not None:  # a probe failed (or a call begun before opening)
                if self._probing:
                    self._probing = False
                    self._cooldown = min(self._cooldown * 2, self.max_cooldown)
                    self.open_until = now + self._cooldown
                return max(self.open_until - now, 0.05)
            if self.failures < self.failures_to_open:
                return self._cooldown
            self.open_until = now + self._cooldown
            self.opened += 1
            cooldown = self._cooldown
        log.warning("store unavailable; circuit breaker open for %.1f s", cooldown)
        return cooldown


@dataclass(frozen=True, slots=True)
class Entry:
    """A degraded grant waiting to be charged: ``now`` is when it was granted; ``open``: a
    degraded reservation's, not yet committed or released (its amount may still change);
    ``key_id``: the API key it was granted to (``ledger.acting``), whose charge it is."""

    account: str
    feature: str
    amount: int
    user: str | None
    idempotency_key: str
    now: float
    open: bool = False
    key_id: str | None = None


class Journal:
    """The bounded queue of degraded grants (in this process's memory: a crash of the process
    while the store is down loses what is queued)."""

    def __init__(self, size: int = JOURNAL_SIZE) -> None:
        self.size = size
        self.entries: deque[Entry] = deque()  # its truth is read on the decision path
        self._lock = threading.Lock()
        self.flushing = threading.Lock()  # one flusher at a time
        self.unrecorded = 0  # degraded grants that may have been charged already, not queued
        self._taken = 0  # the oldest entries a flusher is charging: no longer to be changed

    def __len__(self) -> int:
        return len(self.entries)

    def add(self, entry: Entry) -> bool:
        """Queue ``entry``; False when the journal is full."""
        with self._lock:
            if len(self.entries) >= self.size:
                return False
            self.entries.append(entry)
            return True

    def take(self, count: int) -> list[Entry]:
        """The oldest ``count`` entries, left in the queue until ``done``."""
        with self._lock:
            self._taken = min(count, len(self.entries))
            return [self.entries[i] for i in range(self._taken)]

    def done(self, count: int) -> None:
        with self._lock:
            for _ in range(min(count, len(self.entries))):
                self.entries.popleft()
            self._taken = max(0, self._taken - count)

    def settle(self, key: str, amount: int | None) -> bool:
        """Settle the open entry of a degraded reservation at ``amount`` units (0: released;
        None: as granted) while it is still queued and not being charged; False otherwise
        (already charged, being charged, settled before, or never queued)."""
        with self._lock:
            for i in range(self._taken, len(self.entries)):
                entry = self.entries[i]
                if entry.idempotency_key != key:
                    continue
                if not entry.open:
                    return False
                if amount == 0:
                    del self.entries[i]
                else:
                    units = entry.amount if amount is None else amount
                    self.entries[i] = replace(entry, amount=units, open=False)
                return True
            return False


class StoreGuard:
    """The breaker, the failure modes and the journal of one limiter."""

    def __init__(
        self, policy: Policy, on_store_error: Mode | None = None, journal_size: int = JOURNAL_SIZE
    ) -> None:
        self.given = on_store_error  # the Limiter's own, which wins over the policy's
        self.default: Mode = "deny"
        self.modes: dict[str, Mode] = {}
        self.use(policy)
        self.breaker = Breaker()
        self.journal = Journal(journal_size)
        self.degraded = 0  # degraded decisions answered (a metric)

    def use(self, policy: Policy) -> None:
        """Take the failure modes of ``policy`` (a new one switched to)."""
        default: Mode = self.given or policy.on_store_error
        self.modes = {
            name: feature.on_store_error or default for name, feature in policy.features.items()
        }
        self.default = default

    def degrade(
        self,
        exc: StoreUnavailable,
        feature: str | None,
        amount: int,
        account: str,
        user: str | None,
        idempotency_key: str | None,
        now: float,
        charge: bool,
        held: bool = False,
    ) -> Decision:
        """The answer for a decision the store could not make: ``exc`` again (deny), or a
        degraded grant (allow; journaled when ``charge``, as an open entry when ``held``: a
        reservation's, settled by ``settle``)."""
        if feature is None or self.modes.get(feature, self.default) != "allow":
            raise exc
        if charge:
            if idempotency_key is None and exc.maybe_applied:
                self.journal.unrecorded += 1
            else:
                key = idempotency_key or f"{JOURNAL_PREFIX}{uuid.uuid4().hex}"
                entry = Entry(account, feature, amount, user, key, now, held, acting.get())
                if not self.journal.add(entry):
                    raise StoreUnavailable(
                        f"{exc} (and the journal of degraded grants is full)",
                        retry_after=exc.retry_after,
                        maybe_applied=exc.maybe_applied,
                    ) from exc
        self.degraded += 1
        return degraded_decision(amount)

    def settle(self, reservation_id: str, amount: int | None) -> None:
        """Settle a reservation granted without the store: nothing is held in any store, its
        units were journaled as used when it was granted. While that entry is still queued a
        commit at ``amount`` charges that many instead and a release (0) drops it; once the
        journal has charged it (or it was settled before) the charge stands: never
        under-counted."""
        self.journal.settle(journal_key(reservation_id), amount)


def journal_key(reservation_id: str) -> str:
    """The key a degraded reservation is journaled under."""
    return f"{JOURNAL_PREFIX}{reservation_id}"


def degraded_decision(amount: int) -> Decision:
    return Decision.grant(
        amount,
        None,
        "Granted while usage limits cannot be checked; it will be counted once they can.",
        degraded=True,
    )
