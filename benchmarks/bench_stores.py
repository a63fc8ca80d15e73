"""Decisions per second and latency of ``Limiter.consume`` on the server stores (Redis, Redis
Cluster, PostgreSQL), against same-run baselines, in one thread and in ``--threads`` threads;
plus the Redis memory an active account costs.

Feature: ``transform.virtual_model`` on the Pro plan of the built-in policy, i.e. two limits per
request: 2 per minute (sliding) and 30 per 24 h (anchored), over ``--accounts`` accounts
(default 10,000). Rows, each measured with 1 thread and with ``--threads`` (default 16)
threads:

* ``raw EVALSHA``: redis-py ``evalsha`` of a two-key script that only reads both keys
  (``return {redis.call('GET', KEYS[1]), redis.call('GET', KEYS[2])}``), the keys named like
  allowance's (``P:{account}:a`` and ``:c``, one hash tag) and holding values of about the size
  of allowance's. The floor of any decision that takes one round trip.
* ``limits MovingWindow``: the ``limits`` library, ``RedisStorage`` (``RedisClusterStorage`` on
  the cluster) with ``MovingWindowRateLimiter`` and "2/minute;30/day", doing
  ``hit(per_minute, key) and hit(per_day, key)``: one EVALSHA per limit, so two round trips per
  granted request; it charges the per-minute limit even when the per-day one then denies (not
  all or nothing) and skips the per-day one when the per-minute one denies (a denial costs one
  round trip).
* ``allowance redis`` / ``allowance redis+cluster`` (3 masters): one EVALSHA of ``decide.lua``
  per decision over a connection the thread holds; a grant is built from the script's reply,
  a denial by replaying the engine on the counters the script returns.
* ``bare upsert``: psycopg in autocommit, one durable statement per request:
  ``INSERT INTO t(k, n) VALUES (%s, 1) ON CONFLICT (k) DO UPDATE SET n = t.n + 1`` on the same
  keys (all present beforehand), at the server's default ``synchronous_commit``.
* ``allowance postgresql``: one statement per decision, the schema's ``decide()`` (prepared on
  each connection, sent through psycopg's libpq layer), one round trip and one commit that
  waits for the WAL flush when it wrote.
* ``allowance … credits`` (Redis, Redis Cluster, PostgreSQL): the built-in policy with the
  feature also priced at 4 credits in a monthly pool and counted per member of the account
  each day (``stores.common.credit_policy``; 8 members take turns), so a decision reads and
  charges four counters in two records (the account's and the member's), one of them 4 units,
  still in one round trip; compared with the seed's row of the same server, thread count and
  workload (``vs_seed``: seconds per decision over the seed's; issue 12: at most 1.3).
* ``allowance … user_global`` (Redis, Redis Cluster, PostgreSQL): the built-in policy with the
  feature also counted per user across every account each day (``global_policy``; each
  account's 8 members take turns, no user shared between accounts): on Redis and PostgreSQL
  still one round trip; on Redis Cluster the user's count is in the user's hash slot and the
  decision takes the transaction path under a per-user lock (lock, load, read, write, apply,
  unlock). ``vs_seed`` as above, no target: the issue asks what it costs.
* ``allowance … events+ledger off`` (Redis, Redis Cluster, PostgreSQL): the seed's row with
  the policy's ``events: false`` and ``ledger: false`` (``quiet_policy``). The seed's own row
  writes both (issue 13): the 24th and the 30th generation of an account's day each cross a
  level, which the one-step kernels leave to the transaction path (PostgreSQL writes the
  events under one lock per schema, Redis into the account's outbox, then relays them to the
  log: two more round trips on Redis Cluster; decide.lua hands that path what it read, so it
  starts with its write), and every grant appends two ledger rows in the same step
  (decide.lua: two entries on the account's list; decide(): one INSERT of two rows).
  ``vs_seed``: the seed's decisions per second over this row's; issue 13: at least 0.8.

Targets (the issue's): allowance on Redis >= 0.8x raw EVALSHA and >= 1.8x limits on Redis
("mostly granted"; Redis Cluster is held to the same ratios against the cluster's own
baselines); allowance on PostgreSQL >= 0.7x the bare upsert. Memory: <= 1 KiB of Redis per
active account.

Workloads (simulated clocks: allowance gets one as ``Limiter(clock=...)``, which the Redis
script then uses instead of Redis ``TIME`` and PostgreSQL instead of ``clock_timestamp()``;
``limits`` reads ``time.time()`` in ``limits.storage.redis``, which is swapped, for the whole
run, for a reader of the clock the calling thread bound last):

* ``mostly granted``, as in ``bench_decisions.py``: each measuring thread has its own clock that
  advances SWEEP_STEP (2,900 s) at the start of each sweep over its accounts, so every account
  asks once every 2,900 simulated seconds and every request is granted (1 per minute <= 2;
  86,400 / 30 = 2,880 <= 2,900). A thread's clock starts where the latest clock of the previous
  slice stopped (see below), so this holds across slices and thread counts.
* ``mostly denied`` (Redis only, allowance and ``limits``): before measuring, each account makes
  one request for 2 units; the clock then stays frozen at that instant, so the per-minute limit
  stays full and every measured request is denied (by allowance after checking both limits and
  working out the retry time and upgrade offer; by ``limits`` at its first ``hit``). A frozen
  clock instead of the real one (``bench_decisions.py``) lets this state outlive the minute, so
  these rows can be interleaved with the others; Redis ``TIME`` would add well under 1 µs.

Threads: with N threads the accounts are split into N disjoint parts (``keys[i::N]``), one per
thread, and each thread has its own client / ``Limiter`` / store / connection: they share only
the server (and the GIL of this one process). For PostgreSQL each thread gets its own store
with a pool of one connection, unless the server has too few free connections for that (then
one store with a pool of N is shared, and the ``clients`` column says so).

Measuring. The rows of one server form a group (Redis: raw, limits and allowance, granted and
denied; Redis Cluster: raw, limits, allowance; PostgreSQL: upsert, allowance). Each row gets a
fresh key prefix (Redis) or schema (PostgreSQL) and an untimed setup, in parallel threads, once
for both thread counts (accounts, then one request per account so its counters exist, or the
"mostly denied" prefill; on PostgreSQL through connections at ``synchronous_commit = off``,
since the state does not depend on it). Then, for each thread count, ``--rounds`` rounds (4):
in each, every row of the group runs one slice, in alternating order (A B C, C B A, ...), so a
load that drifts during the run (this benchmark often shares its machine) weighs on every row
alike. A slice: the threads open their clients, then, started together, a warm-up
(``--seconds`` / 8, at most 0.25 s), a throughput pass and a latency pass of ``--seconds`` /
``--rounds`` each; every thread continues its round-robin where its previous slice stopped.
ops/s: the calls of the throughput passes over their time (each from its start to the end of
the last thread's last call; each thread checks the wall clock after every call, ~0.1 µs
against a round trip of tens of µs). p50/p99: from the latency passes, every call wrapped in
``time.perf_counter_ns``, all threads pooled. ``srv µs/op``: EVALSHA time measured inside Redis
(``INFO commandstats`` deltas over both passes, summed over the masters) per decision. After
the group the prefixes / schemas are deleted.

Memory (standalone Redis): a fresh prefix, ``--accounts`` accounts on Pro, each makes one
``transform.virtual_model``, one ``export.ai`` and one ``background.studio`` request (real clock).
Reported: ``MEMORY USAGE`` of the account's two keys (``P:{a}:a`` hash, ``P:{a}:c`` counters;
the store's ``key(account, suffix)``) averaged over a sample, and the ``INFO memory``
``used_memory`` delta over the whole prefix per account (this includes the main and expires
dictionaries' per-key entries and table growth; on a server others use it is noise-prone).

Servers: ``ALLOWANCE_BENCH_REDIS_URL``, ``ALLOWANCE_BENCH_REDIS_CLUSTER_URL``
(``redis+cluster://host:port``) and ``ALLOWANCE_BENCH_POSTGRES_URL`` when set; otherwise
throwaway ones from ``tests/servers.py``, stopped at the end. The throwaway PostgreSQL runs with
``fsync=off`` and ``synchronous_commit=off``: its rows are then not durable, and the output says
so (it reads both settings from the server). For durable numbers pass a URL.

Usage: ``python benchmarks/bench_stores.py [--seconds S] [--quick] [--json] [--threads N]
[--accounts N] [--rounds R]``. A default run takes about 2.5 minutes. Exit status: 0; 2 if a
workload was not what it claims to be; 3 if a server could not be started.

The code: this file reads the command line and prints; ``stores/`` holds the rest
(``common``: constants, records, helpers; ``servers``; ``subjects``: the rows; ``measure``:
threads, passes, interleaving, ratios; ``memory``; ``report``: the table and the targets).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import sys
import time
from dataclasses import asdict
from typing import Any

from _simtime import SWEEP_STEP
from stores.common import (
    ENV,
    FEATURE,
    PLAN,
    ROUNDS,
    SERVER_TITLE,
    SERVERS,
    ServerUnavailable,
    limits_time,
    log,
    redact,
)
from stores.measure import groups, run
from stores.memory import measure_memory
from stores.report import memory_text, table, targets, versions
from stores.servers import RedisTarget, pg_info, pgbouncer, servers


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument(
        "--seconds",
        type=float,
        default=None,
        help="length of each timed pass (throughput, then latency) of a measurement "
        "(default 2, or 0.3 with --quick)",
    )
    parser.add_argument("--quick", action="store_true", help="a smoke run: ~0.3 s passes")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument(
        "--threads", type=int, default=16, help="threads of the concurrent measurement (16)"
    )
    parser.add_argument("--accounts", type=int, default=10_000, help="accounts (default 10,000)")
    parser.add_argument(
        "--rounds",
        type=int,
        default=None,
        help=f"interleaved slices per row and thread count (default {ROUNDS}, or 2 with --quick)",
    )
    args = parser.parse_args(argv)
    if args.seconds is None:
        args.seconds = 0.3 if args.quick else 2.0
    if args.rounds is None:
        args.rounds = 2 if args.quick else ROUNDS
    if not args.seconds > 0:
        parser.error("--seconds must be positive")
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    if args.accounts < 1:
        parser.error("--accounts must be at least 1")
    if args.threads < 1:
        parser.error("--threads must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    seconds: float = args.seconds
    rounds: int = args.rounds
    warmup = min(0.25, max(0.02, seconds / 8))  # per slice
    keys = [f"acct-{i:05d}" for i in range(args.accounts)]
    thread_counts = [1] if args.threads == 1 else [1, args.threads]
    began = time.perf_counter()
    try:
        with servers() as found, contextlib.ExitStack() as stack:
            redis_target = RedisTarget(found.urls["redis"])
            stack.callback(redis_target.close)
            cluster_target = RedisTarget(found.urls["cluster"])
            stack.callback(cluster_target.close)
            if not cluster_target.cluster:
                raise SystemExit(f"{ENV['cluster']} must be a redis+cluster:// URL")
            pg_url = found.urls["postgresql"]
            pg = pg_info(pg_url)
            env: dict[str, Any] = {
                "python": sys.version.split()[0],
                "platform": platform.platform(),
                "cpus": os.cpu_count(),
                **versions(),
                "redis_server": redis_target.version(),
                "redis_cluster_masters": len(cluster_target.masters()),
                "postgresql_server": pg.version,
                "postgresql_fsync": pg.fsync,
                "postgresql_synchronous_commit": pg.synchronous_commit,
                "postgresql_durable": pg.durable,
                "servers": {
                    name: {
                        "url": redact(found.urls[name]),
                        "source": "throwaway" if name in found.throwaway else ENV[name],
                    }
                    for name in SERVERS
                },
                "accounts": args.accounts,
                "threads": thread_counts,
                "feature": FEATURE,
                "plan": PLAN,
                "seconds_per_pass": seconds,
                "rounds": rounds,
                "warmup_seconds_per_slice": warmup,
                "sweep_step_simulated_s": SWEEP_STEP,
            }
            log(
                f"bench_stores: {args.accounts:,} accounts, threads {thread_counts}, "
                f"{seconds:g} s per pass in {rounds} slices, warm-up {warmup:g} s per slice"
            )
            log("memory:")
            memory = measure_memory(redis_target, keys, args.threads)
            log(f"  {memory.per_account_keys:.0f} B keys, {memory.used_memory_per_account:.0f} B")
            bouncer_url = stack.enter_context(pgbouncer(pg_url))
            makers = groups(redis_target, cluster_target, pg_url, pg, bouncer_url)
            with limits_time():
                results = run(makers, keys, thread_counts, seconds, warmup, rounds)
    except ServerUnavailable as exc:
        log(f"bench_stores: a server is unavailable: {exc}")
        return 3
    env["elapsed_s"] = round(time.perf_counter() - began, 1)
    invalid = [r for r in results if r.notes]
    if args.json:
        print(
            json.dumps(
                {
                    "environment": env,
                    "results": [asdict(r) for r in results],
                    "memory": asdict(memory),
                    "targets": targets(results, memory),
                },
                indent=2,
                ensure_ascii=False,
            )
        )
        return 2 if invalid else 0
    v = env
    print(
        f"allowance {v['allowance']} vs limits {v['limits']}; redis-py {v['redis']} (hiredis "
        f"{v['hiredis']}), psycopg {v['psycopg']}; Python {v['python']}, {v['platform']}, "
        f"{v['cpus']} CPUs"
    )
    for name in SERVERS:
        server = env["servers"][name]
        source = "throwaway" if server["source"] == "throwaway" else f"from {server['source']}"
        extra = {
            "redis": f"Redis {v['redis_server']}",
            "cluster": f"{v['redis_cluster_masters']} masters",
            "postgresql": f"PostgreSQL {pg.version}, fsync={pg.fsync}, "
            f"synchronous_commit={pg.synchronous_commit}",
        }[name]
        print(f"{SERVER_TITLE[name]}: {server['url']} ({source}; {extra})")
    if not pg.durable:
        print(
            "NOTE: this PostgreSQL does not flush commits to disk (fsync or synchronous_commit "
            "off): the PostgreSQL rows are NOT durable; set ALLOWANCE_BENCH_POSTGRES_URL to a "
            "durable server for real numbers."
        )
    print(
        f"{FEATURE} on {PLAN} (2/min sliding + 30/24 h anchored), {args.accounts:,} accounts; "
        f"with N threads each has its own client/Limiter over 1/N of the accounts; per row and "
        f"thread count {seconds:g} s throughput + {seconds:g} s latency passes, in {rounds} "
        f"slices interleaved with the other rows of the same server (each after a {warmup:g} s "
        f"warm-up); srv µs/op = EVALSHA time inside Redis per decision; run took "
        f"{env['elapsed_s']} s"
    )
    print()
    print(table(results))
    print()
    print("\n".join(memory_text(memory)))
    print()
    print("Targets (issue):")
    print("\n".join(targets(results, memory)))
    for r in invalid:
        print(f"{r.name} / {r.threads} thr / {r.workload}: {'; '.join(r.notes)}")
    return 2 if invalid else 0


if __name__ == "__main__":
    sys.exit(main())
