"""Stripe card payments through the official SDK (PaymentIntents, Refunds, webhooks).

One :class:`stripe.StripeClient` per gateway, on the SDK's httpx client so every
call is a real ``*_async`` call on the running event loop. Errors map onto the
contract in :mod:`veix.domain.gateway`:

* ``stripe.CardError`` (HTTP 402) is a decline: a ``FAILED`` result, never raised.
* ``stripe.APIConnectionError`` (connection refused, timeout), HTTP 5xx and
  ``stripe.RateLimitError`` (429) raise :class:`GatewayUnavailable`.
* Every other ``stripe.StripeError`` raises :class:`GatewayFailure`.

Connect payments are destination charges: ``transfer_data.destination`` is the
business's connected account and ``application_fee_amount`` Veix's fee. A fee
without a connected account has nothing to be taken from and is not sent.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import stripe

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
    from_minor,
    to_minor,
)

if TYPE_CHECKING:
    from stripe.params import (
        PaymentIntentCaptureParams,
        PaymentIntentConfirmParams,
        PaymentIntentCreateParams,
        RefundCreateParams,
    )

__all__ = ["DEFAULT_CURRENCIES", "StripeGateway"]

DEFAULT_CURRENCIES = frozenset("EUR USD GBP CHF SEK NOK DKK PLN CZK JPY CAD AUD".split())
WEBHOOK_TOLERANCE_SECONDS = 300
EVIDENCE_TEXT_LIMIT = 20_000  # Stripe's limit per text field (150,000 characters in all)
_TEXT_EVIDENCE = frozenset({
    "access_activity_log", "billing_address", "cancellation_policy_disclosure", "cancellation_rebuttal",
    "customer_email_address", "customer_name", "customer_purchase_ip", "duplicate_charge_explanation",
    "duplicate_charge_id", "product_description", "refund_policy_disclosure", "refund_refusal_explanation",
    "service_date", "shipping_address", "shipping_carrier", "shipping_date", "shipping_tracking_number",
    "uncategorized_text",
})
_FILE_EVIDENCE = frozenset({
    "cancellation_policy", "customer_communication", "customer_signature", "duplicate_charge_documentation",
    "receipt", "refund_policy", "service_documentation", "shipping_documentation", "uncategorized_file",
})

_DECLINE_CODES = frozenset({
    "card_declined", "insufficient_funds", "expired_card", "incorrect_cvc", "processing_error",
    "authentication_failed",
})
# Stripe words that mean one of ours.
_DECLINE_ALIASES = {
    "authentication_required": "authentication_failed",
    "payment_intent_authentication_failure": "authentication_failed",
    "invalid_cvc": "incorrect_cvc",
    "incorrect_zip": "card_declined",
}
_REFUND_REASONS = frozenset({"duplicate", "fraudulent", "requested_by_customer"})
_REFUND_STATUS = {
    "succeeded": RefundStatus.SUCCEEDED,
    "pending": RefundStatus.PENDING,
    "requires_action": RefundStatus.PENDING,
    "failed": RefundStatus.FAILED,
    "canceled": RefundStatus.FAILED,
}
_BRANDS = {
    "visa": "Visa", "mastercard": "Mastercard", "amex": "American Express", "discover": "Discover",
    "diners": "Diners Club", "jcb": "JCB", "unionpay": "UnionPay", "cartes_bancaires": "Cartes Bancaires",
    "eftpos_au": "eftpos", "interac": "Interac", "link": "Link",
}
_PAYMENT_EVENTS = {
    "payment_intent.succeeded": WebhookKind.PAYMENT_SUCCEEDED,
    "payment_intent.processing": WebhookKind.PAYMENT_PROCESSING,
    "payment_intent.payment_failed": WebhookKind.PAYMENT_FAILED,
    "payment_intent.canceled": WebhookKind.PAYMENT_CANCELED,
    "payment_intent.requires_action": WebhookKind.PAYMENT_REQUIRES_ACTION,
    "payment_intent.amount_capturable_updated": WebhookKind.PAYMENT_AUTHORIZED,
}
_DISPUTE_EVENTS = {
    "charge.dispute.created": WebhookKind.DISPUTE_OPENED,
    "charge.dispute.updated": WebhookKind.DISPUTE_UPDATED,
}
# Card numbers (12-19 digits, maybe spaced) and keys never leave in a message.
_SECRETS = re.compile(r"\b\d(?:[ -]?\d){11,18}\b|\b(?:sk|rk|pk|whsec)_[A-Za-z0-9_*]+")
_EXPAND = ["payment_method"]

T = TypeVar("T")


def _safe(message: str | None) -> str | None:
    return _SECRETS.sub("[redacted]", message) if message else message


def normalise_decline(code: str | None, decline_code: str | None) -> str:
    """Stripe's ``decline_code`` (or ``code``) -> one of Veix's stable decline codes."""
    for word in (decline_code, code):
        if word in _DECLINE_CODES:
            return word
        if word in _DECLINE_ALIASES:
            return _DECLINE_ALIASES[word]
    return "card_declined"


def _display(payment_method: Any, fallback_last4: str | None = None) -> str | None:
    card = payment_method.get("card") if isinstance(payment_method, Mapping) else None
    if isinstance(card, Mapping) and card.get("last4"):
        brand = _BRANDS.get(str(card.get("brand") or ""), "Card")
        return f"{brand} •••• {card['last4']}"
    return f"Card •••• {fallback_last4}" if fallback_last4 else None


def _to_utc(epoch: Any) -> datetime | None:
    return datetime.fromtimestamp(int(epoch), tz=UTC) if epoch is not None else None


def _major(value: Any, currency: str) -> Decimal | None:
    return from_minor(int(value), currency) if value is not None else None


def _id_of(value: Any) -> str | None:
    """A field Stripe sends either as an id or as the expanded object."""
    if isinstance(value, Mapping):
        return str(value["id"]) if value.get("id") else None
    return str(value) if value else None


class StripeGateway:
    """:class:`~veix.domain.gateway.PaymentGateway` on Stripe PaymentIntents."""

    name = Gateway.STRIPE

    def __init__(
        self,
        api_key: str,
        webhook_secret: str,
        *,
        base_url: str | None = None,
        timeout: float = 10.0,
        max_network_retries: int = 0,
        currencies: frozenset[str] | None = None,
    ) -> None:
        self.capabilities = GatewayCapabilities(
            methods=frozenset({PaymentMethodType.CARD}),
            currencies=currencies if currencies is not None else DEFAULT_CURRENCIES,
            manual_capture=True,
            partial_capture=True,
            refunds=True,
            partial_refunds=True,
        )
        self._webhook_secret = webhook_secret
        self._http = stripe.HTTPXClient(timeout=timeout)
        self._client = stripe.StripeClient(
            api_key,
            base_addresses={"api": base_url.rstrip("/")} if base_url else None,
            max_network_retries=max_network_retries,
            http_client=self._http,
        )

    async def aclose(self) -> None:
        """Close the connection pool (at shutdown)."""
        await self._http.close_async()  # type: ignore[no-untyped-call]

    # -- payments --------------------------------------------------------

    async def authorize(self, request: PaymentRequest) -> GatewayResult:
        if request.method is not PaymentMethodType.CARD or request.card is None:
            raise GatewayFailure("Stripe takes card payments with card details only")
        currency = request.currency.upper()
        params: PaymentIntentCreateParams = {
            "amount": to_minor(request.amount, currency),
            "currency": currency.lower(),
            "capture_method": "automatic" if request.capture else "manual",
            "confirm": True,
            # No redirect-based methods, so confirming needs no return_url (card 3-D Secure still works).
            "automatic_payment_methods": {"enabled": True, "allow_redirects": "never"},
            # Raw card data: the test-mode path; production sends a PaymentMethod token instead.
            "payment_method_data": {
                "type": "card",
                "card": {  # type: ignore[typeddict-unknown-key]  # the SDK types only tokens here
                    "number": request.card.number,
                    "exp_month": request.card.exp_month,
                    "exp_year": request.card.exp_year,
                    "cvc": request.card.cvc,
                },
            },
            "metadata": self._metadata(request),
            "expand": _EXPAND,
        }
        if request.description:
            params["description"] = request.description[:1000]
        if request.connected_account:
            params["transfer_data"] = {"destination": request.connected_account}
            if request.application_fee is not None:
                params["application_fee_amount"] = to_minor(request.application_fee, currency)
        try:
            intent = await self._call(self._client.v1.payment_intents.create_async(
                params, {"idempotency_key": request.idempotency_key}), declines=True)
        except stripe.CardError as err:
            return self._declined(err, request.card.last4)
        return self._result(intent, request.card.last4)

    async def confirm(self, reference: str, params: Mapping[str, Any]) -> GatewayResult:
        """Confirm again after 3-D Secure; if Stripe already moved on, report where it is."""
        body: PaymentIntentConfirmParams = {"expand": _EXPAND}
        if params.get("payment_method"):
            body["payment_method"] = str(params["payment_method"])
        if params.get("return_url"):
            body["return_url"] = str(params["return_url"])
        try:
            intent = await self._call(self._client.v1.payment_intents.confirm_async(reference, body), declines=True)
        except stripe.CardError as err:
            return self._declined(err)
        except GatewayFailure as failure:
            cause = failure.__cause__
            if isinstance(cause, stripe.InvalidRequestError) and cause.code == "payment_intent_unexpected_state":
                return await self.retrieve(reference)
            raise
        return self._result(intent)

    async def retrieve(self, reference: str) -> GatewayResult:
        intent = await self._call(self._client.v1.payment_intents.retrieve_async(reference, {"expand": _EXPAND}))
        return self._result(intent)

    async def capture(self, reference: str, amount: Decimal, currency: str, idempotency_key: str) -> GatewayResult:
        params: PaymentIntentCaptureParams = {"amount_to_capture": to_minor(amount, currency.upper()),
                                              "expand": _EXPAND}
        intent = await self._call(self._client.v1.payment_intents.capture_async(
            reference, params, {"idempotency_key": idempotency_key}))
        return self._result(intent)

    async def cancel(self, reference: str, idempotency_key: str) -> GatewayResult:
        intent = await self._call(self._client.v1.payment_intents.cancel_async(
            reference, {"expand": _EXPAND}, {"idempotency_key": idempotency_key}))
        return self._result(intent)

    async def refund(
        self, reference: str, amount: Decimal, currency: str, idempotency_key: str, reason: str | None,
    ) -> RefundResult:
        params: RefundCreateParams = {"payment_intent": reference, "amount": to_minor(amount, currency.upper())}
        if reason == "duplicate" or reason == "fraudulent" or reason == "requested_by_customer":
            params["reason"] = reason  # Stripe takes only these three
        elif reason:
            params["metadata"] = {"veix_reason": reason[:500]}
        refund = await self._call(self._client.v1.refunds.create_async(
            params, {"idempotency_key": idempotency_key}))
        return RefundResult(
            reference=refund["id"],
            status=_REFUND_STATUS.get(refund["status"], RefundStatus.PENDING),
            amount=from_minor(refund["amount"], refund["currency"].upper()),
        )

    async def submit_dispute_evidence(self, dispute_reference: str, evidence: Mapping[str, Any]) -> None:
        """Send the merchant's evidence and submit it (``POST /v1/disputes/{id}``, ``submit=true``).

        Keys that are Stripe's own evidence fields go as they are (text fields as text, file
        fields only as ``file_...`` ids); anything else is appended, as JSON, to
        ``uncategorized_text``, so nothing the merchant gave is dropped.
        """
        fields: dict[str, str] = {}
        extra: dict[str, Any] = {}
        for key, value in evidence.items():
            if key in _TEXT_EVIDENCE and isinstance(value, str):
                fields[key] = value[:EVIDENCE_TEXT_LIMIT]
            elif key in _FILE_EVIDENCE and isinstance(value, str) and value.startswith("file_"):
                fields[key] = value
            else:
                extra[key] = value
        if extra:
            text = (fields.get("uncategorized_text", "") + "\n" + json.dumps(extra, default=str)).strip()
            fields["uncategorized_text"] = text[:EVIDENCE_TEXT_LIMIT]
        params: Any = {"evidence": fields, "submit": True}
        await self._call(self._client.v1.disputes.update_async(dispute_reference, params))

    # -- webhooks --------------------------------------------------------

    async def parse_webhook(self, body: bytes, headers: Mapping[str, str]) -> WebhookEvent:
        signature = next((v for k, v in headers.items() if k.lower() == "stripe-signature"), None)
        try:
            event = self._client.construct_event(
                body, signature, self._webhook_secret, tolerance=WEBHOOK_TOLERANCE_SECONDS).to_dict(for_json=True)
            return self._event(event)
        except stripe.SignatureVerificationError as err:
            raise WebhookRejected(f"Stripe signature rejected: {_safe(err.user_message)}") from None
        except (ValueError, TypeError, KeyError, AttributeError, ArithmeticError, OSError) as err:
            raise WebhookRejected(f"malformed Stripe event: {type(err).__name__}") from None

    def _event(self, event: dict[str, Any]) -> WebhookEvent:
        event_type = str(event["type"])
        obj: dict[str, Any] = event["data"]["object"]
        common: dict[str, Any] = {
            "event_id": str(event["id"]),
            "provider_type": event_type,
            "occurred_at": _to_utc(event["created"]),
            "payload": event,
        }
        currency = str(obj["currency"]).upper() if obj.get("currency") else None
        if event_type in _PAYMENT_EVENTS:
            kind = _PAYMENT_EVENTS[event_type]
            amount_field = {WebhookKind.PAYMENT_SUCCEEDED: "amount_received",
                            WebhookKind.PAYMENT_AUTHORIZED: "amount_capturable"}.get(kind, "amount")
            error = obj.get("last_payment_error") or {}
            failed = kind is WebhookKind.PAYMENT_FAILED
            return WebhookEvent(
                kind=kind, reference=obj["id"], currency=currency,
                amount=_major(obj.get(amount_field), currency) if currency else None,
                decline_code=normalise_decline(error.get("code"), error.get("decline_code")) if failed else None,
                decline_message=_safe(error.get("message")) if failed else None,
                **common,
            )
        if event_type in {"refund.created", "refund.updated"}:
            kind = {RefundStatus.SUCCEEDED: WebhookKind.REFUND_SUCCEEDED,
                    RefundStatus.FAILED: WebhookKind.REFUND_FAILED}.get(
                _REFUND_STATUS.get(obj.get("status", ""), RefundStatus.PENDING), WebhookKind.IGNORED)
            return WebhookEvent(
                kind=kind, reference=_id_of(obj.get("payment_intent")), refund_reference=obj["id"],
                amount=_major(obj.get("amount"), currency) if currency else None, currency=currency,
                decline_code=obj.get("failure_reason") if kind is WebhookKind.REFUND_FAILED else None,
                **common,
            )
        if event_type == "charge.refunded":
            return self._charge_refunded(obj, currency, common)
        if event_type in _DISPUTE_EVENTS or event_type == "charge.dispute.closed":
            if event_type == "charge.dispute.closed":
                kind = WebhookKind.DISPUTE_WON if obj.get("status") == "won" else WebhookKind.DISPUTE_LOST
            else:
                kind = _DISPUTE_EVENTS[event_type]
            if currency is None:
                raise KeyError("currency")
            amount = from_minor(int(obj["amount"]), currency)
            dispute = DisputeInfo(
                reference=obj["id"], amount=amount, currency=currency, reason=str(obj.get("reason") or ""),
                evidence_due_by=_to_utc((obj.get("evidence_details") or {}).get("due_by")),
            )
            return WebhookEvent(kind=kind, reference=_id_of(obj.get("payment_intent")), amount=amount,
                                currency=currency, dispute=dispute, **common)
        reference = obj.get("id") if obj.get("object") == "payment_intent" else _id_of(obj.get("payment_intent"))
        return WebhookEvent(kind=WebhookKind.IGNORED, reference=reference, **common)

    @staticmethod
    def _charge_refunded(obj: dict[str, Any], currency: str | None, common: dict[str, Any]) -> WebhookEvent:
        """The newest refund on the charge when Stripe includes the list, else the charge's refunded total."""
        refunds = [r for r in (obj.get("refunds") or {}).get("data") or [] if isinstance(r, Mapping)]
        latest = max(refunds, key=lambda r: r.get("created") or 0, default=None)
        if latest is not None:
            status = _REFUND_STATUS.get(latest.get("status", ""), RefundStatus.PENDING)
            kind = {RefundStatus.SUCCEEDED: WebhookKind.REFUND_SUCCEEDED,
                    RefundStatus.FAILED: WebhookKind.REFUND_FAILED}.get(status, WebhookKind.IGNORED)
            amount_minor = latest.get("amount")
        else:
            kind, amount_minor = WebhookKind.REFUND_SUCCEEDED, obj.get("amount_refunded")
        return WebhookEvent(
            kind=kind, reference=_id_of(obj.get("payment_intent")),
            refund_reference=str(latest["id"]) if latest is not None else None,
            amount=_major(amount_minor, currency) if currency else None, currency=currency, **common,
        )

    # -- helpers ---------------------------------------------------------

    @staticmethod
    def _metadata(request: PaymentRequest) -> dict[str, str]:
        """Stripe metadata: at most 50 string pairs, keys up to 40 and values up to 500 characters."""
        extra = {str(k)[:40]: str(v)[:500] for k, v in request.metadata.items() if v is not None}
        fixed = {"veix_payment_id": str(request.payment_id), "veix_business_id": str(request.business_id)}
        return dict(list(extra.items())[: 50 - len(fixed)]) | fixed

    @staticmethod
    async def _call(call: Awaitable[T], *, declines: bool = False) -> T:
        """Await one SDK call; outages and refusals become the contract's errors.

        With ``declines`` a ``stripe.CardError`` passes through for the caller to
        turn into a ``FAILED`` result; elsewhere it is a refusal like any other.
        """
        try:
            return await call
        except stripe.StripeError as err:
            if declines and isinstance(err, stripe.CardError):
                raise
            _raise_for(err)

    def _result(self, intent: stripe.StripeObject, last4: str | None = None) -> GatewayResult:
        return self._map_intent(intent.to_dict(), last4)

    def _map_intent(self, pi: dict[str, Any], last4: str | None = None) -> GatewayResult:
        currency = str(pi["currency"]).upper()
        status = pi["status"]
        common: dict[str, Any] = {
            "reference": pi["id"],
            "display": _display(pi.get("payment_method"), last4),
            "provider_status": status,
            "details": self._details(pi),
        }
        if status in {"requires_action", "requires_confirmation"}:
            return GatewayResult(status=GatewayPaymentStatus.REQUIRES_ACTION, next_action=self._next_action(pi),
                                 **common)
        if status == "requires_payment_method":
            error = pi.get("last_payment_error") or {}
            return GatewayResult(
                status=GatewayPaymentStatus.FAILED,
                decline_code=normalise_decline(error.get("code"), error.get("decline_code")),
                decline_message=_safe(error.get("message")) or "The payment needs a new payment method.",
                **common,
            )
        if status == "processing":
            return GatewayResult(status=GatewayPaymentStatus.PROCESSING, **common)
        if status == "requires_capture":
            return GatewayResult(status=GatewayPaymentStatus.AUTHORIZED, **common)
        if status == "succeeded":
            return GatewayResult(status=GatewayPaymentStatus.SUCCEEDED,
                                 captured_amount=from_minor(int(pi.get("amount_received") or 0), currency), **common)
        if status == "canceled":
            return GatewayResult(status=GatewayPaymentStatus.CANCELED, **common)
        raise GatewayFailure(f"Stripe returned an unknown PaymentIntent status {status!r}")

    def _declined(self, err: stripe.CardError, last4: str | None = None) -> GatewayResult:
        body = err.json_body if isinstance(err.json_body, dict) else {}
        error = body.get("error") or {}
        intent = error.get("payment_intent")
        decline_code = normalise_decline(err.code, error.get("decline_code"))
        message = _safe(err.user_message) or "The card was declined."
        if isinstance(intent, Mapping) and intent.get("id"):
            mapped = self._map_intent(dict(intent), last4)
            display = _display(error.get("payment_method")) or mapped.display
            return GatewayResult(
                status=GatewayPaymentStatus.FAILED, reference=mapped.reference, decline_code=decline_code,
                decline_message=message, display=display, provider_status=mapped.provider_status,
                details=mapped.details,
            )
        # A decline before any PaymentIntent existed (e.g. an invalid number): there is no reference.
        return GatewayResult(
            status=GatewayPaymentStatus.FAILED, reference=err.request_id or "", decline_code=decline_code,
            decline_message=message, display=_display(error.get("payment_method"), last4),
            provider_status="card_error",
        )

    @staticmethod
    def _next_action(pi: dict[str, Any]) -> dict[str, Any]:
        action = pi.get("next_action") or {}
        kind = action.get("type") or "requires_confirmation"
        out: dict[str, Any] = {"type": kind}
        if kind == "redirect_to_url":
            out["redirect_url"] = (action.get("redirect_to_url") or {}).get("url")
        if pi.get("client_secret"):
            out["client_secret"] = pi["client_secret"]  # what Stripe.js needs for use_stripe_sdk
        return out

    @staticmethod
    def _details(pi: dict[str, Any]) -> dict[str, Any]:
        details: dict[str, Any] = {"latest_charge": _id_of(pi.get("latest_charge"))}
        if pi.get("amount_capturable"):
            details["amount_capturable"] = from_minor(int(pi["amount_capturable"]), str(pi["currency"]).upper())
        if pi.get("transfer_data"):
            details["destination"] = _id_of((pi["transfer_data"] or {}).get("destination"))
        if pi.get("application_fee_amount") is not None:
            details["application_fee_amount"] = pi["application_fee_amount"]
        return {k: v for k, v in details.items() if v is not None}


def _raise_for(err: stripe.StripeError) -> NoReturn:
    status = err.http_status
    what = f"{type(err).__name__}" + (f" {status}" if status else "") + (f" {err.code}" if err.code else "")
    message = f"Stripe {what}: {_safe(err.user_message) or 'no message'}"
    if isinstance(err, stripe.APIConnectionError | stripe.RateLimitError) or (status is not None and status >= 500):
        raise GatewayUnavailable(message) from err
    raise GatewayFailure(message) from err
