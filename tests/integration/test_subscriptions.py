"""GraphQL subscriptions through a real websocket client against the ASGI app
(Starlette's TestClient runs the app, its lifespan and its outbox dispatcher in
a thread with its own event loop; data is made through the same client's HTTP
calls). Every wait is bounded."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import anyio
import pytest
from starlette.testclient import TestClient, WebSocketTestSession

from tests.integration.conftest import BUSINESS_INPUT, PASSWORD
from veix.app import create_app
from veix.events.channels import EventMessage, business_channel, cursor_of
from veix.resolvers import subscriptions as rs
from veix.resolvers.context import Context
from veix.resolvers.ids import parse_global_id

TIMEOUT = 10.0
CARD_TXNS = """subscription($b: ID!, $c: ID, $after: String){ cardTransactions(businessId:$b, cardId:$c, after:$after){
  cursor kind cardTransaction{ id status card{ id } } } }"""
TXN_UPDATES = """subscription($b: ID!){ transactionUpdates(businessId:$b){ cursor kind
  transaction{ id type amount{ amount currency } } } }"""
ISSUE = """mutation($i: IssueCardInput!){ issueCard(input:$i){ card{ id } userErrors{ code message } } }"""
SIMULATE = """mutation($i: SimulateAuthorizationInput!){ simulateAuthorization(input:$i){
  cardTransaction{ id status } userErrors{ code message } } }"""


class Http:
    """A GraphQL client over the TestClient's HTTP calls, with the factories the tests need."""

    def __init__(self, client: TestClient) -> None:
        self.client = client

    def ok(self, query: str, variables: dict[str, Any] | None = None, token: str | None = None) -> Any:
        headers = {"authorization": f"Bearer {token}"} if token else {}
        r = self.client.post("/graphql", json={"query": query, "variables": variables}, headers=headers)
        assert r.status_code == 200, r.text
        body = r.json()
        assert "errors" not in body, body
        for value in body["data"].values():
            if isinstance(value, dict) and "userErrors" in value:
                assert value["userErrors"] == [], value
        return body["data"]

    def sign_up(self, email: str | None = None) -> str:
        email = email or f"ws-{uuid.uuid4().hex[:10]}@example.com"
        data = self.ok("mutation($i: SignUpInput!){ signUp(input:$i){ accessToken userErrors{ code } } }",
                       {"i": {"email": email, "password": PASSWORD, "name": "Subscriber"}})
        return str(data["signUp"]["accessToken"])

    def business(self, token: str) -> str:
        data = self.ok("mutation($i: CreateBusinessInput!){ createBusiness(input:$i){ business{ id } "
                       "userErrors{ code message } } }", {"i": BUSINESS_INPUT}, token)
        business_id = str(data["createBusiness"]["business"]["id"])
        self.ok("mutation($i: FundBusinessInput!){ fundBusiness(input:$i){ transaction{ id } "
                "userErrors{ code message } } }",
                {"i": {"businessId": business_id, "amount": {"amount": "1000.00", "currency": "EUR"},
                       "idempotencyKey": uuid.uuid4().hex}}, token)
        return business_id

    def cardholder(self, owner_token: str, business_id: str) -> tuple[str, str]:
        """A new CARDHOLDER member: (token, user global id)."""
        email = f"holder-{uuid.uuid4().hex[:10]}@example.com"
        self.ok("mutation($i: InviteMemberInput!){ inviteMember(input:$i){ member{ id } userErrors{ code } } }",
                {"i": {"businessId": business_id, "email": email, "role": "CARDHOLDER"}}, owner_token)
        token = self.sign_up(email)
        return token, str(self.ok("{ me { id } }", token=token)["me"]["id"])

    def card(self, token: str, business_id: str, **fields: Any) -> str:
        data = self.ok(ISSUE, {"i": {"businessId": business_id, "type": "STANDARD", "network": "VISA",
                                     "currency": "EUR", "idempotencyKey": uuid.uuid4().hex, **fields}}, token)
        return str(data["issueCard"]["card"]["id"])

    def authorize(self, token: str, card_id: str, amount: str = "12.50") -> str:
        data = self.ok(SIMULATE, {"i": {"cardId": card_id, "amount": {"amount": amount, "currency": "EUR"},
                                        "merchantName": "Café Einstein", "merchantCategoryCode": "5812",
                                        "merchantCountry": "DE"}}, token)
        return str(data["simulateAuthorization"]["cardTransaction"]["id"])


