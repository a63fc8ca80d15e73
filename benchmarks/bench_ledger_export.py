"""A ledger export of many rows (issue 13): rows per second and peak memory of
``allowance ledger export --format csv``, next to a baseline in the same run: the store's own
rows read by one plain query (SQLite, PostgreSQL: a server-side cursor) or LRANGE pages
(Redis) and written as CSV, with no allowance code in between.

The rows are loaded first (``--rows``, default 1,000,000, over ``--accounts`` accounts, each
row a seed charge), written straight into the store's ledger table or lists in bulk; then
each export runs as a child process, so its peak RSS (``ru_maxrss``) is its own. Usage::

    .venv/bin/python benchmarks/bench_ledger_export.py [--store sqlite|postgres|redis]
        [--rows N] [--accounts N]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from allowance import Limiter
from allowance.ledger import CHARGE, Entry

ROOT = Path(__file__).resolve().parents[1]
GEN = "transform.virtual_model"
PG_URL = os.environ.get("ALLOWANCE_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("ALLOWANCE_BENCH_REDIS", "redis://127.0.0.1:6379/0")


def entries(account: str, n: int, start: float) -> list[Entry]:
    limits = ("transform_rate", "transform_daily")
    return [
        Entry(start + i, CHARGE, account, GEN, limits[i % 2], 1, "key_app", None, None, {})
        for i in range(n)
    ]


def load(kind: str, url: str, rows: int, accounts: int) -> None:
    """``rows`` ledger rows over ``accounts`` accounts, written in bulk."""
    per = rows // accounts
    started = time.perf_counter()
    with Limiter(store=url) as lim:
        for a in range(accounts):
            lim.set_account(f"acct-{a:05d}", "pro")
        store = lim.store
        at = store.now() - 86400
        if kind == "sqlite":
            import sqlite3

            path = url.removeprefix("sqlite:///")
            conn = sqlite3.connect(path)
            with conn:
                conn.execute("DELETE FROM ledger")
                for a in range(accounts):
                    found = entries(f"acct-{a:05d}", per, at)
                    conn.executemany(
                        "INSERT INTO ledger (at, account, body) VALUES (?, ?, ?)",
                        [(e.at, e.account, e.body()) for e in found],
                    )
            conn.close()
        elif kind == "postgres":
            import psycopg

            with psycopg.connect(PG_URL, autocommit=True) as pg_conn:
                pg_conn.execute("TRUNCATE bench_ledger.ledger")
                with pg_conn.cursor().copy(
                    "COPY bench_ledger.ledger (at, account, body) FROM STDIN"
                ) as copy:
                    for a in range(accounts):
                        for e in entries(f"acct-{a:05d}", per, at):
                            copy.write_row((e.at, e.account, e.body()))
        else:
            import redis

            client = redis.Redis.from_url(REDIS_URL)
            for a in range(accounts):
                key = f"bench_ledger:{{acct-{a:05d}}}:l"
                client.delete(key)
                pipe = client.pipeline(transaction=False)
                kept = [  # as ledger.lua keeps them: "<ms>-<n> <body>", oldest first
                    f"{int(e.at * 1000)}-{i} {e.body()}"
                    for i, e in enumerate(entries(f"acct-{a:05d}", per, at))
                ]
                for start in range(0, len(kept), 1000):
                    pipe.rpush(key, *kept[start : start + 1000])
                pipe.execute()
    print(f"loaded {per * accounts:,} rows in {time.perf_counter() - started:.1f} s")


BASELINES = {
    # each: read every row of the store's ledger and write it as CSV, without allowance
    "sqlite": """
import csv, sqlite3, sys
conn = sqlite3.connect(sys.argv[1])
w = csv.writer(sys.stdout, lineterminator="\\n")
for row in conn.execute("SELECT id, account, body FROM ledger ORDER BY account, id"):
    w.writerow(row)
""",
    "postgres": """
import csv, psycopg, sys
w = csv.writer(sys.stdout, lineterminator="\\n")
with psycopg.connect(sys.argv[1]) as conn:
    with conn.cursor(name="all") as cur:
        cur.execute("SELECT id, account, body FROM bench_ledger.ledger ORDER BY account, id")
        for row in cur:
            w.writerow(row)
""",
    "redis": """
import csv, redis, sys
client = redis.Redis.from_url(sys.argv[1])
w = csv.writer(sys.stdout, lineterminator="\\n")
for key in sorted(client.scan_iter(match="bench_ledger:*:l", count=1000)):
    start = 0
    while page := client.lrange(key, start, start + 999):
        for entry in page:
            row_id, body = entry.decode().split(" ", 1)
            w.writerow((row_id, key.decode(), body))
        start += len(page)
""",
}


# runs the command as its only child and prints that child's peak RSS (KiB) to stderr, so
# one run's peak is not another's (ru_maxrss of RUSAGE_CHILDREN is the largest child's)
WRAPPER = (
    "import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True,"
    " stderr=subprocess.DEVNULL); print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,"
    " file=sys.stderr)"
)


def timed(argv: list[str], out: Path) -> tuple[float, int, int]:
    """Seconds, peak RSS (KiB) of the command, and lines written."""
    started = time.perf_counter()
    with out.open("w") as sink:
        done = subprocess.run(
            [sys.executable, "-c", WRAPPER, *argv], stdout=sink, stderr=subprocess.PIPE,
            check=True, text=True,
        )  # fmt: skip
    seconds = time.perf_counter() - started
    with out.open() as f:
        lines = sum(1 for _ in f)
    return seconds, int(done.stderr.strip().splitlines()[-1]), lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", choices=["sqlite", "postgres", "redis"], default="sqlite")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--accounts", type=int, default=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if args.store == "sqlite":
            url = f"sqlite:///{work / 'ledger.db'}"
            base_arg = str(work / "ledger.db")
        elif args.store == "postgres":
            url, base_arg = f"{PG_URL}?schema=bench_ledger", PG_URL
        else:
            url, base_arg = f"{REDIS_URL}?prefix=bench_ledger", REDIS_URL
        load(args.store, url, args.rows, args.accounts)
        cli = [
            str(Path(sys.executable).parent / "allowance"),
            "ledger",
            "export",
            "--format",
            "csv",
        ]
        runs = [
            ("baseline: a plain read + csv", [sys.executable, "-c", BASELINES[args.store],
                                              base_arg]),
            ("allowance ledger export (csv)", [*cli, "--store", url]),
        ]  # fmt: skip
        print(f"{'':<32} {'rows':>10} {'seconds':>8} {'rows/s':>10} {'peak RSS':>10}")
        for name, argv in runs:
            seconds, peak, lines = timed(argv, work / "out.csv")
            rows = lines - (1 if "export" in name else 0)
            print(
                f"{name:<32} {rows:>10,} {seconds:>8.1f} {rows / seconds:>10,.0f}"
                f" {peak / 1024:>7.1f} MiB"
            )


if __name__ == "__main__":
    main()
