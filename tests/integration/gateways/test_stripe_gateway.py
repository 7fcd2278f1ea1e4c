"""The Stripe gateway through its public methods, on the real ``stripe`` SDK
against a local fake Stripe (``tests/fakes/stripe_server.py``)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from tests.fakes import stripe_server as cards
from tests.fakes.stripe_server import FakeStripe
from veix.domain.transactions import Gateway
from veix.gateways.base import (
    CardDetails,
    GatewayFailure,
    GatewayPaymentStatus,
    GatewayUnavailable,
    PaymentMethodType,
    PaymentRequest,
    RefundStatus,
    WebhookKind,
    WebhookRejected,
)
from veix.gateways.stripe import StripeGateway

Status = GatewayPaymentStatus

# The SDK hands httpx its form body as ``data=bytes``; httpx 0.28 warns about that on every call.
pytestmark = pytest.mark.filterwarnings("ignore:Use 'content=<...>':DeprecationWarning")


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeStripe]:
    server = FakeStripe()
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
async def gateway(fake: FakeStripe) -> AsyncIterator[StripeGateway]:
    gw = StripeGateway(fake.api_key, fake.webhook_secret, base_url=fake.base_url, timeout=2.0)
    yield gw
    await gw.aclose()


@pytest.fixture(autouse=True)
def no_faults_left(fake: FakeStripe) -> Iterator[None]:
    yield
    fake.reset_faults()


def payment(number: str = cards.SUCCESS, *, amount: str = "12.50", currency: str = "EUR", capture: bool = True,
            key: str | None = None, **extra: Any) -> PaymentRequest:
    return PaymentRequest(
        payment_id=uuid.uuid4(), business_id=uuid.uuid4(), amount=Decimal(amount), currency=currency,
        method=PaymentMethodType.CARD, capture=capture, idempotency_key=key or f"pay-{uuid.uuid4()}",
        card=CardDetails(number=number, exp_month=12, exp_year=2034, cvc="123"), description="Order 42", **extra,
    )


# -- authorize: test cards ----------------------------------------------------


async def test_advertises_cards_with_manual_capture_and_refunds(gateway: StripeGateway) -> None:
    caps = gateway.capabilities
    assert gateway.name is Gateway.STRIPE
    assert caps.supports(PaymentMethodType.CARD, "EUR") and caps.supports(PaymentMethodType.CARD, "JPY")
    assert not caps.supports(PaymentMethodType.PAYPAL, "EUR")
    assert caps.manual_capture and caps.partial_capture and caps.refunds and caps.partial_refunds


async def test_success_card_captures_at_once(gateway: StripeGateway, fake: FakeStripe) -> None:
    request = payment(amount="12.50")
    result = await gateway.authorize(request)

    assert result.status is Status.SUCCEEDED
    assert result.captured_amount == Decimal("12.50")
    assert result.reference.startswith("pi_")
    assert result.display == "Visa •••• 4242"
    assert result.decline_code is None
    sent = fake.requests_to("/v1/payment_intents")[-1]
    assert sent.params["amount"] == "1250" and sent.params["currency"] == "eur"
    assert sent.params["capture_method"] == "automatic" and sent.params["confirm"] == "true"
    assert sent.params["payment_method_data"]["card"]["number"] == cards.SUCCESS
    assert sent.params["metadata"]["veix_payment_id"] == str(request.payment_id)
    assert sent.params["description"] == "Order 42"
    assert sent.headers["idempotency-key"] == request.idempotency_key


async def test_zero_decimal_currency_is_sent_in_whole_units(gateway: StripeGateway, fake: FakeStripe) -> None:
    result = await gateway.authorize(payment(amount="1500", currency="JPY"))

    assert result.status is Status.SUCCEEDED and result.captured_amount == Decimal(1500)
    assert fake.payment_intent(result.reference)["amount"] == 1500


@pytest.mark.parametrize(("number", "decline_code"), [
    (cards.DECLINED, "card_declined"),
    (cards.INSUFFICIENT_FUNDS, "insufficient_funds"),
    (cards.EXPIRED, "expired_card"),
    (cards.INCORRECT_CVC, "incorrect_cvc"),
    (cards.PROCESSING_ERROR, "processing_error"),
])
async def test_declined_cards_fail_with_a_stable_code(gateway: StripeGateway, fake: FakeStripe, number: str,
                                                      decline_code: str) -> None:
    result = await gateway.authorize(payment(number))

    assert result.status is Status.FAILED
    assert result.decline_code == decline_code
    assert result.decline_message and number not in result.decline_message
    assert result.reference.startswith("pi_")
    assert result.display == f"Visa •••• {number[-4:]}"
    assert result.provider_status == "requires_payment_method"
    assert fake.payment_intent(result.reference)["status"] == "requires_payment_method"


async def test_retrieving_a_declined_payment_reports_the_decline(gateway: StripeGateway) -> None:
    declined = await gateway.authorize(payment(cards.INSUFFICIENT_FUNDS))

    result = await gateway.retrieve(declined.reference)

    assert result.status is Status.FAILED and result.decline_code == "insufficient_funds"


async def test_three_d_secure_requires_action_then_confirm_succeeds(gateway: StripeGateway) -> None:
    started = await gateway.authorize(payment(cards.THREE_D_SECURE, amount="30.00"))

    assert started.status is Status.REQUIRES_ACTION
    assert started.next_action is not None
    assert started.next_action["type"] == "redirect_to_url"
    assert started.next_action["redirect_url"].endswith(f"/3ds/{started.reference}")

    done = await gateway.confirm(started.reference, {})

    assert done.status is Status.SUCCEEDED
    assert done.reference == started.reference and done.captured_amount == Decimal("30.00")


async def test_confirm_after_stripe_already_finished_reports_the_state(gateway: StripeGateway) -> None:
    paid = await gateway.authorize(payment())

    result = await gateway.confirm(paid.reference, {})

    assert result.status is Status.SUCCEEDED and result.captured_amount == Decimal("12.50")


async def test_dispute_card_succeeds(gateway: StripeGateway) -> None:
    result = await gateway.authorize(payment(cards.DISPUTED))

    assert result.status is Status.SUCCEEDED and result.display == "Visa •••• 0259"


# -- capture, cancel, refund ---------------------------------------------------


async def test_manual_capture_in_full(gateway: StripeGateway, fake: FakeStripe) -> None:
    held = await gateway.authorize(payment(amount="40.00", capture=False))
    assert held.status is Status.AUTHORIZED and held.captured_amount == 0
    assert fake.requests_to("/v1/payment_intents")[-1].params["capture_method"] == "manual"

    captured = await gateway.capture(held.reference, Decimal("40.00"), "EUR", "cap-full")

    assert captured.status is Status.SUCCEEDED and captured.captured_amount == Decimal("40.00")


async def test_manual_capture_of_part(gateway: StripeGateway, fake: FakeStripe) -> None:
    held = await gateway.authorize(payment(amount="40.00", capture=False))

    captured = await gateway.capture(held.reference, Decimal("15.25"), "EUR", f"cap-{uuid.uuid4()}")

    assert captured.status is Status.SUCCEEDED and captured.captured_amount == Decimal("15.25")
    sent = fake.requests_to(f"/v1/payment_intents/{held.reference}/capture")[-1]
    assert sent.params["amount_to_capture"] == "1525"


async def test_capturing_more_than_authorized_is_a_failure(gateway: StripeGateway) -> None:
    held = await gateway.authorize(payment(amount="10.00", capture=False))

    with pytest.raises(GatewayFailure, match="amount_too_large"):
        await gateway.capture(held.reference, Decimal("10.01"), "EUR", f"cap-{uuid.uuid4()}")


async def test_cancel_releases_an_authorization(gateway: StripeGateway) -> None:
    held = await gateway.authorize(payment(capture=False))

    canceled = await gateway.cancel(held.reference, f"cancel-{uuid.uuid4()}")

    assert canceled.status is Status.CANCELED
    assert (await gateway.retrieve(held.reference)).status is Status.CANCELED


async def test_cancelling_a_captured_payment_is_a_failure(gateway: StripeGateway) -> None:
    paid = await gateway.authorize(payment())

    with pytest.raises(GatewayFailure, match="payment_intent_unexpected_state"):
        await gateway.cancel(paid.reference, f"cancel-{uuid.uuid4()}")


async def test_refund_in_full(gateway: StripeGateway, fake: FakeStripe) -> None:
    paid = await gateway.authorize(payment(amount="20.00"))

    refund = await gateway.refund(paid.reference, Decimal("20.00"), "EUR", f"ref-{uuid.uuid4()}", "duplicate")

    assert refund.status is RefundStatus.SUCCEEDED and refund.amount == Decimal("20.00")
    assert refund.reference.startswith("re_")
    sent = fake.requests_to("/v1/refunds")[-1].params
    assert sent == {"payment_intent": paid.reference, "amount": "2000", "reason": "duplicate"}


async def test_partial_refunds_up_to_the_captured_amount(gateway: StripeGateway, fake: FakeStripe) -> None:
    paid = await gateway.authorize(payment(amount="20.00"))

    first = await gateway.refund(paid.reference, Decimal("5.00"), "EUR", f"ref-{uuid.uuid4()}",
                                 "customer changed their mind")
    second = await gateway.refund(paid.reference, Decimal("15.00"), "EUR", f"ref-{uuid.uuid4()}", None)

    assert (first.amount, second.amount) == (Decimal("5.00"), Decimal("15.00"))
    assert first.reference != second.reference
    sent = fake.requests_to("/v1/refunds")[-2].params
    assert "reason" not in sent and sent["metadata"] == {"veix_reason": "customer changed their mind"}
    with pytest.raises(GatewayFailure, match="amount_too_large"):
        await gateway.refund(paid.reference, Decimal("0.01"), "EUR", f"ref-{uuid.uuid4()}", None)


# -- idempotency, outages, Connect -------------------------------------------------


async def test_replaying_an_idempotency_key_returns_the_same_intent(gateway: StripeGateway, fake: FakeStripe) -> None:
    request = payment(key=f"same-{uuid.uuid4()}")

    first = await gateway.authorize(request)
    again = await gateway.authorize(request)

    assert again.reference == first.reference and again.status is Status.SUCCEEDED
    created = [r for r in fake.requests_to("/v1/payment_intents")
               if r.headers.get("idempotency-key") == request.idempotency_key]
    assert len(created) == 2  # both reached Stripe, one PaymentIntent exists
    assert fake.payment_intent(first.reference)["amount_received"] == 1250


async def test_replaying_a_declined_request_returns_the_same_decline(gateway: StripeGateway) -> None:
    request = payment(cards.INSUFFICIENT_FUNDS)

    first = await gateway.authorize(request)
    again = await gateway.authorize(request)

    assert (again.reference, again.decline_code) == (first.reference, "insufficient_funds")


@pytest.mark.parametrize("status", [500, 503, 429])
async def test_server_errors_and_rate_limits_are_an_outage(gateway: StripeGateway, fake: FakeStripe,
                                                           status: int) -> None:
    fake.fail_next(1, status=status)

    with pytest.raises(GatewayUnavailable):
        await gateway.authorize(payment())


async def test_a_hang_longer_than_the_timeout_is_an_outage(fake: FakeStripe) -> None:
    impatient = StripeGateway(fake.api_key, fake.webhook_secret, base_url=fake.base_url, timeout=0.3)
    fake.hang_next(1, seconds=5)
    started = time.monotonic()
    try:
        with pytest.raises(GatewayUnavailable):
            await impatient.authorize(payment())
    finally:
        await impatient.aclose()

    assert time.monotonic() - started < 2


async def test_connection_refused_is_an_outage() -> None:
    offline = StripeGateway("sk_test_x", "whsec_x", base_url="http://127.0.0.1:9", timeout=1)
    try:
        with pytest.raises(GatewayUnavailable):
            await offline.retrieve("pi_missing")
    finally:
        await offline.aclose()


async def test_a_retry_after_an_outage_goes_through(fake: FakeStripe) -> None:
    patient = StripeGateway(fake.api_key, fake.webhook_secret, base_url=fake.base_url, max_network_retries=1)
    fake.fail_next(1, status=503)
    try:
        result = await patient.authorize(payment())
    finally:
        await patient.aclose()

    assert result.status is Status.SUCCEEDED


async def test_a_bad_api_key_is_a_failure_without_the_key(fake: FakeStripe) -> None:
    wrong = StripeGateway("sk_test_wrong_key_123", fake.webhook_secret, base_url=fake.base_url)
    try:
        with pytest.raises(GatewayFailure) as caught:
            await wrong.authorize(payment())
    finally:
        await wrong.aclose()

    assert "sk_test_wrong" not in str(caught.value)


async def test_unknown_payment_is_a_failure(gateway: StripeGateway) -> None:
    with pytest.raises(GatewayFailure, match="resource_missing"):
        await gateway.retrieve("pi_does_not_exist")


async def test_connect_payment_is_a_destination_charge_with_the_fee(gateway: StripeGateway, fake: FakeStripe) -> None:
    result = await gateway.authorize(payment(amount="100.00", connected_account="acct_1Biz",
                                             application_fee=Decimal("2.90")))

    assert result.status is Status.SUCCEEDED
    sent = fake.requests_to("/v1/payment_intents")[-1].params
    assert sent["transfer_data"] == {"destination": "acct_1Biz"}
    assert sent["application_fee_amount"] == "290"
    assert fake.charge(result.reference)["transfer_data"] == {"destination": "acct_1Biz"}


async def test_no_connect_fields_without_a_connected_account(gateway: StripeGateway, fake: FakeStripe) -> None:
    await gateway.authorize(payment())

    sent = fake.requests_to("/v1/payment_intents")[-1].params
    assert "transfer_data" not in sent and "application_fee_amount" not in sent


# -- webhooks -------------------------------------------------------------------------


async def test_webhook_with_a_good_signature_is_parsed(gateway: StripeGateway, fake: FakeStripe) -> None:
    paid = await gateway.authorize(payment(amount="12.50"))
    body, headers = fake.signed_event("payment_intent.succeeded", fake.payment_intent(paid.reference))

    event = await gateway.parse_webhook(body, headers)

    assert event.kind is WebhookKind.PAYMENT_SUCCEEDED
    assert event.provider_type == "payment_intent.succeeded"
    assert event.reference == paid.reference
    assert (event.amount, event.currency) == (Decimal("12.50"), "EUR")
    assert event.event_id.startswith("evt_")
    assert event.occurred_at.tzinfo is not None and abs(event.occurred_at - datetime.now(UTC)).total_seconds() < 60
    assert event.payload == json.loads(body)


async def test_webhook_with_a_bad_signature_is_rejected(gateway: StripeGateway, fake: FakeStripe) -> None:
    body, headers = fake.signed_event("payment_intent.succeeded", {"id": "pi_1", "object": "payment_intent"},
                                      secret="whsec_someone_else")
    with pytest.raises(WebhookRejected):
        await gateway.parse_webhook(body, headers)


async def test_webhook_with_a_tampered_body_is_rejected(gateway: StripeGateway, fake: FakeStripe) -> None:
    body, headers = fake.signed_event("payment_intent.succeeded", {"id": "pi_1", "object": "payment_intent"})
    with pytest.raises(WebhookRejected):
        await gateway.parse_webhook(body.replace(b"pi_1", b"pi_2"), headers)


async def test_webhook_without_a_signature_is_rejected(gateway: StripeGateway, fake: FakeStripe) -> None:
    body, _ = fake.signed_event("payment_intent.succeeded", {"id": "pi_1", "object": "payment_intent"})
    with pytest.raises(WebhookRejected):
        await gateway.parse_webhook(body, {})


async def test_webhook_older_than_five_minutes_is_rejected(gateway: StripeGateway, fake: FakeStripe) -> None:
    body, headers = fake.signed_event("payment_intent.succeeded", {"id": "pi_1", "object": "payment_intent"},
                                      timestamp=int(time.time()) - 301)
    with pytest.raises(WebhookRejected):
        await gateway.parse_webhook(body, headers)


@pytest.mark.parametrize("body", [b"{not json", b"[]", b'{"id": "evt_1"}', b"\xff\xfe"])
async def test_malformed_webhook_body_is_rejected(gateway: StripeGateway, fake: FakeStripe, body: bytes) -> None:
    with pytest.raises(WebhookRejected):
        await gateway.parse_webhook(body, fake.sign(body))


async def test_processing_webhook(gateway: StripeGateway, fake: FakeStripe) -> None:
    pi = fake.payment_intent((await gateway.authorize(payment())).reference) | {"status": "processing"}
    event = await gateway.parse_webhook(*fake.signed_event("payment_intent.processing", pi))

    assert event.kind is WebhookKind.PAYMENT_PROCESSING and event.reference == pi["id"]


async def test_payment_failed_webhook_carries_the_decline(gateway: StripeGateway, fake: FakeStripe) -> None:
    declined = await gateway.authorize(payment(cards.EXPIRED))
    event = await gateway.parse_webhook(
        *fake.signed_event("payment_intent.payment_failed", fake.payment_intent(declined.reference)))

    assert event.kind is WebhookKind.PAYMENT_FAILED
    assert (event.reference, event.decline_code) == (declined.reference, "expired_card")
    assert event.decline_message == "Your card has expired."


async def test_authorized_and_canceled_webhooks(gateway: StripeGateway, fake: FakeStripe) -> None:
    held = await gateway.authorize(payment(amount="8.00", capture=False))
    authorized = await gateway.parse_webhook(
        *fake.signed_event("payment_intent.amount_capturable_updated", fake.payment_intent(held.reference)))
    await gateway.cancel(held.reference, f"cancel-{uuid.uuid4()}")
    canceled = await gateway.parse_webhook(
        *fake.signed_event("payment_intent.canceled", fake.payment_intent(held.reference)))

    assert authorized.kind is WebhookKind.PAYMENT_AUTHORIZED and authorized.amount == Decimal("8.00")
    assert canceled.kind is WebhookKind.PAYMENT_CANCELED and canceled.reference == held.reference


async def test_requires_action_webhook(gateway: StripeGateway, fake: FakeStripe) -> None:
    started = await gateway.authorize(payment(cards.THREE_D_SECURE))
    event = await gateway.parse_webhook(
        *fake.signed_event("payment_intent.requires_action", fake.payment_intent(started.reference)))

    assert event.kind is WebhookKind.PAYMENT_REQUIRES_ACTION and event.reference == started.reference


async def test_refund_webhooks(gateway: StripeGateway, fake: FakeStripe) -> None:
    paid = await gateway.authorize(payment(amount="20.00", currency="USD"))
    refund = await gateway.refund(paid.reference, Decimal("7.50"), "USD", f"ref-{uuid.uuid4()}", None)

    updated = await gateway.parse_webhook(*fake.refund_event(refund.reference, "refund.updated"))
    charge_refunded = await gateway.parse_webhook(*fake.charge_refunded_event(paid.reference))
    failed = await gateway.parse_webhook(*fake.signed_event(
        "refund.updated", fake.refund(refund.reference) | {"status": "failed", "failure_reason": "expired_or_canceled_card"}))

    for event in (updated, charge_refunded):
        assert event.kind is WebhookKind.REFUND_SUCCEEDED
        assert (event.reference, event.refund_reference) == (paid.reference, refund.reference)
        assert (event.amount, event.currency) == (Decimal("7.50"), "USD")
    assert failed.kind is WebhookKind.REFUND_FAILED and failed.decline_code == "expired_or_canceled_card"


async def test_pending_refund_webhook_is_ignored(gateway: StripeGateway, fake: FakeStripe) -> None:
    paid = await gateway.authorize(payment())
    refund = await gateway.refund(paid.reference, Decimal("1.00"), "EUR", f"ref-{uuid.uuid4()}", None)
    event = await gateway.parse_webhook(
        *fake.signed_event("refund.created", fake.refund(refund.reference) | {"status": "pending"}))

    assert event.kind is WebhookKind.IGNORED and event.refund_reference == refund.reference


async def test_dispute_opened_webhook(gateway: StripeGateway, fake: FakeStripe) -> None:
    paid = await gateway.authorize(payment(cards.DISPUTED, amount="60.00"))
    event = await gateway.parse_webhook(*fake.dispute_event(paid.reference, "charge.dispute.created"))

    assert event.kind is WebhookKind.DISPUTE_OPENED
    assert event.reference == paid.reference
    assert event.dispute is not None
    assert event.dispute.reference.startswith("du_")
    assert (event.dispute.amount, event.dispute.currency) == (Decimal("60.00"), "EUR")
    assert event.dispute.reason == "fraudulent"
    due_by = event.payload["data"]["object"]["evidence_details"]["due_by"]
    assert event.dispute.evidence_due_by == datetime.fromtimestamp(due_by, UTC)
    assert event.dispute.evidence_due_by > datetime.now(UTC)


async def test_dispute_updated_webhook(gateway: StripeGateway, fake: FakeStripe) -> None:
    paid = await gateway.authorize(payment(cards.DISPUTED))
    event = await gateway.parse_webhook(
        *fake.dispute_event(paid.reference, "charge.dispute.updated", status="under_review"))

    assert event.kind is WebhookKind.DISPUTE_UPDATED and event.reference == paid.reference


@pytest.mark.parametrize(("status", "kind"), [("won", WebhookKind.DISPUTE_WON), ("lost", WebhookKind.DISPUTE_LOST)])
async def test_dispute_closed_webhook(gateway: StripeGateway, fake: FakeStripe, status: str,
                                      kind: WebhookKind) -> None:
    paid = await gateway.authorize(payment(cards.DISPUTED))
    dispute_id = json.loads(fake.dispute_event(paid.reference)[0])["data"]["object"]["id"]

    event = await gateway.parse_webhook(*fake.dispute_event(paid.reference, "charge.dispute.closed", status=status))

    assert event.kind is kind
    assert event.dispute is not None and event.dispute.reference == dispute_id
    assert event.reference == paid.reference


async def test_other_events_are_ignored(gateway: StripeGateway, fake: FakeStripe) -> None:
    event = await gateway.parse_webhook(*fake.signed_event("customer.created", {"id": "cus_1", "object": "customer"}))

    assert event.kind is WebhookKind.IGNORED and event.reference is None
