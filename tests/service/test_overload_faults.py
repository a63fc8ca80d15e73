"""Overload (issue 10): ``serve --store sqlite://… --max-inflight 32`` offered about four times
what it can answer. Its capacity is measured first (a closed loop of 16 connections, 2 s),
then 4x that rate is offered for 8 s, open loop, over 128 keep-alive connections: the excess
gets 503 + Retry-After at once, the requests taken keep a bounded p99, the decisions answered
per second do not collapse, and the server's memory stays flat.

On a 2-core machine the client (one Python process) cannot always send 4x a server that has a
core to itself; the test then offers what it can and says how much that was (the 503s and the
bounds must hold at any rate beyond the capacity)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from .service import Service

pytestmark = [pytest.mark.faults, pytest.mark.timeout(120)]

MAX_INFLIGHT = 32
ACCOUNTS = 20
CAPACITY_SECONDS = 2.0
OVERLOAD_SECONDS = 8.0
OVERLOAD_CONNECTIONS = 128
FACTOR = 4
P99_BOUND = 1.0  # seconds: generous (32 in flight at a few thousand a second is ~10 ms)
RSS_GROWTH_BOUND = 40 << 20  # bytes
LENGTH = re.compile(rb"(?i)\r\ncontent-length: *(\d+)")


@dataclass
class Tally:
    statuses: Counter[int] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)  # of the 200s and 429s (decided)
    retry_after: Counter[bytes] = field(default_factory=Counter)  # on the 503s
    sent: int = 0


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    tmp = tmp_path_factory.mktemp("overload")
    args = ("--max-inflight", str(MAX_INFLIGHT))
    served = Service.start(f"sqlite:///{tmp}/allowance.db", tmp, *args)
    for i in range(ACCOUNTS):
        served.account(f"o{i}", "pro")
    try:
        yield served
    finally:
        served.stop()


def requests(svc: Service) -> list[bytes]:
    out = []
    for i in range(ACCOUNTS):
        body = b'{"account":"o%d","feature":"background.studio"}' % i
        out.append(
            b"POST /v1/consume HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Authorization: Bearer {svc.admin}\r\n".encode()
            + b"Content-Length: %d\r\n\r\n" % len(body)
            + body
        )
    return out


async def one(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, data: bytes, tally: Tally
) -> None:
    start = time.perf_counter()
    writer.write(data)
    tally.sent += 1
    head = await reader.readuntil(b"\r\n\r\n")
    found = LENGTH.search(head)
    await reader.readexactly(int(found.group(1)) if found else 0)
    status = int(head[9:12])
    tally.statuses[status] += 1
    if status == 503:
        hit = re.search(rb"(?i)\r\nretry-after: *(\S+)", head)
        tally.retry_after[hit.group(1) if hit else b"missing"] += 1
    else:
        tally.latencies.append(time.perf_counter() - start)


async def drive(
    svc: Service, connections: int, seconds: float, rate: float | None, tally: Tally
) -> None:
    """``connections`` keep-alive connections for ``seconds``: back to back (``rate`` None), or
    each sending at ``rate / connections`` a second, on schedule (late when its previous
    request is still out: the client's own limit, counted as sent when sent)."""
    url = urlsplit(svc.url)
    bodies = requests(svc)
    end = time.perf_counter() + seconds

    async def connection(n: int) -> None:
        reader, writer = await asyncio.open_connection(url.hostname, url.port)
        interval = connections / rate if rate else 0.0
        due = time.perf_counter() + interval * n / connections  # spread the starts
        i = n
        try:
            while (now := time.perf_counter()) < end:
                if due > now:
                    await asyncio.sleep(due - now)
                await one(reader, writer, bodies[i % ACCOUNTS], tally)
                i += 1
                due += interval
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    await asyncio.gather(*(connection(n) for n in range(connections)))


def run(coro: object) -> None:
    try:
        import uvloop

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(coro)  # type: ignore[arg-type]
    except ImportError:
        asyncio.run(coro)  # type: ignore[arg-type]


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def cpu(pid: int) -> float:
    """The process's CPU seconds (user + system) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def test_four_times_capacity_sheds_the_excess(svc: Service) -> None:
    warm = Tally()
    run(drive(svc, 16, 0.5, None, warm))  # warm up (caches, pools, the allocator)
    measured = Tally()
    run(drive(svc, 16, CAPACITY_SECONDS, None, measured))
    assert set(measured.statuses) <= {200, 429}, measured.statuses
    capacity = sum(measured.statuses.values()) / CAPACITY_SECONDS
    before = rss(svc.proc.pid)
    cpu_before = cpu(svc.proc.pid)

    tally = Tally()
    started = time.perf_counter()
    run(drive(svc, OVERLOAD_CONNECTIONS, OVERLOAD_SECONDS, FACTOR * capacity, tally))
    elapsed = time.perf_counter() - started
    grown = rss(svc.proc.pid) - before
    busy = (cpu(svc.proc.pid) - cpu_before) / elapsed

    decided = tally.statuses[200] + tally.statuses[429]
    offered = tally.sent / elapsed
    report = (
        f"capacity {capacity:,.0f}/s; offered {offered:,.0f}/s ({offered / capacity:.1f}x, "
        f"target {FACTOR}x); decided {decided / elapsed:,.0f}/s, p99 "
        f"{p99(tally.latencies) * 1000:.1f} ms; statuses {dict(tally.statuses)}; "
        f"server CPU {busy:.0%}; RSS {before / 2**20:.0f} MiB, +{grown / 2**20:.1f} MiB"
    )
    print(report)
    assert set(tally.statuses) <= {200, 429, 503}, report
    assert offered > 1.5 * capacity, report  # it was overloaded, if not by 4x
    assert tally.statuses[503] > 0 and set(tally.retry_after) == {b"1"}, report
    assert p99(tally.latencies) < P99_BOUND, report
    assert decided / elapsed > 0.3 * capacity, report  # shedding, not collapsing
    assert grown < RSS_GROWTH_BOUND, report
    assert "Traceback" not in svc.log
