"""The output: the table, the targets and the library versions."""

from __future__ import annotations

from importlib import metadata
from typing import Any

from _table import aligned
from http_load.common import BARE, TARGET_P99_MS, TARGET_RATIO
from http_load.phases import Row

# --- report -----------------------------------------------------------------------------------


def versions() -> dict[str, str]:
    names = ("allowance", "fastapi", "starlette", "uvicorn", "uvloop", "httptools", "aiohttp")
    return {name: metadata.version(name) for name in names}


def targets(rows: list[Row]) -> list[dict[str, Any]]:
    bare = next(r for r in rows if r.server == BARE and r.phase == "peak")
    out = []
    for peak in rows:
        if peak.server == BARE or peak.phase != "peak":
            continue
        half = next(r for r in rows if r.server == peak.server and r.phase == "half load")
        ratio = peak.rps / bare.rps if bare.rps else 0.0
        out.append(
            {
                "server": peak.server,
                "throughput_vs_bare": round(ratio, 3),
                "throughput_ok": ratio >= TARGET_RATIO,
                "p99_half_load_ms": half.p99_ms,
                "p99_ok": half.p99_ms < TARGET_P99_MS,
            }
        )
    return out


def table(rows: list[Row]) -> str:
    bare = next(r for r in rows if r.server == BARE and r.phase == "peak")
    header: tuple[str, ...] = ("server", "phase", "offered/s", "req/s", "vs bare", "p50 ms")
    header += ("p99 ms", "p99.9 ms", "200 %", "srv CPU", "srv µs/req", "cli CPU")
    cells = []
    for r in rows:
        cells.append(
            (
                r.server,
                r.phase,
                "-" if r.offered_rps is None else f"{r.offered_rps:,.0f}",
                f"{r.rps:,.0f}",
                f"{r.rps / bare.rps:.2f}x" if r.phase == "peak" and bare.rps else "",
                f"{r.p50_ms:.2f}",
                f"{r.p99_ms:.2f}",
                f"{r.p999_ms:.2f}",
                f"{r.granted:.1%}",
                "?" if r.server_cpu is None else f"{r.server_cpu:.0%}",
                "?"
                if r.server_cpu_us_per_request is None
                else f"{r.server_cpu_us_per_request:,.0f}",
                f"{r.client_cpu:.0%}",
            )
        )
    return aligned(header, cells, set(range(2, len(header))), [r.server for r in rows])
