"""Billing anchors over HTTP (CONTRACT section 9): ``PUT /v1/accounts/{id}`` takes
``billing_anchor`` (ISO 8601 with a zone), the account's JSON shows it, decisions on a billing
window reset at the account's own renewal; ``Client.set_account(billing_anchor=)`` does the
same. A bad anchor is a 422 naming the field and changes nothing. One real ``allowance
serve`` per store, its clock at 2026-11-20."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from allowance import Client, InvalidRequest

from .conftest import serve_policy
from .service import Service

BILLED = Path(__file__).parents[1] / "billed.yaml"


@pytest.fixture(scope="module", params=["sqlite", "redis", "postgres"])
def billed(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Service]:
    yield from serve_policy(request, tmp_path_factory, BILLED, start="2026-11-20T00:00:00Z")


def test_an_anchor_set_over_http_renews_the_accounts_periods(billed: Service) -> None:
    put = billed.call(
        "PUT",
        "/v1/accounts/acme",
        json={"plan": "free", "billing_anchor": "2026-01-15T10:30:00+01:00"},
    )
    assert put.status_code == 201, put.text
    assert put.json()["billing_anchor"] == "2026-01-15T09:30:00Z"
    body = {"account": "acme", "feature": "export.batch"}
    assert billed.call("POST", "/v1/consume", json={**body, "amount": 2}).json()["allowed"]
    denied = billed.call("POST", "/v1/consume", json=body)
    assert denied.status_code == 429
    assert denied.json()["resets_at"] == "2026-12-15T09:30:00Z"
    # a plan change without an anchor keeps it
    again = billed.call("PUT", "/v1/accounts/acme", json={"plan": "pro"})
    assert again.status_code == 200
    seen = billed.call("GET", "/v1/accounts/acme").json()
    assert (seen["plan"], seen["billing_anchor"]) == ("pro", "2026-01-15T09:30:00Z")
    usage = billed.call("GET", "/v1/accounts/acme/usage").json()["meters"][0]
    assert (usage["window_start"], usage["resets_at"]) == (
        "2026-11-15T09:30:00Z",
        "2026-12-15T09:30:00Z",
    )


@pytest.mark.parametrize(
    "anchor", ["2026-01-15T09:30:00", "tomorrow", 1768469400, ["2026-01-15T09:30:00Z"]]
)
def test_a_bad_anchor_is_422_naming_the_field(billed: Service, anchor: object) -> None:
    answer = billed.call(
        "PUT", "/v1/accounts/nobody", json={"plan": "pro", "billing_anchor": anchor}
    )
    assert answer.status_code == 422, answer.text
    assert "billing_anchor" in answer.text
    assert billed.call("GET", "/v1/accounts/nobody").status_code == 404


def test_client_sets_an_anchor(billed: Service) -> None:
    with Client(billed.url, billed.admin) as client:
        account = client.set_account(
            "client", "free", billing_anchor=datetime(2026, 3, 31, 6, 0, tzinfo=UTC)
        )
        assert account.billing_anchor == datetime(2026, 3, 31, 6, 0, tzinfo=UTC)
        assert client.consume("client", "export.batch", 2).allowed
        denied = client.consume("client", "export.batch")
        assert denied.resets_at == datetime(2026, 11, 30, 6, 0, tzinfo=UTC)  # the 30th
        with pytest.raises(InvalidRequest) as refused:
            client.set_account("client", "pro", billing_anchor=datetime(2026, 3, 31))
        assert refused.value.field == "billing_anchor"
        assert client.get_account("client").plan == "free"
        # left out: as it was; None: removed
        assert client.set_account("client", "pro").billing_anchor is not None
        assert client.set_account("client", "pro", billing_anchor=None).billing_anchor is None
        assert client.get_account("client").billing_anchor is None


def test_a_put_answers_the_whole_account_and_null_removes_the_anchor(billed: Service) -> None:
    anchor = {"plan": "free", "billing_anchor": "2026-01-15T09:30:00Z"}
    assert billed.call("PUT", "/v1/accounts/whole", json=anchor).status_code == 201
    override = billed.call("PUT", "/v1/accounts/whole/overrides/exports", json={"max": 4})
    assert override.status_code == 200, override.text
    kept = billed.call("PUT", "/v1/accounts/whole", json={"plan": "pro"})
    assert kept.status_code == 200
    assert kept.json() == billed.call("GET", "/v1/accounts/whole").json()
    assert (kept.json()["overrides"], kept.json()["billing_anchor"]) == (
        {"exports": 4},
        "2026-01-15T09:30:00Z",
    )
    removed = billed.call("PUT", "/v1/accounts/whole", json={"plan": "pro", "billing_anchor": None})
    assert removed.status_code == 200 and removed.json()["billing_anchor"] is None
    usage = billed.call("GET", "/v1/accounts/whole/usage").json()["meters"]
    batch = next(m for m in usage if m["limit"] == "batch_exports")
    assert (batch["window_start"], batch["resets_at"]) == (
        "2026-11-01T00:00:00Z",
        "2026-12-01T00:00:00Z",
    )
