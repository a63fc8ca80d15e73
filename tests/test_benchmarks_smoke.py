"""The decision benchmark runs end to end (a very short run; it measures nothing useful)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "bench_decisions.py"
ROWS = (
    "limits MovingWindow memory",
    "allowance memory://",
    "bare upsert sync=FULL",
    "allowance sqlite sync=FULL (default)",
    "bare upsert sync=NORMAL",
    "allowance sqlite sync=NORMAL",
)


@pytest.mark.slow
def test_bench_decisions_quick_run_prints_every_row() -> None:
    pytest.importorskip("limits")  # the "bench" extra: the baseline library
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--seconds", "0.05"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    for workload in ("mostly granted", "mostly denied"):
        for row in ROWS:
            assert any(line.startswith(row) and workload in line for line in lines), (
                f"no row {row!r} / {workload!r} in:\n{proc.stdout}"
            )
    assert "Targets (issue):" in proc.stdout


STORES_SCRIPT = ROOT / "benchmarks" / "bench_stores.py"
STORES_ROWS = (
    ("raw EVALSHA redis ", ("mostly granted",)),
    ("limits MovingWindow redis ", ("mostly granted", "mostly denied")),
    ("allowance redis ", ("mostly granted", "mostly denied")),
    ("allowance redis credits", ("mostly granted",)),
    ("allowance redis user_global", ("mostly granted",)),
    ("raw EVALSHA redis+cluster", ("mostly granted",)),
    ("limits MovingWindow redis+cluster", ("mostly granted",)),
    ("allowance redis+cluster ", ("mostly granted",)),
    ("allowance redis+cluster credits", ("mostly granted",)),
    ("allowance redis+cluster user_global", ("mostly granted",)),
    ("bare upsert postgresql", ("mostly granted",)),
    ("allowance postgresql ", ("mostly granted",)),
    ("allowance postgresql credits", ("mostly granted",)),
    ("allowance postgresql user_global", ("mostly granted",)),
    ("allowance postgresql pgbouncer", ("mostly granted",)),  # make test installs pgbouncer
)


@pytest.mark.slow
def test_bench_stores_quick_run_prints_every_row() -> None:
    """Throwaway Redis, Redis Cluster and PostgreSQL (unless ALLOWANCE_BENCH_* name servers),
    200 accounts, 1 and 16 threads: about 10 s, most of it starting the cluster."""
    pytest.importorskip("limits")  # the "bench" extra: the baseline library
    proc = subprocess.run(
        [sys.executable, str(STORES_SCRIPT), "--quick", "--seconds", "0.05", "--accounts", "200"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    if proc.returncode == 3:  # a server binary (redis-server, initdb, ...) is missing here
        pytest.skip(proc.stderr.strip().splitlines()[-1])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    for threads in ("1", "16"):
        for row, workloads in STORES_ROWS:
            for workload in workloads:
                assert any(
                    line.startswith(row)
                    and line[len(row) :].split()[0] == threads
                    and workload in line
                    for line in lines
                ), f"no row {row!r} / {threads} threads / {workload!r} in:\n{proc.stdout}"
    assert "Redis memory per active account" in proc.stdout
    assert "Targets (issue):" in proc.stdout


HTTP_SCRIPT = ROOT / "benchmarks" / "bench_http.py"
HTTP_ROWS = ("bare FastAPI route", "allowance sqlite", "allowance redis", "allowance postgresql")


@pytest.mark.slow
def test_bench_http_quick_run_prints_every_row() -> None:
    """Four servers (bare route, SQLite, Redis and PostgreSQL: the local ones or throwaway),
    50 accounts, 4 connections, a fraction of a second per phase: about 12 s, most of it
    starting them."""
    pytest.importorskip("aiohttp")  # the "bench" extra: the load client
    proc = subprocess.run(
        [
            sys.executable,
            str(HTTP_SCRIPT),
            *("--seconds", "0.3", "--rounds", "1", "--accounts", "50", "--connections", "4"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    if proc.returncode == 3:  # no Redis / PostgreSQL here and no binary to start one
        pytest.skip(proc.stderr.strip().splitlines()[-1])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    for row in HTTP_ROWS:
        for phase in ("peak", "half load"):
            assert any(line.startswith(row) and phase in line for line in lines), (
                f"no row {row!r} / {phase!r} in:\n{proc.stdout}"
            )
    assert "Targets (issue):" in proc.stdout


FAILURES_SCRIPT = ROOT / "benchmarks" / "bench_failures.py"


@pytest.mark.slow
def test_bench_failures_quick_run_prints_every_row() -> None:
    pytest.importorskip("limits")
    proc = subprocess.run(
        [sys.executable, str(FAILURES_SCRIPT), "--quick"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for row in ("limits memory (baseline)", "deny, breaker open", "allow, breaker open"):
        assert any(line.startswith(row) for line in proc.stdout.splitlines()), proc.stdout
