"""PayPal (Orders v2) through the official ``paypal-server-sdk``.

References: a Veix payment's gateway reference is always the PayPal *order*
id. Captures, authorizations and refunds are found from the order, and
``details`` carries ``capture_id`` / ``authorization_id`` for the records.

The SDK is synchronous (requests), so every call runs in a worker thread
(``asyncio.to_thread``). It has no base-URL option, hence the small
:class:`BaseUrlConfiguration` subclass; its retries are switched off so that an
outage surfaces at once and the router can fail over. On a non-JSON error
body (a load balancer's HTML page) its parser falls back to YAML and may
raise a ``YAMLError``; the HTTP status that :class:`StatusRecorder` saw then
decides between :class:`GatewayUnavailable` (5xx, 429) and
:class:`GatewayFailure`. Response bodies are read as JSON from the SDK's
``ApiResponse.text``: PayPal adds fields faster than the SDK's models do.

Webhooks are verified with PayPal's ``verify-webhook-signature`` API, sent
through the SDK's own HTTP client, base URL and OAuth token. An outage of
that call raises :class:`GatewayUnavailable` (the endpoint answers 5xx and
PayPal delivers again), never :class:`WebhookRejected`.

Dispute evidence goes to the Disputes API (``POST /v1/customer/disputes/{id}
/provide-evidence``), which the SDK has no controller for either. PayPal takes
that call only as ``multipart/form-data``: an ``input`` part holding the JSON
``{"evidences": [...]}`` (and optional file parts, which Veix does not send).
It is built with the SDK's own request builder as a multipart parameter, so it
goes out through the same requests session, base URL and OAuth token.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

import requests
import yaml
from apimatic_core.exceptions.auth_validation_exception import AuthValidationException
from paypalserversdk.configuration import Configuration, Environment
from paypalserversdk.exceptions.api_exception import ApiException
from paypalserversdk.http.auth.o_auth_2 import ClientCredentialsAuthCredentials
from paypalserversdk.models.amount_with_breakdown import AmountWithBreakdown
from paypalserversdk.models.capture_request import CaptureRequest
from paypalserversdk.models.checkout_payment_intent import CheckoutPaymentIntent
from paypalserversdk.models.money import Money
from paypalserversdk.models.order_request import OrderRequest
from paypalserversdk.models.payment_source import PaymentSource
from paypalserversdk.models.paypal_experience_user_action import PaypalExperienceUserAction
from paypalserversdk.models.paypal_wallet import PaypalWallet
from paypalserversdk.models.paypal_wallet_experience_context import PaypalWalletExperienceContext
from paypalserversdk.models.purchase_unit_request import PurchaseUnitRequest
from paypalserversdk.models.refund_request import RefundRequest
from paypalserversdk.paypal_serversdk_client import PaypalServersdkClient

from veix.domain.currencies import minor_units
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
from veix.gateways.paypal_sdk import (
    BaseUrlConfiguration,
    DisputesController,
    NotificationsController,
    StatusRecorder,
    dispute_evidences,
)

# PayPal's REST currencies; HUF, JPY and TWD take no decimals at PayPal.
PAYPAL_CURRENCIES = frozenset(
    "AUD BRL CAD CHF CNY CZK DKK EUR GBP HKD HUF ILS JPY MXN MYR NOK NZD PHP PLN SEK SGD THB TWD USD".split()
)
_NO_DECIMALS = frozenset({"HUF", "JPY", "TWD"})
_PENDING_ORDER = frozenset({"CREATED", "SAVED", "PAYER_ACTION_REQUIRED"})
# Issues PayPal answers with 422 when the buyer's funding was refused: declines, not errors.
_DECLINE_ISSUES = frozenset({
    "INSTRUMENT_DECLINED", "TRANSACTION_REFUSED", "PAYER_CANNOT_PAY", "PAYER_ACCOUNT_RESTRICTED",
    "PAYER_ACCOUNT_LOCKED_OR_CLOSED", "REDIRECT_PAYER_FOR_ALTERNATE_FUNDING", "COMPLIANCE_VIOLATION",
    "MAX_NUMBER_OF_PAYMENT_ATTEMPTS_EXCEEDED", "TRANSACTION_BLOCKED_BY_PAYEE",
})
_CAPTURED = frozenset({"COMPLETED", "PARTIALLY_REFUNDED", "REFUNDED"})
_REFUND_STATUS = {"COMPLETED": RefundStatus.SUCCEEDED, "PENDING": RefundStatus.PENDING}
_REPRESENTATION = "return=representation"
_WEBHOOK_TOLERANCE = timedelta(seconds=300)
_TRANSMISSION_HEADERS = ("paypal-transmission-id", "paypal-transmission-time", "paypal-transmission-sig",
                         "paypal-cert-url", "paypal-auth-algo")
_VERIFY_FIELDS = (
    ("auth_algo", "paypal-auth-algo"), ("cert_url", "paypal-cert-url"),
    ("transmission_id", "paypal-transmission-id"), ("transmission_sig", "paypal-transmission-sig"),
    ("transmission_time", "paypal-transmission-time"),
)
_PAYMENT_EVENTS = {
    "PAYMENT.CAPTURE.COMPLETED": WebhookKind.PAYMENT_SUCCEEDED,
    "PAYMENT.CAPTURE.PENDING": WebhookKind.PAYMENT_PROCESSING,
    "PAYMENT.CAPTURE.DENIED": WebhookKind.PAYMENT_FAILED,
    "PAYMENT.CAPTURE.DECLINED": WebhookKind.PAYMENT_FAILED,
    "PAYMENT.AUTHORIZATION.CREATED": WebhookKind.PAYMENT_AUTHORIZED,
    "PAYMENT.AUTHORIZATION.VOIDED": WebhookKind.PAYMENT_CANCELED,
}
# Won: the merchant keeps the money (PayPal paid the buyer itself, or the claim fell away).
_DISPUTE_OUTCOMES = {
    "RESOLVED_SELLER_FAVOUR": WebhookKind.DISPUTE_WON, "CANCELED_BY_BUYER": WebhookKind.DISPUTE_WON,
    "DENIED": WebhookKind.DISPUTE_WON, "RESOLVED_WITH_PAYOUT": WebhookKind.DISPUTE_WON,
    "RESOLVED_BUYER_FAVOUR": WebhookKind.DISPUTE_LOST, "ACCEPTED": WebhookKind.DISPUTE_LOST,
}


def _value(amount: Decimal, currency: str) -> str:
    """PayPal's amount string in major units, refusing what the currency cannot hold."""
    places = 0 if currency in _NO_DECIMALS else minor_units(currency)
    exponent = Decimal(1).scaleb(-places)
    quantized = amount.quantize(exponent)
    if quantized != amount:
        raise GatewayFailure(f"{amount} has more decimals than PayPal allows for {currency}")
    return str(quantized)


