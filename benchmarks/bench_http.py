"""Decisions per second and latency of ``POST /v1/consume`` on a real ``allowance serve``,
driven over loopback from other processes, next to a bare FastAPI route on the same stack.

Servers (each a subprocess on a free loopback port, uvicorn with ``allowance serve``'s
settings: httptools, uvloop, one worker, no uvicorn access log, no proxy headers):

* ``bare FastAPI route``: ``benchmarks/_bare_app.py``, a ``POST /v1/consume`` that returns a
  constant decision (no body read, no key, no store): the floor of the HTTP stack here.
* ``allowance <store>``: ``allowance serve --store URL`` with the built-in policy, its own JSON
  access log (to a file) and metrics, as deployed. Stores (``--stores``): ``sqlite`` (a file in
  a temporary directory, the default ``synchronous=FULL``), ``sqlite-normal``
  (``?synchronous=normal``) and ``redis`` (``ALLOWANCE_BENCH_REDIS_URL``, else
  ``redis://127.0.0.1:6379/0`` if it answers, else a throwaway ``redis-server`` from
  ``tests/servers.py``; a fresh random ``?prefix=``, deleted afterwards).

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
[--stores sqlite,redis] [--accounts N] [--json]``. A default run takes about 75 s. Exit status:
0; 2 if a workload was not what it claims to be; 3 if a server could not be started.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import re
import resource
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from _table import aligned

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
ALLOWANCE = Path(sys.executable).with_name("allowance")
FEATURE = "background.studio"
PLAN = "pro"
DEFAULT_REDIS = "redis://127.0.0.1:6379/0"
REDIS_ENV = "ALLOWANCE_BENCH_REDIS_URL"
LISTENING = re.compile(rb"Uvicorn running on http://127\.0\.0\.1:(\d+)")
UVICORN = (
    "--http",
    "httptools",
    "--loop",
    "uvloop",
    "--workers",
    "1",
    "--no-access-log",
    "--no-proxy-headers",
    "--no-server-header",
)
STORES = ("sqlite", "sqlite-normal", "redis")
BARE = "bare FastAPI route"
MIN_GRANTED = 0.95
TARGET_RATIO = 0.5
TARGET_P99_MS = 10.0
CLK_TCK = os.sysconf("SC_CLK_TCK")


class ServerUnavailable(RuntimeError):
    """A server the benchmark needs could not be started."""


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def add_query(url: str, **params: object) -> str:
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    query.update({k: str(v) for k, v in params.items()})
    return urlunsplit(parts._replace(query=urlencode(query)))


# --- servers ----------------------------------------------------------------------------------


class Server:
    """A uvicorn subprocess on a free loopback port (``--port 0``; the port is read from its
    log). Stopped by its own handle."""

    def __init__(self, title: str, command: list[str], log_path: Path, env: dict[str, str]):
        self.title = title
        self.log_path = log_path
        with log_path.open("wb") as out:
            self.proc = subprocess.Popen(
                command, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=log_path.parent
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            found = LISTENING.search(log_path.read_bytes())
            if found:
                self.url = f"http://127.0.0.1:{found.group(1).decode()}"
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        self.stop()
        tail = log_path.read_text(errors="replace")[-2000:]
        raise ServerUnavailable(f"{title} did not start:\n{tail}")

    def cpu_seconds(self) -> float | None:
        """User + system CPU time of the server process so far (Linux ``/proc``)."""
        try:
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime

    def stop(self) -> None:
        if self.proc.poll() is None:
            # SIGINT: uvicorn shuts down and re-raises it, as KeyboardInterrupt, so a
            # cProfile around the server still writes its file (it would not on SIGTERM)
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_bare(tmp: Path) -> Server:
    command = [sys.executable, "-m", "uvicorn", "_bare_app:app", "--app-dir", str(HERE)]
    command += ["--host", "127.0.0.1", "--port", "0", *UVICORN]
    return Server(BARE, command, tmp / "bare.log", dict(os.environ))


def start_allowance(title: str, store: str, tmp: Path, profile: Path | None = None) -> Server:
    command = [str(ALLOWANCE), "serve", "--host", "127.0.0.1", "--port", "0", "--store", store]
    if profile is not None:  # cProfile of the server's main thread, written when it stops
        out = profile / f"{title.replace(' ', '-')}.prof"
        command = [sys.executable, "-m", "cProfile", "-o", str(out), *command]
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALLOWANCE_")}
    return Server(title, command, tmp / f"{title.replace(' ', '-')}.log", env)


@dataclass
class Store:
    name: str
    url: str
    setup_url: str  # the same data; SQLite at synchronous=normal for a faster setup
    redis_prefix: str | None = None


@contextlib.contextmanager
def redis_url() -> Iterator[tuple[str, str]]:
    """(url, source): the environment's, the local default if it answers, else throwaway."""
    import redis

    if os.environ.get(REDIS_ENV):
        yield os.environ[REDIS_ENV], REDIS_ENV
        return
    try:
        with redis.Redis.from_url(DEFAULT_REDIS, socket_connect_timeout=1) as client:
            client.ping()
        local = True
    except redis.RedisError:
        local = False
    if local:
        yield DEFAULT_REDIS, "local"
        return
    sys.path.insert(0, str(ROOT / "tests"))
    import servers as throwaway  # tests/servers.py

    try:
        handle = throwaway.start_redis()
    except Exception as exc:  # a missing binary, or a server that did not start
        raise ServerUnavailable(f"Redis: {exc}") from exc
    try:
        yield handle.url, "throwaway"
    finally:
        handle.stop()


