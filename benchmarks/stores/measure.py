"""Measuring: threads moving through warm-up, throughput and latency passes together, rows of
a group interleaved slice by slice, the Redis memory of an active account, and the ratios
against the baselines."""

from __future__ import annotations

import gc
import math
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from stores.common import (
    CREDITS_RATIO,
    DENIED,
    EVENTS_RATIO,
    GLOBAL,
    GRANTED,
    PG_RATIO,
    QUIET,
    REDIS_FLOOR_RATIO,
    REDIS_LIMITS_RATIO,
    Cursor,
    Op,
    Result,
    credit_policy,
    global_policy,
    in_parallel,
    log,
    quiet_policy,
    split,
)
from stores.servers import PgInfo, RedisTarget
from stores.subjects import (
    AllowancePgBouncer,
    AllowancePostgres,
    AllowanceRedis,
    BareUpsert,
    LimitsRedis,
    RawEvalsha,
    Subject,
)

# --- the driver -------------------------------------------------------------------------------


def run_plain(op: Op, stream: Iterator[str], deadline: float) -> tuple[int, int, float]:
    """Calls ``op`` until ``deadline`` (at least once): (calls, granted, end time)."""
    perf = time.perf_counter
    calls = granted = 0
    for key in stream:
        granted += op(key)
        calls += 1
        if perf() >= deadline:
            break
    return calls, granted, perf()


def run_timed(op: Op, stream: Iterator[str], deadline: float) -> tuple[list[int], int, float]:
    """Like ``run_plain`` but times every call: (latencies in ns, granted, end time)."""
    perf = time.perf_counter
    clock_ns = time.perf_counter_ns
    latencies: list[int] = []
    record = latencies.append
    granted = 0
    for key in stream:
        t0 = clock_ns()
        ok = op(key)
        t1 = clock_ns()
        record(t1 - t0)
        granted += ok
        if perf() >= deadline:
            break
    return latencies, granted, perf()


@dataclass
class ThreadOutcome:
    calls: int = 0
    granted: int = 0
    end: float = 0.0
    latencies: list[int] = field(default_factory=list)
    timed_granted: int = 0
    timed_end: float = 0.0


class Runner:
    """One slice of one subject in ``threads`` threads that move through the phases (warm-up,
    throughput pass, latency pass) together: each phase starts when the last thread is ready (a
    barrier), with its deadline set then."""

    def __init__(self, subject: Subject, threads: int, seconds: float, warmup: float) -> None:
        self.subject = subject
        self.threads = threads
        self.seconds = seconds
        self.warmup = warmup
        self.phase = 0
        self.deadline = 0.0
        self.starts: list[float] = []
        self.stats: list[tuple[int, int] | None] = []
        self.errors: list[BaseException] = []
        self.barrier = threading.Barrier(threads, action=self._next_phase)

    def _next_phase(self) -> None:
        phase, self.phase = self.phase, self.phase + 1
        if phase == 1:  # the throughput pass starts: server-side counters first
            self.stats.append(self.subject.stats())
        if phase == 3:  # both passes are over
            self.stats.append(self.subject.stats())
            return
        now = time.perf_counter()
        self.starts.append(now)
        self.deadline = now + (self.warmup if phase == 0 else self.seconds)

    def work(self, index: int, part: list[str], out: ThreadOutcome) -> None:
        try:
            cursor = self.subject.cursors.setdefault((self.threads, index), Cursor(part))
            with self.subject.open(part) as contender:
                op = contender.op
                stream = cursor.stream(contender.tick)
                self.barrier.wait()
                run_plain(op, stream, self.deadline)
                self.barrier.wait()
                out.calls, out.granted, out.end = run_plain(op, stream, self.deadline)
                self.barrier.wait()
                out.latencies, out.timed_granted, out.timed_end = run_timed(
                    op, stream, self.deadline
                )
                self.barrier.wait()  # nobody closes its client while others still measure
        except BaseException as exc:
            self.errors.append(exc)
            self.barrier.abort()

    def run(self, parts: list[list[str]]) -> list[ThreadOutcome]:
        outcomes = [ThreadOutcome() for _ in parts]
        if len(parts) == 1:
            self.work(0, parts[0], outcomes[0])
        else:
            workers = [
                threading.Thread(target=self.work, args=(i, part, out), name=f"bench-{i}")
                for i, (part, out) in enumerate(zip(parts, outcomes, strict=True))
            ]
            for worker in workers:
                worker.start()
            for worker in workers:
                worker.join()
        real = [e for e in self.errors if not isinstance(e, threading.BrokenBarrierError)]
        if real or self.errors:
            raise (real or self.errors)[0]
        return outcomes