def _amount(money: Mapping[str, Any] | None) -> Decimal:
    try:
        return Decimal(str((money or {}).get("value", "0")))
    except InvalidOperation:
        return Decimal(0)


def _error_body(exc: ApiException) -> dict[str, Any]:
    try:
        body = json.loads(exc.response.text or "")
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _issue(body: Mapping[str, Any]) -> str | None:
    details = body.get("details") or []
    if details and isinstance(details[0], dict):
        return details[0].get("issue")
    return body.get("name") or body.get("error")


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _related(resource: Mapping[str, Any], key: str) -> str | None:
    related = (resource.get("supplementary_data") or {}).get("related_ids") or {}
    value = related.get(key)
    return str(value) if value else None


def _up_capture(refund: Mapping[str, Any]) -> str | None:
    """A refund's capture id from its ``up`` link (``.../v2/payments/captures/{id}``)."""
    href = _link(refund, "up") or ""
    return href.rstrip("/").rsplit("/", 1)[-1] if "/captures/" in href else None


def _link(order: Mapping[str, Any], *rels: str) -> str | None:
    for rel in rels:
        for link in order.get("links") or []:
            if link.get("rel") == rel:
                return str(link["href"])
    return None


class _Declined(Exception):
    def __init__(self, issue: str, message: str) -> None:
        super().__init__(issue)
        self.issue = issue
        self.message = message


class _NotApproved(Exception):
    pass


