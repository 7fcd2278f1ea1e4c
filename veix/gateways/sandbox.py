"""The built-in sandbox acquirer: behaves like Stripe's test mode, in process.

Test card numbers (any future expiry, any 3-digit CVC; README "Sandbox"):

===================  ==========================================================
number               outcome
===================  ==========================================================
4242424242424242     succeeds (Visa); 5555555555554444 succeeds (Mastercard)
4000000000000002     declined: ``card_declined``
4000000000009995     declined: ``insufficient_funds``
4000000000000069     declined: ``expired_card``
4000000000000127     declined: ``incorrect_cvc``
4000000000000119     declined: ``processing_error``
4000002500003155     3-D Secure required: ``REQUIRES_ACTION`` with a ``nextAction``
                     redirect; ``POST /v1/sandbox/3ds/{reference}`` completes it
                     (``{"outcome": "fail"}`` fails it)
4000000000000259     succeeds, then the cardholder disputes it (a
                     ``dispute.opened`` event follows within a second)
===================  ==========================================================

Evidence containing ``winning_evidence`` wins a sandbox dispute and
``losing_evidence`` loses it (as in Stripe's test mode); the outcome arrives
as an event a moment later. Events are signed the Standard Webhooks way with
the sandbox webhook secret and go through the same inbound path as any
gateway's (``POST /v1/webhooks/sandbox`` accepts them too, for tests and
replays).

The sandbox keeps what it must remember across processes in its references
(``sbx_pi_<kind>_<id>``): a 3-D Secure payment confirmed on another worker
still completes. ``latency`` (``VEIX_SANDBOX_LATENCY_MS``), ``failure_rate``
(``VEIX_SANDBOX_FAILURE_RATE``) and :meth:`fail_next` inject slowness and
outages for tests.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import random
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from veix.domain.payments import card_display
from veix.domain.transactions import Gateway
from veix.gateways.base import (
    DisputeInfo,
    GatewayCapabilities,
    GatewayFailure,
    GatewayPaymentStatus,
    GatewayResult,
    GatewayUnavailable,
    PaymentMethodType,
    PaymentRequest,
    RefundResult,
    RefundStatus,
    WebhookEvent,
    WebhookKind,
    WebhookRejected,
)

CURRENCIES = frozenset({"EUR", "USD", "GBP", "CHF", "SEK", "NOK", "DKK", "PLN", "CZK", "JPY", "CAD", "AUD"})
TOLERANCE_SECONDS = 300

DECLINES = {
    "4000000000000002": ("card_declined", "Your card was declined."),
    "4000000000009995": ("insufficient_funds", "Your card has insufficient funds."),
    "4000000000000069": ("expired_card", "Your card has expired."),
    "4000000000000127": ("incorrect_cvc", "Your card's security code is incorrect."),
    "4000000000000119": ("processing_error", "An error occurred while processing your card."),
}
THREE_DS = "4000002500003155"
DISPUTE = "4000000000000259"
DISPUTE_AMOUNT_DAYS = 7  # evidence due this many days after the dispute opens


@dataclass
class _Intent:
    reference: str
    amount: Decimal
    currency: str
    capture: bool
    status: GatewayPaymentStatus
    captured: Decimal = Decimal(0)
    refunded: Decimal = Decimal(0)
    display: str = "Card"
    refunds: dict[str, Decimal] = field(default_factory=dict)


def _utc(moment: datetime) -> datetime:
    """A timestamp without a zone is read as UTC (time is UTC everywhere in Veix)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """Standard Webhooks signature (``v1,<base64 HMAC-SHA256>``), as in NETWORK.md."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    mac = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


class SandboxGateway:
    name = Gateway.SANDBOX
    capabilities = GatewayCapabilities(
        methods=frozenset({PaymentMethodType.CARD}), currencies=CURRENCIES,
        manual_capture=True, partial_capture=True, refunds=True, partial_refunds=True)

    def __init__(self, webhook_secret: str, *, public_url: str = "http://127.0.0.1:8000",
                 latency: float = 0.0, failure_rate: float = 0.0, event_delay: float = 0.2,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.webhook_secret = webhook_secret
        self.public_url = public_url.rstrip("/")
        self.latency = latency
        self.failure_rate = failure_rate
        self.event_delay = event_delay
        self.clock = clock
        self._intents: dict[str, _Intent] = {}
        self._by_key: dict[str, GatewayResult] = {}
        self._failures = 0
        self._listener: Callable[[WebhookEvent], Awaitable[Any]] | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------ test controls

    def fail_next(self, n: int = 1) -> None:
        """The next ``n`` calls fail as an outage (``GatewayUnavailable``)."""
        self._failures = n

    def listen(self, listener: Callable[[WebhookEvent], Awaitable[Any]]) -> None:
        """Where the sandbox's own events go (the app's inbound event path)."""
        self._listener = listener

    async def _enter(self) -> None:
        if self.latency:
            await asyncio.sleep(self.latency)
        if self._failures > 0:
            self._failures -= 1
            raise GatewayUnavailable("sandbox: injected outage (HTTP 503)")
        if self.failure_rate and random.random() < self.failure_rate:
            raise GatewayUnavailable("sandbox: random outage (VEIX_SANDBOX_FAILURE_RATE)")

    def _emit(self, event: WebhookEvent) -> None:
        listener = self._listener
        if listener is None:
            return

        async def later() -> None:
            # An event that arrives before its payment committed is kept and applied when it does.
            await asyncio.sleep(self.event_delay)
            await listener(event)

        task = asyncio.get_running_loop().create_task(later())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------ the Protocol

    async def authorize(self, request: PaymentRequest) -> GatewayResult:
        await self._enter()
        if request.idempotency_key in self._by_key:
            return self._by_key[request.idempotency_key]
        card = request.card
        if card is None:
            raise GatewayFailure("sandbox: only card payments")
        kind = "3ds" if card.number == THREE_DS else "dsp" if card.number == DISPUTE else "std"
        reference = f"sbx_pi_{kind}_{uuid.uuid4().hex[:20]}"
        display = card_display(card.number)
        decline = DECLINES.get(card.number)
        intent = _Intent(reference, request.amount, request.currency, request.capture,
                         GatewayPaymentStatus.FAILED if decline else GatewayPaymentStatus.PROCESSING,
                         display=display)
        self._intents[reference] = intent
        if decline:
            result = GatewayResult(GatewayPaymentStatus.FAILED, reference, decline_code=decline[0],
                                   decline_message=decline[1], display=display,
                                   provider_status="requires_payment_method")
        elif kind == "3ds":
            intent.status = GatewayPaymentStatus.REQUIRES_ACTION
            result = GatewayResult(
                GatewayPaymentStatus.REQUIRES_ACTION, reference, display=display, provider_status="requires_action",
                next_action={"type": "redirect_to_url", "url": f"{self.public_url}/v1/sandbox/3ds/{reference}",
                             "method": "POST"})
        else:
            result = self._authorized(intent, capture=request.capture)
            if kind == "dsp" and request.capture:
                self._emit(self._dispute_event(intent, WebhookKind.DISPUTE_OPENED))
        self._by_key[request.idempotency_key] = result
        return result

    def _authorized(self, intent: _Intent, *, capture: bool) -> GatewayResult:
        if capture:
            intent.status = GatewayPaymentStatus.SUCCEEDED
            intent.captured = intent.amount
            return GatewayResult(GatewayPaymentStatus.SUCCEEDED, intent.reference, captured_amount=intent.amount,
                                 display=intent.display, provider_status="succeeded")
        intent.status = GatewayPaymentStatus.AUTHORIZED
        return GatewayResult(GatewayPaymentStatus.AUTHORIZED, intent.reference, display=intent.display,
                             provider_status="requires_capture")

    def _intent(self, reference: str) -> _Intent:
        intent = self._intents.get(reference)
        if intent is None:
            if not reference.startswith("sbx_pi_"):
                raise GatewayFailure(f"sandbox: no such payment {reference[:40]!r}")
            # Created by another worker: the reference says enough for a sandbox.
            intent = _Intent(reference, Decimal(0), "", True, GatewayPaymentStatus.REQUIRES_ACTION
                             if "_3ds_" in reference else GatewayPaymentStatus.AUTHORIZED)
            self._intents[reference] = intent
        return intent

    async def confirm(self, reference: str, params: Mapping[str, Any]) -> GatewayResult:
        await self._enter()
        intent = self._intent(reference)
        if intent.status is not GatewayPaymentStatus.REQUIRES_ACTION:
            return await self.retrieve(reference)
        if params.get("outcome") == "fail":
            intent.status = GatewayPaymentStatus.FAILED
            return GatewayResult(GatewayPaymentStatus.FAILED, reference, decline_code="authentication_failed",
                                 decline_message="3-D Secure authentication failed.",
                                 provider_status="requires_payment_method")
        return self._authorized(intent, capture=intent.capture)

    async def retrieve(self, reference: str) -> GatewayResult:
        intent = self._intent(reference)
        return GatewayResult(intent.status, reference, captured_amount=intent.captured, display=intent.display)

    async def capture(self, reference: str, amount: Decimal, currency: str, idempotency_key: str) -> GatewayResult:
        await self._enter()
        if idempotency_key in self._by_key:
            return self._by_key[idempotency_key]
        intent = self._intent(reference)
        if intent.status is not GatewayPaymentStatus.AUTHORIZED:
            raise GatewayFailure(f"sandbox: a {intent.status.value} payment cannot be captured")
        if intent.amount and amount > intent.amount:
            raise GatewayFailure("sandbox: capture exceeds the authorized amount")
        intent.status = GatewayPaymentStatus.SUCCEEDED
        intent.captured = amount
        result = GatewayResult(GatewayPaymentStatus.SUCCEEDED, reference, captured_amount=amount,
                               display=intent.display, provider_status="succeeded")
        self._by_key[idempotency_key] = result
        if "_dsp_" in reference:
            self._emit(self._dispute_event(intent, WebhookKind.DISPUTE_OPENED))
        return result

    async def cancel(self, reference: str, idempotency_key: str) -> GatewayResult:
        await self._enter()
        intent = self._intent(reference)
        if intent.status is GatewayPaymentStatus.SUCCEEDED:
            raise GatewayFailure("sandbox: a captured payment cannot be canceled")
        intent.status = GatewayPaymentStatus.CANCELED
        return GatewayResult(GatewayPaymentStatus.CANCELED, reference, provider_status="canceled")

    async def refund(self, reference: str, amount: Decimal, currency: str, idempotency_key: str,
                     reason: str | None) -> RefundResult:
        await self._enter()
        intent = self._intent(reference)
        if idempotency_key in intent.refunds:
            return RefundResult(f"sbx_re_{hashlib.sha256(idempotency_key.encode()).hexdigest()[:20]}",
                                RefundStatus.SUCCEEDED, intent.refunds[idempotency_key])
        if intent.captured and intent.refunded + amount > intent.captured:
            raise GatewayFailure("sandbox: refund exceeds the captured amount")
        intent.refunded += amount
        intent.refunds[idempotency_key] = amount
        return RefundResult(f"sbx_re_{hashlib.sha256(idempotency_key.encode()).hexdigest()[:20]}",
                            RefundStatus.SUCCEEDED, amount)

    async def submit_dispute_evidence(self, dispute_reference: str, evidence: Mapping[str, Any]) -> None:
        await self._enter()
        text = json.dumps(evidence, default=str)
        payment_reference = dispute_reference.replace("sbx_dp_", "sbx_pi_", 1)
        intent = self._intent(payment_reference)
        if "winning_evidence" in text:
            self._emit(self._dispute_event(intent, WebhookKind.DISPUTE_WON))
        elif "losing_evidence" in text:
            self._emit(self._dispute_event(intent, WebhookKind.DISPUTE_LOST))

    def _dispute_event(self, intent: _Intent, kind: WebhookKind) -> WebhookEvent:
        now = self.clock()
        reference = intent.reference.replace("sbx_pi_", "sbx_dp_", 1)
        amount = intent.captured or intent.amount
        return WebhookEvent(
            event_id=f"evt_{uuid.uuid4().hex[:24]}", kind=kind, provider_type=kind.value, occurred_at=now,
            reference=intent.reference, amount=amount, currency=intent.currency,
            dispute=DisputeInfo(reference, amount, intent.currency, "fraudulent",
                                now + timedelta(days=DISPUTE_AMOUNT_DAYS)))

    # ------------------------------------------------------------ webhooks

    def signed(self, event: Mapping[str, Any]) -> tuple[bytes, dict[str, str]]:
        """A signed webhook body and headers for ``POST /v1/webhooks/sandbox``."""
        body = json.dumps(event).encode()
        msg_id = str(event.get("id") or f"evt_{uuid.uuid4().hex[:24]}")
        ts = int(time.time())
        return body, {"webhook-id": msg_id, "webhook-timestamp": str(ts),
                      "webhook-signature": sign(self.webhook_secret, msg_id, ts, body),
                      "content-type": "application/json"}

    async def parse_webhook(self, body: bytes, headers: Mapping[str, str]) -> WebhookEvent:
        msg_id = headers.get("webhook-id", "")
        ts_text = headers.get("webhook-timestamp", "")
        signatures = headers.get("webhook-signature", "")
        if not msg_id or not ts_text.isdigit() or not signatures:
            raise WebhookRejected("missing webhook-id, webhook-timestamp or webhook-signature")
        ts = int(ts_text)
        if abs(time.time() - ts) > TOLERANCE_SECONDS:
            raise WebhookRejected("webhook-timestamp is outside the 300 s tolerance")
        expected = sign(self.webhook_secret, msg_id, ts, body)
        if not any(hmac.compare_digest(expected, s) for s in signatures.split()):
            raise WebhookRejected("bad signature")
        try:
            data = json.loads(body)
            kind = WebhookKind(data["type"]) if data.get("type") in WebhookKind._value2member_map_ \
                else WebhookKind.IGNORED
            obj = data.get("data") or {}
            dispute = obj.get("dispute")
            return WebhookEvent(
                event_id=str(data["id"]), kind=kind, provider_type=str(data["type"]),
                occurred_at=datetime.fromtimestamp(int(data.get("created", ts)), UTC),
                reference=obj.get("payment"), refund_reference=obj.get("refund"),
                amount=Decimal(str(obj["amount"])) if obj.get("amount") is not None else None,
                currency=obj.get("currency"), decline_code=obj.get("decline_code"),
                decline_message=obj.get("decline_message"),
                dispute=None if not dispute else DisputeInfo(
                    str(dispute["id"]), Decimal(str(dispute["amount"])), str(dispute.get("currency", "")),
                    str(dispute.get("reason", "general")),
                    _utc(datetime.fromisoformat(dispute["evidence_due_by"])) if dispute.get("evidence_due_by")
                    else None),
                payload=data)
        except (ValueError, KeyError, TypeError, AttributeError, ArithmeticError, OSError) as exc:
            raise WebhookRejected(f"malformed event: {type(exc).__name__}") from None
