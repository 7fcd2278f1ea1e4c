"""The PayPal adapter, through the real SDK, against a local fake of PayPal's API."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from tests.fakes.paypal_server import FakePaypal
from veix.gateways.base import (
    GatewayFailure,
    GatewayPaymentStatus,
    GatewayUnavailable,
    PaymentMethodType,
    PaymentRequest,
    PaypalDetails,
    RefundStatus,
    WebhookKind,
    WebhookRejected,
)
from veix.gateways.paypal import PaypalGateway

NGINX_503 = "<html>\n<head><title>503 Service Temporarily Unavailable</title></head>\n<body>\n" \
            "<center><h1>503: Service Temporarily Unavailable</h1></center>\n</body>\n</html>\n"


@pytest.fixture(scope="module")
def fake() -> Iterator[FakePaypal]:
    server = FakePaypal()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def gateway(fake: FakePaypal) -> PaypalGateway:
    return PaypalGateway(fake.client_id, fake.client_secret, fake.webhook_id, base_url=fake.base_url, timeout=1.0)


def payment(amount: str = "25.00", currency: str = "EUR", *, capture: bool = True, key: str | None = None) -> PaymentRequest:
    return PaymentRequest(
        payment_id=uuid.uuid4(), business_id=uuid.uuid4(), amount=Decimal(amount), currency=currency,
        method=PaymentMethodType.PAYPAL, capture=capture, idempotency_key=key or uuid.uuid4().hex,
        paypal=PaypalDetails(return_url="https://shop.example/ok", cancel_url="https://shop.example/cancel"),
        description="Order 42",
    )


async def approved_order(fake: FakePaypal, gateway: PaypalGateway, **kwargs: object) -> str:
    created = await gateway.authorize(payment(**kwargs))  # type: ignore[arg-type]
    fake.approve(created.reference)
    return created.reference


async def paid_order(fake: FakePaypal, gateway: PaypalGateway, amount: str = "25.00") -> str:
    reference = await approved_order(fake, gateway, amount=amount)
    assert (await gateway.confirm(reference, {})).status is GatewayPaymentStatus.SUCCEEDED
    return reference


# -- payments ------------------------------------------------------------------


async def test_create_returns_the_approval_redirect(fake: FakePaypal, gateway: PaypalGateway) -> None:
    request = payment("12.50")
    result = await gateway.authorize(request)
    assert result.status is GatewayPaymentStatus.REQUIRES_ACTION
    assert result.next_action == {"type": "redirect", "url": f"{fake.base_url}/checkoutnow?token={result.reference}"}
    unit = fake.orders[result.reference]["purchase_units"][0]
    assert unit["amount"] == {"currency_code": "EUR", "value": "12.50"}
    assert unit["custom_id"] == str(request.payment_id) == unit["invoice_id"]
    assert fake.orders[result.reference]["intent"] == "CAPTURE"
    assert fake.orders[result.reference]["experience_context"]["return_url"] == "https://shop.example/ok"


async def test_zero_decimal_currency_is_sent_without_decimals(fake: FakePaypal, gateway: PaypalGateway) -> None:
    result = await gateway.authorize(payment("1500", "JPY"))
    assert fake.orders[result.reference]["purchase_units"][0]["amount"]["value"] == "1500"
    with pytest.raises(GatewayFailure):
        await gateway.authorize(payment("1500.50", "JPY"))


async def test_confirm_before_approval_still_requires_action(gateway: PaypalGateway) -> None:
    created = await gateway.authorize(payment())
    result = await gateway.confirm(created.reference, {})
    assert result.status is GatewayPaymentStatus.REQUIRES_ACTION
    assert result.next_action == created.next_action


async def test_approve_then_confirm_captures(fake: FakePaypal, gateway: PaypalGateway) -> None:
    reference = await approved_order(fake, gateway, amount="40.00")
    assert (await gateway.retrieve(reference)).status is GatewayPaymentStatus.PROCESSING  # approved, not captured
    result = await gateway.confirm(reference, {})
    assert result.status is GatewayPaymentStatus.SUCCEEDED
    assert result.captured_amount == Decimal("40.00")
    assert result.details["capture_id"] in fake.captures
    assert result.reference == reference
    again = await gateway.confirm(reference, {})  # a retried confirm captures nothing more
    assert again.status is GatewayPaymentStatus.SUCCEEDED and again.details["capture_id"] == result.details["capture_id"]
    assert (await gateway.retrieve(reference)).captured_amount == Decimal("40.00")
    assert len([c for c in fake.captures.values() if c["supplementary_data"]["related_ids"]["order_id"] == reference]) == 1


async def test_authorize_intent_then_partial_capture(fake: FakePaypal, gateway: PaypalGateway) -> None:
    reference = await approved_order(fake, gateway, amount="100.00", capture=False)
    assert fake.orders[reference]["intent"] == "AUTHORIZE"
    authorized = await gateway.confirm(reference, {})
    assert authorized.status is GatewayPaymentStatus.AUTHORIZED
    assert authorized.details["authorization_id"] in fake.authorizations
    captured = await gateway.capture(reference, Decimal("60.00"), "EUR", "cap-" + reference)
    assert captured.status is GatewayPaymentStatus.SUCCEEDED
    assert captured.captured_amount == Decimal("60.00")
    assert fake.authorizations[authorized.details["authorization_id"]]["status"] == "CAPTURED"
    replay = await gateway.capture(reference, Decimal("60.00"), "EUR", "cap-" + reference)
    assert replay.details["capture_id"] == captured.details["capture_id"]
    assert len([c for c in fake.captures.values() if c["supplementary_data"]["related_ids"]["order_id"] == reference]) == 1


async def test_void_an_authorization(fake: FakePaypal, gateway: PaypalGateway) -> None:
    reference = await approved_order(fake, gateway, capture=False)
    authorized = await gateway.confirm(reference, {})
    result = await gateway.cancel(reference, "void-" + reference)
    assert result.status is GatewayPaymentStatus.CANCELED
    assert fake.authorizations[authorized.details["authorization_id"]]["status"] == "VOIDED"
    assert (await gateway.retrieve(reference)).status is GatewayPaymentStatus.CANCELED


async def test_cancel_an_unapproved_order_is_local(fake: FakePaypal, gateway: PaypalGateway) -> None:
    created = await gateway.authorize(payment())
    result = await gateway.cancel(created.reference, "cancel-1")
    assert result.status is GatewayPaymentStatus.CANCELED


async def test_cancel_after_capture_is_refused(fake: FakePaypal, gateway: PaypalGateway) -> None:
    reference = await paid_order(fake, gateway)
    with pytest.raises(GatewayFailure):
        await gateway.cancel(reference, "cancel-2")


async def test_full_and_partial_refunds(fake: FakePaypal, gateway: PaypalGateway) -> None:
    reference = await paid_order(fake, gateway, "30.00")
    partial = await gateway.refund(reference, Decimal("10.00"), "EUR", "ref-1-" + reference, "requested_by_customer")
    assert partial.status is RefundStatus.SUCCEEDED and partial.amount == Decimal("10.00")
    assert fake.refunds[partial.reference]["note_to_payer"] == "requested_by_customer"
    rest = await gateway.refund(reference, Decimal("20.00"), "EUR", "ref-2-" + reference, None)
    assert rest.amount == Decimal("20.00") and rest.reference != partial.reference
    replay = await gateway.refund(reference, Decimal("20.00"), "EUR", "ref-2-" + reference, None)
    assert replay.reference == rest.reference
    with pytest.raises(GatewayFailure):
        await gateway.refund(reference, Decimal("1.00"), "EUR", "ref-3-" + reference, None)


async def test_refund_more_than_captured_is_a_failure(fake: FakePaypal, gateway: PaypalGateway) -> None:
    reference = await paid_order(fake, gateway, "5.00")
    with pytest.raises(GatewayFailure, match="REFUND_AMOUNT_EXCEEDED"):
        await gateway.refund(reference, Decimal("6.00"), "EUR", "ref-x-" + reference, None)


async def test_create_is_idempotent_per_request_id(fake: FakePaypal, gateway: PaypalGateway) -> None:
    first = await gateway.authorize(payment(key="same-key-1"))
    second = await gateway.authorize(payment(key="same-key-1"))
    assert first.reference == second.reference
    assert (await gateway.authorize(payment(key="other-key-1"))).reference != first.reference


async def test_declined_capture_is_failed_not_an_error(fake: FakePaypal, gateway: PaypalGateway) -> None:
    reference = await approved_order(fake, gateway)
    fake.decline_next_capture()
    result = await gateway.confirm(reference, {})
    assert result.status is GatewayPaymentStatus.FAILED
    assert result.decline_code == "instrument_declined"


async def test_capture_answered_declined_is_failed(fake: FakePaypal, gateway: PaypalGateway) -> None:
    reference = await approved_order(fake, gateway)
    fake.decline_next_capture("DECLINED")
    result = await gateway.confirm(reference, {})
    assert result.status is GatewayPaymentStatus.FAILED
    assert result.decline_code == "declined_by_risk_fraud_filters"


# -- outages and refusals ----------------------------------------------------------


async def test_outage_with_html_body_is_unavailable(fake: FakePaypal, gateway: PaypalGateway) -> None:
    await gateway.authorize(payment())  # the OAuth token is cached from here on
    for body in ("<html>oops</html>", NGINX_503):
        fake.fail_next(1, status=503, body=body)
        with pytest.raises(GatewayUnavailable, match="503"):
            await gateway.authorize(payment())


async def test_outage_while_fetching_the_token_is_unavailable(fake: FakePaypal, gateway: PaypalGateway) -> None:
    fake.fail_next(1, status=502, body=NGINX_503)
    with pytest.raises(GatewayUnavailable):
        await gateway.authorize(payment())
    assert (await gateway.authorize(payment())).status is GatewayPaymentStatus.REQUIRES_ACTION


async def test_rate_limit_is_unavailable(fake: FakePaypal, gateway: PaypalGateway) -> None:
    await gateway.authorize(payment())
    fake.fail_next(1, status=429, body="Too Many Requests")
    with pytest.raises(GatewayUnavailable):
        await gateway.authorize(payment())


async def test_client_error_with_html_body_is_failure(fake: FakePaypal, gateway: PaypalGateway) -> None:
    await gateway.authorize(payment())
    for body in ("<html>oops</html>", NGINX_503.replace("503", "400")):
        fake.fail_next(1, status=400, body=body)
        with pytest.raises(GatewayFailure, match="400"):
            await gateway.authorize(payment())


async def test_hang_is_unavailable_within_the_timeout(fake: FakePaypal, gateway: PaypalGateway) -> None:
    await gateway.authorize(payment())
    fake.hang_next(1, seconds=3)
    started = time.monotonic()
    with pytest.raises(GatewayUnavailable):
        await gateway.authorize(payment())
    assert time.monotonic() - started < 2.5


async def test_connection_refused_is_unavailable() -> None:
    down = PaypalGateway("id", "secret", "WH", base_url="http://127.0.0.1:9", timeout=1.0)
    with pytest.raises(GatewayUnavailable):
        await down.retrieve("ORDER")


async def test_bad_credentials_fail_without_leaking_the_secret(fake: FakePaypal) -> None:
    wrong = PaypalGateway(fake.client_id, "s3cr3t-value", fake.webhook_id, base_url=fake.base_url)
    with pytest.raises(GatewayFailure) as caught:
        await wrong.authorize(payment())
    assert "s3cr3t-value" not in str(caught.value) and "s3cr3t-value" not in repr(wrong)


async def test_unknown_order_is_failure(gateway: PaypalGateway) -> None:
    with pytest.raises(GatewayFailure, match="404"):
        await gateway.retrieve("NOPE")


# -- webhooks ------------------------------------------------------------------------


async def test_verified_webhook_for_a_completed_capture(fake: FakePaypal, gateway: PaypalGateway) -> None:
    reference = await paid_order(fake, gateway, "19.99")
    body, headers = fake.signed_event("PAYMENT.CAPTURE.COMPLETED", fake.capture_resource(reference),
                                      create_time="2026-01-02T03:04:05Z")
    event = await gateway.parse_webhook(body, headers)
    assert event.kind is WebhookKind.PAYMENT_SUCCEEDED
    assert event.reference == reference
    assert (event.amount, event.currency) == (Decimal("19.99"), "EUR")
    assert event.occurred_at == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert event.event_id == json.loads(body)["id"]


async def test_bad_signature_is_rejected(fake: FakePaypal, gateway: PaypalGateway) -> None:
    reference = await paid_order(fake, gateway)
    body, headers = fake.signed_event("PAYMENT.CAPTURE.COMPLETED", fake.capture_resource(reference))
    with pytest.raises(WebhookRejected):
        await gateway.parse_webhook(body, {**headers, "paypal-transmission-sig": "AAAA"})
    tampered = body.replace(b'"25.00"', b'"2500.00"')
    with pytest.raises(WebhookRejected):
        await gateway.parse_webhook(tampered, headers)
    other = PaypalGateway(fake.client_id, fake.client_secret, "WH-OTHER", base_url=fake.base_url)
    with pytest.raises(WebhookRejected):
        await other.parse_webhook(body, headers)


async def test_stale_webhook_is_rejected(fake: FakePaypal, gateway: PaypalGateway) -> None:
    old = (datetime.now(UTC) - timedelta(seconds=301)).strftime("%Y-%m-%dT%H:%M:%SZ")
    body, headers = fake.signed_event("PAYMENT.CAPTURE.COMPLETED", {"id": "CAP1"}, transmission_time=old)
    with pytest.raises(WebhookRejected, match="tolerance"):
        await gateway.parse_webhook(body, headers)


async def test_malformed_webhooks_are_rejected(fake: FakePaypal, gateway: PaypalGateway) -> None:
    _, headers = fake.signed_event("PAYMENT.CAPTURE.COMPLETED", {"id": "CAP1"})
    for body in (b"{not json", b"\xff\xfe", b"[1, 2]", b'{"id": "x"}'):
        with pytest.raises(WebhookRejected):
            await gateway.parse_webhook(body, headers)
    body, headers = fake.signed_event("PAYMENT.CAPTURE.COMPLETED", {"id": "CAP1"})
    without_sig = {k: v for k, v in headers.items() if k != "paypal-transmission-sig"}
    with pytest.raises(WebhookRejected, match="missing"):
        await gateway.parse_webhook(body, without_sig)


async def test_webhook_verification_outage_is_unavailable(fake: FakePaypal, gateway: PaypalGateway) -> None:
    await gateway.authorize(payment())
    body, headers = fake.signed_event("CHECKOUT.ORDER.APPROVED", {"id": "O1"})
    fake.fail_next(1, status=503, body=NGINX_503)
    with pytest.raises(GatewayUnavailable):
        await gateway.parse_webhook(body, headers)


async def test_order_approved_means_ready_to_capture(fake: FakePaypal, gateway: PaypalGateway) -> None:
    reference = await approved_order(fake, gateway, amount="9.00")
    body, headers = fake.signed_event("CHECKOUT.ORDER.APPROVED", fake.orders[reference])
    event = await gateway.parse_webhook(body, headers)
    assert (event.kind, event.reference, event.amount) == (WebhookKind.PAYMENT_PROCESSING, reference, Decimal("9.00"))


@pytest.mark.parametrize(("event_type", "kind"), [
    ("PAYMENT.CAPTURE.COMPLETED", WebhookKind.PAYMENT_SUCCEEDED),
    ("PAYMENT.CAPTURE.PENDING", WebhookKind.PAYMENT_PROCESSING),
    ("PAYMENT.CAPTURE.DENIED", WebhookKind.PAYMENT_FAILED),
    ("PAYMENT.CAPTURE.DECLINED", WebhookKind.PAYMENT_FAILED),
])
async def test_capture_events(fake: FakePaypal, gateway: PaypalGateway, event_type: str, kind: WebhookKind) -> None:
    reference = await paid_order(fake, gateway)
    resource = fake.capture_resource(reference)
    if kind is WebhookKind.PAYMENT_FAILED:
        resource |= {"status": "DECLINED", "status_details": {"reason": "DECLINED_BY_RISK_FRAUD_FILTERS"}}
    event = await gateway.parse_webhook(*fake.signed_event(event_type, resource))
    assert (event.kind, event.reference) == (kind, reference)
    if kind is WebhookKind.PAYMENT_FAILED:
        assert event.decline_code == "declined_by_risk_fraud_filters"


async def test_capture_event_without_order_id_is_looked_up(fake: FakePaypal, gateway: PaypalGateway) -> None:
    reference = await paid_order(fake, gateway)
    resource = fake.capture_resource(reference)
    del resource["supplementary_data"]
    event = await gateway.parse_webhook(*fake.signed_event("PAYMENT.CAPTURE.COMPLETED", resource))
    assert event.reference == reference and event.payload["veix"]["capture_id"] == resource["id"]


async def test_capture_unknown_to_paypal_falls_back_to_the_capture_id(fake: FakePaypal, gateway: PaypalGateway) -> None:
    event = await gateway.parse_webhook(*fake.signed_event("PAYMENT.CAPTURE.COMPLETED", {"id": "CAPGONE", "status": "COMPLETED"}))
    assert event.reference == "CAPGONE"
    assert event.payload["veix"] == {"reference_kind": "capture", "capture_id": "CAPGONE"}


@pytest.mark.parametrize(("event_type", "kind"), [
    ("PAYMENT.AUTHORIZATION.CREATED", WebhookKind.PAYMENT_AUTHORIZED),
    ("PAYMENT.AUTHORIZATION.VOIDED", WebhookKind.PAYMENT_CANCELED),
])
async def test_authorization_events(fake: FakePaypal, gateway: PaypalGateway, event_type: str, kind: WebhookKind) -> None:
    reference = await approved_order(fake, gateway, capture=False)
    await gateway.confirm(reference, {})
    event = await gateway.parse_webhook(*fake.signed_event(event_type, fake.authorization_resource(reference)))
    assert (event.kind, event.reference) == (kind, reference)


async def test_refund_event(fake: FakePaypal, gateway: PaypalGateway) -> None:
    reference = await paid_order(fake, gateway, "12.00")
    refund = await gateway.refund(reference, Decimal("2.00"), "EUR", "r-" + reference, None)
    body, headers = fake.signed_event("PAYMENT.CAPTURE.REFUNDED", fake.refunds[refund.reference])
    event = await gateway.parse_webhook(body, headers)
    assert event.kind is WebhookKind.REFUND_SUCCEEDED
    assert (event.reference, event.refund_reference, event.amount) == (reference, refund.reference, Decimal("2.00"))


async def test_dispute_opened(fake: FakePaypal, gateway: PaypalGateway) -> None:
    reference = await paid_order(fake, gateway, "50.00")
    resource = fake.dispute_resource(reference, amount="20.00")
    event = await gateway.parse_webhook(*fake.signed_event("CUSTOMER.DISPUTE.CREATED", resource))
    assert event.kind is WebhookKind.DISPUTE_OPENED
    assert event.reference == reference
    assert event.dispute is not None
    assert (event.dispute.reference, event.dispute.amount, event.dispute.currency) == (
        resource["dispute_id"], Decimal("20.00"), "EUR")
    assert event.dispute.reason == "MERCHANDISE_OR_SERVICE_NOT_RECEIVED"
    assert event.dispute.evidence_due_by == datetime(2030, 1, 15, 10, tzinfo=UTC)
    assert event.payload["veix"]["capture_id"] == fake.capture_resource(reference)["id"]


@pytest.mark.parametrize(("event_type", "outcome", "kind"), [
    ("CUSTOMER.DISPUTE.UPDATED", None, WebhookKind.DISPUTE_UPDATED),
    ("CUSTOMER.DISPUTE.RESOLVED", "RESOLVED_SELLER_FAVOUR", WebhookKind.DISPUTE_WON),
    ("CUSTOMER.DISPUTE.RESOLVED", "RESOLVED_BUYER_FAVOUR", WebhookKind.DISPUTE_LOST),
])
async def test_dispute_updates(
    fake: FakePaypal, gateway: PaypalGateway, event_type: str, outcome: str | None, kind: WebhookKind,
) -> None:
    reference = await paid_order(fake, gateway)
    resource = fake.dispute_resource(reference, status="RESOLVED" if outcome else "UNDER_REVIEW", outcome=outcome)
    event = await gateway.parse_webhook(*fake.signed_event(event_type, resource))
    assert (event.kind, event.reference) == (kind, reference)


async def test_other_events_are_ignored(fake: FakePaypal, gateway: PaypalGateway) -> None:
    event = await gateway.parse_webhook(*fake.signed_event("BILLING.SUBSCRIPTION.CREATED", {"id": "I-1"}))
    assert event.kind is WebhookKind.IGNORED and event.reference is None


# -- dispute evidence -------------------------------------------------------------------


async def opened_dispute(fake: FakePaypal, gateway: PaypalGateway) -> str:
    """A dispute on a paid order, with its id taken from the adapter's DisputeInfo."""
    reference = await paid_order(fake, gateway)
    event = await gateway.parse_webhook(*fake.signed_event("CUSTOMER.DISPUTE.CREATED", fake.dispute_resource(reference)))
    assert event.dispute is not None and event.dispute.reference.startswith("PP-D-")
    return event.dispute.reference


