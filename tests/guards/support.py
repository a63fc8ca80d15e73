"""The example app (examples/guarded_app.py) served by a real uvicorn on a free loopback port,
in a thread of the test process so that its limiter can run on a ``ManualClock``."""

from __future__ import annotations

import importlib.util
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

import httpx
import uvicorn
from starlette.types import ASGIApp

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "guarded_app.py"
START = "2026-11-23T15:10:00Z"  # a Monday, the seed's first generation


def load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("guarded_app", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@contextmanager
def serve(app: ASGIApp) -> Iterator[httpx.Client]:
    """``app`` on a real socket (lifespan included) for the block; a client for its URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", lifespan="on", limit_concurrency=1000)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30.0) as client:
            yield client
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()