def percentile(sorted_ns: list[int], q: float) -> float:
    """Nearest-rank percentile, in us."""
    rank = max(1, math.ceil(q * len(sorted_ns)))
    return sorted_ns[min(rank, len(sorted_ns)) - 1] / 1000.0


@dataclass
class Tally:
    """One subject at one thread count, summed over its slices."""

    calls: int = 0
    granted: int = 0
    elapsed: float = 0.0
    latencies: list[int] = field(default_factory=list)
    timed_granted: int = 0
    timed_elapsed: float = 0.0
    evalsha_calls: int = 0
    evalsha_usec: int = 0
    has_stats: bool = False

    def add(self, runner: Runner, outcomes: list[ThreadOutcome]) -> None:
        _, start, timed_start = runner.starts
        self.calls += sum(o.calls for o in outcomes)
        self.granted += sum(o.granted for o in outcomes)
        self.elapsed += max(o.end for o in outcomes) - start
        for o in outcomes:
            self.latencies += o.latencies
            self.timed_granted += o.timed_granted
        self.timed_elapsed += max(o.timed_end for o in outcomes) - timed_start
        before, after = runner.stats
        if before is not None and after is not None:
            self.has_stats = True
            self.evalsha_calls += after[0] - before[0]
            self.evalsha_usec += after[1] - before[1]

    def result(self, subject: Subject, threads: int) -> Result:
        self.latencies.sort()
        total = self.calls + len(self.latencies)
        role = subject.role
        return Result(
            name=subject.name,
            server=subject.server,
            role=role,
            workload=subject.workload,
            threads=threads,
            clients=subject.clients(threads),
            ops_per_s=self.calls / self.elapsed,
            p50_us=percentile(self.latencies, 0.50),
            p99_us=percentile(self.latencies, 0.99),
            grant_ratio=None if role == "floor" else (self.granted + self.timed_granted) / total,
            calls=self.calls,
            timed_calls=len(self.latencies),
            timed_ops_per_s=len(self.latencies) / self.timed_elapsed,
            server_us_per_op=self.evalsha_usec / total if self.has_stats else None,
            evalsha_per_op=self.evalsha_calls / total if self.has_stats else None,
        )


def measure_group(
    makers: list[Callable[[], Subject]],
    keys: list[str],
    thread_counts: list[int],
    seconds: float,
    warmup: float,
    rounds: int,
) -> list[Result]:
    """Rows compared with each other: all set up first, then for each thread count
    ``rounds`` rounds in which each row runs one slice (``seconds / rounds`` per pass, after
    its own warm-up), in alternating order (A B C, C B A, ...), so a load that drifts during
    the run weighs on every row alike."""
    subjects: list[Subject] = []
    results = []
    try:
        for make in makers:
            subject = make()
            subjects.append(subject)
            subject.begin()
            began = time.perf_counter()
            in_parallel(subject.setup, keys, subject.setup_workers(max(thread_counts)))
            took = time.perf_counter() - began
            log(f"  {subject.name:<33} {subject.workload:<14} setup {took:5.1f} s")
        for threads in (min(t, len(keys)) for t in thread_counts):
            parts = split(keys, threads)
            tallies = [Tally() for _ in subjects]
            for round_ in range(rounds):
                order = list(zip(subjects, tallies, strict=True))
                for subject, tally in order if round_ % 2 == 0 else order[::-1]:
                    subject.start_run(threads)
                    try:
                        gc.collect()
                        runner = Runner(subject, threads, seconds / rounds, warmup)
                        tally.add(runner, runner.run(parts))
                    finally:
                        subject.end_run()
            for subject, tally in zip(subjects, tallies, strict=True):
                result = tally.result(subject, threads)
                results.append(result)
                granted = (
                    "" if result.grant_ratio is None else f"  granted {result.grant_ratio:6.1%}"
                )
                log(
                    f"  {subject.name:<33} {subject.workload:<14} {threads:>2} thr "
                    f"{result.ops_per_s:>9,.0f}/s  p50 {result.p50_us:7.1f} us{granted}"
                )
    finally:
        for subject in subjects:
            subject.cleanup()
    return results


# --- the run ----------------------------------------------------------------------------------