async def test_evidence_with_tracking_is_proof_of_fulfillment(fake: FakePaypal, gateway: PaypalGateway) -> None:
    dispute_id = await opened_dispute(fake, gateway)
    await gateway.submit_dispute_evidence(dispute_id, {"tracking_number": "1Z999AA10123456784", "carrier": "UPS"})
    assert fake.evidence[dispute_id] == {"evidences": [{
        "evidence_type": "PROOF_OF_FULFILLMENT",
        "evidence_info": {"tracking_info": [{"carrier_name": "UPS", "tracking_number": "1Z999AA10123456784"}]},
    }]}
    # Real multipart: the JSON travels in an ``input`` part, as PayPal requires.
    assert fake.evidence_parts[dispute_id] == {"input": "application/json"}
    assert ("POST", f"/v1/customer/disputes/{dispute_id}/provide-evidence") in fake.requests


async def test_unknown_carrier_and_other_fields(fake: FakePaypal, gateway: PaypalGateway) -> None:
    dispute_id = await opened_dispute(fake, gateway)
    await gateway.submit_dispute_evidence(dispute_id, {
        "tracking_number": "JJD0001", "carrier": "Hermes Paketdienst", "uncategorized_text": "Delivered on time.",
    })
    fulfillment, other = fake.evidence[dispute_id]["evidences"]
    assert fulfillment["evidence_info"]["tracking_info"] == [
        {"carrier_name": "OTHER", "carrier_name_other": "Hermes Paketdienst", "tracking_number": "JJD0001"}]
    assert other == {"evidence_type": "OTHER", "notes": json.dumps({"uncategorized_text": "Delivered on time."})}


