"""Payments on the built-in sandbox, through the GraphQL API and the HTTP endpoints:
every test card, 3-D Secure, capture, cancel, refunds, disputes, inbound webhooks,
idempotency, bad input (issue 5)."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from tests.integration.payment_helpers import (
    CANCEL,
    CAPTURE,
    CREATE,
    EVIDENCE,
    REFUND,
    balances,
    card,
    create,
    eventually,
    payment_input,
    transaction,
)
from veix.persistence.tables import gateway_events, transactions

DECLINES = [
    ("4000000000000002", "card_declined"),
    ("4000000000009995", "insufficient_funds"),
    ("4000000000000069", "expired_card"),
    ("4000000000000127", "incorrect_cvc"),
    ("4000000000000119", "processing_error"),
]


async def _count_transactions(app, business_gid: str) -> int:
    from veix.resolvers.ids import parse_global_id

    _, raw = parse_global_id(business_gid)
    async with app.state.services.engine.connect() as conn:
        return int((await conn.execute(
            select(func.count()).select_from(transactions).where(transactions.c.business_id == raw))).scalar())


# ---------------------------------------------------------------- outcomes of the test cards

async def test_a_successful_card_payment_is_captured_with_its_fee_and_credited_net(api, owner):
    token, business = owner
    result = await create(api, token, business, amount="100.00")
    assert result["userErrors"] == []
    t = result["transaction"]
    assert t["status"] == "SUCCEEDED" and t["type"] == "PAYMENT" and t["gateway"] == "SANDBOX"
    assert t["capturedAmount"]["amount"] == "100.00"
    assert t["processingFee"] == {"amount": "3.20", "currency": "EUR"}  # 2.9 % + 0.30
    assert t["paymentMethod"]["display"] == "Visa •••• 4242" and t["paymentMethod"]["type"] == "CARD"
    assert t["routing"] == [{"gateway": "SANDBOX", "outcome": "ok", "detail": None}]
    assert 0 <= t["riskScore"] <= 1
    assert (await balances(api, token, business))["EUR"] == "96.80"


@pytest.mark.parametrize(("number", "code"), DECLINES)
async def test_each_declining_test_card_fails_the_payment_with_its_code_and_moves_no_money(api, owner, number, code):
    token, business = owner
    result = await create(api, token, business, card=card(number))
    t = result["transaction"]
    assert t["status"] == "FAILED" and t["errorCode"] == code and t["errorMessage"]
    assert result["userErrors"][0]["code"] == "CARD_DECLINED"
    assert t["processingFee"]["amount"] == "0" or Decimal(t["processingFee"]["amount"]) == 0
    assert await balances(api, token, business) == {}
    assert number not in json.dumps(result)


async def test_three_d_secure_requires_action_then_the_challenge_completes_the_payment(api, owner):
    token, business = owner
    t = (await create(api, token, business, card=card("4000002500003155")))["transaction"]
    assert t["status"] == "REQUIRES_ACTION"
    assert t["nextAction"]["type"] == "redirect_to_url"
    url = t["nextAction"]["url"]
    assert url.endswith(f"/v1/sandbox/3ds/{t['gatewayReference']}")
    r = await api.client.post(f"/v1/sandbox/3ds/{t['gatewayReference']}")
    assert r.status_code == 200 and r.json()["status"] == "SUCCEEDED"
    after = await transaction(api, token, t["id"])
    assert after["status"] == "SUCCEEDED" and after["nextAction"] is None
    assert (await balances(api, token, business))["EUR"] == "96.80"


async def test_a_failed_three_d_secure_challenge_fails_the_payment(api, owner):
    token, business = owner
    t = (await create(api, token, business, card=card("4000002500003155")))["transaction"]
    r = await api.client.post(f"/v1/sandbox/3ds/{t['gatewayReference']}", json={"outcome": "fail"})
    assert r.status_code == 200 and r.json()["status"] == "FAILED"
    after = await transaction(api, token, t["id"])
    assert after["errorCode"] == "authentication_failed"


async def test_an_unknown_three_d_secure_reference_is_404(api):
    r = await api.client.post("/v1/sandbox/3ds/sbx_pi_3ds_nope")
    assert r.status_code == 404 and r.json()["error"] == "not_found"


# ---------------------------------------------------------------- capture and cancel

async def test_an_authorization_is_captured_partially_and_the_fee_is_on_what_was_captured(api, owner):
    token, business = owner
    t = (await create(api, token, business, amount="50.00", capture=False))["transaction"]
    assert t["status"] == "PENDING" and t["capturedAmount"]["amount"] in ("0", "0.00")
    assert t["capturableAmount"] == {"amount": "50.00"}
    assert await balances(api, token, business) == {}
    data = await api.ok(CAPTURE, {"i": {"transactionId": t["id"], "idempotencyKey": "cap-1",
                                        "amount": {"amount": "20.00", "currency": "EUR"}}}, token)
    captured = data["capturePayment"]["transaction"]
    assert captured["status"] == "SUCCEEDED" and captured["capturedAmount"]["amount"] == "20.00"
    assert captured["processingFee"]["amount"] == "0.88"  # 2.9 % of 20 + 0.30
    assert captured["capturableAmount"] is None
    assert (await balances(api, token, business))["EUR"] == "19.12"
    again = await api.ok(CAPTURE, {"i": {"transactionId": t["id"], "idempotencyKey": "cap-1",
                                         "amount": {"amount": "20.00", "currency": "EUR"}}}, token)
    assert again["capturePayment"]["transaction"]["capturedAmount"]["amount"] == "20.00"
    other = await api.gql(CAPTURE, {"i": {"transactionId": t["id"], "idempotencyKey": "cap-2"}}, token)
    assert other["data"]["capturePayment"]["userErrors"][0]["code"] == "INVALID_STATE_TRANSITION"
    assert (await balances(api, token, business))["EUR"] == "19.12"


async def test_capturing_more_than_authorized_is_refused(api, owner):
    token, business = owner
    t = (await create(api, token, business, amount="10.00", capture=False))["transaction"]
    body = await api.gql(CAPTURE, {"i": {"transactionId": t["id"], "idempotencyKey": "k",
                                         "amount": {"amount": "10.01", "currency": "EUR"}}}, token)
    assert body["data"]["capturePayment"]["userErrors"][0]["code"] == "INVALID_INPUT"
    assert (await transaction(api, token, t["id"]))["status"] == "PENDING"


async def test_cancel_releases_an_authorization_and_a_captured_payment_cannot_be_canceled(api, owner):
    token, business = owner
    t = (await create(api, token, business, capture=False))["transaction"]
    data = await api.ok(CANCEL, {"id": t["id"]}, token)
    assert data["cancelPayment"]["transaction"]["status"] == "CANCELED"
    again = await api.ok(CANCEL, {"id": t["id"]}, token)  # canceling twice is harmless
    assert again["cancelPayment"]["transaction"]["status"] == "CANCELED"
    captured = (await create(api, token, business))["transaction"]
    body = await api.gql(CANCEL, {"id": captured["id"]}, token)
    assert body["data"]["cancelPayment"]["userErrors"][0]["code"] == "INVALID_STATE_TRANSITION"


# ---------------------------------------------------------------- idempotency

async def test_the_same_key_returns_the_original_payment_and_other_parameters_are_refused(api, owner, app):
    token, business = owner
    i = payment_input(business, amount="12.00")
    first = await api.ok(CREATE, {"i": i}, token)
    second = await api.ok(CREATE, {"i": i}, token)
    assert first["createPayment"]["transaction"]["id"] == second["createPayment"]["transaction"]["id"]
    changed = await api.gql(CREATE, {"i": {**i, "amount": {"amount": "13.00", "currency": "EUR"}}}, token)
    assert changed["data"]["createPayment"]["userErrors"][0]["code"] == "IDEMPOTENCY_KEY_REUSED"
    assert await _count_transactions(app, business) == 1
    assert (await balances(api, token, business))["EUR"] == "11.35"


async def test_concurrent_requests_with_one_key_charge_once(api, owner, app):
    token, business = owner
    i = payment_input(business, amount="30.00")
    results = await asyncio.gather(*(api.gql(CREATE, {"i": i}, token) for _ in range(8)))
    ids = {r["data"]["createPayment"]["transaction"]["id"] for r in results}
    assert len(ids) == 1
    assert await _count_transactions(app, business) == 1
    assert (await balances(api, token, business))["EUR"] == "28.83"


# ---------------------------------------------------------------- refunds

async def test_partial_refunds_add_up_and_never_exceed_what_was_captured(api, owner):
    token, business = owner
    await api.fund(token, business, "100.00")
    t = (await create(api, token, business, amount="40.00"))["transaction"]
    r1 = await api.ok(REFUND, {"i": {"transactionId": t["id"], "idempotencyKey": "r1", "reason": "damaged",
                                     "amount": {"amount": "15.00", "currency": "EUR"}}}, token)
    assert r1["refundPayment"]["refund"]["status"] == "SUCCEEDED"
    assert r1["refundPayment"]["refund"]["reason"] == "damaged"
    assert r1["refundPayment"]["transaction"]["status"] == "PARTIALLY_REFUNDED"
    assert r1["refundPayment"]["transaction"]["refundedAmount"]["amount"] == "15.00"
    too_much = await api.gql(REFUND, {"i": {"transactionId": t["id"], "idempotencyKey": "r2",
                                            "amount": {"amount": "25.01", "currency": "EUR"}}}, token)
    assert too_much["data"]["refundPayment"]["userErrors"][0]["code"] == "LIMIT_EXCEEDED"
    rest = await api.ok(REFUND, {"i": {"transactionId": t["id"], "idempotencyKey": "r3"}}, token)
    assert rest["refundPayment"]["refund"]["amount"]["amount"] == "25.00"
    final = rest["refundPayment"]["transaction"]
    assert final["status"] == "REFUNDED" and final["refundedAmount"]["amount"] == "40.00"
    assert [r["amount"]["amount"] for r in final["refunds"]] == ["15.00", "25.00"]
    # 100 funded + 40 - 1.46 fee (kept on refunds) - 40 refunded
    assert (await balances(api, token, business))["EUR"] == "98.54"
    nothing_left = await api.gql(REFUND, {"i": {"transactionId": t["id"], "idempotencyKey": "r4"}}, token)
    assert nothing_left["data"]["refundPayment"]["userErrors"][0]["code"] == "INVALID_STATE_TRANSITION"


async def test_fifty_concurrent_refunds_exceeding_the_capture_refund_only_what_was_captured(api, owner, app):
    token, business = owner
    await api.fund(token, business, "500.00")
    t = (await create(api, token, business, amount="100.00"))["transaction"]
    attempts = [api.gql(REFUND, {"i": {"transactionId": t["id"], "idempotencyKey": f"c{n}",
                                       "amount": {"amount": "7.00", "currency": "EUR"}}}, token)
                for n in range(50)]
    results = await asyncio.gather(*attempts)
    ok = [r for r in results if not r["data"]["refundPayment"]["userErrors"]]
    refused = [r for r in results if r["data"]["refundPayment"]["userErrors"]]
    assert len(ok) == 14 and len(refused) == 36  # 14 x 7 = 98 <= 100 < 105
    assert {r["data"]["refundPayment"]["userErrors"][0]["code"] for r in refused} == {"LIMIT_EXCEEDED"}
    after = await transaction(api, token, t["id"])
    assert after["refundedAmount"]["amount"] == "98.00" and after["status"] == "PARTIALLY_REFUNDED"
    # 500 + 100 - 3.20 - 98
    assert (await balances(api, token, business))["EUR"] == "498.80"


async def test_a_refund_the_business_cannot_cover_is_refused_and_changes_nothing(api, owner):
    token, business = owner
    t = (await create(api, token, business, amount="10.00"))["transaction"]
    body = await api.gql(REFUND, {"i": {"transactionId": t["id"], "idempotencyKey": "x"}}, token)
    err = body["data"]["refundPayment"]["userErrors"][0]
    assert err["code"] == "INSUFFICIENT_FUNDS"
    after = await transaction(api, token, t["id"])
    assert after["refunds"] == [] and after["status"] == "SUCCEEDED"
    assert (await balances(api, token, business))["EUR"] == "9.41"


async def test_a_failed_payment_cannot_be_refunded(api, owner):
    token, business = owner
    t = (await create(api, token, business, card=card("4000000000000002")))["transaction"]
    body = await api.gql(REFUND, {"i": {"transactionId": t["id"], "idempotencyKey": "x"}}, token)
    assert body["data"]["refundPayment"]["userErrors"][0]["code"] == "INVALID_STATE_TRANSITION"


# ---------------------------------------------------------------- disputes

async def _disputed(api, token, business, amount="60.00"):
    t = (await create(api, token, business, amount=amount, card=card("4000000000000259")))["transaction"]
    assert t["status"] == "SUCCEEDED"

    async def opened():
        # The dispute and the DISPUTED status commit together, but on PostgreSQL a query's
        # reads run in autocommit, one snapshot per statement: a poll that lands on the commit
        # can read the transaction before it and its dispute after (seen once in CI). Wait
        # for both.
        now = await transaction(api, token, t["id"])
        return now if now["dispute"] and now["status"] == "DISPUTED" else None

    return await eventually(opened)


async def test_a_dispute_withdraws_the_funds_and_a_won_dispute_returns_them(api, owner):
    token, business = owner
    await api.fund(token, business, "100.00")
    t = await _disputed(api, token, business)
    assert t["status"] == "DISPUTED"
    d = t["dispute"]
    assert d["status"] == "NEEDS_RESPONSE" and d["amount"]["amount"] == "60.00" and d["evidenceDueBy"]
    assert (await balances(api, token, business))["EUR"] == "97.96"  # 100 + 60 - 2.04 fee - 60
    data = await api.ok(EVIDENCE, {"i": {"disputeId": d["id"],
                                         "evidence": {"uncategorized_text": "winning_evidence"}}}, token)
    assert data["submitDisputeEvidence"]["dispute"]["status"] == "UNDER_REVIEW"

    async def won():  # both, for the reason given in _disputed
        now = await transaction(api, token, t["id"])
        return now if now["dispute"]["status"] == "WON" and now["status"] == "SUCCEEDED" else None

    await eventually(won)
    assert (await balances(api, token, business))["EUR"] == "157.96"
    again = await api.gql(EVIDENCE, {"i": {"disputeId": d["id"], "evidence": {"more": "x"}}}, token)
    assert again["data"]["submitDisputeEvidence"]["userErrors"][0]["code"] == "INVALID_STATE_TRANSITION"


async def test_a_lost_dispute_keeps_the_funds_withdrawn_even_beyond_the_balance(api, owner):
    token, business = owner
    t = await _disputed(api, token, business, amount="20.00")
    # The payment credited 19.12 net; the dispute takes 20.00: 0.88 becomes a receivable.
    assert (await balances(api, token, business)).get("EUR") in ("0", "0.00")
    await api.ok(EVIDENCE, {"i": {"disputeId": t["dispute"]["id"], "evidence": {"note": "losing_evidence"}}}, token)

    async def lost():
        now = await transaction(api, token, t["id"])
        return now if now["dispute"]["status"] == "LOST" else None

    final = await eventually(lost)
    assert final["status"] == "DISPUTED"


# ---------------------------------------------------------------- inbound webhooks

def _sandbox(app):
    from veix.domain.transactions import Gateway

    return app.state.services.gateways[Gateway.SANDBOX]


def _event(event_type: str, **data) -> dict:
    return {"id": f"evt_{uuid.uuid4().hex}", "type": event_type, "created": int(time.time()), "data": data}


async def test_a_webhook_with_a_bad_signature_or_a_malformed_body_is_refused_and_stored_nowhere(api, app):
    body, headers = _sandbox(app).signed(_event("payment.succeeded", payment="sbx_pi_std_x"))
    bad = {**headers, "webhook-signature": "v1,AAAA"}
    r = await api.client.post("/v1/webhooks/sandbox", content=body, headers=bad)
    assert r.status_code == 400 and r.json()["error"] == "invalid_signature"
    stale = {**headers, "webhook-timestamp": str(int(time.time()) - 3600)}
    assert (await api.client.post("/v1/webhooks/sandbox", content=body, headers=stale)).status_code == 400
    garbage, garbage_headers = b"{not json", dict(headers)
    garbage_headers["webhook-signature"] = __import__("veix.gateways.sandbox", fromlist=["sign"]).sign(
        _sandbox(app).webhook_secret, headers["webhook-id"], int(headers["webhook-timestamp"]), garbage)
    r = await api.client.post("/v1/webhooks/sandbox", content=garbage, headers=garbage_headers)
    assert r.status_code == 400
    r = await api.client.post("/v1/webhooks/nowhere", content=body, headers=headers)
    assert r.status_code == 404 and r.json()["error"] == "unknown_gateway"
    async with app.state.services.engine.connect() as conn:
        found = (await conn.execute(select(func.count()).select_from(gateway_events).where(
            gateway_events.c.event_id == json.loads(body)["id"]))).scalar()
    assert found == 0


async def test_a_replayed_event_is_processed_once_and_a_late_processing_event_does_not_undo_success(api, owner, app):
    token, business = owner
    t = (await create(api, token, business, amount="10.00", capture=False))["transaction"]
    ref = t["gatewayReference"]
    succeeded = _event("payment.succeeded", payment=ref, amount="10.00", currency="EUR")
    body, headers = _sandbox(app).signed(succeeded)
    first = await api.client.post("/v1/webhooks/sandbox", content=body, headers=headers)
    assert first.status_code == 200 and first.json()["outcome"] == "applied"
    replay = await api.client.post("/v1/webhooks/sandbox", content=body, headers=headers)
    assert replay.status_code == 200 and replay.json()["outcome"] == "duplicate"
    late_body, late_headers = _sandbox(app).signed(_event("payment.processing", payment=ref))
    late = await api.client.post("/v1/webhooks/sandbox", content=late_body, headers=late_headers)
    assert late.json()["outcome"] == "stale"
    after = await transaction(api, token, t["id"])
    assert after["status"] == "SUCCEEDED" and after["capturedAmount"]["amount"] == "10.00"
    assert (await balances(api, token, business))["EUR"] == "9.41"  # credited once


async def test_an_event_for_an_unknown_payment_is_kept_and_applied_when_the_payment_appears(api, owner, app):
    from veix.domain.transactions import Gateway
    from veix.persistence.uow import SqlUnitOfWork

    token, business = owner
    t = (await create(api, token, business, amount="10.00", capture=False))["transaction"]
    ref = t["gatewayReference"]
    engine = app.state.services.engine
    # Make the payment unknown by its reference for a moment, as if the event overtook our commit.
    async with engine.begin() as conn:
        await conn.execute(transactions.update().where(transactions.c.gateway_reference == ref)
                           .values(gateway_reference=None))
    body, headers = _sandbox(app).signed(_event("payment.succeeded", payment=ref, amount="10.00", currency="EUR"))
    r = await api.client.post("/v1/webhooks/sandbox", content=body, headers=headers)
    assert r.json()["outcome"] == "unmatched"
    async with engine.begin() as conn:
        await conn.execute(transactions.update().where(transactions.c.business_id.isnot(None),
                                                       transactions.c.idempotency_key.isnot(None),
                                                       transactions.c.gateway_reference.is_(None),
                                                       transactions.c.status == "pending")
                           .values(gateway_reference=ref))
    applied = await app.state.services.payments.apply_late_events(lambda: SqlUnitOfWork(engine), Gateway.SANDBOX, ref)
    assert applied == 1
    assert (await transaction(api, token, t["id"]))["status"] == "SUCCEEDED"


# ---------------------------------------------------------------- bad input

@pytest.mark.parametrize(("overrides", "code", "field"), [
    ({"card": card("4242424242424241")}, "INVALID_INPUT", ["input", "card", "number"]),
    ({"card": card(expMonth=13)}, "INVALID_INPUT", ["input", "card", "expMonth"]),
    ({"card": card(expMonth=1, expYear=2020)}, "INVALID_INPUT", ["input", "card", "expMonth"]),
    ({"card": card(cvc="12")}, "INVALID_INPUT", ["input", "card", "cvc"]),
    ({"amount": {"amount": "10.001", "currency": "EUR"}}, "INVALID_INPUT", ["input", "amount", "amount"]),
    ({"amount": {"amount": "-1", "currency": "EUR"}}, "INVALID_INPUT", ["input", "amount", "amount"]),
    ({"amount": {"amount": "10", "currency": "XYZ"}}, "UNSUPPORTED_CURRENCY", ["input", "amount", "currency"]),
    ({"amount": {"amount": "10", "currency": "HUF"}}, "UNSUPPORTED_CURRENCY", ["input", "amount", "currency"]),
    ({"card": None}, "INVALID_INPUT", ["input", "card"]),
    ({"paypal": {"returnUrl": "https://a.example/r", "cancelUrl": "https://a.example/c"}}, "INVALID_INPUT",
     ["input", "paypal"]),
    ({"metadata": ["not", "an", "object"]}, "INVALID_INPUT", ["input", "metadata"]),
    ({"idempotencyKey": ""}, "INVALID_INPUT", ["input", "idempotencyKey"]),
    ({"method": "PAYPAL", "card": None, "paypal": {"returnUrl": "https://a.example/r",
                                                   "cancelUrl": "https://a.example/c"}},
     "INVALID_INPUT", ["input", "method"]),
    ({"amount": {"amount": "1000000000000000000000", "currency": "EUR"}}, "INVALID_INPUT",
     ["input", "amount", "amount"]),
])
async def test_bad_input_is_a_user_error_and_writes_no_transaction(api, owner, app, overrides, code, field):
    token, business = owner
    body = await api.gql(CREATE, {"i": {**payment_input(business), **overrides}}, token)
    assert "errors" not in body, body
    payload = body["data"]["createPayment"]
    assert payload["transaction"] is None
    assert payload["userErrors"][0]["code"] == code and payload["userErrors"][0]["field"] == field
    assert await _count_transactions(app, business) == 0
    assert "4242424242424241" not in json.dumps(body)


async def test_roles_and_tenants_are_enforced(api, owner):
    token, business = owner
    viewer, _ = await api.member_token(token, business, "VIEWER")
    body = await api.gql(CREATE, {"i": payment_input(business)}, viewer)
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    stranger, _ = await api.sign_up()
    other = await api.create_business(stranger)
    t = (await create(api, token, business))["transaction"]
    body = await api.gql(REFUND, {"i": {"transactionId": t["id"], "idempotencyKey": "s"}}, stranger)
    assert body["data"]["refundPayment"]["userErrors"][0]["code"] == "NOT_FOUND"
    body = await api.gql(CREATE, {"i": payment_input(business)}, stranger)
    assert body["data"]["createPayment"]["userErrors"][0]["code"] == "NOT_FOUND"
    assert other


async def test_the_card_number_appears_in_no_response_log_or_stored_row(api, owner, app, caplog):
    import logging

    caplog.set_level(logging.DEBUG)
    token, business = owner
    number = "4000002500003155"
    result = await create(api, token, business, card=card(number, cvc="987"))
    t = await transaction(api, token, result["transaction"]["id"])
    assert number not in json.dumps(result) + json.dumps(t)
    assert number not in caplog.text
    async with app.state.services.engine.connect() as conn:
        rows = (await conn.execute(select(transactions))).all()
        events = (await conn.execute(select(gateway_events))).all()
    assert number not in repr(rows) + repr(events)


async def test_a_refund_interrupted_by_an_outage_stays_pending_and_the_retry_completes_it(api, owner, app):
    token, business = owner
    await api.fund(token, business, "50.00")
    t = (await create(api, token, business, amount="20.00"))["transaction"]
    _sandbox(app).fail_next(1)
    i = {"transactionId": t["id"], "idempotencyKey": "retry-me", "amount": {"amount": "5.00", "currency": "EUR"}}
    first = (await api.gql(REFUND, {"i": i}, token))["data"]["refundPayment"]
    assert first["userErrors"][0]["code"] == "GATEWAY_ERROR"
    assert first["refund"]["status"] == "PENDING"
    # The funds are reserved while the gateway's answer is unknown: 50 + 20 - 0.88 - 5.
    assert (await balances(api, token, business))["EUR"] == "64.12"
    second = (await api.ok(REFUND, {"i": i}, token))["refundPayment"]
    assert second["refund"]["id"] == first["refund"]["id"] and second["refund"]["status"] == "SUCCEEDED"
    assert second["transaction"]["refundedAmount"]["amount"] == "5.00"
    assert (await balances(api, token, business))["EUR"] == "64.12"


async def test_payment_methods_and_disputes_are_nodes_only_for_their_business(api, owner):
    token, business = owner
    t = (await create(api, token, business))["transaction"]
    query = "query($id: ID!){ node(id:$id){ id ... on PaymentMethod { display type } } }"
    found = await api.ok(query, {"id": t["paymentMethod"]["id"]}, token)
    assert found["node"]["display"] == "Visa •••• 4242"
    stranger, _ = await api.sign_up()
    assert (await api.ok(query, {"id": t["paymentMethod"]["id"]}, stranger))["node"] is None


async def test_a_customer_bursting_far_above_their_history_is_blocked_by_risk_before_any_gateway(api, owner):
    token, business = owner
    for _ in range(16):
        ok = await create(api, token, business, amount="100.00", customerId="cust-burst")
        assert ok["transaction"]["status"] == "SUCCEEDED"
    result = await create(api, token, business, amount="3000.00", customerId="cust-burst")
    t = result["transaction"]
    assert t["status"] == "FAILED" and t["errorCode"] == "risk_blocked" and t["riskScore"] >= 0.8
    assert "velocity" in t["errorMessage"] and t["gateway"] is None and t["gatewayReference"] is None
    assert result["userErrors"][0]["code"] == "RISK_BLOCKED"
    other = await create(api, token, business, amount="3000.00", customerId="cust-calm")
    assert other["transaction"]["status"] == "SUCCEEDED" and other["transaction"]["riskScore"] < 0.5


async def test_a_dispute_event_without_an_amount_is_recorded_and_ignored(api, owner, app):
    token, business = owner
    t = (await create(api, token, business, amount="10.00"))["transaction"]
    event = _event("dispute.opened", payment=t["gatewayReference"],
                   dispute={"id": "sbx_dp_zero", "amount": "0", "currency": "EUR", "reason": "general"})
    body, headers = _sandbox(app).signed(event)
    r = await api.client.post("/v1/webhooks/sandbox", content=body, headers=headers)
    assert r.status_code == 200 and r.json()["outcome"] == "ignored"
    assert (await transaction(api, token, t["id"]))["status"] == "SUCCEEDED"


async def test_a_dispute_due_date_without_a_zone_is_read_as_utc(api, owner, app):
    token, business = owner
    await api.fund(token, business, "20.00")
    t = (await create(api, token, business, amount="10.00"))["transaction"]
    event = _event("dispute.opened", payment=t["gatewayReference"],
                   dispute={"id": "sbx_dp_naive", "amount": "10.00", "currency": "EUR", "reason": "fraudulent",
                            "evidence_due_by": "2030-01-15T10:00:00"})
    body, headers = _sandbox(app).signed(event)
    r = await api.client.post("/v1/webhooks/sandbox", content=body, headers=headers)
    assert r.status_code == 200 and r.json()["outcome"] == "applied"
    dispute = (await transaction(api, token, t["id"]))["dispute"]
    assert dispute["evidenceDueBy"].startswith("2030-01-15T10:00:00") and dispute["evidenceDueBy"].endswith(
        ("+00:00", "Z"))


async def test_a_signed_event_with_an_impossible_timestamp_is_rejected_not_a_500(api, app):
    event = {"id": f"evt_{uuid.uuid4().hex}", "type": "payment.succeeded", "created": 10**30, "data": {}}
    body, headers = _sandbox(app).signed(event)
    r = await api.client.post("/v1/webhooks/sandbox", content=body, headers=headers)
    assert r.status_code == 400 and r.json()["error"] == "invalid_signature"
