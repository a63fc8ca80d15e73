"""The seed's worked example against a real ``allowance serve``, on every server store."""

from __future__ import annotations

from .service import Service


def consume(service: Service, feature: str) -> tuple[int, dict[str, object]]:
    r = service.call("POST", "/v1/consume", json={"account": "seed", "feature": feature})
    return r.status_code, r.json()


def test_monday_to_tuesday(service: Service) -> None:
    service.account("seed", "pro")
    for minute in range(10):  # 15:10-15:19, twenty Virtual Model generations at 2 a minute
        service.set_time(f"2026-11-23T15:{10 + minute}:00Z")
        assert [consume(service, "transform.virtual_model")[0] for _ in range(3)] == [
            200,
            200,
            429,
        ]
    for minute in range(5):  # 15:30-15:34, ten Product Staging
        service.set_time(f"2026-11-23T15:{30 + minute}:00Z")
        for _ in range(2):
            assert consume(service, "transform.product_staging")[0] == 200

    service.set_time("2026-11-23T15:36:00Z")
    r = service.call(
        "POST", "/v1/consume", json={"account": "seed", "feature": "transform.product_beautifier"}
    )
    assert r.status_code == 429
    body = r.json()
    assert body["reason"] == "limit_reached" and body["limit"] == "transform_daily"
    assert body["resets_at"] == "2026-11-24T15:10:00Z"
    assert body["upgrade"] == "max" and body["remaining"] == 0
    assert body["message"] == (
        "You have reached your daily limit of 30 generations for image transformation tools. "
        "It resets on Tue 24 Nov at 15:10 UTC, or upgrade to Max for 60 a day."
    )
    assert r.headers["Retry-After"] == str(23 * 3600 + 34 * 60)
    assert r.headers["RateLimit-Policy"] == '"transform_daily";q=30;w=86400'
    assert r.headers["RateLimit"] == f'"transform_daily";r=0;t={23 * 3600 + 34 * 60}'

    service.set_time("2026-11-24T16:10:00Z")
    status, body = consume(service, "transform.virtual_model")
    assert status == 200 and body["granted"] == 1
    usage = service.call("GET", "/v1/accounts/seed/usage").json()
    daily = next(m for m in usage["meters"] if m["limit"] == "transform_daily")
    assert (daily["used"], daily["window_start"], daily["resets_at"]) == (
        1,
        "2026-11-24T16:10:00Z",
        "2026-11-25T16:10:00Z",
    )
