"""``PUT /v1/policy`` (admin; a policy file as body) and ``serve --policy FILE`` reading its
file again on SIGHUP, on real ``allowance serve`` processes (SQLite). A module of its own: a
policy put in a store stays there."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from allowance import Limiter, builtin_policy

from .service import Service

NEXT = builtin_policy().to_yaml().replace("pro: 30, max: 60}", "pro: 20, max: 60}")


def limit_max(svc: Service, account: str, limit: str) -> int | None:
    meters = svc.call("GET", f"/v1/accounts/{account}/usage").json()["meters"]
    found: int | None = next(m["max"] for m in meters if m["limit"] == limit)
    return found


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Service, Path]]:
    path = tmp_path / "plans.yaml"
    path.write_text(builtin_policy().to_yaml())
    svc = Service.start(store_of(tmp_path), tmp_path, "--policy", str(path))
    try:
        yield svc, path
    finally:
        svc.stop()


def store_of(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/allowance.db"


def eventually(check: object, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "not within the time"
        time.sleep(0.05)


def test_put_policy_switches_the_service_and_refuses_a_bad_one(
    served: tuple[Service, Path],
) -> None:
    svc, _ = served
    svc.account("team", "pro")
    assert limit_max(svc, "team", "transform_daily") == 30
    put = svc.call("PUT", "/v1/policy", content=NEXT, headers={"Content-Type": "application/yaml"})
    assert put.status_code == 200, put.text
    assert put.json()["limits"]["transform_daily"]["plans"]["pro"] == 20
    assert limit_max(svc, "team", "transform_daily") == 20
    assert svc.call("GET", "/v1/policy").json()["limits"]["transform_daily"]["plans"]["pro"] == 20

    bad = svc.call("PUT", "/v1/policy", content=NEXT.replace("pro: 20,", "pro: -1,"))
    assert bad.status_code == 422
    assert bad.headers["content-type"] == "application/problem+json"
    problem = bad.json()
    assert problem["type"].endswith("invalid-policy") and problem["errors"][0]["line"] > 0
    assert "must be at least 0" in problem["errors"][0]["message"]
    assert limit_max(svc, "team", "transform_daily") == 20  # unchanged
    garbled = svc.call("PUT", "/v1/policy", content=b"\xff\xfe")
    assert garbled.status_code == 400
    reader = svc.new_key("read")
    assert (
        svc.call(
            "PUT",
            "/v1/policy",
            key=None,
            content=NEXT,
            headers={"Authorization": f"Bearer {reader}"},
        ).status_code
        == 403
    )


def test_sighup_reads_the_policy_file_again(served: tuple[Service, Path]) -> None:
    svc, path = served
    svc.account("team", "pro")
    path.write_text(NEXT)
    svc.proc.send_signal(signal.SIGHUP)
    eventually(lambda: limit_max(svc, "team", "transform_daily") == 20)
    path.write_text("version: 1\nplans: [\n")  # broken: the policy in force stays
    svc.proc.send_signal(signal.SIGHUP)
    time.sleep(0.3)
    assert svc.proc.poll() is None  # still serving
    assert limit_max(svc, "team", "transform_daily") == 20


def test_a_policy_put_by_another_server_is_served_within_seconds(
    served: tuple[Service, Path], tmp_path: Path
) -> None:
    svc, _ = served
    with Limiter(store=store_of(tmp_path)) as other:  # another server on the same store
        other.put_policy(NEXT)

    def shown() -> bool:
        data = svc.call("GET", "/v1/policy").json()
        return bool(data["limits"]["transform_daily"]["plans"]["pro"] == 20)

    eventually(shown)  # even with no decision in between