@pytest.fixture(scope="module")
def client(app: Any) -> Iterator[TestClient]:
    """A second app over the session app's database and secrets, run by a TestClient
    (lifespan included: its background dispatcher publishes to its own broadcaster)."""
    settings = app.state.settings.model_copy(update={"run_dispatcher": True})
    application = create_app(settings, migrate_on_start=True)
    with TestClient(application) as test_client:
        yield test_client


@pytest.fixture
def http(client: TestClient) -> Http:
    return Http(client)


def receive(ws: WebSocketTestSession, timeout: float = TIMEOUT) -> dict[str, Any]:
    """The next message (or the close frame as {"close": code, "reason": ...}), within ``timeout``."""

    async def get() -> Any:
        with anyio.fail_after(timeout):
            return await ws._send_rx.receive()

    message = ws.portal.call(get)
    if message["type"] == "websocket.close":
        return {"close": message.get("code"), "reason": message.get("reason")}
    data: dict[str, Any] = json.loads(message["text"])
    return data


def wait_subscribed(client: TestClient, business_id: str, count: int = 1) -> None:
    """Until the app's broadcaster has ``count`` subscribers on the business's channel."""
    app: Any = client.app
    _, raw = parse_global_id(business_id)
    channel = business_channel(raw)
    deadline = time.monotonic() + TIMEOUT
    while len(app.state.broadcast._subscribers.get(channel, ())) < count:
        assert time.monotonic() < deadline, "the subscription never reached the broadcaster"
        time.sleep(0.01)


def open_transport_ws(client: TestClient, token: str | None) -> Any:
    ws = client.websocket_connect("/graphql", subprotocols=["graphql-transport-ws"])
    session = ws.__enter__()
    payload = {"authorization": f"Bearer {token}"} if token else {}
    session.send_json({"type": "connection_init", "payload": payload})
    return ws, session


def subscribe(session: WebSocketTestSession, op_id: str, query: str, variables: dict[str, Any]) -> None:
    session.send_json({"id": op_id, "type": "subscribe", "payload": {"query": query, "variables": variables}})


def next_event(session: WebSocketTestSession, op_id: str = "1") -> dict[str, Any]:
    msg = receive(session)
    assert msg.get("type") == "next" and msg["id"] == op_id, msg
    assert "errors" not in msg["payload"], msg
    event: dict[str, Any] = next(iter(msg["payload"]["data"].values()))
    return event


def test_an_authorization_reaches_a_card_transactions_subscriber(client: TestClient, http: Http) -> None:
    token = http.sign_up()
    business_id = http.business(token)
    card_id = http.card(token, business_id)
    ws, session = open_transport_ws(client, token)
    try:
        assert receive(session)["type"] == "connection_ack"
        subscribe(session, "1", CARD_TXNS, {"b": business_id})
        wait_subscribed(client, business_id)
        ct_id = http.authorize(token, card_id)
        event = next_event(session)
        assert event["kind"] == "card_transaction.created"
        assert event["cardTransaction"]["id"] == ct_id
        assert event["cardTransaction"]["card"]["id"] == card_id
        assert event["cursor"]
    finally:
        ws.__exit__(None, None, None)


