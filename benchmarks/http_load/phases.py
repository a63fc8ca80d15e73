"""The phases: ``peak`` (closed loop, ``--rounds`` slices per server interleaved with the other
servers) and ``half load`` (open loop at half of the server's own peak), and the row each phase
makes of its slices."""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass, field

from http_load.client import Sample, measure
from http_load.common import MIN_GRANTED, log
from http_load.servers import Server


@dataclass
class Row:
    server: str
    phase: str
    offered_rps: float | None
    rps: float
    p50_ms: float
    p99_ms: float
    p999_ms: float
    requests: int
    statuses: dict[str, int]
    errors: int
    granted: float
    server_cpu: float | None  # cores
    server_cpu_us_per_request: float | None
    client_cpu: float  # cores
    notes: list[str] = field(default_factory=list)


def percentile(ordered: list[int], q: float) -> float:
    """Nearest rank, in milliseconds."""
    if not ordered:
        return float("nan")
    rank = max(0, min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1))
    return ordered[rank] / 1000


def row(server: str, phase: str, rate: float | None, samples: list[Sample]) -> Row:
    seconds = sum(s.seconds for s in samples)
    latencies = sorted(x for s in samples for x in s.latencies_us)
    statuses: dict[str, int] = {}
    for sample in samples:
        for status, n in sample.statuses.items():
            statuses[status] = statuses.get(status, 0) + n
    errors = sum(s.errors for s in samples)
    answered = sum(statuses.values())
    cpus = [s.server_cpu_s for s in samples]
    server_cpu = None if None in cpus else sum(c or 0.0 for c in cpus)
    out = Row(
        server=server,
        phase=phase,
        offered_rps=rate,
        rps=len(latencies) / seconds,
        p50_ms=percentile(latencies, 0.5),
        p99_ms=percentile(latencies, 0.99),
        p999_ms=percentile(latencies, 0.999),
        requests=len(latencies),
        statuses=statuses,
        errors=errors,
        granted=statuses.get("200", 0) / answered if answered else 0.0,
        server_cpu=None if server_cpu is None else server_cpu / seconds,
        server_cpu_us_per_request=None
        if server_cpu is None or not latencies
        else server_cpu / len(latencies) * 1e6,
        client_cpu=sum(s.client_cpu_s for s in samples) / seconds,
    )
    if errors:
        out.notes.append(f"{errors} requests failed at the transport level")
    if out.granted < MIN_GRANTED:
        out.notes.append(f"only {out.granted:.1%} answered 200 (statuses {statuses})")
    return out


def run(
    servers: list[tuple[Server, str | None]], accounts: list[str], args: argparse.Namespace
) -> list[Row]:
    """Peak: ``--rounds`` slices per server, interleaved (A B C, C B A, ...); then each
    server once at half of its own peak."""
    rounds: int = args.rounds
    peaks: dict[str, list[Sample]] = {server.title: [] for server, _ in servers}
    for i in range(rounds):
        order = servers if i % 2 == 0 else servers[::-1]
        for server, key in order:
            sample = measure(server, key, accounts, args, args.seconds / rounds, None)
            peaks[server.title].append(sample)
            rps = len(sample.latencies_us) / sample.seconds
            log(f"  peak {i + 1}/{rounds} {server.title}: {rps:,.0f} req/s")
    rows = []
    for server, key in servers:
        peak = row(server.title, "peak", None, peaks[server.title])
        rate = peak.rps / 2
        half = measure(server, key, accounts, args, args.seconds, rate)
        rows += [peak, row(server.title, "half load", rate, [half])]
        log(f"  half load {server.title}: p99 {rows[-1].p99_ms:.2f} ms at {rate:,.0f} req/s")
    return rows
