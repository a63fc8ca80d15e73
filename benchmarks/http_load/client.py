"""The load: client processes (``bench_http.py --worker``), each running asyncio with an aiohttp
session that drives one server in a closed or an open loop and records what falls in the
window, and the slice that starts them and sums up what they recorded."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import resource
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field

from http_load.common import BENCHMARKS, FEATURE, SCRIPT
from http_load.servers import Server

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


# --- one slice (from this process) ------------------------------------------------------------


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
            [sys.executable, str(SCRIPT), "--worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd=BENCHMARKS,
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