def test_transaction_updates_stream_funding(client: TestClient, http: Http) -> None:
    token = http.sign_up()
    business_id = http.business(token)
    ws, session = open_transport_ws(client, token)
    try:
        assert receive(session)["type"] == "connection_ack"
        subscribe(session, "1", TXN_UPDATES, {"b": business_id})
        wait_subscribed(client, business_id)
        http.ok("mutation($i: FundBusinessInput!){ fundBusiness(input:$i){ transaction{ id } "
                "userErrors{ code message } } }",
                {"i": {"businessId": business_id, "amount": {"amount": "42.00", "currency": "EUR"},
                       "idempotencyKey": uuid.uuid4().hex}}, token)
        event = next_event(session)
        if event["transaction"]["amount"]["amount"] == "1000.00":
            # The opening deposit, committed before the subscription but published after it
            # (PostgreSQL's dispatcher waits for its safe horizon): a live event like any other.
            event = next_event(session)
        assert event["kind"] == "transaction.created"
        assert event["transaction"]["amount"] == {"amount": "42.00", "currency": "EUR"}
    finally:
        ws.__exit__(None, None, None)


def test_a_payment_and_its_refund_stream_as_transaction_updates(client: TestClient, http: Http) -> None:
    token = http.sign_up()
    business_id = http.business(token)
    ws, session = open_transport_ws(client, token)
    try:
        assert receive(session)["type"] == "connection_ack"
        subscribe(session, "1", TXN_UPDATES.replace("amount{ amount currency }", "amount{ amount currency } status"),
                  {"b": business_id})
        wait_subscribed(client, business_id)
        created = http.ok(
            "mutation($i: CreatePaymentInput!){ createPayment(input:$i){ transaction{ id } userErrors{ code } } }",
            {"i": {"businessId": business_id, "amount": {"amount": "77.00", "currency": "EUR"}, "method": "CARD",
                   "card": {"number": "4242424242424242", "expMonth": 12, "expYear": 2034, "cvc": "123"},
                   "idempotencyKey": uuid.uuid4().hex}}, token)["createPayment"]["transaction"]["id"]
        http.ok("mutation($i: RefundInput!){ refundPayment(input:$i){ refund{ id } userErrors{ code } } }",
                {"i": {"transactionId": created, "idempotencyKey": uuid.uuid4().hex,
                       "amount": {"amount": "7.00", "currency": "EUR"}}}, token)
        seen = []
        while len(seen) < 5:
            event = next_event(session)
            if event["transaction"]["amount"]["amount"] == "1000.00":
                continue  # the opening deposit (see the funding test)
            seen.append((event["kind"], event["transaction"]["type"], event["transaction"]["status"],
                         event["transaction"]["amount"]["amount"]))
        kinds = [(k, t) for k, t, _, _ in seen]
        assert kinds == [("transaction.created", "PAYMENT"), ("transaction.updated", "PAYMENT"),
                         ("transaction.created", "REFUND"), ("transaction.updated", "REFUND"),
                         ("transaction.updated", "PAYMENT")]
        # Each event carries the transaction as it is when delivered: the last one is refunded in part.
        assert seen[-1][2] == "PARTIALLY_REFUNDED" and [a for _, _, _, a in seen][2:4] == ["7.00", "7.00"]
    finally:
        ws.__exit__(None, None, None)


def test_a_foreign_business_is_refused_like_a_missing_one(client: TestClient, http: Http) -> None:
    owner = http.sign_up()
    business_id = http.business(owner)
    stranger = http.sign_up()
    http.business(stranger)
    ws, session = open_transport_ws(client, stranger)
    try:
        assert receive(session)["type"] == "connection_ack"
        for op_id, query in (("1", CARD_TXNS), ("2", TXN_UPDATES)):
            subscribe(session, op_id, query, {"b": business_id})
            msg = receive(session)
            assert msg["id"] == op_id and msg["type"] in {"next", "error"}, msg
            payload = msg["payload"]
            errors = payload if isinstance(payload, list) else payload["errors"]
            assert errors[0]["message"] == "Not found"
            assert not (isinstance(payload, dict) and payload.get("data"))
            assert receive(session) == {"id": op_id, "type": "complete"}
    finally:
        ws.__exit__(None, None, None)


