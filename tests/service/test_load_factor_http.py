"""``PUT /v1/load-factor`` (admin) and ``GET /v1/load-factor`` (read), through ``Client`` and
raw HTTP, on a real ``allowance serve`` per store. A module of its own: the factor is kept in
the service's store, which the other modules' tests share."""

from __future__ import annotations

import pytest

from allowance import Client, InvalidRequest

from .service import Service


def test_the_load_factor_over_http(service: Service) -> None:
    reader = service.new_key("read")
    with Client(service.url, service.admin) as client:
        client.set_account("busy", "pro", seats=3)  # ai_exports: 90 a week
        try:
            factors = client.set_load_factor(0.5, ["ai_exports"])
            assert factors["ai_exports"] == 0.5 and factors["exports"] == 1.0
            d = client.consume("busy", "export.ai", 50, partial=True)
            assert (d.granted, d.remaining) == (45, 0)
            answer = service.http.post(
                "/v1/consume",
                json={"account": "busy", "feature": "export.ai"},
                headers={"Authorization": f"Bearer {service.admin}"},
            )
            assert answer.status_code == 429
            assert "lowered from 90 while demand is high" in answer.json()["message"]
            assert "q=45" in answer.headers["RateLimit-Policy"]
            usage = client.usage("busy")
            assert next(m.max for m in usage if m.limit == "ai_exports") == 45

            seen = service.http.get(
                "/v1/load-factor", headers={"Authorization": f"Bearer {reader}"}
            )
            assert seen.status_code == 200 and seen.json()["factors"]["ai_exports"] == 0.5
            refused = service.http.put(
                "/v1/load-factor",
                json={"factor": 0.5},
                headers={"Authorization": f"Bearer {reader}"},
            )
            assert refused.status_code == 403  # admin only
            for body, field in (
                ({"factor": 0}, "factor"),
                ({"factor": 2}, "factor"),
                ({"factor": True}, "factor"),
                ({"factor": 0.5, "limits": ["nope"]}, "limits"),
                ({"factor": 0.5, "limits": "ai_exports"}, "limits"),
            ):
                bad = service.http.put(
                    "/v1/load-factor",
                    json=body,
                    headers={"Authorization": f"Bearer {service.admin}"},
                )
                assert bad.status_code == 422, (body, bad.text)
                assert bad.headers["content-type"] == "application/problem+json"
                assert field in bad.text
            with pytest.raises(InvalidRequest) as refused_here:
                client.set_load_factor(0, None)
            assert refused_here.value.field == "factor"  # checked before it is sent
            assert client.load_factors()["ai_exports"] == 0.5  # none of that changed it
        finally:
            assert client.set_load_factor(1.0)["ai_exports"] == 1.0
        assert client.consume("busy", "export.ai", 45).allowed  # 45 + 45 of the full 90
