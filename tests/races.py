"""The process race of tests/integration/test_races.py, also run through PgBouncer
(tests/test_pgbouncer.py): worker processes of ``integration/race_worker.py`` started at once."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

WORKER = Path(__file__).parent / "integration" / "race_worker.py"


def race(url: str, features: str, threads: int, share: bool) -> int:
    """8 worker processes × ``threads`` threads × 4 consumes on one Pro account, all starting
    at once; the units granted in all, after checking every worker exited cleanly."""
    return sum(race_by_feature(url, features, threads, share).values())


def race_by_feature(
    url: str,
    features: str,
    threads: int,
    share: bool,
    policy: Path | None = None,
    accounts: str = "acme",
    users: str | None = None,
) -> Counter[str]:
    """``race``, with the units granted per feature (and ``policy`` instead of the built-in
    one; requests going round ``accounts``; with ``users``, by each in turn, the units
    counted per "feature/user")."""
    start = time.time() + 3.0  # every process is up and waiting by then
    argv = [url, accounts, features, str(threads), "4", str(start), "1" if share else "0"]
    if policy is not None:
        argv.append(str(policy))
    if users is not None:
        assert policy is not None
        argv.append(users)
    procs = [
        subprocess.Popen(
            [sys.executable, str(WORKER), *argv],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(8)
    ]
    total: Counter[str] = Counter()
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        total.update(json.loads(out))
    return total
