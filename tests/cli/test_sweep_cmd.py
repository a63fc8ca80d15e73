"""``allowance sweep`` for cron users, and ``serve`` sweeping by itself (defect 7)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from allowance import Limiter, ManualClock
from conftest import STORE_FACTORIES

from .support import Run

KEYED = 40
LONG_AGO = "2020-01-06T00:00:00Z"  # the command runs on the machine's clock: all expired by then


def _fill(url: str) -> None:
    """Records and counters written long ago, expired when the command runs."""
    with Limiter(store=url, clock=ManualClock(LONG_AGO)) as lim:
        lim.set_account("a", plan="pro")
        for n in range(KEYED):
            lim.consume("a", "export.ai" if n < 2 else "export.standard", idempotency_key=f"k{n}")


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_sweep_command_removes_expired_records(
    run: Run, kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    url = STORE_FACTORIES[kind](request, tmp_path)
    _fill(url)
    result = run("sweep", "--store", url)
    assert result.exit_code == 0, result.output
    # KEYED records, the two counters (ai_exports and exports) of the idle account and the
    # ledger's KEYED rows (one limit each), older than its 90 days
    assert f"removed {KEYED + 2 + KEYED} expired records" in result.output
    again = run("sweep", "--store", url, "--json")
    assert again.exit_code == 0 and json.loads(again.output)["removed"] == 0


def test_sweep_command_with_a_bad_url_is_a_clear_error(run: Run, tmp_path: Path) -> None:
    for url in ("bogus://x", f"sqlite:///{tmp_path}/no/such/dir/x.db"):
        result = run("sweep", "--store", url)
        assert result.exit_code == 1
        assert result.output.startswith("error: store: ") and "Traceback" not in result.output
    refused = run("sweep", "--store", "redis://127.0.0.1:1/0")
    assert refused.exit_code == 1 and refused.output.startswith("error: redis")


def test_serve_sweeps_by_itself(tmp_path: Path) -> None:
    from service.service import Service  # the HTTP tests' real `allowance serve`

    db = tmp_path / "allowance.db"
    url = f"sqlite:///{db}"
    svc = Service.start(url, tmp_path, "--sweep-interval", "0.2")
    try:
        svc.account("a", "pro")
        for n in range(KEYED):
            r = svc.call(
                "POST",
                "/v1/consume",
                json={"account": "a", "feature": "export.standard", "idempotency_key": f"k{n}"},
            )
            assert r.status_code == 200, r.text
        assert _records(db) == KEYED
        svc.set_time("2026-11-25T00:00:00Z")  # a day and a half later: all expired
        deadline = time.monotonic() + 10
        while _records(db) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _records(db) == 0
    finally:
        svc.stop()


def _records(db: Path) -> int:
    import sqlite3

    with sqlite3.connect(db) as conn:
        (n,) = conn.execute("SELECT count(*) FROM idempotency").fetchone()
    return int(n)
