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
