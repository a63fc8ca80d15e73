"""The process race of tests/integration/test_races.py, also run through PgBouncer
(tests/test_pgbouncer.py): worker processes of ``integration/race_worker.py`` started at once."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

WORKER = Path(__file__).parent / "integration" / "race_worker.py"


def race(url: str, features: str, threads: int, share: bool) -> int:
    """8 worker processes × ``threads`` threads × 4 consumes on one Pro account, all starting
    at once; the units granted in all, after checking every worker exited cleanly."""
    start = time.time() + 3.0  # every process is up and waiting by then
    argv = [url, "acme", features, str(threads), "4", str(start), "1" if share else "0"]
    procs = [
        subprocess.Popen(
            [sys.executable, str(WORKER), *argv],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(8)
    ]
    total = 0
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        total += int(out.strip())
    return total
