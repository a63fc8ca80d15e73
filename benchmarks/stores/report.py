"""The output: the table, the targets and the memory lines, and the library versions."""

from __future__ import annotations

from importlib import metadata

from _table import aligned
from stores.common import (
    CREDIT_COST,
    CREDITS_RATIO,
    GLOBAL,
    GRANTED,
    MEMORY_FEATURES,
    MEMORY_TARGET,
    PG_RATIO,
    REDIS_FLOOR_RATIO,
    REDIS_LIMITS_RATIO,
    Memory,
    Result,
)

# --- output -----------------------------------------------------------------------------------


def table(results: list[Result]) -> str:
    header = (
        "store / baseline",
        "thr",
        "clients",
        "workload",
        "ops/s",
        "p50 µs",
        "p99 µs",
        "granted",
        "srv µs/op",
        "vs floor",
        "vs limits",
        "target",
        "met",
    )

    def floor_text(r: Result) -> str:
        if r.vs_floor is None:
            return "(floor)" if r.role == "floor" else ""
        return f"{r.vs_floor:.2f}× {'upsert' if r.server == 'postgresql' else 'raw'}"

    rows = [
        (
            r.name,
            str(r.threads),
            r.clients,
            r.workload,
            f"{r.ops_per_s:,.0f}",
            f"{r.p50_us:.1f}",
            f"{r.p99_us:.1f}",
            "n/a" if r.grant_ratio is None else f"{r.grant_ratio:.1%}",
            "" if r.server_us_per_op is None else f"{r.server_us_per_op:.1f}",
            floor_text(r),
            vs_text(r),
            r.target or "",
            "" if r.met is None else ("met" if r.met else "NO"),
        )
        for r in results
    ]
    return aligned(header, rows, {1, 4, 5, 6, 7, 8, 9, 10}, [r.threads for r in results])


def vs_text(r: Result) -> str:
    if r.vs_seed is not None:
        return f"{r.vs_seed:.2f}× seed cost"
    return "" if r.vs_limits is None else f"{r.vs_limits:.2f}×"


def targets(results: list[Result], memory: Memory) -> list[str]:
    out = [
        f"allowance on Redis ≥ {REDIS_FLOOR_RATIO}× raw EVALSHA and ≥ {REDIS_LIMITS_RATIO}× "
        "limits on Redis (mostly granted; the cluster against its own baselines):"
    ]
    for r in results:
        if r.role == "allowance" and r.workload == GRANTED and r.server != "postgresql":
            out.append(
                f"  {r.name:<26} {r.threads:>2} thr: {r.vs_floor or 0.0:.2f}× raw EVALSHA, "
                f"{r.vs_limits or 0.0:.2f}× limits -> {'met' if r.met else 'NO'}"
            )
    out.append(f"allowance on PostgreSQL ≥ {PG_RATIO}× the bare upsert:")
    for r in results:
        if r.role == "allowance" and r.server == "postgresql":
            out.append(
                f"  {r.name:<26} {r.threads:>2} thr: {r.vs_floor or 0.0:.2f}× upsert -> "
                f"{'met' if r.met else 'NO'}"
            )
    out.append(
        f"a credit-priced decision by a member (the seed's two limits, a pool of credits, "
        f"{CREDIT_COST} a request, and the member's own daily count) costs ≤ {CREDITS_RATIO}× "
        "the seed's decision on the same store:"
    )
    for r in results:
        if r.role == "credits":
            out.append(
                f"  {r.name:<34} {r.threads:>2} thr: {r.vs_seed or 0.0:.2f}× the seed's time "
                f"per decision -> {'met' if r.met else 'NO'}"
            )
    out.append(
        "a decision that also counts the user across accounts (user_global; on Redis Cluster "
        "the user's own slot, under a per-user lock), its cost over the seed's (no target):"
    )
    for r in results:
        if r.role == GLOBAL:
            out.append(
                f"  {r.name:<38} {r.threads:>2} thr: {r.vs_seed or 0.0:.2f}× the seed's time "
                "per decision"
            )
    out.append(
        f"Redis memory ≤ {MEMORY_TARGET} B per active account: {memory.per_account_keys:.0f} B "
        f"(MEMORY USAGE of its keys), {memory.used_memory_per_account:.0f} B (used_memory "
        f"delta) -> {'met' if memory.met else 'NO'}"
    )
    return out


def memory_text(memory: Memory) -> list[str]:
    return [
        f"Redis memory per active account ({memory.accounts:,} Pro accounts, each after one "
        f"{', one '.join(MEMORY_FEATURES)} request, real clock):",
        f"  MEMORY USAGE, mean of {memory.sampled} accounts: P:{{a}}:a (account hash) "
        f"{memory.account_key_bytes:.0f} B + P:{{a}}:c (counters) {memory.counters_key_bytes:.0f}"
        f" B = {memory.per_account_keys:.0f} B",
        f"  INFO memory used_memory delta over the prefix: {memory.used_memory_delta:,} B = "
        f"{memory.used_memory_per_account:.0f} B per account (incl. dict/expires entries)",
        f"  counters value: {memory.counters_len_avg:.0f} chars on average, e.g. "
        f"{memory.counters_example!r}",
    ]


def versions() -> dict[str, str]:
    out = {}
    for name in ("allowance", "limits", "redis", "hiredis", "psycopg", "psycopg-pool"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "-"
    return out
