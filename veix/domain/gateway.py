"""The contract every payment gateway adapter implements.

The processor (``veix.domain.services.payments``) talks to gateways only
through :class:`PaymentGateway`; adapters live in ``veix.gateways`` (sandbox,
Stripe, PayPal, crypto) and translate their provider's objects into the
value types below. ``veix.gateways.base`` re-exports this module, so an
adapter imports from there.

Rules every adapter follows:

* Amounts are exact ``Decimal`` in major units of ``currency`` (``"12.50"``
  EUR); an adapter converts to the provider's minor units itself.
* A *decline* (the customer's card, wallet or chain said no) is a normal
  result: ``GatewayResult(status=FAILED, decline_code=...)``. It is never
  retried on another gateway.
* An *outage* (timeout, connection refused, HTTP 5xx, rate limited by the
  provider) raises :class:`GatewayUnavailable`; the router may fail over to
  the next capable gateway once. Anything else the provider refuses (HTTP
  4xx that is not a decline, a malformed answer) raises :class:`GatewayFailure`.
  Neither message may contain card numbers or secrets.
* Every call that creates something carries an idempotency key the adapter
  passes on to the provider, so a retried call never charges twice.
* ``parse_webhook`` verifies the signature (and timestamp tolerance) before
  it parses anything and raises :class:`WebhookRejected` otherwise.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import Enum
from typing import Any, Protocol

from veix.domain.transactions import Gateway


class PaymentMethodType(str, Enum):
    CARD = "card"
    PAYPAL = "paypal"
    CRYPTO = "crypto"


@dataclass(frozen=True, slots=True)
class GatewayCapabilities:
    """What a gateway can do; the router reads nothing else."""

    methods: frozenset[PaymentMethodType]
    currencies: frozenset[str]
    manual_capture: bool = True
    partial_capture: bool = True
    refunds: bool = True
    partial_refunds: bool = True
    multiple_captures: bool = False

    def supports(self, method: PaymentMethodType, currency: str) -> bool:
        return method in self.methods and currency in self.currencies


@dataclass(frozen=True, slots=True)
class CardDetails:
    """Raw card data (sandbox and test only; production uses gateway tokens).

    ``repr`` never shows the number or CVC.
    """

    number: str
    exp_month: int
    exp_year: int
    cvc: str

    def __repr__(self) -> str:
        return f"CardDetails(last4={self.number[-4:]!r}, exp={self.exp_month:02d}/{self.exp_year})"

    @property
    def last4(self) -> str:
        return self.number[-4:]


@dataclass(frozen=True, slots=True)
class PaypalDetails:
    return_url: str
    cancel_url: str


@dataclass(frozen=True, slots=True)
class PaymentRequest:
    payment_id: uuid.UUID
    business_id: uuid.UUID
    amount: Decimal
    currency: str
    method: PaymentMethodType
    capture: bool
    idempotency_key: str
    card: CardDetails | None = None
    paypal: PaypalDetails | None = None
    crypto_asset: str | None = None
    description: str | None = None
    customer_id: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    # Stripe Connect: the business's connected account and Veix's fee on it.
    connected_account: str | None = None
    application_fee: Decimal | None = None


class GatewayPaymentStatus(str, Enum):
    REQUIRES_ACTION = "requires_action"  # customer must act: 3-D Secure, PayPal approval, crypto transfer
    PROCESSING = "processing"            # the provider is still working; a webhook will tell
    AUTHORIZED = "authorized"            # funds reserved, waiting for capture
    SUCCEEDED = "succeeded"              # captured (``captured_amount`` tells how much)
    FAILED = "failed"                    # declined or expired; see ``decline_code``
    CANCELED = "canceled"


@dataclass(frozen=True, slots=True)
class GatewayResult:
    status: GatewayPaymentStatus
    reference: str
    captured_amount: Decimal = Decimal(0)
    next_action: Mapping[str, Any] | None = None
    # Stable lower-case decline codes: card_declined, insufficient_funds,
    # expired_card, incorrect_cvc, processing_error, authentication_failed,
    # payer_action_required, underpaid, expired, ...
    decline_code: str | None = None
    decline_message: str | None = None
    display: str | None = None          # "Visa •••• 4242", "PayPal", "ETH 0x12…ab"
    provider_status: str | None = None  # the provider's own word, for the metadata
    details: Mapping[str, Any] = field(default_factory=dict)


class RefundStatus(str, Enum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class RefundResult:
    reference: str
    status: RefundStatus
    amount: Decimal


class WebhookKind(str, Enum):
    """Provider events mapped to what Veix does with them."""

    PAYMENT_REQUIRES_ACTION = "payment.requires_action"
    PAYMENT_PROCESSING = "payment.processing"
    PAYMENT_AUTHORIZED = "payment.authorized"
    PAYMENT_SUCCEEDED = "payment.succeeded"
    PAYMENT_FAILED = "payment.failed"
    PAYMENT_CANCELED = "payment.canceled"
    REFUND_SUCCEEDED = "refund.succeeded"
    REFUND_FAILED = "refund.failed"
    DISPUTE_OPENED = "dispute.opened"
    DISPUTE_UPDATED = "dispute.updated"
    DISPUTE_WON = "dispute.won"
    DISPUTE_LOST = "dispute.lost"
    IGNORED = "ignored"                  # verified, stored, nothing to do


@dataclass(frozen=True, slots=True)
class DisputeInfo:
    reference: str
    amount: Decimal
    currency: str
    reason: str
    evidence_due_by: datetime | None = None


@dataclass(frozen=True, slots=True)
class WebhookEvent:
    event_id: str                       # the provider's event id: processed once
    kind: WebhookKind
    provider_type: str                  # e.g. "payment_intent.succeeded"
    occurred_at: datetime               # UTC
    reference: str | None = None        # the payment's gateway reference
    amount: Decimal | None = None       # captured amount for payment events
    currency: str | None = None
    decline_code: str | None = None
    decline_message: str | None = None
    refund_reference: str | None = None
    dispute: DisputeInfo | None = None
    payload: Mapping[str, Any] = field(default_factory=dict)


class GatewayUnavailable(Exception):
    """Timeout, connection failure, 5xx or provider rate limit: may fail over."""


class GatewayFailure(Exception):
    """The provider refused the request for a reason that is not a decline."""


class WebhookRejected(Exception):
    """Bad signature, stale timestamp or a body that cannot be parsed."""


class PaymentGateway(Protocol):
    name: Gateway
    capabilities: GatewayCapabilities

    async def authorize(self, request: PaymentRequest) -> GatewayResult:
        """Create the payment; capture at once when ``request.capture``."""
        ...

    async def confirm(self, reference: str, params: Mapping[str, Any]) -> GatewayResult:
        """Continue after the customer acted (3-D Secure done, PayPal approved)."""
        ...

    async def retrieve(self, reference: str) -> GatewayResult:
        ...

    async def capture(
        self, reference: str, amount: Decimal, currency: str, idempotency_key: str
    ) -> GatewayResult:
        ...

    async def cancel(self, reference: str, idempotency_key: str) -> GatewayResult:
        ...

    async def refund(
        self, reference: str, amount: Decimal, currency: str, idempotency_key: str,
        reason: str | None,
    ) -> RefundResult:
        ...

    async def parse_webhook(self, body: bytes, headers: Mapping[str, str]) -> WebhookEvent:
        """Verify, then parse. ``headers`` keys are lower-case."""
        ...