def groups(
    redis_target: RedisTarget,
    cluster_target: RedisTarget,
    pg_url: str,
    pg: PgInfo,
    bouncer_url: str | None = None,
) -> list[list[Callable[[], Subject]]]:
    """The rows, in table order, in the groups whose rows are measured interleaved."""
    return [
        [
            lambda: RawEvalsha(redis_target, "redis"),
            lambda: LimitsRedis(redis_target, "redis", GRANTED),
            lambda: AllowanceRedis(redis_target, "redis", GRANTED),
            lambda: AllowanceRedis(redis_target, "redis", GRANTED, credit_policy()),
            lambda: AllowanceRedis(redis_target, "redis", GRANTED, global_policy(), GLOBAL),
            lambda: AllowanceRedis(redis_target, "redis", GRANTED, quiet_policy(), QUIET),
            lambda: LimitsRedis(redis_target, "redis", DENIED),
            lambda: AllowanceRedis(redis_target, "redis", DENIED),
        ],
        [
            lambda: RawEvalsha(cluster_target, "cluster"),
            lambda: LimitsRedis(cluster_target, "cluster", GRANTED),
            lambda: AllowanceRedis(cluster_target, "cluster", GRANTED),
            lambda: AllowanceRedis(cluster_target, "cluster", GRANTED, credit_policy()),
            lambda: AllowanceRedis(cluster_target, "cluster", GRANTED, global_policy(), GLOBAL),
            lambda: AllowanceRedis(cluster_target, "cluster", GRANTED, quiet_policy(), QUIET),
        ],
        [
            lambda: BareUpsert(pg_url),
            lambda: AllowancePostgres(pg_url, pg.free_connections),
            lambda: AllowancePostgres(pg_url, pg.free_connections, credit_policy()),
            lambda: AllowancePostgres(pg_url, pg.free_connections, global_policy(), GLOBAL),
            lambda: AllowancePostgres(pg_url, pg.free_connections, quiet_policy(), QUIET),
            *(
                [lambda: AllowancePgBouncer(bouncer_url, pg_url, pg.free_connections)]
                if bouncer_url is not None
                else []
            ),
        ],
    ]


def compare(results: list[Result]) -> None:
    """Ratios against the baselines of the same server and thread count, targets, sanity."""
    floors = {(r.server, r.threads): r for r in results if r.role == "floor"}
    limits_rows = {(r.server, r.threads, r.workload): r for r in results if r.role == "limits"}
    seed_rows = {(r.server, r.threads, r.workload): r for r in results if r.role == "allowance"}
    for r in results:
        if r.role == "floor":
            continue
        seed = seed_rows.get((r.server, r.threads, r.workload))
        if r.role in ("credits", GLOBAL) and seed is not None:
            r.vs_seed = seed.ops_per_s / r.ops_per_s
        if r.role == QUIET and seed is not None:  # the seed's (both on) over this
            r.vs_seed = seed.ops_per_s / r.ops_per_s
            r.target = f"seed (both on) ≥{EVENTS_RATIO}× this"
            r.met = r.vs_seed >= EVENTS_RATIO
        if r.role == "credits" and r.vs_seed is not None:
            r.target = f"≤{CREDITS_RATIO}× seed cost"
            r.met = r.vs_seed <= CREDITS_RATIO
        floor = floors.get((r.server, r.threads))
        if floor is not None:
            r.floor = floor.name
            r.vs_floor = r.ops_per_s / floor.ops_per_s
        base = limits_rows.get((r.server, r.threads, r.workload))
        if r.role == "allowance" and base is not None:
            r.vs_limits = r.ops_per_s / base.ops_per_s
        if r.role == "allowance" and r.workload == GRANTED:
            if r.server == "postgresql":
                r.target = f"≥{PG_RATIO}× upsert"
                r.met = (r.vs_floor or 0.0) >= PG_RATIO
            else:
                r.target = f"≥{REDIS_FLOOR_RATIO}× raw, ≥{REDIS_LIMITS_RATIO}× limits"
                r.met = (r.vs_floor or 0.0) >= REDIS_FLOOR_RATIO and (
                    r.vs_limits or 0.0
                ) >= REDIS_LIMITS_RATIO
        if r.grant_ratio is not None:  # a workload that is not what it claims to be
            if r.workload == GRANTED and r.grant_ratio < 0.95:
                r.notes.append("INVALID: expected nearly all granted")
            if r.workload == DENIED and r.grant_ratio > 0.05:
                r.notes.append("INVALID: expected nearly all denied")


def run(
    makers: list[list[Callable[[], Subject]]],
    keys: list[str],
    thread_counts: list[int],
    seconds: float,
    warmup: float,
    rounds: int,
) -> list[Result]:
    """Every group at every thread count; the results ordered by thread count, then row."""
    results = []
    for group in makers:
        results += measure_group(group, keys, thread_counts, seconds, warmup, rounds)
    results.sort(key=lambda r: r.threads)  # stable: the row order stays within a thread count
    compare(results)
    return results
