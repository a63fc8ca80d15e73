"""``Client`` / ``AsyncClient`` against a real ``allowance serve`` on every server store: the
same requests give the same ``Decision``s, meters and errors as a ``Limiter`` (a memory store
on a ``ManualClock`` kept at the service's time)."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Iterator
from datetime import UTC
from typing import Any, TypedDict

import httpx
import pytest

from allowance import (
    AllowanceError,
    AsyncClient,
    AsyncReservation,
    AuthenticationError,
    Client,
    ConfigurationError,
    IdempotencyConflict,
    InvalidAmount,
    InvalidRequest,
    Limiter,
    LimitExceeded,
    ManualClock,
    PermissionDenied,
    Reservation,
    ReservationExpired,
    ReservationNotFound,
    ServiceUnavailable,
    StoreError,
    UnknownAccount,
    UnknownFeature,
    UnknownPlan,
    builtin_policy,
    parse_policy,
    remote_answers,
)
from allowance.http.problems import TYPE_PREFIX
from allowance.ids import new_reservation_id

from .service import Service

MONDAY = "2026-11-23T15:10:00Z"


class Twin:
    """A ``Limiter`` whose clock follows the service's: what the client must match."""

    def __init__(self, service: Service, start: str = MONDAY) -> None:
        self.service = service
        self.clock = ManualClock(start)
        self.lim = Limiter(clock=self.clock)
        service.set_time(start)

    def at(self, when: str | float) -> None:
        self.clock.set(when)
        self.service.set_time(when)

    def advance(self, seconds: float) -> None:
        self.at(self.clock() + seconds)


