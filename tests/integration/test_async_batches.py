"""AsyncLimiter on SQLite: concurrent calls go to the worker thread in batches that commit
together; each call still gets its own answer or its own error."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from allowance import AsyncLimiter, ReservationNotFound, UnknownAccount
from allowance.stores.base import Outcome, Transaction


def test_concurrent_consumes_grant_exactly_the_cap_in_batches(tmp_path: Path) -> None:
    sizes: list[int] = []

    async def main() -> None:
        lim = AsyncLimiter(store=f"sqlite:///{tmp_path / 'a.db'}")
        store = lim.store
        real = store.transact_many

        def observed(items: list[Transaction[Any]]) -> list[Outcome[Any]]:
            sizes.append(len(items))
            return real(items)

        store.transact_many = observed  # type: ignore[method-assign]
        await lim.set_account("acme", "pro")  # 30 AI exports a week
        decisions = await asyncio.gather(*(lim.consume("acme", "export.ai") for _ in range(100)))
        assert sum(d.allowed for d in decisions) == 30
        assert [m.used for m in await lim.usage("acme") if m.limit == "ai_exports"] == [30]
        await lim.close()

    asyncio.run(main())
    assert sum(sizes) >= 101 and max(sizes) > 1  # batched, and every call ran


def test_a_failing_call_fails_alone(tmp_path: Path) -> None:
    async def main() -> None:
        lim = AsyncLimiter(store=f"sqlite:///{tmp_path / 'a.db'}")
        await lim.set_account("acme", "free")
        results = await asyncio.gather(
            lim.consume("acme", "export.ai"),
            lim.consume("nobody", "export.ai"),
            lim.commit("rsv_nobody_x"),
            lim.consume("acme", "export.ai"),
            lim.consume("acme", "export.ai"),
            return_exceptions=True,
        )
        assert [type(r).__name__ for r in results] == [
            "Decision",
            "UnknownAccount",
            "ReservationNotFound",
            "Decision",
            "Decision",
        ]
        assert isinstance(results[1], UnknownAccount)
        assert isinstance(results[2], ReservationNotFound)
        assert [getattr(r, "allowed", None) for r in results] == [True, None, None, True, False]
        await lim.close()

    asyncio.run(main())


def test_a_cancelled_caller_does_not_break_the_batch(tmp_path: Path) -> None:
    async def main() -> None:
        lim = AsyncLimiter(store=f"sqlite:///{tmp_path / 'a.db'}")
        await lim.set_account("acme", "pro")
        doomed = asyncio.ensure_future(lim.consume("acme", "export.ai"))
        others = [asyncio.ensure_future(lim.consume("acme", "export.ai")) for _ in range(3)]
        await asyncio.sleep(0)
        doomed.cancel()
        assert all(d.allowed for d in await asyncio.gather(*others))
        with pytest.raises(asyncio.CancelledError):
            await doomed
        used = [m.used for m in await lim.usage("acme") if m.limit == "ai_exports"]
        assert used in ([3], [4])  # the cancelled one may have run: it was already sent
        await lim.close()

    asyncio.run(main())
