"""Decisions per second and latency of ``POST /v1/consume`` on a real ``allowance serve``,
driven over loopback from other processes, next to a bare FastAPI route on the same stack.

Servers (each a subprocess on a free loopback port, uvicorn with ``allowance serve``'s
settings: httptools, uvloop, one worker, no uvicorn access log, no proxy headers):

* ``bare FastAPI route``: ``benchmarks/http_load/bare_app.py``, a ``POST /v1/consume`` that
  returns a constant decision (no body read, no key, no store): the floor of the HTTP stack here.
* ``allowance <store>``: ``allowance serve --store URL`` with the built-in policy, its own JSON
  access log (to a file) and metrics, as deployed. Stores (``--stores``): ``sqlite`` (a file in
  a temporary directory, the default ``synchronous=FULL``), ``sqlite-normal``
  (``?synchronous=normal``) and ``redis`` (``ALLOWANCE_BENCH_REDIS_URL``, else
  ``redis://127.0.0.1:6379/0`` if it answers, else a throwaway ``redis-server`` from
  ``tests/servers.py``; a fresh random ``?prefix=``, deleted afterwards) and ``postgresql``
  (``ALLOWANCE_BENCH_POSTGRES_URL``, else ``postgresql://postgres@127.0.0.1:5432/test`` if it
  answers, else a throwaway one; a fresh random ``?schema=``, dropped afterwards; the service's
  default pool of up to 10 connections).

Workload: ``--accounts`` accounts (default 1,000) on Pro, created in the store before the
server starts, with a ``decide`` key. Each request is ``{"account": A, "feature":
"background.studio"}`` with ``Authorization: Bearer <key>``, the accounts in turn (Pro allows
4,000 a day each, so every request is granted unless a run makes more than 4,000 per account;
a row with less than 95 % granted makes the exit status 2).

Load: ``--clients`` processes (default 1) running asyncio (uvloop) with an aiohttp session of
``--connections`` keep-alive connections in all (default 64), split between them. Two phases
per server, each a warm-up (``--seconds`` / 5, at least 0.2 s, unrecorded) then ``--seconds``
(default 10) recorded:

* ``peak``: closed loop: every connection sends its next request as soon as the previous one
  is answered. req/s: requests started in the recorded window / its length. Latency: from
  just before the request is written to the end of the response body.
* ``half load``: open loop at half of that server's measured peak: requests are due at fixed
  intervals (spread over the client processes) whatever the answers, and each latency runs
  from the moment the request was due, so a stall counts for every request it delays (no
  coordinated omission).

All processes read the system-wide monotonic clock to agree on the windows. ``srv CPU`` and
``cli CPU`` are the CPU time (user + system) the server process and the client processes used
in the recorded window, as a percentage of one core: a client near 100 % means the client,
not the server, set the pace (then try ``--clients 2``); on this 2-core machine server and
clients share the cores.

Targets (the issue's): allowance >= 0.5x the bare route's peak throughput, and p99 < 10 ms at
half of its own peak load.

Usage: ``python benchmarks/bench_http.py [--seconds S] [--connections N] [--clients N]
[--stores sqlite,redis,postgresql] [--accounts N] [--json]``. A default run takes about
100 s. Exit status: 0; 2 if a workload was not what it claims to be; 3 if a server could not
be started.

The code: this file reads the command line and prints (and, with ``--worker``, is a client
process); ``http_load/`` holds the rest (``common``: constants, helpers; ``servers``: the
uvicorn subprocesses and their stores; ``bare_app``: the bare route; ``client``: the load
driver processes; ``phases``: peak and half load; ``report``: the table and the targets).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

from http_load.client import worker_main
from http_load.common import (
    FEATURE,
    PLAN,
    STORES,
    TARGET_P99_MS,
    TARGET_RATIO,
    ServerUnavailable,
    log,
)
from http_load.phases import Row, run
from http_load.report import table, targets, versions
from http_load.servers import (
    Server,
    drop_prefix,
    drop_schema,
    make_store,
    postgres_url,
    prepare,
    redis_url,
    start_allowance,
    start_bare,
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    p.add_argument("--seconds", type=float, default=10.0, help="recorded seconds per phase")
    p.add_argument("--connections", type=int, default=64, help="keep-alive connections in all")
    p.add_argument("--clients", type=int, default=1, help="client processes")
    p.add_argument("--rounds", type=int, default=3, help="interleaved peak slices per server")
    p.add_argument("--stores", default="sqlite,redis,postgresql", help=f"comma-separated: {STORES}")
    p.add_argument("--accounts", type=int, default=1000)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument(
        "--profile",
        type=Path,
        help="run each allowance server under cProfile, writing DIR/<server>.prof",
    )
    args = p.parse_args(argv)
    args.stores = [s.strip() for s in args.stores.split(",") if s.strip()]
    for s in args.stores:
        if s not in STORES:
            p.error(f"--stores: unknown store {s!r} (choose from {', '.join(STORES)})")
    if args.connections < args.clients:
        p.error("--connections must be at least --clients")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    accounts = [f"acct-{i:05d}" for i in range(args.accounts)]
    tmp = Path(tempfile.mkdtemp(prefix="bench-http-"))
    env: dict[str, Any] = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        **versions(),
        "seconds_per_phase": args.seconds,
        "connections": args.connections,
        "clients": args.clients,
        "rounds": args.rounds,
        "accounts": args.accounts,
        "feature": FEATURE,
        "plan": PLAN,
    }
    rows: list[Row] = []
    try:
        with contextlib.ExitStack() as stack:
            stack.callback(shutil.rmtree, tmp, True)
            redis: str | None = None
            if "redis" in args.stores:
                redis, source = stack.enter_context(redis_url())
                env["redis"] = source
            postgres: str | None = None
            if "postgresql" in args.stores:
                postgres, source = stack.enter_context(postgres_url())
                env["postgresql"] = source
            bare = start_bare(tmp)
            stack.callback(bare.stop)
            servers: list[tuple[Server, str | None]] = [(bare, None)]
            for name in args.stores:
                store = make_store(name, tmp, redis, postgres)
                if store.redis_prefix and redis:
                    stack.callback(drop_prefix, redis, store.redis_prefix)
                if store.postgres_schema and postgres:
                    stack.callback(drop_schema, postgres, store.postgres_schema)
                key = prepare(store, accounts)
                title = f"allowance {name}"
                server = start_allowance(title, store.url, tmp, args.profile)
                stack.callback(server.stop)  # before the prefix is dropped (LIFO)
                servers.append((server, key))
            log(
                f"bench_http: {args.seconds:g} s per phase ({args.rounds} peak slices), "
                f"{args.connections} connections, {args.clients} client process(es)"
            )
            rows = run(servers, accounts, args)
    except ServerUnavailable as exc:
        log(f"bench_http: a server is unavailable: {exc}")
        return 3
    invalid = [r for r in rows if r.notes]
    if args.json:
        report = {"environment": env, "results": [asdict(r) for r in rows]}
        report["targets"] = targets(rows)
        print(json.dumps(report, indent=2))
        return 2 if invalid else 0
    v = env
    print(
        f"allowance {v['allowance']}: FastAPI {v['fastapi']}, uvicorn {v['uvicorn']} (httptools "
        f"{v['httptools']}, uvloop {v['uvloop']}), aiohttp {v['aiohttp']} clients; Python "
        f"{v['python']}, {v['platform']}, {v['cpus']} CPUs"
    )
    print(
        f"POST /v1/consume {FEATURE} on {PLAN}, {args.accounts:,} accounts, "
        f"{args.connections} keep-alive connections from {args.clients} client process(es), "
        f"{args.seconds:g} s per phase (peak: {args.rounds} interleaved slices)"
    )
    print()
    print(table(rows))
    print()
    print("Targets (issue):")
    for t in targets(rows):
        print(
            f"  {t['server']}: {t['throughput_vs_bare']:.2f}x the bare route's throughput "
            f"(>= {TARGET_RATIO}x: {'ok' if t['throughput_ok'] else 'MISSED'}); p99 at half "
            f"load {t['p99_half_load_ms']:.2f} ms (< {TARGET_P99_MS:g} ms: "
            f"{'ok' if t['p99_ok'] else 'MISSED'})"
        )
    for r in invalid:
        print(f"INVALID {r.server} {r.phase}: {'; '.join(r.notes)}")
    return 2 if invalid else 0


if __name__ == "__main__":
    if sys.argv[1:] == ["--worker"]:
        sys.exit(worker_main())
    sys.exit(main())
