"""Two processes whose clocks disagree by 10 minutes agree on every decision: time comes from
the store (Redis TIME, PostgreSQL clock_timestamp), not from the app servers."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from conftest import STORE_FACTORIES

WORKER = Path(__file__).with_name("skew_worker.py")
FEATURE = "transform.virtual_model"


def run(skew: float, url: str, *args: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, str(WORKER), str(skew), url, *args],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    result: dict[str, Any] = json.loads(out)
    return result


@pytest.mark.parametrize("kind", ["redis", "redis_cluster", "postgres"])
def test_skewed_app_servers_agree(
    request: pytest.FixtureRequest, tmp_path: Path, kind: str
) -> None:
    url = STORE_FACTORIES[kind](request, tmp_path)
    from allowance import Limiter

    with Limiter(store=url) as lim:
        lim.set_account("acme", plan="pro")
    right, ahead, behind = 0.0, 600.0, -600.0
    first = run(right, url, "consume", "acme", FEATURE)
    second = run(ahead, url, "consume", "acme", FEATURE)  # its clock says 10 minutes later
    assert second["local_time"] - first["local_time"] > 590  # the skew is real
    assert first["answer"]["allowed"] and second["answer"]["allowed"]
    # a clock 10 minutes fast would think the per-minute window long gone; the store knows not
    fast = run(ahead, url, "check", "acme", FEATURE)["answer"]
    slow = run(behind, url, "check", "acme", FEATURE)["answer"]
    for answer in (fast, slow):
        assert (answer["allowed"], answer["limit"]) == (False, "transform_rate")
    assert fast["resets_at"][:16] == slow["resets_at"][:16]  # the same minute, from store time
    meters = [run(skew, url, "usage", "acme")["answer"] for skew in (right, ahead, behind)]
    daily = [next(m for m in ms if m["limit"] == "transform_daily") for ms in meters]
    assert {d["used"] for d in daily} == {2}
    assert len({d["window_start"] for d in daily}) == 1
