"""``allowance ledger export``: every row, or one account's or a time range's, as CSV or JSON
Lines, to stdout or a file; bad options named."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from allowance import Limiter, ManualClock, acting_as
from allowance.ledger import COLUMNS
from allowance.types import iso, to_datetime

from .support import Run

GEN = "transform.virtual_model"
START = 1_796_000_000.0  # 2026-11-30


@pytest.fixture
def store(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'allowance.db'}"
    clock = ManualClock(START)
    with Limiter(store=url, clock=clock) as lim:
        for account in ("b", "a"):
            lim.set_account(account, "pro")
            with acting_as("key_app"):
                lim.consume(account, GEN, idempotency_key=f"{account}-1")
            clock.advance(3600)
        lim.set_account("a", "max")
    return url


def test_csv_of_every_account_to_stdout(run: Run, store: str) -> None:
    done = run("ledger", "export", "--format", "csv", "--store", store)
    assert done.exit_code == 0, done.stderr
    rows = list(csv.DictReader(io.StringIO(done.stdout)))
    assert list(rows[0]) == list(COLUMNS)
    assert [(r["account"], r["kind"], r["limit"]) for r in rows] == [
        ("a", "charge", "transform_rate"),
        ("a", "charge", "transform_daily"),
        ("a", "plan_change", ""),
        ("b", "charge", "transform_rate"),
        ("b", "charge", "transform_daily"),
    ]
    assert rows[0]["key_id"] == "key_app" and rows[0]["idempotency_key"] == "a-1"
    assert json.loads(rows[2]["data"]) == {"from": "pro", "to": "max", "seats": 1}
    assert "exported 5 rows" in done.stderr


def test_jsonl_of_one_account_in_a_time_range_to_a_file(
    run: Run, store: str, tmp_path: Path
) -> None:
    target = tmp_path / "out.jsonl"
    since, until = iso(to_datetime(START + 3600)), iso(to_datetime(START + 7200))
    done = run("ledger", "export", "--format", "jsonl", "--account", "a", "--since", since,
               "--until", until, "--output", str(target), "--store", store)  # fmt: skip
    assert done.exit_code == 0, done.stderr
    assert done.stdout == ""
    rows = [json.loads(line) for line in target.read_text().splitlines()]
    assert [(r["account"], r["kind"], r["amount"]) for r in rows] == [
        ("a", "charge", 1),
        ("a", "charge", 1),
    ]
    assert rows[0]["at"] == since


@pytest.mark.parametrize(
    ("args", "named"),
    [(["--since", "yesterday"], "since"), (["--until", "2026-12-01T00:00:00"], "until")],
)
def test_a_bad_time_is_named(run: Run, store: str, args: list[str], named: str) -> None:
    done = run("ledger", "export", "--format", "csv", *args, "--store", store)
    assert done.exit_code == 1
    assert named in done.stderr and "Traceback" not in done.stderr


def test_a_bad_format_is_a_usage_error(run: Run, store: str) -> None:
    done = run("ledger", "export", "--format", "xml", "--store", store)
    assert done.exit_code == 2
