"""Outbound webhooks end to end: GraphQL endpoints, the outbox dispatcher's fan-out, the
deliverer, and a real HTTP receiver (``asyncio.start_server`` speaking minimal HTTP/1.1) that
verifies signatures with the ``standardwebhooks`` package. Retries are driven by passing
``run_once`` a ``now`` the test controls; every wait is bounded."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from tests.integration.conftest import Api
from veix.app import build_services
from veix.config import Settings
from veix.domain.errors import InvalidInput
from veix.domain.webhooks import RetryPolicy, parse_endpoint_url, parse_event_types, subscribes
from veix.events.dispatcher import OutboxDispatcher
from veix.events.webhooks import WebhookDeliverer
from veix.persistence.tables import outbox, webhook_endpoints

IO_TIMEOUT = 5.0

M_CREATE = """mutation($i: CreateWebhookEndpointInput!){ createWebhookEndpoint(input:$i){
  endpoint{ id url description eventTypes status enabled } secret userErrors{ code message field } } }"""
M_UPDATE = """mutation($i: UpdateWebhookEndpointInput!){ updateWebhookEndpoint(input:$i){
  endpoint{ id url description eventTypes status enabled disabledReason } userErrors{ code message field } } }"""
M_DELETE = """mutation($i: WebhookEndpointIdInput!){ deleteWebhookEndpoint(input:$i){
  deletedEndpointId userErrors{ code message field } } }"""
M_TEST = """mutation($i: WebhookEndpointIdInput!){ sendTestWebhook(input:$i){
  endpoint{ id } eventId userErrors{ code message field } } }"""
Q_ENDPOINTS = """query($id: ID!){ business(id:$id){ webhookEndpoints{ id url status enabled disabledReason
  eventTypes deliveries(first: 50){ totalCount edges{ cursor node{ eventId eventType status attempts
  lastStatusCode lastError nextAttemptAt createdAt } } pageInfo{ hasNextPage endCursor } } } } }"""


class Receiver:
    """A real HTTP server on a free local port answering with the given statuses in turn
    (then 200), recording every request."""

    def __init__(self, statuses: list[int] | None = None) -> None:
        self.statuses = list(statuses or [])
        self.requests: list[tuple[dict[str, str], bytes, int]] = []
        self.server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        port = self.server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/hooks"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), IO_TIMEOUT)
            lines = head.decode("latin-1").split("\r\n")
            headers: dict[str, str] = {}
            for line in lines[1:]:
                if line:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
            body = await asyncio.wait_for(
                reader.readexactly(int(headers.get("content-length", "0"))), IO_TIMEOUT)
            status = self.statuses.pop(0) if self.statuses else 200
            self.requests.append((headers, body, status))
            writer.write(f"HTTP/1.1 {status} Status\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n"
                         "Connection: close\r\n\r\nok".encode())
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(body) for _, body, _ in self.requests]


@contextlib.asynccontextmanager
async def receiving(statuses: list[int] | None = None) -> AsyncIterator[Receiver]:
    receiver = Receiver(statuses)
    receiver.server = await asyncio.start_server(receiver._handle, "127.0.0.1", 0)
    try:
        yield receiver
    finally:
        receiver.server.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(receiver.server.wait_closed(), IO_TIMEOUT)


@pytest.fixture
async def http_client() -> AsyncIterator[httpx.AsyncClient]:
    # trust_env=False: a proxy from the environment must not sit between us and 127.0.0.1.
    async with httpx.AsyncClient(timeout=IO_TIMEOUT, trust_env=False) as client:
        yield client


def deliverer(app: Any, client: httpx.AsyncClient, **kwargs: Any) -> WebhookDeliverer:
    services = app.state.services
    return WebhookDeliverer(services.engine, services.vault.vault, http_client=client, **kwargs)


async def dispatch(app: Any) -> None:
    dispatcher = OutboxDispatcher(app.state.services.engine, app.state.broadcast)
    for _ in range(1000):
        if await dispatcher.run_once() == 0:
            return
    raise AssertionError("the outbox never drained")


async def create(api: Api, token: str, business_id: str, url: str,
                 event_types: list[str] | None = None, description: str | None = None) -> dict[str, Any]:
    body = await api.gql(M_CREATE, {"i": {"businessId": business_id, "url": url, "eventTypes": event_types,
                                          "description": description}}, token)
    assert "errors" not in body, body
    result: dict[str, Any] = body["data"]["createWebhookEndpoint"]
    return result


async def endpoints(api: Api, token: str, business_id: str) -> list[dict[str, Any]]:
    data = await api.ok(Q_ENDPOINTS, {"id": business_id}, token)
    found: list[dict[str, Any]] = data["business"]["webhookEndpoints"]
    return found


async def fund(api: Api, token: str, business_id: str, amount: str) -> None:
    body = await api.fund(token, business_id, amount)
    assert "errors" not in body and body["data"]["fundBusiness"]["userErrors"] == [], body


# --------------------------------------------------------------------------- pure rules

def test_event_types_are_checked_against_the_known_list() -> None:
    assert parse_event_types(None, field=["t"]) is None
    assert parse_event_types(["card.*", "transaction.created", "card.*", "fraud_alert.created",
                              "card_transaction.created", "member.invited"], field=["t"]) == [
        "card.*", "transaction.created", "fraud_alert.created", "card_transaction.created", "member.invited"]
    assert parse_event_types(["transaction.*", "transaction.updated", "dispute.*"], field=["t"]) == [
        "transaction.*", "transaction.updated", "dispute.*"]
    for bad in (["nope.created"], ["transaction.refunded"], ["dispute.won"], ["*"], ["card"], [],
                ["webhook.test"]):
        with pytest.raises(InvalidInput):
            parse_event_types(bad, field=["t"])
    assert subscribes(None, "business.created")
    assert subscribes(["card.*"], "card.issued") and not subscribes(["card.*"], "card_transaction.created")
    assert not subscribes(None, "webhook.test")


@pytest.mark.parametrize("url", [
    "http://hooks.example.com/x", "https://127.0.0.1/x", "https://10.1.2.3/x", "https://localhost/x",
    "https://api.localhost/x", "https://[::1]/x", "https://169.254.169.254/latest", "https://192.168.0.1/",
    "https://172.16.5.4/", "https://0.0.0.0/", "https://[::ffff:127.0.0.1]/", "https://2130706433/",
    "https://127.1/", "https://100.64.0.1/", "ftp://hooks.example.com/",
])
def test_production_refuses_plain_http_and_private_addresses(url: str) -> None:
    with pytest.raises(InvalidInput):
        parse_endpoint_url(url, field=["url"], production=True)


def test_production_accepts_public_https_and_development_allows_local() -> None:
    for url in ("https://hooks.example.com/veix", "https://93.184.216.34:8443/x"):
        assert parse_endpoint_url(url, field=["url"], production=True) == url
    for url in ("http://127.0.0.1:8080/x", "http://[::1]:8080/x", "http://10.0.0.5/x"):
        assert parse_endpoint_url(url, field=["url"], production=False) == url


def test_backoff_is_exponential_with_full_jitter_and_gives_up_after_three_days() -> None:
    import random

    policy = RetryPolicy()
    created = datetime(2026, 1, 1, tzinfo=UTC)
    assert policy.ceiling(1) == timedelta(seconds=30)
    assert policy.ceiling(2) == timedelta(seconds=60)
    assert policy.ceiling(30) == timedelta(hours=6)
    rng = random.Random(7)
    waits = [policy.next_attempt(5, created, created, rng) - created for _ in range(200)]  # type: ignore[operator]
    assert all(timedelta(seconds=1) <= w <= timedelta(seconds=480) for w in waits)
    assert max(waits) - min(waits) > timedelta(seconds=200)  # jittered, not fixed
    near_end = created + timedelta(days=3) - timedelta(seconds=5)
    assert policy.next_attempt(20, created, near_end, rng) <= created + timedelta(days=3)  # type: ignore[operator]
    assert policy.next_attempt(20, created, created + timedelta(days=3), rng) is None


async def test_production_settings_make_urls_strict(tmp_path: Path) -> None:
    import base64
    import os

    url = f"sqlite+aiosqlite:///{tmp_path}/p.db"
    dev = build_services(Settings(database_url=url, secrets_file=tmp_path / "s.json").with_secrets())
    prod = build_services(Settings(
        database_url=url, env="production", secret_key="x" * 48,
        vault_key="v1:" + base64.b64encode(os.urandom(32)).decode(),
        network_secret="whsec_" + base64.b64encode(os.urandom(32)).decode()).with_secrets())
    try:
        assert dev.webhook_strict_urls is False
        assert prod.webhook_strict_urls is True
    finally:
        await dev.engine.dispose()
        await prod.engine.dispose()


# --------------------------------------------------------------------------- GraphQL

async def test_url_validation_through_the_api(app: Any, api: Api, owner: tuple[str, str],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    token, business_id = owner
    # Development (the test app): a local http receiver is fine.
    made = await create(api, token, business_id, "http://127.0.0.1:9/hooks")
    assert made["userErrors"] == [] and made["endpoint"]["url"] == "http://127.0.0.1:9/hooks"
    monkeypatch.setattr(app.state.services, "webhook_strict_urls", True)  # as in production
    for url in ("http://hooks.example.com/x", "https://127.0.0.1/x", "https://10.0.0.7/x", "https://localhost/x"):
        refused = await create(api, token, business_id, url)
        assert refused["endpoint"] is None and refused["secret"] is None
        assert [(e["code"], e["field"]) for e in refused["userErrors"]] == [("INVALID_INPUT", ["input", "url"])], url
    ok = await create(api, token, business_id, "https://hooks.example.com/veix", ["card.*"])
    assert ok["userErrors"] == []
    upd = await api.gql(M_UPDATE, {"i": {"endpointId": ok["endpoint"]["id"], "url": "https://10.0.0.7/"}}, token)
    assert upd["data"]["updateWebhookEndpoint"]["userErrors"][0]["code"] == "INVALID_INPUT"
    unknown = await create(api, token, business_id, "https://hooks.example.com/veix", ["transaction.refunded"])
    assert [e["field"] for e in unknown["userErrors"]] == [["input", "eventTypes"]]


async def test_secret_is_shown_once_and_stored_sealed(app: Any, api: Api, owner: tuple[str, str]) -> None:
    token, business_id = owner
    made = await create(api, token, business_id, "http://127.0.0.1:9/x", None, "ops")
    secret = made["secret"]
    assert secret.startswith("whsec_") and len(secret) > 40
    assert made["endpoint"]["eventTypes"] is None and made["endpoint"]["status"] == "ENABLED"
    # No type exposes it again.
    fields = await api.ok('{ __type(name: "WebhookEndpoint"){ fields{ name } } }')
    assert "secret" not in {f["name"] for f in fields["__type"]["fields"]}
    listed = await endpoints(api, token, business_id)
    assert [e["id"] for e in listed] == [made["endpoint"]["id"]]
    assert secret not in json.dumps(listed)
    async with app.state.services.engine.connect() as conn:
        stored = (await conn.execute(select(webhook_endpoints.c.secret_encrypted))).scalars().all()
    assert stored and all(secret.removeprefix("whsec_") not in s for s in stored)
    second = await create(api, token, business_id, "http://127.0.0.1:9/y")
    assert second["secret"] != secret


async def test_permissions_and_foreign_endpoints_are_missing(api: Api, owner: tuple[str, str]) -> None:
    token, business_id = owner
    made = await create(api, token, business_id, "http://127.0.0.1:9/x")
    endpoint_id = made["endpoint"]["id"]

    dev_token, _ = await api.member_token(token, business_id, "DEVELOPER")
    assert (await create(api, dev_token, business_id, "http://127.0.0.1:9/dev"))["userErrors"] == []

    viewer_token, _ = await api.member_token(token, business_id, "VIEWER")
    for query, variables in ((M_CREATE, {"i": {"businessId": business_id, "url": "http://127.0.0.1:9/v"}}),
                             (M_UPDATE, {"i": {"endpointId": endpoint_id, "enabled": False}}),
                             (M_DELETE, {"i": {"endpointId": endpoint_id}}),
                             (M_TEST, {"i": {"endpointId": endpoint_id}}),
                             (Q_ENDPOINTS, {"id": business_id})):
        body = await api.gql(query, variables, viewer_token)
        assert [e["extensions"]["code"] for e in body["errors"]] == ["FORBIDDEN"], body

    stranger, _ = await api.sign_up("Stranger")
    await api.create_business(stranger)
    for query, name in ((M_UPDATE, "updateWebhookEndpoint"), (M_DELETE, "deleteWebhookEndpoint"),
                        (M_TEST, "sendTestWebhook")):
        body = await api.gql(query, {"i": {"endpointId": endpoint_id}}, stranger)
        assert "errors" not in body, body
        assert [e["code"] for e in body["data"][name]["userErrors"]] == ["NOT_FOUND"]
    foreign = await create(api, stranger, business_id, "http://127.0.0.1:9/s")
    assert [e["code"] for e in foreign["userErrors"]] == ["NOT_FOUND"]
    # A random id answers the same.
    from veix.resolvers.ids import to_global_id
    missing = await api.gql(M_DELETE, {"i": {"endpointId": to_global_id("WebhookEndpoint", uuid.uuid4())}}, token)
    assert [e["code"] for e in missing["data"]["deleteWebhookEndpoint"]["userErrors"]] == ["NOT_FOUND"]
    # Unchanged by all of it.
    assert {e["id"] for e in await endpoints(api, token, business_id)} >= {endpoint_id}

    # The owner can update and delete.
    upd = await api.ok(M_UPDATE, {"i": {"endpointId": endpoint_id, "eventTypes": ["card.*"],
                                        "description": "cards", "enabled": False}}, token)
    got = upd["updateWebhookEndpoint"]["endpoint"]
    assert got["eventTypes"] == ["card.*"] and got["description"] == "cards" and got["enabled"] is False
    deleted = await api.ok(M_DELETE, {"i": {"endpointId": endpoint_id}}, token)
    assert deleted["deleteWebhookEndpoint"]["deletedEndpointId"] == endpoint_id
    assert endpoint_id not in {e["id"] for e in await endpoints(api, token, business_id)}


# --------------------------------------------------------------------------- delivery

async def test_events_arrive_signed_in_order_and_are_logged(app: Any, api: Api, owner: tuple[str, str],
                                                            http_client: httpx.AsyncClient) -> None:
    token, business_id = owner
    await dispatch(app)  # what earlier tests left
    async with receiving() as receiver:
        made = await create(api, token, business_id, receiver.url, ["transaction.created"])
        secret, endpoint_id = made["secret"], made["endpoint"]["id"]
        for amount in ("10.00", "20.00", "30.00"):
            await fund(api, token, business_id, amount)
        await dispatch(app)
        assert await deliverer(app, http_client).run_once() >= 3

        mine = list(receiver.requests)
        assert len(mine) == 3
        verifier = Webhook(secret)
        for headers, body, _ in mine:
            verifier.verify(body, {k: headers[k] for k in ("webhook-id", "webhook-timestamp", "webhook-signature")})
            assert headers["content-type"] == "application/json"
        bodies = receiver.bodies()
        assert [b["type"] for b in bodies] == ["transaction.created"] * 3
        assert [b["seq"] for b in bodies] == sorted(b["seq"] for b in bodies)
        assert [h["webhook-id"] for h, _, _ in mine] == [b["id"] for b in bodies]
        # A wrong secret does not verify.
        with pytest.raises(WebhookVerificationError):
            Webhook("whsec_" + "QUFB" * 8).verify(mine[0][1], dict(mine[0][0]))

        listed = await endpoints(api, token, business_id)
        (endpoint,) = [e for e in listed if e["id"] == endpoint_id]
        log = [edge["node"] for edge in endpoint["deliveries"]["edges"]]
        assert endpoint["deliveries"]["totalCount"] == 3
        assert [d["eventId"] for d in log] == [b["id"] for b in bodies]
        assert all(d["status"] == "SUCCEEDED" and d["attempts"] == 1 and d["lastStatusCode"] == 200
                   and d["lastError"] is None and d["nextAttemptAt"] is None for d in log)
        # Nothing is due any more.
        assert await deliverer(app, http_client).run_once() == 0
        assert len(receiver.requests) == 3

        # Paging the log.
        first = await api.ok("""query($id: ID!){ business(id:$id){ webhookEndpoints{ deliveries(first: 2){
            edges{ cursor node{ eventId } } pageInfo{ hasNextPage endCursor } } } } }""", {"id": business_id}, token)
        page = first["business"]["webhookEndpoints"][0]["deliveries"]
        assert page["pageInfo"]["hasNextPage"] is True and len(page["edges"]) == 2


async def test_a_failing_receiver_gets_the_event_again_until_it_succeeds(
        app: Any, api: Api, owner: tuple[str, str], http_client: httpx.AsyncClient) -> None:
    token, business_id = owner
    await dispatch(app)
    async with receiving([500, 500, 500]) as receiver:
        made = await create(api, token, business_id, receiver.url, ["transaction.created"])
        secret, endpoint_id = made["secret"], made["endpoint"]["id"]
        await fund(api, token, business_id, "42.00")
        await dispatch(app)
        worker = deliverer(app, http_client)
        t0 = datetime.now(UTC)

        async def log_entry() -> dict[str, Any]:
            listed = await endpoints(api, token, business_id)
            (endpoint,) = [e for e in listed if e["id"] == endpoint_id]
            (entry,) = [edge["node"] for edge in endpoint["deliveries"]["edges"]]
            return entry

        await worker.run_once(now=t0)
        entry = await log_entry()
        assert (entry["status"], entry["attempts"], entry["lastStatusCode"]) == ("FAILED", 1, 500)
        assert entry["lastError"] == "HTTP 500"
        retry_at = datetime.fromisoformat(entry["nextAttemptAt"])
        assert t0 < retry_at <= t0 + timedelta(seconds=31)
        # Not due yet: nothing is sent before the backoff has passed.
        await worker.run_once(now=t0 - timedelta(seconds=1))
        assert len(receiver.requests) == 1

        for k in (1, 2, 3):  # 7 hours apart: past any backoff (capped at 6 hours)
            await worker.run_once(now=t0 + timedelta(hours=7 * k))
            entry = await log_entry()
            assert entry["attempts"] == k + 1
        assert (entry["status"], entry["lastStatusCode"], entry["lastError"], entry["nextAttemptAt"]) == (
            "SUCCEEDED", 200, None, None)
        assert [status for _, _, status in receiver.requests] == [500, 500, 500, 200]
        # The same event every time: same webhook-id and body, each freshly and validly signed.
        ids = {h["webhook-id"] for h, _, _ in receiver.requests}
        assert ids == {entry["eventId"]}
        assert len({body for _, body, _ in receiver.requests}) == 1
        headers, body, _ = receiver.requests[-1]
        Webhook(secret).verify(body, {k: headers[k] for k in ("webhook-id", "webhook-timestamp",
                                                             "webhook-signature")})
        await worker.run_once(now=t0 + timedelta(days=2))
        assert len(receiver.requests) == 4


async def test_send_test_webhook_is_delivered_like_any_event(
        app: Any, api: Api, owner: tuple[str, str], http_client: httpx.AsyncClient) -> None:
    token, business_id = owner
    await dispatch(app)
    async with receiving() as receiver:
        made = await create(api, token, business_id, receiver.url, ["card.*"])
        other = await create(api, token, business_id, "http://127.0.0.1:9/other")  # every event
        sent = await api.ok(M_TEST, {"i": {"endpointId": made["endpoint"]["id"]}}, token)
        event_id = sent["sendTestWebhook"]["eventId"]
        await dispatch(app)
        await deliverer(app, http_client).run_once()
        assert [(b["type"], b["id"]) for b in receiver.bodies()] == [("webhook.test", event_id)]
        Webhook(made["secret"]).verify(receiver.requests[0][1], dict(receiver.requests[0][0]))
        listed = {e["id"]: e for e in await endpoints(api, token, business_id)}
        assert [d["node"]["eventType"] for d in listed[made["endpoint"]["id"]]["deliveries"]["edges"]] == [
            "webhook.test"]
        assert listed[other["endpoint"]["id"]]["deliveries"]["totalCount"] == 0  # only the one named
        disabled = await api.ok(M_UPDATE, {"i": {"endpointId": made["endpoint"]["id"], "enabled": False}}, token)
        assert disabled["updateWebhookEndpoint"]["endpoint"]["status"] == "DISABLED"
        refused = await api.gql(M_TEST, {"i": {"endpointId": made["endpoint"]["id"]}}, token)
        assert [e["code"] for e in refused["data"]["sendTestWebhook"]["userErrors"]] == ["INVALID_STATE_TRANSITION"]


async def test_persistent_failure_disables_the_endpoint_with_an_event(
        app: Any, api: Api, owner: tuple[str, str], http_client: httpx.AsyncClient) -> None:
    token, business_id = owner
    await dispatch(app)
    async with receiving([500] * 100) as failing, receiving() as watcher:
        bad = await create(api, token, business_id, failing.url, ["transaction.created"])
        watch = await create(api, token, business_id, watcher.url, ["webhook_endpoint.disabled"])
        await fund(api, token, business_id, "1.00")
        await fund(api, token, business_id, "2.00")
        await dispatch(app)
        worker = deliverer(app, http_client, disable_after=2)
        t0 = datetime.now(UTC)
        await worker.run_once(now=t0)
        assert len(failing.requests) == 2
        listed = {e["id"]: e for e in await endpoints(api, token, business_id)}
        assert listed[bad["endpoint"]["id"]]["status"] == "ENABLED"

        # Three days on, every attempt still failing: abandoned, and the endpoint disabled.
        await worker.run_once(now=t0 + timedelta(days=3, seconds=1))
        listed = {e["id"]: e for e in await endpoints(api, token, business_id)}
        endpoint = listed[bad["endpoint"]["id"]]
        assert (endpoint["status"], endpoint["enabled"]) == ("DISABLED", False)
        assert "consecutive" in endpoint["disabledReason"]
        assert [d["node"]["status"] for d in endpoint["deliveries"]["edges"]] == ["ABANDONED", "ABANDONED"]
        assert all(d["node"]["nextAttemptAt"] is None and d["node"]["attempts"] == 2
                   for d in endpoint["deliveries"]["edges"])

        async with app.state.services.engine.connect() as conn:
            events = (await conn.execute(select(outbox.c.payload).where(
                outbox.c.event_type == "webhook_endpoint.disabled"))).scalars().all()
        from veix.resolvers.ids import parse_global_id
        raw_id = str(parse_global_id(bad["endpoint"]["id"])[1])
        assert [e["endpoint_id"] for e in events].count(raw_id) == 1

        # The event goes out like any other: the endpoint that subscribed to it receives it.
        await dispatch(app)
        await worker.run_once(now=t0 + timedelta(days=3, seconds=2))
        got = [b for b in watcher.bodies() if b["data"].get("endpoint_id") == raw_id]
        assert [b["type"] for b in got] == ["webhook_endpoint.disabled"]
        Webhook(watch["secret"]).verify(watcher.requests[0][1], dict(watcher.requests[0][0]))

        # A disabled endpoint is sent nothing more; re-enabling it resets it.
        sent = len(failing.requests)
        await fund(api, token, business_id, "3.00")
        await dispatch(app)
        await worker.run_once(now=t0 + timedelta(days=3, seconds=3))
        assert len(failing.requests) == sent
        again = await api.ok(M_UPDATE, {"i": {"endpointId": bad["endpoint"]["id"], "enabled": True}}, token)
        assert again["updateWebhookEndpoint"]["endpoint"]["disabledReason"] is None