def test_a_connection_without_credentials_is_refused(client: TestClient, http: Http) -> None:
    for payload in ({}, {"authorization": "Bearer not-a-token"}, {"authorization": "Basic abc"}):
        with client.websocket_connect("/graphql", subprotocols=["graphql-transport-ws"]) as session:
            session.send_json({"type": "connection_init", "payload": payload})
            assert receive(session) == {"close": 4403, "reason": "Forbidden"}


def test_a_cardholder_receives_only_their_own_cards_events(client: TestClient, http: Http) -> None:
    owner = http.sign_up()
    business_id = http.business(owner)
    holder, holder_gid = http.cardholder(owner, business_id)
    mine = http.card(owner, business_id, cardholderId=holder_gid)
    other = http.card(owner, business_id)
    ws, session = open_transport_ws(client, holder)
    try:
        assert receive(session)["type"] == "connection_ack"
        subscribe(session, "1", CARD_TXNS, {"b": business_id})
        wait_subscribed(client, business_id)
        http.authorize(owner, other)
        mine_ct = http.authorize(owner, mine)
        event = next_event(session)  # the other card's event was never sent
        assert event["cardTransaction"]["id"] == mine_ct
        assert event["cardTransaction"]["card"]["id"] == mine

        # Asking for the other card by id is like asking for one that does not exist.
        subscribe(session, "2", CARD_TXNS, {"b": business_id, "c": other})
        msg = receive(session)
        assert msg["id"] == "2" and "Card" in json.dumps(msg["payload"]), msg
        assert receive(session) == {"id": "2", "type": "complete"}
    finally:
        ws.__exit__(None, None, None)


def test_resume_with_after_has_no_gap_and_no_duplicate(client: TestClient, http: Http) -> None:
    token = http.sign_up()
    business_id = http.business(token)
    card_id = http.card(token, business_id)
    ws, session = open_transport_ws(client, token)
    try:
        assert receive(session)["type"] == "connection_ack"
        subscribe(session, "1", CARD_TXNS, {"b": business_id})
        wait_subscribed(client, business_id)
        first = http.authorize(token, card_id)
        event = next_event(session)
        assert event["cardTransaction"]["id"] == first
        cursor = event["cursor"]
    finally:
        ws.__exit__(None, None, None)

    missed = [http.authorize(token, card_id, f"{n}.00") for n in (1, 2, 3)]  # while disconnected
    ws, session = open_transport_ws(client, token)
    try:
        assert receive(session)["type"] == "connection_ack"
        subscribe(session, "1", CARD_TXNS, {"b": business_id, "after": cursor})
        got = [next_event(session) for _ in missed]  # replayed from the outbox
        wait_subscribed(client, business_id)
        live = [http.authorize(token, card_id, f"{n}.00") for n in (4, 5)]
        got += [next_event(session) for _ in live]
        assert [e["cardTransaction"]["id"] for e in got] == missed + live  # in order, each once
        cursors = [e["cursor"] for e in got]
        assert len(set(cursors)) == len(cursors) and cursor not in cursors

        # Resuming from the middle gives exactly the rest.
        subscribe(session, "2", CARD_TXNS, {"b": business_id, "after": cursors[1]})
        rest = [next_event(session, "2") for _ in got[2:]]
        assert [e["cursor"] for e in rest] == cursors[2:]

        subscribe(session, "3", CARD_TXNS, {"b": business_id, "after": "not-a-cursor"})
        msg = receive(session)
        assert msg["id"] == "3" and "not a valid event cursor" in json.dumps(msg["payload"]), msg
    finally:
        ws.__exit__(None, None, None)