async def test_free_text_evidence_is_other_with_notes(fake: FakePaypal, gateway: PaypalGateway) -> None:
    dispute_id = await opened_dispute(fake, gateway)
    evidence = {"uncategorized_text": "The buyer downloaded the e-book twice.", "tracking_number": "no carrier"}
    await gateway.submit_dispute_evidence(dispute_id, evidence)
    (sent,) = fake.evidence[dispute_id]["evidences"]
    assert sent["evidence_type"] == "OTHER" and "evidence_info" not in sent
    assert json.loads(sent["notes"]) == evidence


async def test_long_evidence_is_truncated_to_the_notes_limit(fake: FakePaypal, gateway: PaypalGateway) -> None:
    dispute_id = await opened_dispute(fake, gateway)
    await gateway.submit_dispute_evidence(dispute_id, {"uncategorized_text": "é" * 5000})
    notes = fake.evidence[dispute_id]["evidences"][0]["notes"]
    assert len(notes) == 2000 and notes.startswith('{"uncategorized_text": "éé')


async def test_evidence_for_an_unknown_dispute_is_failure(fake: FakePaypal, gateway: PaypalGateway) -> None:
    with pytest.raises(GatewayFailure, match="404"):
        await gateway.submit_dispute_evidence("PP-D-UNKNOWN1", {"uncategorized_text": "x"})
    assert "PP-D-UNKNOWN1" not in fake.evidence


async def test_evidence_outage_is_unavailable(fake: FakePaypal, gateway: PaypalGateway) -> None:
    dispute_id = await opened_dispute(fake, gateway)
    fake.fail_next(1, status=503, body=NGINX_503)
    with pytest.raises(GatewayUnavailable, match="503"):
        await gateway.submit_dispute_evidence(dispute_id, {"uncategorized_text": "x"})
    assert dispute_id not in fake.evidence
    fake.hang_next(1, seconds=3)
    with pytest.raises(GatewayUnavailable):
        await gateway.submit_dispute_evidence(dispute_id, {"uncategorized_text": "x"})
