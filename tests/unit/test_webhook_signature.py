"""The webhook signature (CONTRACT 8): ``t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">``,
checked against a hand-computed HMAC, and ``verify``'s refusals; a state's trimming."""

from __future__ import annotations

import hashlib
import hmac

from allowance import webhooks

BODY = b'{"id":7,"type":"usage.threshold"}'


def test_the_signature_is_the_hmac_of_time_dot_body() -> None:
    want = hmac.new(b"whsec_x", b"1700000000." + BODY, hashlib.sha256).hexdigest()
    assert webhooks.sign("whsec_x", 1700000000, BODY) == f"t=1700000000,v1={want}"


def test_verify_refuses_another_secret_body_or_an_old_time() -> None:
    header = webhooks.sign("whsec_x", 1700000000, BODY)
    assert webhooks.verify("whsec_x", header, BODY, 1700000100)
    assert not webhooks.verify("whsec_y", header, BODY, 1700000100)
    assert not webhooks.verify("whsec_x", header, BODY + b" ", 1700000100)
    assert not webhooks.verify("whsec_x", header, BODY, 1700000301)  # replayed 5 min later
    assert not webhooks.verify("whsec_x", "v1=abc", BODY, 1700000100)
    assert not webhooks.verify("whsec_x", "t=x,v1=abc", BODY, 1700000100)


def test_a_state_keeps_every_pending_delivery_and_the_last_finished_ones() -> None:
    newest_first = [
        webhooks.Delivery(i, "usage.threshold", "pending" if i % 3 == 0 else "delivered")
        for i in range(300, 0, -1)
    ]
    kept = webhooks.State(300, newest_first).trimmed()
    pending = [d.event_id for d in newest_first if d.status == "pending"]
    finished = [d.event_id for d in newest_first if d.status != "pending"][: webhooks.LOG_SIZE]
    assert [d.event_id for d in kept.deliveries] == sorted(pending + finished, reverse=True)
    assert webhooks.State.load(kept.dump()) == kept  # as kept in its setting, read back