def test_the_legacy_graphql_ws_protocol_works(client: TestClient, http: Http) -> None:
    token = http.sign_up()
    business_id = http.business(token)
    card_id = http.card(token, business_id)
    with client.websocket_connect("/graphql", subprotocols=["graphql-ws"]) as session:
        session.send_json({"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}})
        assert receive(session)["type"] == "connection_ack"
        session.send_json({"type": "start", "id": "a", "payload": {"query": CARD_TXNS,
                                                                    "variables": {"b": business_id}}})
        wait_subscribed(client, business_id)
        ct_id = http.authorize(token, card_id)
        msg = receive(session)
        assert msg["type"] == "data" and msg["id"] == "a", msg
        assert msg["payload"]["data"]["cardTransactions"]["cardTransaction"]["id"] == ct_id
        session.send_json({"type": "stop", "id": "a"})
        assert receive(session) == {"type": "complete", "id": "a"}

    with client.websocket_connect("/graphql", subprotocols=["graphql-ws"]) as session:
        session.send_json({"type": "connection_init", "payload": {}})
        assert receive(session)["type"] == "connection_error"


# ============================================ the stream itself (no websocket)

def _message(business_id: uuid.UUID, seq: int) -> str:
    return EventMessage(seq, uuid.uuid4(), business_id, "test.event", {}, datetime.now(UTC)).to_json()


async def _until(predicate: Any) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not predicate():
        assert time.monotonic() < deadline, "condition never became true"
        await asyncio.sleep(0.01)


async def _noop() -> None:
    return None


async def test_live_duplicates_are_skipped_and_a_slow_consumer_is_closed(app: Any) -> None:
    broadcast = app.state.broadcast
    business_id = uuid.uuid4()
    channel = business_channel(business_id)
    ctx = Context(app.state.services, "test")
    stream = rs.event_stream(ctx, business_id, None, recheck=_noop, max_queue=3)
    try:
        first = asyncio.ensure_future(stream.__anext__())
        await _until(lambda: channel in broadcast._subscribers)
        for seq in (1, 1, 2):  # at-least-once: seq 1 arrives twice
            await broadcast.publish(channel, _message(business_id, seq))
        assert (await asyncio.wait_for(first, TIMEOUT)).seq == 1
        assert (await asyncio.wait_for(stream.__anext__(), TIMEOUT)).seq == 2

        # Not consuming while 10 more arrive: the queue (3) overflows, the stream ends.
        for seq in range(3, 13):
            await broadcast.publish(channel, _message(business_id, seq))
        await asyncio.sleep(0.2)
        with pytest.raises(rs.SlowConsumer) as failure:
            await asyncio.wait_for(stream.__anext__(), TIMEOUT)
        assert failure.value.message == f"slow consumer: resume with after={cursor_of(2)}"
    finally:
        await stream.aclose()
    assert not broadcast._subscribers.get(channel)


def test_a_revoked_api_key_loses_the_stream(client: TestClient, http: Http,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rs, "RECHECK_EVERY_EVENTS", 1)  # re-read the key before every event
    token = http.sign_up()
    business_id = http.business(token)
    card_id = http.card(token, business_id)
    created = http.ok("mutation($b: ID!){ createApiKey(businessId:$b, name:\"stream\", role: DEVELOPER){ "
                      "secret apiKey{ id } userErrors{ code message } } }", {"b": business_id}, token)
    key, key_id = created["createApiKey"]["secret"], created["createApiKey"]["apiKey"]["id"]
    ws, session = open_transport_ws(client, key)
    try:
        assert receive(session)["type"] == "connection_ack"
        subscribe(session, "1", CARD_TXNS, {"b": business_id})
        wait_subscribed(client, business_id)
        first = http.authorize(token, card_id)
        assert next_event(session)["cardTransaction"]["id"] == first

        http.ok("mutation($id: ID!){ revokeApiKey(id:$id){ apiKey{ id } userErrors{ code message } } }",
                {"id": key_id}, token)
        http.authorize(token, card_id)
        msg = receive(session)
        assert msg["type"] == "next" and msg["payload"]["data"] is None, msg
        assert msg["payload"]["errors"][0]["message"] == "This API key has been revoked"
        assert receive(session) == {"id": "1", "type": "complete"}
    finally:
        ws.__exit__(None, None, None)
