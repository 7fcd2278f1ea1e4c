"""Payments through the GraphQL API on Stripe, PayPal and crypto: the real SDKs against
local Stripe and PayPal servers and an in-process chain, with the service configured
by settings exactly as in production (issue 5)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest

from tests.fakes.paypal_server import FakePaypal
from tests.fakes.stripe_server import FakeStripe
from tests.integration.conftest import Api
from tests.integration.gateways.chain import account_xpub
from tests.integration.payment_helpers import (
    CAPTURE,
    CONFIRM,
    CREATE,
    EVIDENCE,
    REFUND,
    SETTINGS,
    balances,
    card,
    create,
    payment_input,
    transaction,
)
from veix.app import create_app
from veix.domain.events import utcnow
from veix.domain.transactions import Gateway
from veix.persistence.uow import SqlUnitOfWork
from veix.persistence.verify import verify_ledger


@pytest.fixture(scope="module")
async def fakes() -> AsyncIterator[tuple[FakeStripe, FakePaypal]]:
    stripe, paypal = FakeStripe(), FakePaypal()
    stripe.start()
    paypal.start()
    yield stripe, paypal
    stripe.stop()
    paypal.stop()


@pytest.fixture(scope="module")
async def gw_app(app: Any, fakes: tuple[FakeStripe, FakePaypal]) -> AsyncIterator[Any]:
    """A second service on the same database, configured with every gateway."""
    stripe, paypal = fakes
    settings = app.state.settings.model_copy(update={
        "payment_routes": "card=stripe,sandbox;paypal=paypal;crypto=crypto",
        "stripe_api_key": stripe.api_key, "stripe_webhook_secret": stripe.webhook_secret,
        "stripe_api_base": stripe.base_url,
        "paypal_client_id": paypal.client_id, "paypal_client_secret": paypal.client_secret,
        "paypal_webhook_id": paypal.webhook_id, "paypal_api_base": paypal.base_url,
        "crypto_rpc_url": "eth-tester://", "crypto_xpub": account_xpub(),
        "crypto_assets": "ETH:18::EUR=2000,USD=2200", "crypto_confirmations": 2, "crypto_expiry_minutes": 30,
    })
    application = create_app(settings, migrate_on_start=False)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def gw(gw_app: Any) -> AsyncIterator[Api]:
    transport = httpx.ASGITransport(app=gw_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://veix.test") as client:
        yield Api(client)
    assert await verify_ledger(gw_app.state.services.engine) == []


@pytest.fixture
async def merchant(gw: Api) -> tuple[str, str]:
    token, _ = await gw.sign_up("Merchant")
    return token, await gw.create_business(token)


# ---------------------------------------------------------------- Stripe

async def test_a_card_payment_goes_to_stripe_with_the_connect_account_and_fee(gw, merchant, fakes):
    stripe, _ = fakes
    token, business = merchant
    await gw.ok(SETTINGS, {"i": {"businessId": business, "stripeAccount": "acct_1Test"}}, token)
    t = (await create(gw, token, business, amount="100.00"))["transaction"]
    assert t["status"] == "SUCCEEDED" and t["gateway"] == "STRIPE" and t["gatewayReference"].startswith("pi_")
    assert t["processingFee"]["amount"] == "3.20"
    sent = stripe.requests_to("/v1/payment_intents")[-1].params
    assert sent["transfer_data"]["destination"] == "acct_1Test" and sent["application_fee_amount"] == "320"
    assert sent["amount"] == "10000" and sent["currency"] == "eur"
    assert (await balances(gw, token, business))["EUR"] == "96.80"


async def test_a_stripe_outage_fails_over_to_the_next_gateway_once_and_records_it(gw, merchant, fakes):
    stripe, _ = fakes
    token, business = merchant
    stripe.fail_next(1, status=503)
    t = (await create(gw, token, business, amount="10.00"))["transaction"]
    assert t["status"] == "SUCCEEDED" and t["gateway"] == "SANDBOX"
    assert [(a["gateway"], a["outcome"]) for a in t["routing"]] == [("STRIPE", "unavailable"), ("SANDBOX", "ok")]


async def test_a_declined_card_is_never_retried_on_another_gateway(gw, merchant, fakes):
    stripe, _ = fakes
    token, business = merchant
    before = len(stripe.requests_to("/v1/payment_intents"))
    result = await create(gw, token, business, card=card("4000000000009995"))
    t = result["transaction"]
    assert t["status"] == "FAILED" and t["errorCode"] == "insufficient_funds" and t["gateway"] == "STRIPE"
    assert [a["gateway"] for a in t["routing"]] == ["STRIPE"]
    assert result["userErrors"][0]["code"] == "CARD_DECLINED"
    assert len(stripe.requests_to("/v1/payment_intents")) == before + 1


async def test_when_every_gateway_is_down_the_payment_fails_with_gateway_error(gw, gw_app, merchant, fakes):
    stripe, _ = fakes
    token, business = merchant
    stripe.fail_next(1, status=502)
    gw_app.state.services.gateways[Gateway.SANDBOX].fail_next(1)
    result = await create(gw, token, business)
    assert result["transaction"]["status"] == "FAILED"
    assert result["transaction"]["errorCode"] == "gateway_unavailable"
    assert result["userErrors"][0]["code"] == "GATEWAY_ERROR"
    assert await balances(gw, token, business) == {}


async def test_stripe_sca_then_manual_partial_capture_and_refund(gw, merchant, fakes):
    stripe, _ = fakes
    token, business = merchant
    t = (await create(gw, token, business, amount="80.00", capture=False, card=card("4000002500003155")))["transaction"]
    assert t["status"] == "REQUIRES_ACTION" and t["nextAction"]
    confirmed = (await gw.ok(CONFIRM, {"id": t["id"]}, token))["confirmPayment"]["transaction"]
    assert confirmed["status"] == "PENDING"
    captured = (await gw.ok(CAPTURE, {"i": {"transactionId": t["id"], "idempotencyKey": "c",
                                            "amount": {"amount": "50.00", "currency": "EUR"}}}, token)
                )["capturePayment"]["transaction"]
    assert captured["status"] == "SUCCEEDED" and captured["capturedAmount"]["amount"] == "50.00"
    assert stripe.payment_intent(t["gatewayReference"])["amount_received"] == 5000
    refund = (await gw.ok(REFUND, {"i": {"transactionId": t["id"], "idempotencyKey": "r",
                                         "amount": {"amount": "20.00", "currency": "EUR"}}}, token))["refundPayment"]
    assert refund["refund"]["status"] == "SUCCEEDED" and refund["transaction"]["status"] == "PARTIALLY_REFUNDED"
    assert (await balances(gw, token, business))["EUR"] == "28.25"  # 50 - 1.75 - 20


async def test_stripe_webhooks_drive_status_and_disputes_exactly_once(gw, merchant, fakes):
    stripe, _ = fakes
    token, business = merchant
    await gw.fund(token, business, "100.00")
    t = (await create(gw, token, business, amount="30.00", card=card("4000000000000259")))["transaction"]
    ref = t["gatewayReference"]
    late = stripe.signed_event("payment_intent.processing", {**stripe.payment_intent(ref), "status": "processing"})
    r = await gw.client.post("/v1/webhooks/stripe", content=late[0], headers=late[1])
    assert r.status_code == 200 and r.json()["outcome"] == "stale"
    opened = stripe.dispute_event(ref, "charge.dispute.created")
    r = await gw.client.post("/v1/webhooks/stripe", content=opened[0], headers=opened[1])
    assert r.json()["outcome"] == "applied"
    again = await gw.client.post("/v1/webhooks/stripe", content=opened[0], headers=opened[1])
    assert again.json()["outcome"] == "duplicate"
    disputed = await transaction(gw, token, t["id"])
    assert disputed["status"] == "DISPUTED" and disputed["dispute"]["status"] == "NEEDS_RESPONSE"
    assert disputed["dispute"]["reason"] == "fraudulent" and disputed["dispute"]["evidenceDueBy"]
    assert (await balances(gw, token, business))["EUR"] == "98.83"  # 100 + 30 - 1.17 fee - 30
    lost = stripe.dispute_event(ref, "charge.dispute.closed", status="lost")
    r = await gw.client.post("/v1/webhooks/stripe", content=lost[0], headers=lost[1])
    assert r.json()["outcome"] == "applied"
    final = await transaction(gw, token, t["id"])
    assert final["dispute"]["status"] == "LOST" and final["status"] == "DISPUTED"
    assert (await balances(gw, token, business))["EUR"] == "98.83"


async def test_dispute_evidence_is_submitted_to_stripe(gw, merchant, fakes):
    stripe, _ = fakes
    token, business = merchant
    await gw.fund(token, business, "50.00")
    t = (await create(gw, token, business, amount="30.00"))["transaction"]
    body, headers = stripe.dispute_event(t["gatewayReference"], "charge.dispute.created")
    assert (await gw.client.post("/v1/webhooks/stripe", content=body, headers=headers)).status_code == 200
    dispute = (await transaction(gw, token, t["id"]))["dispute"]
    evidence = {"shipping_tracking_number": "1Z999", "shipping_carrier": "UPS", "receipt": "file_123",
                "note": "delivered to the front desk"}
    data = await gw.ok(EVIDENCE, {"i": {"disputeId": dispute["id"], "evidence": evidence}}, token)
    assert data["submitDisputeEvidence"]["dispute"]["status"] == "UNDER_REVIEW"
    sent = stripe.requests_to(f"/v1/disputes/{json.loads(body)['data']['object']['id']}")[-1].params
    assert sent["submit"] == "true"
    assert sent["evidence"]["shipping_tracking_number"] == "1Z999" and sent["evidence"]["receipt"] == "file_123"
    assert "delivered to the front desk" in sent["evidence"]["uncategorized_text"]
    again = await gw.gql(EVIDENCE, {"i": {"disputeId": dispute["id"], "evidence": {"x": "y"}}}, token)
    assert again["data"]["submitDisputeEvidence"]["userErrors"][0]["code"] == "INVALID_STATE_TRANSITION"


async def test_a_won_stripe_dispute_returns_the_funds(gw, merchant, fakes):
    stripe, _ = fakes
    token, business = merchant
    t = (await create(gw, token, business, amount="30.00"))["transaction"]
    for event_type, status in (("charge.dispute.created", None), ("charge.dispute.closed", "won")):
        body, headers = stripe.dispute_event(t["gatewayReference"], event_type, status=status)
        assert (await gw.client.post("/v1/webhooks/stripe", content=body, headers=headers)).status_code == 200
    final = await transaction(gw, token, t["id"])
    assert final["dispute"]["status"] == "WON" and final["status"] == "SUCCEEDED"
    assert (await balances(gw, token, business))["EUR"] == "28.83"


async def test_a_stripe_webhook_with_a_bad_signature_is_400(gw, fakes):
    stripe, _ = fakes
    body, headers = stripe.signed_event("payment_intent.succeeded", {"id": "pi_x"}, secret="whsec_wrong")
    r = await gw.client.post("/v1/webhooks/stripe", content=body, headers=headers)
    assert r.status_code == 400 and r.json()["error"] == "invalid_signature"
    body, headers = stripe.signed_event("payment_intent.succeeded", {"id": "pi_x"}, timestamp=1)
    assert (await gw.client.post("/v1/webhooks/stripe", content=body, headers=headers)).status_code == 400


async def test_business_routes_override_the_servers_and_are_validated(gw, merchant):
    token, business = merchant
    bad = await gw.gql(SETTINGS, {"i": {"businessId": business, "routes": "card=visa"}}, token)
    assert bad["data"]["updatePaymentSettings"]["userErrors"][0]["code"] == "INVALID_INPUT"
    await gw.ok(SETTINGS, {"i": {"businessId": business, "routes": "card=sandbox"}}, token)
    t = (await create(gw, token, business))["transaction"]
    assert t["gateway"] == "SANDBOX"


# ---------------------------------------------------------------- PayPal

async def test_paypal_approval_then_confirm_captures_and_refunds(gw, merchant, fakes):
    _, paypal = fakes
    token, business = merchant
    i = payment_input(business, amount="25.00", method="PAYPAL", card=None,
                      paypal={"returnUrl": "https://shop.example/ok", "cancelUrl": "https://shop.example/no"})
    t = (await gw.ok(CREATE, {"i": i}, token))["createPayment"]["transaction"]
    assert t["status"] == "REQUIRES_ACTION" and t["gateway"] == "PAYPAL"
    assert t["nextAction"]["type"] == "redirect" and t["nextAction"]["url"]
    early = (await gw.ok(CONFIRM, {"id": t["id"]}, token))["confirmPayment"]["transaction"]
    assert early["status"] == "REQUIRES_ACTION"
    paypal.approve(t["gatewayReference"])
    done = (await gw.ok(CONFIRM, {"id": t["id"]}, token))["confirmPayment"]["transaction"]
    assert done["status"] == "SUCCEEDED" and done["capturedAmount"]["amount"] == "25.00"
    assert done["processingFee"]["amount"] == "1.36"  # 3.49 % + 0.49
    refund = (await gw.ok(REFUND, {"i": {"transactionId": t["id"], "idempotencyKey": "pp-r",
                                         "amount": {"amount": "5.00", "currency": "EUR"}}}, token))["refundPayment"]
    assert refund["refund"]["status"] == "SUCCEEDED"
    assert (await balances(gw, token, business))["EUR"] == "18.64"


async def test_a_paypal_dispute_webhook_opens_a_dispute_on_the_order(gw, merchant, fakes):
    _, paypal = fakes
    token, business = merchant
    await gw.fund(token, business, "50.00")
    i = payment_input(business, amount="20.00", method="PAYPAL", card=None,
                      paypal={"returnUrl": "https://shop.example/ok", "cancelUrl": "https://shop.example/no"})
    t = (await gw.ok(CREATE, {"i": i}, token))["createPayment"]["transaction"]
    paypal.approve(t["gatewayReference"])
    await gw.ok(CONFIRM, {"id": t["id"]}, token)
    body, headers = paypal.signed_event("CUSTOMER.DISPUTE.CREATED", paypal.dispute_resource(t["gatewayReference"]))
    r = await gw.client.post("/v1/webhooks/paypal", content=body, headers=headers)
    assert r.status_code == 200 and r.json()["outcome"] == "applied", r.text
    after = await transaction(gw, token, t["id"])
    assert after["status"] == "DISPUTED" and after["dispute"]["amount"]["amount"] == "20.00"
    evidence = {"tracking_number": "RM123", "carrier": "Royal Mail", "note": "signed for"}
    data = await gw.ok(EVIDENCE, {"i": {"disputeId": after["dispute"]["id"], "evidence": evidence}}, token)
    assert data["submitDisputeEvidence"]["dispute"]["status"] == "UNDER_REVIEW"
    sent = paypal.evidence[json.loads(body)["resource"]["dispute_id"]]["evidences"]
    assert sent[0]["evidence_type"] == "PROOF_OF_FULFILLMENT" and "signed for" in sent[1]["notes"]
    forged = json.loads(body)
    forged["resource"]["dispute_amount"]["value"] = "1.00"
    r = await gw.client.post("/v1/webhooks/paypal", content=json.dumps(forged).encode(), headers=headers)
    assert r.status_code == 400


# ---------------------------------------------------------------- crypto

def _crypto(gw_app: Any) -> Any:
    return gw_app.state.services.gateways[Gateway.CRYPTO]


async def _watch(gw_app: Any, now: Any = None) -> dict[str, int]:
    from veix.gateways.crypto_watch import watch_once

    services = gw_app.state.services
    return await watch_once(services.engine, _crypto(gw_app), services.payments,
                            lambda: SqlUnitOfWork(services.engine), now or utcnow())


async def _crypto_payment(gw, token, business, amount="20.00") -> dict[str, Any]:
    i = payment_input(business, amount=amount, method="CRYPTO", card=None, crypto={"asset": "eth"})
    return (await gw.ok(CREATE, {"i": i}, token))["createPayment"]["transaction"]


async def _pay(gw_app: Any, address: str, wei: int) -> None:
    w3 = _crypto(gw_app).web3
    payer = (await w3.eth.accounts)[1]
    tx = await w3.eth.send_transaction({"from": payer, "to": address, "value": wei})
    await w3.eth.wait_for_transaction_receipt(tx)


def _mine(gw_app: Any, blocks: int) -> None:
    _crypto(gw_app).web3.provider.ethereum_tester.mine_blocks(blocks)


async def test_a_crypto_payment_settles_after_the_confirmations(gw, gw_app, merchant):
    token, business = merchant
    t = await _crypto_payment(gw, token, business, "20.00")
    action = t["nextAction"]
    assert t["status"] == "REQUIRES_ACTION" and action["type"] == "crypto_transfer" and action["asset"] == "ETH"
    assert Decimal(action["amount"]) == Decimal("0.01")  # 20 EUR at 2,000 EUR/ETH
    other = await _crypto_payment(gw, token, business, "20.00")
    assert other["nextAction"]["address"] != action["address"]  # never reused
    await _pay(gw_app, action["address"], 10**16)
    assert await _watch(gw_app) == {"applied": 1}
    assert (await transaction(gw, token, t["id"]))["status"] == "PROCESSING"
    _mine(gw_app, 2)
    await _watch(gw_app)
    settled = await transaction(gw, token, t["id"])
    assert settled["status"] == "SUCCEEDED" and settled["capturedAmount"]["amount"] == "20.00"
    assert settled["processingFee"]["amount"] == "0.20"
    assert (await balances(gw, token, business))["EUR"] == "19.80"
    assert await _watch(gw_app) == {}  # nothing new for it


async def test_crypto_underpayment_and_no_payment_fail_at_expiry_and_overpayment_is_marked(gw, gw_app, merchant):
    token, business = merchant
    under = await _crypto_payment(gw, token, business, "20.00")
    nothing = await _crypto_payment(gw, token, business, "20.00")
    over = await _crypto_payment(gw, token, business, "20.00")
    await _pay(gw_app, under["nextAction"]["address"], 5 * 10**15)
    await _pay(gw_app, over["nextAction"]["address"], 2 * 10**16)
    _mine(gw_app, 3)
    await _watch(gw_app, utcnow() + timedelta(minutes=31))
    assert (await transaction(gw, token, under["id"]))["errorCode"] == "underpaid"
    assert (await transaction(gw, token, nothing["id"]))["errorCode"] == "expired"
    paid = await transaction(gw, token, over["id"])
    assert paid["status"] == "SUCCEEDED" and paid["gatewayDetails"]["crypto"]["overpaid"] is True
    assert paid["metadata"] == {}  # the caller's metadata stays the caller's


async def test_an_unknown_crypto_asset_is_a_user_error(gw, merchant):
    token, business = merchant
    i = payment_input(business, method="CRYPTO", card=None, crypto={"asset": "DOGE"})
    body = await gw.gql(CREATE, {"i": i}, token)
    err = body["data"]["createPayment"]["userErrors"][0]
    assert err["code"] == "INVALID_INPUT" and err["field"] == ["input", "crypto", "asset"]


@pytest.mark.parametrize("gateway", ["stripe", "paypal", "sandbox"])
@pytest.mark.parametrize("body", [b"", b"not json", b"{}", b"[1,2]", b'{"id": null, "type": 5}'])
async def test_unsigned_or_garbage_webhooks_get_400_never_500(gw, gateway, body):
    r = await gw.client.post(f"/v1/webhooks/{gateway}", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 400, r.text
    assert r.json()["error"] == "invalid_signature"


async def test_a_signed_stripe_event_with_an_impossible_timestamp_is_rejected(gw, fakes):
    stripe, _ = fakes
    body, headers = stripe.signed_event("payment_intent.succeeded", {"id": "pi_x", "object": "payment_intent"},
                                        created=10**30)
    r = await gw.client.post("/v1/webhooks/stripe", content=body, headers=headers)
    assert r.status_code == 400
