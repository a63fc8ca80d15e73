"""The webhook worker inside ``allowance serve`` (``webhooks.py`` keeps the data).

Every ``poll`` seconds each server's worker tries to hold the store's delivery lease (a
setting taken by compare-and-set when free or expired, renewed while held): only the holder
delivers, so several ``serve`` processes on one store send each event once. A holder that
stops renewing (killed, frozen, cut off) loses it after ``LEASE_TTL`` and another takes over
from the state kept in the store; one frozen past its lease and then resumed may send what
it had in hand once more (at least once, never lost).

Each round, per webhook (the lease renewed first): the new events after its cursor are taken
in as pending deliveries (one write), then at most ``CONCURRENCY`` due ones, oldest first, are
POSTed at once, each within ``TIMEOUT`` (so a turn stays well inside the lease); any 2xx
delivers, anything else (an error status, a refused connection, a timeout) waits
``first_retry`` × 2^(attempts-1) (at most ``MAX_PAUSE``) before the next try, until ``TRIES``
tries; then the results are written. A full page taken in: the next round at once.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from dataclasses import dataclass

import httpx

from allowance import webhooks
from allowance.clock import Clock, system_clock
from allowance.errors import AllowanceError
from allowance.stores.base import Store
from allowance.webhooks import Delivery, State, Webhook

__all__ = ["WebhookWorker"]

log = logging.getLogger("allowance.webhooks")
LEASE_TTL = 10.0  # seconds a worker's lease lasts unless renewed
POLL = 0.5  # seconds between rounds
TIMEOUT = 5.0  # seconds one POST may take
CONCURRENCY = 16  # POSTs in flight at once
TAKE = 100  # events taken in per webhook per round


@dataclass(frozen=True, slots=True)
class Lease:
    owner: str
    until: float

    def dump(self) -> str:
        return json.dumps({"owner": self.owner, "until": self.until})


class WebhookWorker:
    def __init__(
        self,
        store: Store,
        *,
        first_retry: float = webhooks.FIRST_RETRY,
        poll: float = POLL,
        clock: Clock = system_clock,
    ) -> None:
        """``store``: a sync store (the worker's calls go to threads). ``clock``: real time
        for the tries and the lease (not the limiter's, which a test or a simulation may
        hold still)."""
        self.store = store
        self.first_retry = first_retry
        self.poll = poll
        self.clock = clock
        self.owner = uuid.uuid4().hex
        self._http: httpx.AsyncClient | None = None
        self._gate = asyncio.Semaphore(CONCURRENCY)

    def start(self) -> asyncio.Task[None]:
        return asyncio.create_task(self.run(), name="allowance-webhooks")

    async def run(self) -> None:
        async with httpx.AsyncClient(timeout=TIMEOUT, follow_redirects=False) as http:
            self._http = http
            while True:
                due = None
                try:
                    due = await self.round()
                except AllowanceError as exc:  # the store is down: the next round tries again
                    log.warning("allowance: webhook round failed: %s", exc)
                wait = self.poll if due is None else due - self.clock()
                await asyncio.sleep(min(self.poll, max(0.01, wait)))

    async def round(self) -> float | None:
        """One round: nothing without webhooks; else, holding the lease, each one's turn.
        When the next retry is due (None: none pending), so a retry waits no longer than
        its pause."""
        hooks = await asyncio.to_thread(webhooks.registered, self.store)
        if not hooks or not await asyncio.to_thread(self._lead):
            return None
        due = []
        for hook in hooks:  # the lease renewed before each (a turn takes at most TIMEOUT)
            if not await asyncio.to_thread(self._lead):
                return None
            due.append(await self._serve(hook))
        return min((d for d in due if d is not None), default=None)

    def _lead(self) -> bool:
        """Whether this worker holds the lease: taken when free or expired, renewed once
        half of it is gone (a write every few seconds, not every round)."""
        now = self.clock()
        raw = self.store.get_setting(webhooks.LEASE)
        if raw is not None:
            held = Lease(**json.loads(raw))
            if held.owner != self.owner and held.until > now:
                return False  # another's, in force
            if held.owner == self.owner and held.until - now > LEASE_TTL / 2:
                return True
        mine = Lease(self.owner, now + LEASE_TTL).dump()
        return self.store.swap_setting(webhooks.LEASE, raw, mine)

    async def _serve(self, hook: Webhook) -> float | None:
        """One webhook's turn; when its next pending delivery is due."""
        name = webhooks.state_name(hook.id)
        raw = await asyncio.to_thread(self.store.get_setting, name)
        if raw is None:
            return None  # removed since the registry was read (``add`` writes it first)
        state = State.load(raw)
        taken = await asyncio.to_thread(self._take_in, hook, state)
        if taken:
            raw = await asyncio.to_thread(self._write, name, raw, state)
            if raw is None:
                return None  # written by another (a lease lost meanwhile): its turn
        now = self.clock()
        due = [d for d in state.deliveries if d.status == "pending" and d.next_at <= now]
        due = sorted(due, key=lambda d: d.event_id)[:CONCURRENCY]  # oldest first, one wave
        if due:
            await asyncio.gather(*(self._send(hook, d) for d in due))
            await asyncio.to_thread(self._write, name, raw, state)
        if taken == TAKE:
            return now  # more events wait: the next round at once
        pending = (d.next_at for d in state.deliveries if d.status == "pending")
        return min(pending, default=None)

    def _take_in(self, hook: Webhook, state: State) -> int:
        """The events after the cursor as pending deliveries (newest first); how many."""
        found = self.store.events(state.cursor, TAKE, None)
        if not found:
            return 0
        now = self.clock()
        for event in found:
            if hook.wants(event.type):
                pending = Delivery(event.id, event.type, next_at=now, event=event.to_json())
                state.deliveries.insert(0, pending)
        state.cursor = found[-1].id
        return len(found)

    def _write(self, name: str, old: str | None, state: State) -> str | None:
        """The state written over ``old`` (what was read); None when it had changed."""
        new = state.trimmed().dump()
        return new if self.store.swap_setting(name, old, new) else None

    async def _send(self, hook: Webhook, d: Delivery) -> None:
        assert self._http is not None
        body = json.dumps(d.event, separators=(",", ":")).encode()
        async with self._gate:
            now = self.clock()
            headers = {
                "Content-Type": "application/json",
                "Allowance-Event-Id": str(d.event_id),
                "Allowance-Signature": webhooks.sign(hook.secret, int(now), body),
                "User-Agent": "allowance-webhooks",
            }
            d.attempts += 1
            d.last_at = now
            try:
                answer = await self._http.post(hook.url, content=body, headers=headers)
            except httpx.HTTPError as exc:
                d.code, d.error = None, f"{type(exc).__name__}: {exc}"[:300]
            else:
                d.code, d.error = answer.status_code, None
                if answer.is_success:
                    d.status, d.event = "delivered", {}
                    return
                d.error = f"HTTP {answer.status_code}"
        if d.attempts >= webhooks.TRIES:
            d.status, d.event = "failed", {}
            log.warning("allowance: webhook %s gave up on event %d", hook.id, d.event_id)
            return
        pause = min(webhooks.MAX_PAUSE, self.first_retry * 2 ** (d.attempts - 1))
        d.next_at = self.clock() + pause
