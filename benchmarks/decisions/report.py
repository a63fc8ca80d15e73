"""The output: the table, the targets and the environment (versions and settings)."""

from __future__ import annotations

import argparse
import platform
import sqlite3
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from _simtime import SWEEP_STEP
from _table import aligned
from decisions.common import (
    FEATURE,
    MEMORY_AIM,
    MEMORY_FLOOR,
    MEMORY_RATIO,
    PLAN,
    SQLITE_RATIO,
    WORKLOADS,
    Result,
)

# --- output ---------------------------------------------------------------------------------


def ratio_text(result: Result) -> str:
    if result.ratio is None or result.baseline is None:
        return "(baseline)"
    short = "limits" if result.baseline.startswith("limits") else "upsert"
    if result.baseline.startswith("allowance"):
        short = "seed"  # an events+ledger off row: this over the seed's row (both on)
    return f"{result.ratio:.2f}× {short}"


def table(results: list[Result]) -> str:
    header = (
        "store / baseline",
        "workload",
        "ops/s",
        "p50 µs",
        "p99 µs",
        "granted",
        "vs baseline",
        "p50 ratio",
        "target",
        "met",
    )
    rows = [
        (
            r.name,
            r.workload,
            f"{r.ops_per_s:,.0f}",
            f"{r.p50_us:.1f}",
            f"{r.p99_us:.1f}",
            "n/a" if r.name.startswith("bare upsert") else f"{r.grant_ratio:.1%}",
            ratio_text(r),
            "" if r.p50_ratio is None else f"{r.p50_ratio:.2f}×",
            r.target or "",
            "" if r.met is None else ("yes" if r.met else "NO"),
        )
        for r in results
    ]
    return aligned(header, rows, {2, 3, 4, 5, 6, 7}, [r.workload for r in results])


def targets(results: list[Result]) -> list[str]:
    by = {(r.name.removesuffix(" (default)"), r.workload): r for r in results}
    out = [
        f"memory ≥ {MEMORY_RATIO}× limits (aim {MEMORY_AIM}×) and ≥ {MEMORY_FLOOR:,.0f} "
        "decisions/s in one thread:"
    ]
    for workload in WORKLOADS:
        r = by["allowance memory://", workload]
        ratio = r.ratio or 0.0
        aim = "aim met" if ratio >= MEMORY_AIM else "aim not met"
        out.append(
            f"  {workload:<15} {ratio:.2f}× limits, {r.ops_per_s:,.0f}/s -> "
            f"{'met' if r.met else 'MISSED'} ({aim})"
        )
    out.append(f"SQLite ≥ {SQLITE_RATIO}× the bare upsert at the same synchronous level:")
    for sync in ("FULL", "NORMAL"):
        for workload in WORKLOADS:
            r = by[f"allowance sqlite sync={sync}", workload]
            out.append(
                f"  sync={sync:<6} {workload:<15} {r.ratio or 0.0:.2f}× upsert -> "
                f"{'met' if r.met else 'MISSED'}"
            )
    return out


def environment(
    args: argparse.Namespace, seconds: float, warmup: float, tmp: Path
) -> dict[str, Any]:
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "allowance": metadata.version("allowance"),
        "limits": metadata.version("limits"),
        "sqlite": sqlite3.sqlite_version,
        "accounts": args.accounts,
        "feature": FEATURE,
        "plan": PLAN,
        "seconds_per_pass": seconds,
        "warmup_seconds": warmup,
        "sweep_step_simulated_s": SWEEP_STEP,
        "tmpdir": str(tmp),
    }
