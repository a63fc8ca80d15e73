"""The PostgreSQL sweep's protocol (``stores/postgres_upkeep.sweep``) run by a scripted driver,
no server: what the stores' drivers must get right, the steps in order, an account gone before
its settle passed over, and a failed counters' transaction rolled back and re-raised."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import psycopg
import pytest

from allowance.errors import UnknownAccount
from allowance.policy import builtin_policy
from allowance.stores import postgres_upkeep as upkeep
from allowance.stores.postgres_common import BEGIN, COMMIT, ROLLBACK, queries
from allowance.stores.postgres_transaction import Done, Rows, Send, advance


@dataclass
class Cursor:
    rows: list[Any]
    rowcount: int


@dataclass
class Script:
    """Answers the steps: ``rows`` by query name, the next answer of that statement each time
    it runs (none once they are used up); ``fail``, the statements that fail; ``gone``, the
    accounts whose settle finds no account."""

    rows: dict[str, list[list[Any]]]
    fail: set[str] = field(default_factory=set)
    gone: set[str] = field(default_factory=set)
    log: list[str] = field(default_factory=list)
    params: dict[str, list[tuple[Any, ...]]] = field(default_factory=dict)

    def name(self, query: str) -> str:
        names = {v: k for k, v in {**queries("s"), **upkeep.upkeep_queries("s")}.items()}
        return names.get(query, query)

    def answer(self, step: Any) -> Any:
        if isinstance(step, upkeep.Settle):
            self.log.append(f"settle {step.account}")
            if step.account in self.gone:
                raise UnknownAccount(step.account)
            return None
        if isinstance(step, Rows):
            return step.handle.rows
        assert isinstance(step, Send)
        name = self.name(step.query)
        self.log.append(name)
        self.params.setdefault(name, []).append(step.params)
        if name in self.fail:
            raise psycopg.OperationalError(name)
        answers = self.rows.get(name, [])
        rows = answers.pop(0) if answers else []
        return Cursor(rows, len(rows))

    def run(self, protocol: upkeep.Sweep) -> int:
        reply: Any = None
        error: BaseException | None = None
        while not isinstance(step := advance(protocol, reply, error), Done):
            reply, error = None, None
            try:
                reply = self.answer(step)
            except BaseException as exc:
                error = exc
        return step.value


def store() -> Any:
    return SimpleNamespace(sql=queries("s"), schema="s", policy=builtin_policy(), _scan_from="x")


def test_a_bounded_sweep_settles_then_deletes_then_drops_counters() -> None:
    script = Script(
        {"due_accounts": [[("a",), ("gone",), ("b",)]], "sweep_idempotency": [[(), ()]]},
        gone={"gone"},
    )
    swept = store()
    assert script.run(upkeep.sweep(swept, 100.0, 5, 1000)) == 2
    assert script.log == [
        "due_accounts",
        "settle a",
        "settle gone",  # gone meanwhile: passed over
        "settle b",
        "sweep_idempotency",
        "sweep_holds",
        "sweep_owned",  # per-user records with nothing left to count
        "sweep_events",  # older than events.KEEP
        "sweep_marks",  # event marks no longer standing
        "sweep_ledger",  # ledger rows older than its retention
        BEGIN,
        "accounts",
        COMMIT,
    ]
    assert swept._scan_from == ""  # fewer than a batch: the walk starts over


def test_a_failed_counters_transaction_is_rolled_back_and_raised() -> None:
    for fail in ({"accounts"}, {"accounts", ROLLBACK}):
        script = Script({}, fail=fail)
        swept = store()
        with pytest.raises(psycopg.OperationalError, match="accounts"):
            script.run(upkeep.sweep(swept, 100.0, 5, 1000))
        assert script.log[-2:] == ["accounts", ROLLBACK]
        assert swept._scan_from == "x"  # where the next sweep resumes: unchanged


def test_an_unbounded_sweep_goes_on_until_nothing_is_left() -> None:
    script = Script({"sweep_holds": [[()], [()]]})  # a hold in each of two batches
    swept = store()
    swept.policy = None  # no counters to look at, no reservations to settle
    assert script.run(upkeep.sweep(swept, 100.0, None, 1000)) == 2
    # the last found nothing
    deletes = [
        "sweep_idempotency",
        "sweep_holds",
        "sweep_owned",
        "sweep_events",
        "sweep_marks",
        "sweep_ledger",
    ]
    assert script.log == deletes * 3


def test_an_unbounded_sweep_walks_every_account_from_the_first() -> None:
    script = Script({"accounts": [[("a", {}), ("b", {})], [("c", {})]]})
    swept = store()
    assert script.run(upkeep.sweep(swept, 100.0, None, 2)) == 0
    assert script.params["accounts"] == [("", 2), ("b", 2)]  # from the first, not "x"
    assert swept._scan_from == ""  # the second batch was short: the walk wrapped
