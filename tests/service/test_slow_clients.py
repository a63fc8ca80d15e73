"""Slow clients (issue 10, defect 8): a connection that sends nothing, a request head or body
trickled a byte at a time, is cut at its deadline (``--header-timeout``, ``--body-timeout``)
instead of holding the connection for as long as it likes. Real sockets, a real server."""

from __future__ import annotations

import json
import re
import socket
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

from .service import Service

DEADLINE = 0.5  # seconds, for both; the service's defaults are 10 s
SLACK = 1.5  # a loaded machine answers a deadline late, never early


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    tmp = tmp_path_factory.mktemp("slow")
    args = ("--header-timeout", str(DEADLINE), "--body-timeout", str(DEADLINE))
    served = Service.start(f"sqlite:///{tmp}/allowance.db", tmp, *args)
    served.account("slow", "pro")
    try:
        yield served
    finally:
        served.stop()


def connect(svc: Service) -> socket.socket:
    url = urlsplit(svc.url)
    sock = socket.create_connection((url.hostname or "127.0.0.1", url.port or 80), timeout=5)
    sock.settimeout(DEADLINE + SLACK + 1)
    return sock


def read_all(sock: socket.socket) -> bytes:
    """Everything until the server closes (a timeout fails the test: it kept the socket)."""
    chunks: list[bytes] = []
    while True:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            pytest.fail(f"the server held the connection; read so far: {b''.join(chunks)!r}")
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def read_response(sock: socket.socket) -> bytes:
    """One whole response (its head, then Content-Length bytes of body)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"closed after {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))  # type: ignore[union-attr]
    while len(body) < length:
        body += sock.recv(65536)
    return head + b"\r\n\r\n" + body


def request(svc: Service, body: bytes, length: int | None = None) -> bytes:
    head = (
        f"POST /v1/consume HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {svc.admin}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {length or len(body)}\r\n\r\n"
    )
    return head.encode() + body


CONSUME = json.dumps({"account": "slow", "feature": "export.ai"}).encode()


def test_a_connection_that_sends_nothing_is_closed(svc: Service) -> None:
    start = time.monotonic()
    with connect(svc) as sock:
        assert read_all(sock) == b""  # closed without an answer: nothing was asked
    assert DEADLINE * 0.9 <= time.monotonic() - start < DEADLINE + SLACK


def test_a_trickled_head_gets_408(svc: Service) -> None:
    start = time.monotonic()
    with connect(svc) as sock:
        sent = 0
        data = request(svc, CONSUME)
        try:
            while time.monotonic() - start < DEADLINE + SLACK and sent < len(data):
                sock.sendall(data[sent : sent + 1])  # a byte every 50 ms: never idle for long
                sent += 1
                time.sleep(0.05)
        except (BrokenPipeError, ConnectionResetError):
            pass
        answer = read_all(sock)
    assert time.monotonic() - start < DEADLINE + SLACK
    assert answer.startswith(b"HTTP/1.1 408 "), answer
    assert b"application/problem+json" in answer and b"request head" in answer


def test_a_missing_body_gets_408_and_an_access_line(svc: Service) -> None:
    start = time.monotonic()
    with connect(svc) as sock:
        sock.sendall(request(svc, CONSUME[:10], length=len(CONSUME)))
        answer = read_all(sock)
    assert DEADLINE * 0.9 <= time.monotonic() - start < DEADLINE + SLACK
    assert answer.startswith(b"HTTP/1.1 408 "), answer
    assert b"application/problem+json" in answer and b"request body" in answer
    deadline = time.monotonic() + 5
    while '"status":408' not in svc.log:
        assert time.monotonic() < deadline, svc.log[-2000:]
        time.sleep(0.05)
    assert "Traceback" not in svc.log


def test_a_request_in_time_is_answered_and_the_connection_kept(svc: Service) -> None:
    with connect(svc) as sock:
        for _ in range(3):
            data = request(svc, CONSUME)
            for i in range(0, len(data), 40):  # in pieces, well within the deadlines
                sock.sendall(data[i : i + 40])
                time.sleep(0.02)
            answer = read_response(sock)
            assert answer.startswith(b"HTTP/1.1 200 "), answer
            time.sleep(DEADLINE + 0.2)  # idle between requests: the keep-alive timer's business