def make_store(name: str, tmp: Path, redis: str | None) -> Store:
    if name in ("sqlite", "sqlite-normal"):
        path = tmp / f"{name}.db"
        url = f"sqlite:///{path}" + ("?synchronous=normal" if name == "sqlite-normal" else "")
        return Store(name, url, f"sqlite:///{path}?synchronous=normal")
    assert redis is not None
    prefix = "benchhttp" + secrets.token_hex(4)
    url = add_query(redis, prefix=prefix)
    return Store(name, url, url, prefix)


def prepare(store: Store, accounts: list[str]) -> str:
    """Create the accounts and a ``decide`` key in the store; returns the key's secret."""
    from allowance import Limiter
    from allowance.keys import new_key

    with Limiter(None, store.setup_url) as lim:
        for account in accounts:
            lim.set_account(account, plan=PLAN)
        key, secret = new_key("decide", "bench_http", lim.store.now())
        lim.store.keyring().add(key)
    return secret


def drop_prefix(url: str, prefix: str) -> None:
    import redis

    with redis.Redis.from_url(url) as client:
        keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        for i in range(0, len(keys), 1000):
            client.unlink(*keys[i : i + 1000])


# --- load (client processes) -----------------------------------------------------------------


@dataclass
class Plan:
    url: str
    key: str | None
    accounts: list[str]
    connections: int
    rate: float | None  # requests per second from this process; None: closed loop
    warm_start: float  # time.monotonic() values, system-wide on Linux
    measure_start: float
    measure_end: float


@dataclass
class Recorded:
    latencies_us: list[int] = field(default_factory=list)
    statuses: dict[str, int] = field(default_factory=dict)
    errors: int = 0
    cpu_s: float = 0.0


async def _sleep_until(when: float) -> None:
    delay = when - time.monotonic()
    if delay > 0:
        await asyncio.sleep(delay)


def _rusage() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def drive(plan: Plan) -> Recorded:
    import aiohttp

    out = Recorded()
    headers = {"Content-Type": "application/json"}
    if plan.key:
        headers["Authorization"] = "Bearer " + plan.key
    bodies = [
        json.dumps({"account": a, "feature": FEATURE}, separators=(",", ":")).encode()
        for a in plan.accounts
    ]
    turn = 0
    target = plan.url + "/v1/consume"
    connector = aiohttp.TCPConnector(limit=plan.connections, keepalive_timeout=120)
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:

        async def one(due: float | None) -> None:
            nonlocal turn
            body = bodies[turn % len(bodies)]
            turn += 1
            start = time.monotonic()
            try:
                async with session.post(target, data=body) as resp:
                    await resp.read()
                    status = resp.status
            except aiohttp.ClientError:
                status = 0
            end = time.monotonic()
            began = start if due is None else due
            if plan.measure_start <= began < plan.measure_end:
                out.latencies_us.append(round((end - began) * 1e6))
                if status:
                    out.statuses[str(status)] = out.statuses.get(str(status), 0) + 1
                else:
                    out.errors += 1

        async def closed_loop() -> None:
            while time.monotonic() < plan.measure_end:
                await one(None)

        async def open_loop(rate: float) -> None:
            # the schedule is shared: each connection takes the next due time, waits for it
            # and sends; when every connection is busy the next request goes out late, and
            # its latency, counted from its due time, says so
            slot = 0

            async def paced() -> None:
                nonlocal slot
                while True:
                    due = plan.warm_start + slot / rate
                    slot += 1
                    if due >= plan.measure_end:
                        return
                    await _sleep_until(due)
                    await one(due)

            await asyncio.gather(*(paced() for _ in range(plan.connections)))

        async def cpu_window() -> None:
            await _sleep_until(plan.measure_start)
            before = _rusage()
            await _sleep_until(plan.measure_end)
            out.cpu_s = _rusage() - before

        await _sleep_until(plan.warm_start)
        watcher = asyncio.create_task(cpu_window())
        if plan.rate is None:
            await asyncio.gather(*(closed_loop() for _ in range(plan.connections)))
        else:
            await open_loop(plan.rate)
        await watcher
    return out


