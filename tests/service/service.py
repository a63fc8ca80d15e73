"""A real ``allowance serve`` process on a free loopback port, for the HTTP tests.

``Service.start(store)`` runs the console script as a user would, with a bootstrap admin key
and a clock read from a file (``ALLOWANCE_CLOCK_FILE``), so a test can move the service's
time; uvicorn picks the port (``--port 0``) and the fixture reads it from its log line.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from allowance.clock import to_epoch

SCRIPT = Path(sys.executable).with_name("allowance")
LISTENING = re.compile(rb"Uvicorn running on http://127\.0\.0\.1:(\d+)")
START = "2026-11-23T15:10:00Z"  # a Monday, the seed's first generation


class Service:
    def __init__(self, proc: subprocess.Popen[bytes], url: str, admin: str, clock: Path) -> None:
        self.proc = proc
        self.url = url
        self.admin = admin
        self.clock_file = clock
        self.http = httpx.Client(base_url=url, timeout=30.0)

    @classmethod
    def start(cls, store: str, tmp: Path, *args: str, start: str = START) -> Service:
        admin = "alw_" + secrets.token_urlsafe(24)
        clock = tmp / "clock"
        clock.write_text(repr(to_epoch(start)))
        env = {**os.environ, "ALLOWANCE_BOOTSTRAP_KEY": admin, "ALLOWANCE_CLOCK_FILE": str(clock)}
        log_path = tmp / "service.log"
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                [str(SCRIPT), "serve", "--port", "0", "--store", store, *args],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=tmp,
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            found = LISTENING.search(log_path.read_bytes())
            if found:
                return cls(proc, f"http://127.0.0.1:{found.group(1).decode()}", admin, clock)
            if proc.poll() is not None:
                break
            time.sleep(0.05)
        proc.kill()
        proc.wait()
        raise RuntimeError("allowance serve did not start:\n" + log_path.read_text())

    @property
    def log(self) -> str:
        return self.clock_file.with_name("service.log").read_text()

    def stop(self) -> None:
        self.http.close()
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def set_time(self, when: str | float) -> None:
        staged = self.clock_file.with_suffix(".new")
        staged.write_text(repr(to_epoch(when)))
        staged.replace(self.clock_file)  # atomic: the service never reads half a number

    def call(
        self, method: str, path: str, key: str | None = "admin", **kwargs: Any
    ) -> httpx.Response:
        headers = dict(kwargs.pop("headers", {}))
        if key is not None:
            headers["Authorization"] = "Bearer " + (self.admin if key == "admin" else key)
        return self.http.request(method, path, headers=headers, **kwargs)

    def new_key(self, scope: str) -> str:
        r = self.call("POST", "/v1/keys", json={"scope": scope, "name": f"test {scope}"})
        assert r.status_code == 201, r.text
        secret: str = r.json()["key"]
        return secret

    def account(self, account: str, plan: str, seats: int = 1) -> None:
        r = self.call("PUT", f"/v1/accounts/{account}", json={"plan": plan, "seats": seats})
        assert r.status_code in (200, 201), r.text


def start_and_read(store: str, cwd: Path, then: Callable[[str], None]) -> str:
    """Run ``allowance serve`` without a bootstrap key until it listens; call ``then`` with
    its start-up text; stop it."""
    env = {k: v for k, v in os.environ.items() if k != "ALLOWANCE_BOOTSTRAP_KEY"}
    with subprocess.Popen(
        [str(SCRIPT), "serve", "--port", "0", "--store", store],
        stderr=subprocess.PIPE,
        env=env,
        cwd=cwd,
    ) as proc:
        assert proc.stderr is not None
        text = ""
        try:
            while "Uvicorn running" not in text:
                line = proc.stderr.readline().decode()
                assert line, text
                text += line
            then(text)
        finally:
            proc.terminate()
            proc.wait(10)
    return text
