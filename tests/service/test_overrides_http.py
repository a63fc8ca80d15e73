"""``PUT /v1/accounts/{id}/overrides/{limit}`` and ``POST /v1/accounts/{id}/grants`` (admin),
through ``Client`` and raw HTTP, on a real ``allowance serve`` per store: the account's terms
show in the account, in usage (``max`` effective) and in decisions; bad bodies are 422 naming
the field and change nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from allowance import Client, InvalidRequest

from .service import Service


def test_overrides_and_grants_over_http(service: Service) -> None:
    admin = {"Authorization": f"Bearer {service.admin}"}
    reader = {"Authorization": f"Bearer {service.new_key('read')}"}
    with Client(service.url, service.admin) as client:
        client.set_account("vip", "pro", seats=3)  # ai_exports: 90 a week
        account = client.set_override("vip", "ai_exports", max=100)
        assert account.overrides == {"ai_exports": 100}
        now = datetime.fromtimestamp(float(service.clock_file.read_text()), UTC)
        ends = now + timedelta(hours=1)  # the service's clock
        account = client.grant("vip", "ai_exports", 5, expires_at=ends)
        assert [(g.limit, g.amount, g.expires_at) for g in account.grants] == [
            ("ai_exports", 5, ends)
        ]
        meter = next(m for m in client.usage("vip") if m.limit == "ai_exports")
        assert (meter.max, meter.override, meter.granted) == (105, 100, 5)
        assert client.consume("vip", "export.ai", 105).allowed
        denied = client.consume("vip", "export.ai")
        assert (denied.allowed, denied.limit, denied.upgrade) == (False, "ai_exports", None)

        raw = service.http.post(
            "/v1/accounts/vip/grants", json={"limit": "ai_exports", "amount": 2}, headers=admin
        )
        assert raw.status_code == 201, raw.text
        assert [g["amount"] for g in raw.json()["grants"]] == [5, 2]  # soonest ending first
        seen = service.http.get("/v1/accounts/vip", headers=reader).json()
        assert seen["overrides"] == {"ai_exports": 100} and len(seen["grants"]) == 2
        usage = service.http.get("/v1/accounts/vip/usage", headers=reader).json()
        row = next(m for m in usage["meters"] if m["limit"] == "ai_exports")
        assert (row["max"], row["override"], row["granted"]) == (107, 100, 7)

        forbidden = service.http.put(
            "/v1/accounts/vip/overrides/ai_exports", json={"max": 5}, headers=reader
        )
        assert forbidden.status_code == 403
        missing = service.http.put(
            "/v1/accounts/ghost/overrides/ai_exports", json={"max": 5}, headers=admin
        )
        assert missing.status_code == 404
        for method, path, body, field in (
            ("PUT", "/v1/accounts/vip/overrides/nope", {"max": 5}, "limit"),
            ("PUT", "/v1/accounts/vip/overrides/ai_exports", {"max": -1}, "max"),
            ("PUT", "/v1/accounts/vip/overrides/ai_exports", {"max": "5"}, "max"),
            ("PUT", "/v1/accounts/vip/overrides/ai_exports", {}, "max"),
            ("POST", "/v1/accounts/vip/grants", {"limit": "nope", "amount": 1}, "limit"),
            ("POST", "/v1/accounts/vip/grants", {"limit": "ai_exports", "amount": 0}, "amount"),
            (
                "POST",
                "/v1/accounts/vip/grants",
                {"limit": "ai_exports", "amount": 1, "expires_at": "2030-01-01T00:00:00"},
                "expires_at",
            ),
            (
                "POST",
                "/v1/accounts/vip/grants",
                {"limit": "ai_exports", "amount": 1, "expires_at": "2001-01-01T00:00:00Z"},
                "expires_at",
            ),
        ):
            bad = service.http.request(method, path, json=body, headers=admin)
            assert bad.status_code == 422, (body, bad.text)
            assert bad.headers["content-type"] == "application/problem+json"
            assert field in bad.text, (body, bad.text)
        with pytest.raises(InvalidRequest) as refused_here:
            client.set_override("vip", "nope", max=1)
        assert refused_here.value.field == "limit"  # checked before it is sent
        after = client.get_account("vip")
        assert after.overrides == {"ai_exports": 100} and len(after.grants) == 2

        assert client.set_override("vip", "ai_exports", max=None).overrides == {}
        meter = next(m for m in client.usage("vip") if m.limit == "ai_exports")
        assert (meter.max, meter.override, meter.granted) == (97, None, 7)