def same_error(
    got: pytest.ExceptionInfo[AllowanceError], want: pytest.ExceptionInfo[AllowanceError]
) -> None:
    assert type(got.value) is type(want.value)
    assert str(got.value) == str(want.value)
    assert getattr(got.value, "field", None) == getattr(want.value, "field", None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def test_seed_example_matches_limiter(service: Service) -> None:
    twin = Twin(service)
    with Client(service.url, service.admin) as client:
        assert client.set_account("seed", "pro") == twin.lim.set_account("seed", "pro")
        for minute in range(15):  # 30 generations at 2 a minute, each third one denied
            twin.at(f"2026-11-23T15:{10 + minute}:00Z")
            feature = "transform.virtual_model" if minute < 10 else "transform.product_staging"
            for _ in range(3):
                assert client.consume("seed", feature) == twin.lim.consume("seed", feature)
        twin.at("2026-11-23T15:36:00Z")
        denied = client.consume("seed", "transform.product_beautifier")
        assert denied == twin.lim.consume("seed", "transform.product_beautifier")
        assert (denied.allowed, denied.limit, denied.upgrade) == (False, "transform_daily", "max")
        assert denied.resets_at is not None and denied.resets_at.tzinfo is UTC
        assert denied.message.startswith("You have reached your daily limit of 30 generations")
        assert client.check("seed", "export.ai", 5) == twin.lim.check("seed", "export.ai", 5)
        partial = client.consume("seed", "export.ai", 50, partial=True, user="u1")
        assert partial == twin.lim.consume("seed", "export.ai", 50, partial=True, user="u1")
        assert partial.granted == 30
        meters = client.usage("seed")
        assert meters == twin.lim.usage("seed")
        assert {m.limit for m in meters} >= {"transform_daily", "ai_exports"}
        assert all(m.resets_at is None or m.resets_at.tzinfo is UTC for m in meters)

        twin.at("2026-11-24T16:10:00Z")
        back = client.consume("seed", "transform.virtual_model")
        assert back == twin.lim.consume("seed", "transform.virtual_model")
        assert back.allowed and back.quota is not None
        assert client.usage("seed") == twin.lim.usage("seed")


def test_accounts_and_policy(service: Service) -> None:
    with Client(service.url, service.admin) as client:
        assert client.put_account("acct", "free") == (client.get_account("acct"), True)
        account, created = client.put_account("acct", "max", seats=3)
        assert (account.plan, account.seats, created) == ("max", 3, False)
        assert client.get_account("acct") == account
        assert client.policy() == builtin_policy().to_data()


def test_reservations_commit_release_expire(service: Service) -> None:
    twin = Twin(service)
    lim = twin.lim
    with Client(service.url, service.admin) as client:
        client.set_account("studio", "pro")
        lim.set_account("studio", "pro")
        held = client.reserve("studio", "background.studio", 4, ttl=60)
        ref = lim.reserve("studio", "background.studio", 4, ttl=60)
        assert isinstance(held, Reservation) and held.id is not None
        assert held.decision == ref.decision and held.expires_at == ref.expires_at
        assert held.expires_at is not None and held.expires_at.tzinfo is UTC
        held.commit()
        held.commit()  # twice is harmless, which is what makes a retried commit safe
        ref.commit()
        assert client.usage("studio") == lim.usage("studio")

        released = client.reserve("studio", "background.studio", 6)
        released.release()
        assert client.usage("studio") == lim.usage("studio")  # the 6 came back
        with pytest.raises(ReservationNotFound):
            held.release()  # committed units are final

        late = client.reserve("studio", "background.studio", 2, ttl=60)
        lim.reserve("studio", "background.studio", 2, ttl=60)
        twin.advance(61)
        assert client.usage("studio") == lim.usage("studio")  # expiry returned them
        with pytest.raises(ReservationExpired):
            late.commit()

        denied = client.reserve("studio", "background.studio", 10_000)
        assert denied.id is None and denied.expires_at is None and not denied.decision.allowed
        assert denied.decision == lim.reserve("studio", "background.studio", 10_000).decision


def test_a_reservation_settles_at_the_real_amount(service: Service) -> None:
    twin = Twin(service)
    lim = twin.lim
    with Client(service.url, service.admin) as client:
        for side in (client, lim):
            side.set_account("tokens", "pro")  # ai_exports: 30 a week
        for side in (client, lim):
            side.reserve("tokens", "export.ai", 10).commit(4)
            side.reserve("tokens", "export.ai", 5).commit(12)
        assert client.usage("tokens") == lim.usage("tokens")
        held = client.reserve("tokens", "export.ai", 2)
        with pytest.raises(LimitExceeded) as over:
            held.commit(20)  # 16 + 20 > 30: 429, and the 2 stay held
        ref = lim.reserve("tokens", "export.ai", 2)
        with pytest.raises(LimitExceeded) as ref_over:
            ref.commit(20)
        assert over.value.decision == ref_over.value.decision
        assert over.value.decision.reason == "limit_reached"
        assert client.usage("tokens") == lim.usage("tokens")
        with pytest.raises(InvalidAmount):
            held.commit(-1)  # refused before it is sent
        response = httpx.post(
            f"{service.url}/v1/reservations/{held.id}/commit",
            json={"amount": "3"},
            headers={"Authorization": f"Bearer {service.admin}"},
        )
        assert response.status_code == 422 and "amount" in response.text
        held.commit()
        ref.commit()
        assert client.usage("tokens") == lim.usage("tokens")


@pytest.fixture
def client(service: Service) -> Iterator[Client]:
    with Client(service.url, service.admin) as opened:
        yield opened


def test_errors_map_to_the_limiters(service: Service, client: Client) -> None:
    twin = Twin(service)
    lim = twin.lim
    client.set_account("errs", "free")
    lim.set_account("errs", "free")

    def both(call: str, *args: Any, **kwargs: Any) -> AllowanceError:
        with pytest.raises(AllowanceError) as got:
            getattr(client, call)(*args, **kwargs)
        with pytest.raises(AllowanceError) as want:
            getattr(lim, call)(*args, **kwargs)
        same_error(got, want)
        return got.value

    assert isinstance(both("consume", "nobody", "export.ai"), UnknownAccount)  # from the service
    assert isinstance(both("get_account", "nobody"), UnknownAccount)
    assert isinstance(both("usage", "nobody"), UnknownAccount)
    client.consume("errs", "export.ai", idempotency_key="job-1")
    lim.consume("errs", "export.ai", idempotency_key="job-1")
    assert isinstance(
        both("consume", "errs", "export.ai", 2, idempotency_key="job-1"), IdempotencyConflict
    )
    unknown = new_reservation_id("errs", 4e9)
    assert isinstance(both("commit", unknown), ReservationNotFound)
    assert isinstance(both("commit", "not-an-id"), ReservationNotFound)
    # checked here: the same errors, with the field, before anything is sent
    for call, args in [
        ("consume", ("errs", "export.ai", 0)),
        ("consume", ("errs", "no.such.feature")),
        ("check", ("errs", "export.ai", True)),
        ("reserve", ("errs", "export.ai", 1, -5)),
        ("set_account", ("errs", "gold")),
        ("set_account", ("errs", "pro", 0)),
        ("usage", ("",)),
    ]:
        assert isinstance(both(call, *args), InvalidRequest)

    # nothing is sent on bad input: a client for a closed port still raises them
    with Client(f"http://127.0.0.1:{free_port()}", "k", policy=builtin_policy()) as offline:
        with pytest.raises(InvalidAmount):
            offline.consume("errs", "export.ai", 0)
        with pytest.raises(ServiceUnavailable):
            offline.consume("errs", "export.ai")


def test_errors_the_service_reports(service: Service) -> None:
    Twin(service)
    # a client whose policy has a feature and a plan the service's lacks: the service's 422
    # comes back as the same classes, naming the field and the value sent
    data = builtin_policy().to_data()
    data["plans"].append({"name": "gold", "title": "Gold"})
    data["features"]["ghost.mode"] = {"title": "Ghost"}
    for limit in data["limits"].values():
        limit["plans"]["gold"] = limit["plans"]["max"]
    with Client(service.url, service.admin, policy=parse_policy(json.dumps(data))) as stale:
        stale.set_account("svc", "pro")
        with pytest.raises(UnknownFeature) as feature:
            stale.consume("svc", "ghost.mode")
        assert (feature.value.field, feature.value.value) == ("feature", "ghost.mode")
        assert str(feature.value) == "feature: not a feature of the policy (got 'ghost.mode')"
        with pytest.raises(UnknownPlan) as plan:
            stale.set_account("svc", "gold")
        assert (plan.value.field, plan.value.value) == ("plan", "gold")

    # the service's own answers to what the client never sends, through the same table
    for body, kind, name in [
        ({"amount": "2"}, InvalidAmount, "amount"),
        ({"partial": "yes"}, InvalidRequest, "partial"),
    ]:
        sent = {"account": "svc", "feature": "export.ai", **body}
        answer = service.call("POST", "/v1/consume", json=sent)
        op = remote_answers.Op("POST", "/v1/consume", (200,), lambda answer, data: None, sent, sent)
        err = remote_answers.error(op, answer)
        assert type(err) is kind and getattr(err, "field", None) == name, answer.text
        assert getattr(err, "value", None) == body[name]
        assert str(err) == answer.json()["detail"]

    with Client(service.url, "alw_not_a_key") as bad, pytest.raises(AuthenticationError):
        bad.get_account("svc")
    reader = service.new_key("read")
    with Client(service.url, reader) as read_only:
        assert read_only.get_account("svc").plan == "pro"
        with pytest.raises(PermissionDenied):
            read_only.consume("svc", "export.ai")
    lost = Client(service.url + "/elsewhere", service.admin)
    with lost, pytest.raises(ConfigurationError, match="no route"):
        lost.get_account("svc")


class ClientOptions(TypedDict, total=False):
    retries: int


class LoseFirstAnswer(httpx.HTTPTransport):
    """Sends each request to the real service, but loses the first answer to ``path``, as a
    dropped connection would after the service has acted."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path
        self.lost = 0
        self.sent = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        if request.url.path == self.path:
            self.sent += 1
        if request.url.path == self.path and not self.lost:
            response.read()
            response.close()
            self.lost += 1
            raise httpx.ReadError("the answer was lost", request=request)
        return response


@pytest.mark.parametrize("path", ["/v1/consume", "/v1/reservations"])
def test_a_retried_charge_charges_once(service: Service, path: str) -> None:
    twin = Twin(service)
    account = "retry" + path.replace("/", "-")
    call = "consume" if path == "/v1/consume" else "reserve"
    transport = LoseFirstAnswer(path)
    with Client(
        service.url, service.admin, transport=transport, auto_idempotency_keys=True
    ) as client:
        client.set_account(account, "pro")
        twin.lim.set_account(account, "pro")
        got = getattr(client, call)(account, "export.ai", 3)  # no key given: one is made
        want = getattr(twin.lim, call)(account, "export.ai", 3)
        assert transport.lost == 1
        assert (got if call == "consume" else got.decision) == (
            want if call == "consume" else want.decision
        )
        assert client.usage(account) == twin.lim.usage(account)  # 3 used, not 6

        # the caller's own key: the same request twice charges once
        first = client.consume(account, "export.ai", 2, idempotency_key="job-9")
        assert client.consume(account, "export.ai", 2, idempotency_key="job-9") == first
        twin.lim.consume(account, "export.ai", 2, idempotency_key="job-9")
        assert client.usage(account) == twin.lim.usage(account)

    # without a key (the default) the lost answer may have charged: an error, not a retry
    before = twin.lim.usage(account)
    no_key_options: tuple[ClientOptions, ...] = ({}, {"retries": 0})
    for options in no_key_options:
        lose = LoseFirstAnswer(path)
        with Client(service.url, service.admin, transport=lose, **options) as once:
            with pytest.raises(ServiceUnavailable) as err:
                getattr(once, call)(account, "export.ai", 1)
            assert isinstance(err.value, StoreError)
            assert isinstance(err.value.__cause__, httpx.ReadError)
            assert lose.lost == 1 and lose.sent == 1  # sent once: it did charge, once
            twin.lim.consume(account, "export.ai", 1)
            assert once.usage(account) == twin.lim.usage(account) != before


class RefuseFirstConnection(httpx.HTTPTransport):
    """The first request to ``path`` never reaches the service (a refused connection)."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path
        self.refused = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == self.path and not self.refused:
            self.refused += 1
            raise httpx.ConnectError("refused", request=request)
        return super().handle_request(request)


def test_a_charge_that_never_left_is_retried_without_a_key(service: Service) -> None:
    transport = RefuseFirstConnection("/v1/consume")
    with Client(service.url, service.admin, transport=transport) as client:
        client.set_account("refused", "pro")
        d = client.consume("refused", "export.ai", 2)  # refused once, then sent: charged once
        assert transport.refused == 1 and d.allowed
        used = next(m.used for m in client.usage("refused") if m.limit == "ai_exports")
        assert used == 2


def test_connection_refused_after_retries() -> None:
    client = Client(f"http://127.0.0.1:{free_port()}", "k", retries=2)
    with client, pytest.raises(ServiceUnavailable) as err:
        client.get_account("a")
    assert isinstance(err.value.__cause__, httpx.ConnectError)


def test_async_client_matches_limiter(service: Service) -> None:
    twin = Twin(service)
    lim = twin.lim

    async def scenario() -> None:
        async with AsyncClient(service.url, service.admin) as client:
            assert await client.set_account("async", "pro") == lim.set_account("async", "pro")
            for _ in range(3):
                got = await client.consume("async", "transform.virtual_model")
                assert got == lim.consume("async", "transform.virtual_model")
            got = await client.check("async", "export.ai", 40)
            assert got == lim.check("async", "export.ai", 40)
            held = await client.reserve("async", "background.studio", 4, ttl=60)
            ref = lim.reserve("async", "background.studio", 4, ttl=60)
            assert isinstance(held, AsyncReservation) and held.decision == ref.decision
            await held.commit()
            ref.commit()
            gone = await client.reserve("async", "background.studio", 2)
            await gone.release()
            assert await client.usage("async") == lim.usage("async")
            assert (await client.get_account("async")).plan == "pro"
            assert (await client.policy())["plans"][0]["name"] == "free"
            with pytest.raises(UnknownAccount):
                await client.consume("nobody", "export.ai")
            with pytest.raises(InvalidAmount):
                await client.consume("async", "export.ai", 0)
            with pytest.raises(ReservationExpired):
                late = await client.reserve("async", "background.studio", 1, ttl=60)
                twin.advance(61)
                await late.commit()
        async with AsyncClient(service.url, service.new_key("read")) as reader:
            with pytest.raises(PermissionDenied):
                await reader.consume("async", "export.ai")
        async with AsyncClient(f"http://127.0.0.1:{free_port()}", "k", retries=1) as down:
            with pytest.raises(ServiceUnavailable):
                await down.usage("async")

    asyncio.run(scenario())


def test_a_new_feature_on_the_service_is_followed(service: Service) -> None:
    """A client that read an older policy reads it again before calling a feature unknown."""
    Twin(service)
    with Client(service.url, service.admin) as client:
        client.set_account("newer", "pro")
        data = builtin_policy().to_data()
        del data["features"]["export.ai"]
        for limit in data["limits"].values():
            limit["features"] = [f for f in limit["features"] if f != "export.ai"]
        data["limits"] = {k: v for k, v in data["limits"].items() if v["features"]}
        client._policy = parse_policy(json.dumps(data))
        assert client.consume("newer", "export.ai").allowed
        with pytest.raises(UnknownFeature):
            client.consume("newer", "export.nothing")


def test_problem_types_match_the_service() -> None:
    assert remote_answers.PROBLEM_TYPE == TYPE_PREFIX


def test_bad_url_or_key_is_refused_at_once() -> None:
    with pytest.raises(ConfigurationError, match="url"):
        Client("localhost:8000", "k")
    with pytest.raises(ConfigurationError, match="key"):
        AsyncClient("http://localhost:8000", "")


def test_quota_comes_from_the_ratelimit_headers(service: Service) -> None:
    from allowance.types import Quota

    with Client(service.url, service.admin) as client:
        client.set_account("quota", "pro", seats=2)
        d = client.consume("quota", "export.ai", 5)
        assert d.quota == Quota("ai_exports", 60, 604800.0, 55, 604800.0)
        r = client.reserve("quota", "transform.virtual_model", 1)
        assert r.decision.quota == Quota("transform_rate", 2, 60.0, 1, 60.0)
        d = client.consume("quota", "background.standard")  # unlimited: no headers
        assert d.allowed and d.quota is None
