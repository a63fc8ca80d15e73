"""Scopes over HTTP (CONTRACT section 9): a per-user feature's decisions take the body's
``user`` (a request without it is a 422 naming ``user`` that charges nothing), and
``GET /v1/accounts/{id}/usage?user=`` meters that user's counters, as ``Client.usage(user=)``
does. One real ``allowance serve`` per store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from allowance import Client

from .conftest import serve_policy
from .service import Service

SCOPED = Path(__file__).parents[1] / "scoped.yaml"


@pytest.fixture(scope="module", params=["sqlite", "redis", "postgres"])
def scoped(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Service]:
    yield from serve_policy(request, tmp_path_factory, SCOPED)


def meter(meters: list[dict[str, object]], limit: str) -> object:
    return next((m["used"] for m in meters if m["limit"] == limit), None)


def test_decisions_and_meters_per_user(scoped: Service) -> None:
    assert scoped.call("PUT", "/v1/accounts/space", json={"plan": "free"}).status_code == 201
    body = {"account": "space", "feature": "ai.generate"}
    missing = scoped.call("POST", "/v1/consume", json={**body, "amount": 2})
    assert missing.status_code == 422, missing.text
    assert "user" in missing.json()["detail"]
    for user, amount in (("ann", 4), ("bob", 1)):
        granted = scoped.call("POST", "/v1/consume", json={**body, "amount": amount, "user": user})
        assert granted.json()["granted"] == amount, granted.text
    denied = scoped.call("POST", "/v1/consume", json={**body, "user": "ann"})
    assert (denied.status_code, denied.json()["limit"]) == (429, "generations_per_user")
    path = "/v1/accounts/space/usage"
    assert meter(scoped.call("GET", path).json()["meters"], "generations_per_user") is None
    assert meter(scoped.call("GET", path).json()["meters"], "space_credits") == 5
    ann = scoped.call("GET", path, params={"user": "ann"}).json()["meters"]
    assert meter(ann, "generations_per_user") == 4
    assert scoped.call("GET", path, params={"user": ""}).status_code == 422
    with Client(scoped.url, scoped.admin) as client:
        meters = client.usage("space", user="bob")
        assert next(m.used for m in meters if m.limit == "generations_per_user") == 1
        assert client.consume("space", "ai.generate", user="bob/2").allowed
        meters = client.usage("space", user="bob/2")  # a user id with a slash, quoted
        assert next(m.used for m in meters if m.limit == "generations_per_user") == 1


def test_answers_for_features_counted_per_user(scoped: Service) -> None:
    """Without a user, a feature counted per user says so instead of answering; with one,
    every feature answers for that user."""
    assert scoped.call("PUT", "/v1/accounts/answers", json={"plan": "free"}).status_code == 201
    path = "/v1/accounts/answers/answers"
    plain = {a["feature"]: a for a in scoped.call("GET", path).json()["answers"]}
    assert plain["ai.generate"]["decision"] is None
    assert plain["ai.generate"]["note"].startswith("user: ")
    assert plain["ai.upscale"]["decision"]["allowed"] is True  # the space's credits only
    named = scoped.call("GET", path, params={"user": "ann"}).json()
    assert named["user"] == "ann"
    assert all(a["decision"] is not None for a in named["answers"])
