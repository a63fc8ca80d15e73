"""The example as a user runs it: ``uvicorn examples.guarded_app:app`` (two worker processes
on one SQLite file) and ``python examples/guarded_app.py``, on real time."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx

import servers

from .support import ROOT

LISTENING = re.compile(rb"Uvicorn running on http://127\.0\.0\.1:(\d+)")


@contextmanager
def process(args: Sequence[str], tmp: Path, workers: int = 1, **env: str) -> Iterator[httpx.Client]:
    """The example started by ``args``; a client once each of its ``workers`` has started."""
    log_path = tmp / "app.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            list(args), stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env={**os.environ, **env}
        )
    try:
        deadline = time.monotonic() + 60
        while not (found := LISTENING.search(text := log_path.read_bytes())) or (
            text.count(b"Application startup complete") < workers
        ):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the example did not start:\n" + log_path.read_text())
            time.sleep(0.05)
        with httpx.Client(base_url=f"http://127.0.0.1:{int(found.group(1))}", timeout=30) as c:
            yield c
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_two_uvicorn_workers_on_one_sqlite_file_never_over_grant(tmp_path: Path) -> None:
    uvicorn = [sys.executable, "-m", "uvicorn", "examples.guarded_app:app", "--port", "0"]
    store = f"sqlite:///{tmp_path}/guarded.db"
    with process([*uvicorn, "--workers", "2"], tmp_path, 2, ALLOWANCE_STORE=store) as http:

        def generate(_: int) -> int:
            return http.post("/generate", headers={"X-Account": "acme"}).status_code

        with ThreadPoolExecutor(20) as pool:
            codes = list(pool.map(generate, range(20)))
    assert sorted(codes) == [200] * 2 + [429] * 18  # Pro: 2 transforms a minute


def test_python_examples_guarded_app_serves(tmp_path: Path) -> None:
    port = str(servers.free_ports()[0])
    with process([sys.executable, "examples/guarded_app.py"], tmp_path, PORT=port) as http:
        r = http.post("/generate", headers={"X-Account": "big-studio"})
        assert r.status_code == 200
        assert r.headers["RateLimit-Policy"] == '"transform_rate";q=5;w=60'
