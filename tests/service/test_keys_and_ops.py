"""Keys over HTTP, the first-run admin key, metrics and the access log."""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from .service import SCRIPT, Service, start_and_read


def test_key_lifecycle(sqlite_service: Service) -> None:
    svc = sqlite_service
    r = svc.call("POST", "/v1/keys", json={"scope": "read", "name": "dashboards"})
    assert r.status_code == 201
    made = r.json()
    assert made["key"].startswith("alw_") and made["scope"] == "read"
    listed = svc.call("GET", "/v1/keys").json()
    assert made["id"] in {k["id"] for k in listed}
    assert made["key"] not in str(listed)  # never shown again
    assert svc.call("GET", "/v1/policy", key=made["key"]).status_code == 200
    assert svc.call("DELETE", f"/v1/keys/{made['id']}").status_code == 204
    # revoked through this process: refused at once, not after the cache's few seconds
    assert svc.call("GET", "/v1/policy", key=made["key"]).status_code == 401
    assert svc.call("DELETE", "/v1/keys/key_unknown").status_code == 404
    r = svc.call("POST", "/v1/keys", json={"scope": "root"})
    assert r.status_code == 422 and r.json()["field"] == "scope"
    used = next(k for k in svc.call("GET", "/v1/keys").json() if k["id"] == made["id"])
    assert used["last_used_at"] is not None and used["revoked_at"] is not None


def test_metrics_count_decisions(sqlite_service: Service) -> None:
    svc = sqlite_service
    svc.account("m", "free")
    for _ in range(3):
        svc.call("POST", "/v1/consume", json={"account": "m", "feature": "export.ai"})
    text = svc.call("GET", "/metrics", key=None).text
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }

    def decisions(limit: str, outcome: str) -> float:
        labels = {"feature": "export.ai", "limit": limit, "operation": "consume"}
        key = tuple(sorted({**labels, "outcome": outcome}.items()))
        return samples.get(("allowance_decisions_total", key), 0.0)

    assert decisions("", "granted") == 2 and decisions("ai_exports", "limit_reached") == 1
    assert 'allowance_decision_seconds_count{operation="consume"}' in text
    assert "allowance_reservations_open" in text


def test_access_log_has_one_json_line_per_request_and_no_secrets(sqlite_service: Service) -> None:
    import json

    svc = sqlite_service
    svc.account("logged", "pro")
    svc.call(
        "POST", "/v1/consume", json={"account": "logged", "feature": "export.ai", "user": "u7"}
    )
    deadline = time.monotonic() + 5
    while True:  # lines are written in batches, within 50 ms
        lines = [json.loads(x) for x in svc.log.splitlines() if x.startswith("{")]
        found = [x for x in lines if x.get("account") == "logged"]
        if found or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    (line,) = found
    assert line["path"] == "/v1/consume" and line["status"] == 200 and line["user"] == "u7"
    assert (
        line["outcome"] == "granted" and line["key"] == "key_bootstrap" and line["ts"].endswith("Z")
    )
    assert svc.admin not in svc.log


@pytest.fixture
def run_cli() -> Callable[..., Any]:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, timeout=60)

    return run


def test_first_run_creates_and_prints_one_admin_key(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'a.db'}"

    def works(text: str) -> None:
        key = re.search(r"alw_[\w-]+", text).group(0)  # type: ignore[union-attr]
        port = re.search(r"127\.0\.0\.1:(\d+)", text).group(1)  # type: ignore[union-attr]
        r = httpx.get(
            f"http://127.0.0.1:{port}/v1/keys", headers={"Authorization": f"Bearer {key}"}
        )
        assert r.status_code == 200 and [k["scope"] for k in r.json()] == ["admin"]

    assert "created an admin key" in start_and_read(store, tmp_path, works)
    again = start_and_read(store, tmp_path, lambda text: None)  # the key is there: none printed
    assert "alw_" not in again and "created" not in again


def test_a_memory_store_hands_its_first_key_to_the_serving_process(tmp_path: Path) -> None:
    def works(text: str) -> None:
        key = re.search(r"alw_[\w-]+", text).group(0)  # type: ignore[union-attr]
        port = re.search(r"127\.0\.0\.1:(\d+)", text).group(1)  # type: ignore[union-attr]
        r = httpx.get(
            f"http://127.0.0.1:{port}/v1/policy", headers={"Authorization": f"Bearer {key}"}
        )
        assert r.status_code == 200

    assert "created an admin key" in start_and_read("memory://", tmp_path, works)


def test_a_memory_store_refuses_several_workers(run_cli: Callable[..., Any]) -> None:
    result = run_cli("serve", "--store", "memory://", "--workers", "2")
    assert result.returncode == 1 and "memory:// lives in one process" in result.stderr
