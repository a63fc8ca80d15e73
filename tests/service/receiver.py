"""A real webhook receiver on a loopback port, for the webhook tests: it records every POST
(headers, body) and answers 500 to the first ``failures`` of them, 200 after."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Call:
    headers: dict[str, str]
    body: bytes
    at: float
    answered: int


class Receiver:
    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.calls: list[Call] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver._lock:
                    status = 500 if len(receiver.calls) < receiver.failures else 200
                    headers = {k.lower(): v for k, v in self.headers.items()}
                    receiver.calls.append(Call(headers, body, time.time(), status))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/hook"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def delivered(self) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if c.answered == 200]

    def wait(self, count: int, timeout: float = 30.0) -> list[Call]:
        """The accepted calls once there are ``count`` (or what came by ``timeout``)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and len(self.delivered()) < count:
            time.sleep(0.05)
        return self.delivered()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