class PaypalGateway:
    name = Gateway.PAYPAL

    def __init__(
        self, client_id: str, client_secret: str, webhook_id: str, *, base_url: str | None = None,
        timeout: float = 10.0, currencies: frozenset[str] | None = None,
    ) -> None:
        self.capabilities = GatewayCapabilities(
            methods=frozenset({PaymentMethodType.PAYPAL}),
            currencies=currencies if currencies is not None else PAYPAL_CURRENCIES,
            manual_capture=True, partial_capture=True, refunds=True, partial_refunds=True,
            multiple_captures=False,
        )
        self._webhook_id = webhook_id
        self._recorder = StatusRecorder()
        self._token: Any = None
        self._token_lock = threading.Lock()
        options: dict[str, Any] = {
            "timeout": timeout, "max_retries": 0, "retry_statuses": [], "retry_methods": ["GET"],
            "http_call_back": self._recorder, "environment": Environment.SANDBOX,
            "client_credentials_auth_credentials": ClientCredentialsAuthCredentials(
                o_auth_client_id=client_id, o_auth_client_secret=client_secret,
                o_auth_token_provider=self._provide_token,
            ),
        }
        config = BaseUrlConfiguration(base_url, **options) if base_url else Configuration(**options)
        # One client, so one requests session and one cached OAuth token, shared by every call.
        self._client = PaypalServersdkClient(config=config)
        self._orders = self._client.orders
        self._payments = self._client.payments
        self._notifications = NotificationsController(self._client.global_configuration)
        self._disputes = DisputesController(self._client.global_configuration)

    def __repr__(self) -> str:
        return "PaypalGateway()"  # never the credentials

    # -- plumbing ---------------------------------------------------------------

    def _provide_token(self, current: Any, auth: Any) -> Any:
        # The SDK's own fetch swallows errors (an outage would look like bad credentials);
        # fetching here lets the real HTTP status through, and the lock keeps threads to one fetch.
        with self._token_lock:
            if self._token is None or auth.is_token_expired(self._token):
                self._token = auth.fetch_token()
            return self._token

    def _call(self, operation: str, call: Callable[[], Any], declines: bool) -> dict[str, Any]:
        """Runs one SDK call (in a worker thread) and returns its JSON body; maps every failure."""
        self._recorder.reset()
        try:
            response = call()
        except ApiException as exc:
            raise self._api_error(operation, exc, declines) from None
        except (requests.Timeout, requests.ConnectionError) as exc:
            raise GatewayUnavailable(f"PayPal {operation}: {type(exc).__name__}") from None
        except requests.RequestException as exc:
            raise GatewayFailure(f"PayPal {operation}: {type(exc).__name__}") from None
        except (yaml.YAMLError, ValueError) as exc:
            # The SDK could not parse an answer that was not JSON; only the status tells what it was.
            status = self._recorder.status
            message = f"PayPal {operation}: unreadable answer (HTTP {status}, {type(exc).__name__})"
            if status is not None and (status >= 500 or status == 429):
                raise GatewayUnavailable(message) from None
            raise GatewayFailure(message) from None
        except AuthValidationException:
            raise GatewayFailure(f"PayPal {operation}: no OAuth token") from None
        text = response.text or ""
        if not text.strip():
            return {}
        try:
            body = json.loads(text)
        except ValueError:
            raise GatewayFailure(f"PayPal {operation}: answer is not JSON (HTTP {response.status_code})") from None
        if not isinstance(body, dict):
            raise GatewayFailure(f"PayPal {operation}: unexpected answer")
        return body

    def _api_error(self, operation: str, exc: ApiException, declines: bool) -> Exception:
        status = exc.response_code
        body = _error_body(exc)
        issue = _issue(body)
        message = f"PayPal {operation}: HTTP {status}" + (f" {issue}" if issue else "")
        if body.get("debug_id"):
            message += f" (debug_id {body['debug_id']})"
        if status >= 500 or status == 429:
            return GatewayUnavailable(message)
        if declines and status == 422 and issue in _DECLINE_ISSUES:
            return _Declined(issue, str(body.get("message") or issue))
        if declines and status == 422 and issue == "ORDER_NOT_APPROVED":
            return _NotApproved(message)
        return GatewayFailure(message)

    async def _run(self, operation: str, call: Callable[[], Any], *, declines: bool = False) -> dict[str, Any]:
        # ``declines``: a 422 about the buyer's funding is a decline here (capture, authorize), not an error.
        return await asyncio.to_thread(self._call, operation, call, declines)

    async def _get_order(self, order_id: str) -> dict[str, Any]:
        return await self._run("get order", lambda: self._orders.get_order({"id": order_id}))

    # -- the gateway --------------------------------------------------------------

    async def authorize(self, request: PaymentRequest) -> GatewayResult:
        if request.paypal is None:
            raise GatewayFailure("PayPal needs return and cancel URLs (request.paypal)")
        intent = CheckoutPaymentIntent.CAPTURE if request.capture else CheckoutPaymentIntent.AUTHORIZE
        unit = PurchaseUnitRequest(
            amount=AmountWithBreakdown(currency_code=request.currency,
                                       value=_value(request.amount, request.currency)),
            custom_id=str(request.payment_id), invoice_id=str(request.payment_id),
            **({"description": request.description[:127]} if request.description else {}),
        )
        context = PaypalWalletExperienceContext(
            return_url=request.paypal.return_url, cancel_url=request.paypal.cancel_url,
            user_action=PaypalExperienceUserAction.PAY_NOW if request.capture else PaypalExperienceUserAction.CONTINUE,
        )
        body = OrderRequest(intent=intent, purchase_units=[unit],
                            payment_source=PaymentSource(paypal=PaypalWallet(experience_context=context)))
        order = await self._run("create order", lambda: self._orders.create_order({
            "body": body, "paypal_request_id": request.idempotency_key, "prefer": _REPRESENTATION,
        }))
        return self._order_result(order)

    async def confirm(self, reference: str, params: Mapping[str, Any]) -> GatewayResult:
        order = await self._get_order(reference)
        if order.get("status") != "APPROVED":
            return self._order_result(order)  # not approved yet, or already captured/authorized
        # One key per order unless the caller brings one: a retried confirm never charges twice.
        key = str(params.get("idempotency_key") or f"veix-confirm-{reference}")
        options = {"id": reference, "paypal_request_id": key, "prefer": _REPRESENTATION}
        try:
            if order.get("intent") == "AUTHORIZE":
                order = await self._run("authorize order", lambda: self._orders.authorize_order(options),
                                        declines=True)
            else:
                order = await self._run("capture order", lambda: self._orders.capture_order(options),
                                        declines=True)
        except _Declined as declined:
            return GatewayResult(
                status=GatewayPaymentStatus.FAILED, reference=reference, decline_code=declined.issue.lower(),
                decline_message=declined.message, display="PayPal", provider_status=declined.issue,
            )
        except _NotApproved:
            return self._order_result(await self._get_order(reference))
        return self._order_result(order)

    async def retrieve(self, reference: str) -> GatewayResult:
        return self._order_result(await self._get_order(reference))

    async def capture(self, reference: str, amount: Decimal, currency: str, idempotency_key: str) -> GatewayResult:
        order = await self._get_order(reference)
        authorization = self._authorization(order)
        if authorization is None or authorization.get("status") not in ("CREATED", "PENDING"):
            return self._order_result(order)  # nothing (left) to capture: report what is
        # multiple_captures is off: every capture is the final one and PayPal releases the rest.
        body = CaptureRequest(amount=Money(currency_code=currency, value=_value(amount, currency)), final_capture=True)
        try:
            captured = await self._run("capture authorization", lambda: self._payments.capture_authorized_payment({
                "authorization_id": authorization["id"], "body": body,
                "paypal_request_id": idempotency_key, "prefer": _REPRESENTATION,
            }), declines=True)
        except _Declined as declined:
            return GatewayResult(
                status=GatewayPaymentStatus.FAILED, reference=reference, decline_code=declined.issue.lower(),
                decline_message=declined.message, display="PayPal", provider_status=declined.issue,
                details={"authorization_id": authorization["id"]},
            )
        details = {"authorization_id": authorization["id"], "capture_id": captured.get("id")}
        return self._capture_result(reference, captured, details)

    async def cancel(self, reference: str, idempotency_key: str) -> GatewayResult:
        order = await self._get_order(reference)
        status = order.get("status")
        authorization = self._authorization(order)
        if status in _PENDING_ORDER or status == "APPROVED" or status == "VOIDED":
            # PayPal has no order cancel: an order nobody captures expires on its own.
            return GatewayResult(status=GatewayPaymentStatus.CANCELED, reference=reference, display="PayPal",
                                 provider_status=status)
        if authorization is not None and authorization.get("status") in ("CREATED", "PENDING"):
            voided = await self._run("void authorization", lambda: self._payments.void_payment({
                "authorization_id": authorization["id"], "paypal_request_id": idempotency_key,
                "prefer": _REPRESENTATION,
            }))
            return GatewayResult(status=GatewayPaymentStatus.CANCELED, reference=reference, display="PayPal",
                                 provider_status=voided.get("status", "VOIDED"),
                                 details={"authorization_id": authorization["id"]})
        result = self._order_result(order)
        if result.status is GatewayPaymentStatus.CANCELED:
            return result
        raise GatewayFailure(f"PayPal order {reference} cannot be canceled in status {result.provider_status}")

    async def refund(
        self, reference: str, amount: Decimal, currency: str, idempotency_key: str, reason: str | None,
    ) -> RefundResult:
        order = await self._get_order(reference)
        captures = [c for c in self._captures(order) if c.get("status") in _CAPTURED]
        # A fully refunded capture is still asked: a retried refund is answered from its request id.
        refundable = [c for c in captures if c.get("status") != "REFUNDED"]
        if not captures:
            raise GatewayFailure(f"PayPal order {reference} has no capture to refund")
        capture = (refundable or captures)[0]
        body = RefundRequest(amount=Money(currency_code=currency, value=_value(amount, currency)),
                             **({"note_to_payer": reason[:255]} if reason else {}))
        refund = await self._run("refund capture", lambda: self._payments.refund_captured_payment({
            "capture_id": capture["id"], "body": body, "paypal_request_id": idempotency_key,
            "prefer": _REPRESENTATION,
        }))
        status = _REFUND_STATUS.get(str(refund.get("status")), RefundStatus.FAILED)
        return RefundResult(reference=str(refund["id"]), status=status, amount=_amount(refund.get("amount")) or amount)

    async def submit_dispute_evidence(self, dispute_reference: str, evidence: Mapping[str, Any]) -> None:
        """Sends the merchant's evidence for a PayPal dispute (``PP-D-...``) to PayPal."""
        evidences = dispute_evidences(evidence)
        if not evidences:
            raise GatewayFailure("PayPal provide evidence: no evidence to send")
        evidence_input = json.dumps({"evidences": evidences}, ensure_ascii=False)
        await self._run("provide evidence",
                        lambda: self._disputes.provide_evidence(dispute_reference, evidence_input))

    async def parse_webhook(self, body: bytes, headers: Mapping[str, str]) -> WebhookEvent:
        missing = [name for name in _TRANSMISSION_HEADERS if not headers.get(name)]
        if missing:
            raise WebhookRejected(f"missing header {', '.join(missing)}")
        sent_at = _parse_time(headers["paypal-transmission-time"])
        if sent_at is None:
            raise WebhookRejected("unreadable paypal-transmission-time")
        if abs(datetime.now(UTC) - sent_at) > _WEBHOOK_TOLERANCE:
            raise WebhookRejected("paypal-transmission-time outside the tolerance")
        try:
            text = body.decode("utf-8")
            event = json.loads(text)
        except ValueError:  # UnicodeDecodeError is a ValueError
            raise WebhookRejected("body is not JSON") from None
        if not isinstance(event, dict) or not event.get("id") or not event.get("event_type"):
            raise WebhookRejected("body is not a PayPal event")
        # The event goes to PayPal byte for byte: a re-serialized event may not verify.
        fields = [f"{json.dumps(key)}:{json.dumps(headers[name])}" for key, name in _VERIFY_FIELDS]
        fields.append(f'"webhook_id":{json.dumps(self._webhook_id)}')
        request_body = "{" + ",".join(fields) + ',"webhook_event":' + text + "}"
        try:
            answer = await self._run("verify webhook",
                                     lambda: self._notifications.verify_webhook_signature(request_body))
        except GatewayFailure as exc:
            raise WebhookRejected(f"PayPal refused to verify: {exc}") from None
        if answer.get("verification_status") != "SUCCESS":
            raise WebhookRejected("signature verification failed")
        return await self._event(event)

    async def _event(self, event: dict[str, Any]) -> WebhookEvent:
        event_type = str(event["event_type"])
        resource: dict[str, Any] = event.get("resource") or {}
        common: dict[str, Any] = {
            "event_id": str(event["id"]), "provider_type": event_type,
            "occurred_at": _parse_time(event.get("create_time")) or datetime.now(UTC),
        }
        if event_type == "CHECKOUT.ORDER.APPROVED":
            # Approved by the buyer, nothing captured yet: PROCESSING means "ready for confirm()".
            money = ((resource.get("purchase_units") or [{}])[0]).get("amount") or {}
            return WebhookEvent(kind=WebhookKind.PAYMENT_PROCESSING, reference=resource.get("id"),
                                amount=_amount(money) if money else None, currency=money.get("currency_code"),
                                payload={**event, "veix": {"reference_kind": "order"}}, **common)
        if event_type in _PAYMENT_EVENTS:
            kind = _PAYMENT_EVENTS[event_type]
            source = "authorization" if event_type.startswith("PAYMENT.AUTHORIZATION.") else "capture"
            reference, veix = await self._reference(resource, source, str(resource.get("id", "")))
            money = resource.get("amount") or {}
            decline_code = decline_message = None
            if kind is WebhookKind.PAYMENT_FAILED:
                reason = (resource.get("status_details") or {}).get("reason")
                decline_code = str(reason or resource.get("status") or "declined").lower()
                decline_message = f"PayPal capture {resource.get('status', event_type)}"
            return WebhookEvent(kind=kind, reference=reference, amount=_amount(money) if money else None,
                                currency=money.get("currency_code"), decline_code=decline_code,
                                decline_message=decline_message, payload={**event, "veix": veix}, **common)
        if event_type == "PAYMENT.CAPTURE.REFUNDED":
            capture_id = _related(resource, "capture_id") or _up_capture(resource)
            reference, veix = await self._reference(resource, "capture", capture_id or "")
            money = resource.get("amount") or {}
            return WebhookEvent(kind=WebhookKind.REFUND_SUCCEEDED, reference=reference,
                                amount=_amount(money) if money else None, currency=money.get("currency_code"),
                                refund_reference=resource.get("id"), payload={**event, "veix": veix}, **common)
        if event_type.startswith("CUSTOMER.DISPUTE."):
            return await self._dispute_event(event, resource, common)
        return WebhookEvent(kind=WebhookKind.IGNORED, payload=event, **common)

    async def _dispute_event(
        self, event: dict[str, Any], resource: dict[str, Any], common: dict[str, Any],
    ) -> WebhookEvent:
        event_type = str(event["event_type"])
        kind = WebhookKind.DISPUTE_OPENED if event_type == "CUSTOMER.DISPUTE.CREATED" else WebhookKind.DISPUTE_UPDATED
        if event_type == "CUSTOMER.DISPUTE.RESOLVED":
            outcome = str((resource.get("dispute_outcome") or {}).get("outcome_code"))
            kind = _DISPUTE_OUTCOMES.get(outcome, WebhookKind.DISPUTE_UPDATED)
        transaction = (resource.get("disputed_transactions") or [{}])[0]
        # PayPal names the seller's *capture* (its transaction id), not the order; the order is looked up.
        capture_id = str(transaction.get("seller_transaction_id", ""))
        reference, veix = await self._reference(transaction, "capture", capture_id)
        veix["payment_id"] = transaction.get("invoice_number") or transaction.get("custom")
        money = resource.get("dispute_amount") or {}
        dispute = DisputeInfo(
            reference=str(resource.get("dispute_id")), amount=_amount(money), currency=str(money.get("currency_code")),
            reason=str(resource.get("reason") or "UNKNOWN"),
            evidence_due_by=_parse_time(resource.get("seller_response_due_date")),
        )
        return WebhookEvent(kind=kind, reference=reference, amount=dispute.amount, currency=dispute.currency,
                            dispute=dispute, payload={**event, "veix": veix}, **common)

    async def _reference(
        self, resource: Mapping[str, Any], source: str, resource_id: str,
    ) -> tuple[str | None, dict[str, Any]]:
        """The order id for a capture/authorization; the capture's own id when PayPal will not say."""
        order_id = _related(resource, "order_id") or resource.get("order_id")
        if not order_id and resource_id:
            try:
                order_id = await self._order_of(source, resource_id)
            except GatewayFailure:
                order_id = None  # unknown to PayPal now (404): fall back below
        if order_id:
            return str(order_id), {"reference_kind": "order", f"{source}_id": resource_id or None}
        return (resource_id or None), {"reference_kind": source, f"{source}_id": resource_id or None}

    # -- helpers ------------------------------------------------------------------

    async def _order_of(self, kind: str, resource_id: str) -> str | None:
        """The order id of a capture or authorization, from PayPal (None when PayPal does not say)."""
        if kind == "capture":
            found = await self._run("get capture", lambda: self._payments.get_captured_payment(
                {"capture_id": resource_id}))
        else:
            found = await self._run("get authorization", lambda: self._payments.get_authorized_payment(
                {"authorization_id": resource_id}))
        order_id = ((found.get("supplementary_data") or {}).get("related_ids") or {}).get("order_id")
        return str(order_id) if order_id else None

    @staticmethod
    def _payments_of(order: Mapping[str, Any]) -> Mapping[str, Any]:
        units = order.get("purchase_units") or [{}]
        return units[0].get("payments") or {}

    def _captures(self, order: Mapping[str, Any]) -> list[dict[str, Any]]:
        return list(self._payments_of(order).get("captures") or [])

    def _authorization(self, order: Mapping[str, Any]) -> dict[str, Any] | None:
        authorizations = self._payments_of(order).get("authorizations") or []
        return authorizations[-1] if authorizations else None

    def _capture_result(self, reference: str, capture: Mapping[str, Any], details: dict[str, Any]) -> GatewayResult:
        status = str(capture.get("status"))
        common: dict[str, Any] = {"reference": reference, "display": "PayPal", "provider_status": status,
                                  "details": details}
        if status in _CAPTURED:
            return GatewayResult(status=GatewayPaymentStatus.SUCCEEDED, captured_amount=_amount(capture.get("amount")),
                                 **common)
        if status == "PENDING":
            return GatewayResult(status=GatewayPaymentStatus.PROCESSING, **common)
        reason = (capture.get("status_details") or {}).get("reason")
        return GatewayResult(status=GatewayPaymentStatus.FAILED, decline_code=str(reason or status).lower(),
                             decline_message=f"PayPal capture {status}", **common)

    def _order_result(self, order: Mapping[str, Any]) -> GatewayResult:
        reference = str(order["id"])
        status = str(order.get("status"))
        common: dict[str, Any] = {"reference": reference, "display": "PayPal", "provider_status": status}
        if status in _PENDING_ORDER:
            url = _link(order, "payer-action", "approve")
            return GatewayResult(status=GatewayPaymentStatus.REQUIRES_ACTION,
                                 next_action={"type": "redirect", "url": url} if url else None, **common)
        if status == "APPROVED":
            # Approved by the buyer, waiting for Veix to confirm (capture or authorize).
            return GatewayResult(status=GatewayPaymentStatus.PROCESSING, details={"approved": True}, **common)
        if status == "VOIDED":
            return GatewayResult(status=GatewayPaymentStatus.CANCELED, **common)
        captures = self._captures(order)
        authorization = self._authorization(order)
        details: dict[str, Any] = {}
        if authorization is not None:
            details["authorization_id"] = authorization.get("id")
        if captures:
            capture = captures[-1]
            details["capture_id"] = capture.get("id")
            return self._capture_result(reference, capture, details)
        if authorization is not None:
            auth_status = str(authorization.get("status"))
            common["provider_status"] = auth_status
            if auth_status in ("CREATED", "PENDING"):
                return GatewayResult(status=GatewayPaymentStatus.AUTHORIZED, details=details, **common)
            if auth_status == "VOIDED":
                return GatewayResult(status=GatewayPaymentStatus.CANCELED, details=details, **common)
            return GatewayResult(status=GatewayPaymentStatus.FAILED, decline_code=auth_status.lower(),
                                 details=details, **common)
        raise GatewayFailure(f"PayPal order {reference}: status {status} without capture or authorization")


__all__ = ["PAYPAL_CURRENCIES", "PaypalGateway"]