def worker_main() -> int:
    """A client process: the plan on stdin, the recording on stdout (JSON)."""
    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    plan = Plan(**json.loads(sys.stdin.read()))
    recorded = asyncio.run(drive(plan))
    json.dump(asdict(recorded), sys.stdout)
    return 0


@dataclass
class Sample:
    """What one slice recorded, over all client processes."""

    seconds: float
    latencies_us: list[int]
    statuses: dict[str, int]
    errors: int
    server_cpu_s: float | None
    client_cpu_s: float


def measure(
    server: Server,
    key: str | None,
    accounts: list[str],
    args: argparse.Namespace,
    seconds: float,
    rate: float | None,
) -> Sample:
    """One slice: client processes warm up, then record ``seconds``."""
    clients: int = args.clients
    warmup = max(0.2, min(1.0, seconds / 5))
    now = time.monotonic()
    warm_start = now + 0.5 + 0.1 * clients  # time for the client processes to start
    windows = (warm_start, warm_start + warmup, warm_start + warmup + seconds)
    procs = []
    for i in range(clients):
        share = args.connections // clients + (1 if i < args.connections % clients else 0)
        plan = Plan(
            server.url,
            key,
            accounts[i::clients],
            share,
            None if rate is None else rate / clients,
            *windows,
        )
        proc = subprocess.Popen(
            [sys.executable, __file__, "--worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd=HERE,
        )
        assert proc.stdin is not None
        proc.stdin.write(json.dumps(asdict(plan)).encode())
        proc.stdin.close()
        procs.append(proc)
    time.sleep(max(0.0, windows[1] - time.monotonic()))
    cpu_before = server.cpu_seconds()
    time.sleep(max(0.0, windows[2] - time.monotonic()))
    cpu_after = server.cpu_seconds()
    recorded = []
    for proc in procs:
        assert proc.stdout is not None
        data = proc.stdout.read()
        if proc.wait() != 0:
            raise RuntimeError(f"a client process failed (exit {proc.returncode})")
        recorded.append(Recorded(**json.loads(data)))
    statuses: dict[str, int] = {}
    for r in recorded:
        for status, n in r.statuses.items():
            statuses[status] = statuses.get(status, 0) + n
    return Sample(
        seconds,
        [x for r in recorded for x in r.latencies_us],
        statuses,
        sum(r.errors for r in recorded),
        None if cpu_before is None or cpu_after is None else cpu_after - cpu_before,
        sum(r.cpu_s for r in recorded),
    )


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


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    p.add_argument("--seconds", type=float, default=10.0, help="recorded seconds per phase")
    p.add_argument("--connections", type=int, default=64, help="keep-alive connections in all")
    p.add_argument("--clients", type=int, default=1, help="client processes")
    p.add_argument("--rounds", type=int, default=3, help="interleaved peak slices per server")
    p.add_argument("--stores", default="sqlite,redis", help=f"comma-separated: {STORES}")
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
            bare = start_bare(tmp)
            stack.callback(bare.stop)
            servers: list[tuple[Server, str | None]] = [(bare, None)]
            for name in args.stores:
                store = make_store(name, tmp, redis)
                if store.redis_prefix and redis:
                    stack.callback(drop_prefix, redis, store.redis_prefix)
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
