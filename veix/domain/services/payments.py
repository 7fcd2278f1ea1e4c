"""The payment processor: create, capture, cancel and refund payments through gateways.

A gateway call is never made inside a database transaction (it can take
seconds). Each money-moving operation is therefore three steps:

1. a short transaction claims the idempotency key, checks the rules under a
   row lock and records the intent (a ``PENDING`` payment, a ``PENDING``
   refund that already reserves the business's funds);
2. the gateway call, with an idempotency key derived from our own id, so a
   retry after a crash or an outage never charges or refunds twice;
3. a second transaction applies the gateway's answer: status, fee, ledger
   entries, outbox events, audit.

A client retrying with the same ``idempotencyKey`` gets the original result;
when step 2 did not complete (an outage), the retry repeats it with the same
gateway idempotency key. Inbound webhooks and the crypto watcher go through
:func:`apply_event` in one transaction each, once per gateway event id.

Ledger (DESIGN.md section 4), per currency:

* captured C with fee F: gateway clearing -C, business available +(C-F),
  platform fees +F;
* refund R requested: business available -R, refunds pending +R (refused with
  ``INSUFFICIENT_FUNDS`` when the business cannot cover it); confirmed:
  refunds pending -R, gateway clearing +R; failed: back to available. The fee
  is not returned (see :class:`veix.domain.payments.FeeSchedule`);
* dispute opened for D: gateway clearing +D, business available -min(D, balance)
  and the rest as a receivable (a negative balance the business owes); won:
  exactly that is given back; lost: nothing more moves.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from veix.domain import ledger
from veix.domain import payments as rules
from veix.domain.disputes import OPEN_DISPUTE, Dispute, DisputeStatus, PaymentMethodRecord
from veix.domain.errors import (
    ErrorCode,
    IdempotencyKeyReused,
    InsufficientFunds,
    InvalidInput,
    InvalidStateTransition,
    NotFound,
    VeixError,
)
from veix.domain.events import DomainEvent
from veix.domain.gateway import (
    CardDetails,
    GatewayFailure,
    GatewayPaymentStatus,
    GatewayResult,
    GatewayUnavailable,
    PaymentGateway,
    PaymentMethodType,
    PaymentRequest,
    PaypalDetails,
    RefundStatus,
    WebhookEvent,
    WebhookKind,
)
from veix.domain.ids import new_id
from veix.domain.money import Money
from veix.domain.ports import UnitOfWork
from veix.domain.risk import RiskFeatures, RiskPolicy, RiskScorer
from veix.domain.routing import candidates, route
from veix.domain.services.funding import request_fingerprint
from veix.domain.transactions import Gateway, Transaction, TransactionStatus, TransactionType

S = TransactionStatus
UowFactory = Callable[[], AbstractAsyncContextManager[UnitOfWork]]
MAX_KEY = 255


@dataclass(frozen=True)
class PaymentsConfig:
    routes: Mapping[PaymentMethodType, tuple[Gateway, ...]]
    fees: Mapping[str, rules.FeeSchedule] = field(default_factory=lambda: dict(rules.DEFAULT_FEES))
    policy: RiskPolicy = field(default_factory=RiskPolicy)
    metadata_max_bytes: int = 8192


@dataclass(frozen=True, slots=True)
class NewPayment:
    business_id: uuid.UUID
    money: Money
    method: PaymentMethodType
    capture: bool
    idempotency_key: str
    card: CardDetails | None = None
    paypal: PaypalDetails | None = None
    crypto_asset: str | None = None
    customer_id: str | None = None
    description: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def fingerprint(self) -> str:
        card = self.card
        parts = [
            "payment", self.business_id, self.money.amount, self.money.currency, self.method.value,
            self.capture, card.last4 if card else "", card.exp_month if card else "",
            card.exp_year if card else "",
            # A digest of the number, not the number: the stored hash is no way back to it.
            hashlib.sha256(card.number.encode()).hexdigest() if card else "",
            json.dumps([self.paypal.return_url, self.paypal.cancel_url]) if self.paypal else "",
            self.crypto_asset or "", self.customer_id or "", self.description or "",
            json.dumps(self.metadata, sort_keys=True, default=str),
        ]
        return request_fingerprint(*parts)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a mutation returns: the transaction, and a user error when it did not succeed
    (a declined card still returns its FAILED transaction)."""

    transaction: Transaction
    error: VeixError | None = None
    refund: Transaction | None = None


def _check_key(key: str) -> None:
    if not isinstance(key, str) or not 1 <= len(key) <= MAX_KEY:
        raise InvalidInput("idempotencyKey must be 1 to 255 characters", field=["input", "idempotencyKey"])


def _decline_error(code: str | None, message: str | None) -> VeixError:
    text = message or "The payment was declined"
    if code in {"insufficient_funds"}:
        return VeixError(text, code=ErrorCode.CARD_DECLINED, field=["input", "card"])
    if code in {"gateway_unavailable", "gateway_error"}:
        return VeixError(text, code=ErrorCode.GATEWAY_ERROR)
    if code == "risk_blocked":
        return VeixError(text, code=ErrorCode.RISK_BLOCKED)
    return VeixError(text, code=ErrorCode.CARD_DECLINED)


def _jsonable(value: Mapping[str, Any]) -> dict[str, Any]:
    """A gateway's details as plain JSON (Decimals and datetimes as strings)."""
    result: dict[str, Any] = json.loads(json.dumps(dict(value), default=str))
    return result


def _event(kind: str, t: Transaction, **extra: Any) -> DomainEvent:
    payload = {"transaction_id": str(t.id), "type": t.type.name, "status": t.status.name,
               "amount": str(t.amount), "currency": t.currency, **extra}
    return DomainEvent(kind, t.business_id, payload)


class PaymentProcessor:
    def __init__(self, gateways: Mapping[Gateway, PaymentGateway], config: PaymentsConfig,
                 scorer: RiskScorer, clock: Callable[[], datetime]) -> None:
        self.gateways = dict(gateways)
        self.config = config
        self.scorer = scorer
        self.clock = clock

    def gateway(self, name: Gateway) -> PaymentGateway:
        gw = self.gateways.get(name)
        if gw is None:
            raise VeixError(f"The {name.name} gateway is not configured", code=ErrorCode.GATEWAY_ERROR)
        return gw

    def fee(self, gateway: Gateway, amount: Decimal, currency: str) -> Decimal:
        schedule = self.config.fees.get(gateway.value, rules.FeeSchedule())
        return schedule.fee(amount, currency)

    # ------------------------------------------------------------ create

    async def create(self, new_uow: UowFactory, p: NewPayment) -> Outcome:
        _check_key(p.idempotency_key)
        self._check_method_input(p)
        now = self.clock()
        scope = f"payment:{p.business_id}"
        fingerprint = p.fingerprint()
        async with new_uow() as uow:
            claimed = await uow.idempotency.claim(scope, p.idempotency_key, fingerprint, now)
            if claimed is not None:
                txn = await self._original(uow, claimed, fingerprint)
                await uow.commit()
                if txn.status is S.PENDING and txn.gateway_reference is None and not txn.routing:
                    return await self._call_gateway(new_uow, txn, p)  # step 2 never ran: run it now
                return Outcome(txn, self.error_of(txn))
            if await uow.businesses.get(p.business_id) is None:
                raise NotFound("Business not found", field=["input", "businessId"])
            settings = await uow.payments.settings(p.business_id)
            order = self._order(p.method, settings.routes if settings else None)
            chosen = candidates(self.gateways, order, p.method, p.money.currency, manual_capture=not p.capture)
            activity = await uow.payments.customer_activity(p.business_id, p.customer_id, now)
            assessment = self.scorer.score(RiskFeatures(
                amount=p.money.amount, currency=p.money.currency, merchant_id=None, merchant_name="",
                mcc="0000", merchant_country="", business_country="", local_hour=12,
                count_10m=activity.count_10m, amount_10m=activity.amount_10m,
                count_1h=activity.count_1h, amount_1h=activity.amount_1h,
                history_count=activity.history_count, history_mean=activity.history_mean,
                history_max=activity.history_max, seen_merchant_before=True))
            txn = Transaction(
                id=new_id(), business_id=p.business_id, type=TransactionType.PAYMENT,
                status=S.PENDING, amount=p.money.amount, currency=p.money.currency,
                created_at=now, updated_at=now, payment_method=p.method.value,
                gateway=chosen[0].name, customer_id=p.customer_id, risk_score=assessment.score,
                idempotency_key=p.idempotency_key, metadata=dict(p.metadata), description=p.description,
            )
            if self.config.policy.action(assessment.score) == "decline":
                txn.status = S.FAILED
                txn.error_code = "risk_blocked"
                txn.error_message = "Blocked by fraud screening: " + ", ".join(assessment.reasons)
                txn.gateway = None
            await uow.transactions.add(txn)
            await uow.idempotency.complete(scope, p.idempotency_key, "Transaction", txn.id)
            uow.emit(_event("transaction.created", txn, risk_reasons=list(assessment.reasons)))
            uow.audit("payment.create", "Transaction", txn.id, business_id=p.business_id,
                      after={"amount": str(txn.amount), "currency": txn.currency, "method": p.method.value,
                             "risk_score": txn.risk_score})
            await uow.commit()
        if txn.status is S.FAILED:
            return Outcome(txn, self.error_of(txn))
        return await self._call_gateway(new_uow, txn, p, chosen=chosen)

    def _check_method_input(self, p: NewPayment) -> None:
        needed = {PaymentMethodType.CARD: p.card, PaymentMethodType.PAYPAL: p.paypal,
                  PaymentMethodType.CRYPTO: p.crypto_asset}
        name = {PaymentMethodType.CARD: "card", PaymentMethodType.PAYPAL: "paypal",
                PaymentMethodType.CRYPTO: "crypto"}
        if needed[p.method] is None:
            raise InvalidInput(f"A {p.method.name} payment needs input.{name[p.method]}",
                               field=["input", name[p.method]])
        for other, value in needed.items():
            if other is not p.method and value is not None:
                raise InvalidInput(f"input.{name[other]} does not go with method {p.method.name}",
                                   field=["input", name[other]])
        if p.money.amount <= 0:
            raise InvalidInput("The amount must be positive", field=["input", "amount", "amount"])
        size = len(json.dumps(p.metadata, default=str))
        if size > self.config.metadata_max_bytes:
            raise InvalidInput(f"metadata is limited to {self.config.metadata_max_bytes} bytes",
                               field=["input", "metadata"])

    def _order(self, method: PaymentMethodType, business_routes: dict[str, list[str]] | None) -> tuple[Gateway, ...]:
        if business_routes and business_routes.get(method.value):
            return tuple(Gateway(g) for g in business_routes[method.value])
        return self.config.routes.get(method, ())

    async def _original(self, uow: UnitOfWork, claimed: tuple[str, uuid.UUID | None], fingerprint: str) -> Transaction:
        stored_hash, result_id = claimed
        if stored_hash != fingerprint or result_id is None:
            raise IdempotencyKeyReused("This idempotency key was used with different parameters",
                                       field=["input", "idempotencyKey"])
        txn = await uow.payments.get(result_id)
        if txn is None:
            raise NotFound("The original transaction is gone")
        return txn

    async def _call_gateway(self, new_uow: UowFactory, txn: Transaction, p: NewPayment,
                            chosen: list[PaymentGateway] | None = None) -> Outcome:
        if chosen is None:
            chosen = [self.gateway(txn.gateway)] if txn.gateway else []
        settings_account = None
        async with new_uow() as uow:
            settings = await uow.payments.settings(txn.business_id)
            settings_account = settings.stripe_account if settings else None
        fee = self.fee(chosen[0].name, txn.amount, txn.currency)

        async def call(gw: PaymentGateway) -> GatewayResult:
            return await gw.authorize(PaymentRequest(
                payment_id=txn.id, business_id=txn.business_id, amount=txn.amount, currency=txn.currency,
                method=p.method, capture=p.capture, idempotency_key=f"veix-{txn.id}", card=p.card,
                paypal=p.paypal, crypto_asset=p.crypto_asset, description=p.description,
                customer_id=p.customer_id, metadata=p.metadata,
                connected_account=settings_account if gw.name is Gateway.STRIPE else None,
                application_fee=fee if gw.name is Gateway.STRIPE and settings_account else None))

        result: GatewayResult | None
        try:
            gw, result, attempts = await route(chosen, call)
            failure = None if result is not None else "gateway_unavailable"
        except GatewayFailure as exc:
            gw, result, attempts, failure = chosen[0], None, [], str(exc)[:300] or "gateway_error"
        async with new_uow() as uow:
            current = await uow.payments.get(txn.id, for_update=True)
            assert current is not None
            if current.routing:  # a concurrent request with the same key applied the answer first
                await uow.commit()
                return Outcome(current, self.error_of(current))
            current.gateway = gw.name
            current.routing = [a.as_json() for a in attempts] or current.routing
            if result is None:
                self._fail(current, "gateway_unavailable" if failure == "gateway_unavailable" else "gateway_error",
                           "No gateway could take the payment (outage)" if failure == "gateway_unavailable"
                           else f"The gateway refused the request: {failure}")
            else:
                current.gateway_reference = result.reference
                await self._apply_result(uow, current, result)
                if result.display or p.method is not PaymentMethodType.CARD or p.card:
                    display = result.display or (rules.card_display(p.card.number) if p.card else p.method.name)
                    pm = PaymentMethodRecord(uuid.uuid4(), current.business_id, p.method, display[:100],
                                             gw.name, self.clock())
                    await uow.payments.add_payment_method(pm)
                    current.payment_method_id = pm.id
                for pending in await uow.payments.unmatched_events(gw.name, result.reference):
                    await self._apply_event_to(uow, gw.name, pending, current)
            current.updated_at = self.clock()
            await uow.payments.save(current)
            uow.emit(_event("transaction.updated", current))
            await uow.commit()
        return Outcome(current, self.error_of(current))

    def error_of(self, t: Transaction) -> VeixError | None:
        if t.status is S.FAILED:
            return _decline_error(t.error_code, t.error_message)
        return None

    @staticmethod
    def _fail(t: Transaction, code: str, message: str) -> None:
        t.status = S.FAILED
        t.error_code = code
        t.error_message = message[:500]
        t.next_action = None

    async def _apply_result(self, uow: UnitOfWork, t: Transaction, result: GatewayResult) -> None:
        """Move ``t`` to what the gateway said, with its money effects."""
        target = rules.status_of(result.status)
        if result.details:
            t.gateway_data = {**t.gateway_data, "details": _jsonable(result.details)}
        if result.provider_status:
            t.gateway_data = {**t.gateway_data, "status": result.provider_status}
        if target is S.SUCCEEDED:
            await self._settle(uow, t, result.captured_amount or t.amount)
            t.next_action = None
        elif target is S.FAILED:
            if t.status in rules.OPEN:
                self._fail(t, result.decline_code or "card_declined",
                           result.decline_message or "The payment was declined")
        elif target is S.CANCELED:
            if t.status in rules.OPEN:
                t.status = S.CANCELED
                t.next_action = None
        elif rules.can_transition(t.status, target) or t.status is target:
            t.status = target
            t.next_action = _jsonable(result.next_action) if result.next_action else None
            if target is S.PENDING:
                t.gateway_data = {**t.gateway_data, "capturable": str(t.amount)}

    async def _settle(self, uow: UnitOfWork, t: Transaction, captured: Decimal) -> None:
        if t.status in rules.CAPTURED:
            return  # already settled: a second word of the same news
        rules.check_transition(t.status, S.SUCCEEDED)
        assert t.gateway is not None
        captured = min(captured, t.amount)
        fee = self.fee(t.gateway, captured, t.currency)
        t.status = S.SUCCEEDED
        t.captured_amount = captured
        t.processing_fee = fee
        t.error_code = t.error_message = None
        t.gateway_data = {k: v for k, v in t.gateway_data.items() if k != "capturable"}
        entry = ledger.journal_entry(
            business_id=t.business_id, kind="payment", description=f"Payment via {t.gateway.name}",
            lines=ledger.lines(
                (ledger.gateway_clearing(t.gateway.value, t.currency), -captured),
                (ledger.business_available(t.business_id, t.currency), captured - fee),
                (ledger.platform_fees(t.currency), fee),
            ),
            occurred_at=self.clock(), transaction_id=t.id)
        await uow.ledger.post(entry)
        uow.audit("payment.captured", "Transaction", t.id, business_id=t.business_id,
                  after={"captured": str(captured), "fee": str(fee)})

    # ------------------------------------------------------------ capture / cancel

    async def capture(self, new_uow: UowFactory, payment_id: uuid.UUID, amount: Money | None,
                      idempotency_key: str) -> Outcome:
        _check_key(idempotency_key)
        now = self.clock()
        scope = f"capture:{payment_id}"
        fp = request_fingerprint("capture", payment_id, amount.amount if amount else "full",
                                 amount.currency if amount else "")
        async with new_uow() as uow:
            t = await uow.payments.get(payment_id, for_update=True)
            if t is None or t.type is not TransactionType.PAYMENT:
                raise NotFound("Payment not found", field=["input", "transactionId"])
            claimed = await uow.idempotency.claim(scope, idempotency_key, fp, now)
            if claimed is not None:
                if claimed[0] != fp:
                    raise IdempotencyKeyReused("This idempotency key was used with different parameters",
                                               field=["input", "idempotencyKey"])
                if t.status is not S.PENDING:
                    await uow.commit()
                    return Outcome(t, self.error_of(t))
            if t.status is not S.PENDING or "capturable" not in t.gateway_data:
                raise InvalidStateTransition(f"A {t.status.name} payment cannot be captured"
                                             + ("" if t.status is not S.PENDING else " before it is authorized"))
            value = t.amount
            if amount is not None:
                if amount.currency != t.currency:
                    raise InvalidInput(f"The payment is in {t.currency}", field=["input", "amount", "currency"])
                if amount.amount <= 0 or amount.amount > t.amount:
                    raise InvalidInput(f"Capture between 0 and {t.amount} {t.currency}",
                                       field=["input", "amount", "amount"])
                value = amount.amount
            gw = self.gateway(t.gateway) if t.gateway else None
            if gw is None or t.gateway_reference is None:
                raise InvalidStateTransition("The payment has no gateway authorization to capture")
            if value != t.amount and not gw.capabilities.partial_capture:
                raise InvalidInput(f"{gw.name.name} does not support partial capture",
                                   field=["input", "amount", "amount"])
            await uow.idempotency.complete(scope, idempotency_key, "Transaction", t.id)
            await uow.commit()
        try:
            result = await gw.capture(t.gateway_reference, value, t.currency, f"veix-capture-{t.id}")
        except (GatewayUnavailable, GatewayFailure) as exc:
            return Outcome(t, VeixError(f"The gateway could not capture: {str(exc)[:200]}",
                                        code=ErrorCode.GATEWAY_ERROR))
        async with new_uow() as uow:
            current = await uow.payments.get(t.id, for_update=True)
            assert current is not None
            if current.status is S.PENDING:
                if result.status is GatewayPaymentStatus.SUCCEEDED:
                    await self._settle(uow, current, result.captured_amount or value)
                else:
                    await self._apply_result(uow, current, result)
                current.updated_at = self.clock()
                await uow.payments.save(current)
                uow.emit(_event("transaction.updated", current))
                uow.audit("payment.capture", "Transaction", current.id, business_id=current.business_id,
                          after={"amount": str(value)})
            await uow.commit()
        return Outcome(current, self.error_of(current))

    async def cancel(self, new_uow: UowFactory, payment_id: uuid.UUID) -> Outcome:
        async with new_uow() as uow:
            t = await uow.payments.get(payment_id)
            if t is None or t.type is not TransactionType.PAYMENT:
                raise NotFound("Payment not found", field=["transactionId"])
            if t.status is S.CANCELED:
                return Outcome(t)
            if t.status not in rules.OPEN:
                raise InvalidStateTransition(f"A {t.status.name} payment cannot be canceled; refund it instead")
        if t.gateway and t.gateway_reference:
            try:
                await self.gateway(t.gateway).cancel(t.gateway_reference, f"veix-cancel-{t.id}")
            except (GatewayUnavailable, GatewayFailure) as exc:
                return Outcome(t, VeixError(f"The gateway could not cancel: {str(exc)[:200]}",
                                            code=ErrorCode.GATEWAY_ERROR))
        async with new_uow() as uow:
            current = await uow.payments.get(payment_id, for_update=True)
            assert current is not None
            if current.status in rules.OPEN:
                current.status = S.CANCELED
                current.next_action = None
                current.gateway_data = {k: v for k, v in current.gateway_data.items() if k != "capturable"}
                current.updated_at = self.clock()
                await uow.payments.save(current)
                uow.emit(_event("transaction.updated", current))
                uow.audit("payment.cancel", "Transaction", current.id, business_id=current.business_id)
            elif current.status is not S.CANCELED:
                raise InvalidStateTransition(f"A {current.status.name} payment cannot be canceled")
            await uow.commit()
        return Outcome(current)

    async def confirm(self, new_uow: UowFactory, gateway: Gateway, reference: str,
                      params: Mapping[str, Any]) -> Transaction:
        """The payer finished the action (3-D Secure, PayPal approval): continue with the gateway."""
        async with new_uow() as uow:
            t = await uow.payments.by_reference(gateway, reference)
        if t is None:
            raise NotFound("Payment not found")
        if t.status not in rules.OPEN:
            return t
        try:
            result = await self.gateway(gateway).confirm(reference, params)
        except (GatewayUnavailable, GatewayFailure) as exc:
            raise VeixError(f"The gateway could not confirm the payment: {str(exc)[:200]}",
                            code=ErrorCode.GATEWAY_ERROR) from None
        async with new_uow() as uow:
            current = await uow.payments.by_reference(gateway, reference)
            assert current is not None
            if current.status in rules.OPEN:
                await self._apply_result(uow, current, result)
                current.updated_at = self.clock()
                await uow.payments.save(current)
                uow.emit(_event("transaction.updated", current))
                uow.audit("payment.confirm", "Transaction", current.id, business_id=current.business_id,
                          after={"status": current.status.name})
            await uow.commit()
        return current

    async def apply_late_events(self, new_uow: UowFactory, gateway: Gateway, reference: str) -> int:
        """Apply events that arrived before their payment was known; returns how many."""
        async with new_uow() as uow:
            t = await uow.payments.by_reference(gateway, reference)
            if t is None:
                return 0
            events = await uow.payments.unmatched_events(gateway, reference)
            for event in events:
                await self._apply_event_to(uow, gateway, event, t)
            t.updated_at = self.clock()
            await uow.payments.save(t)
            await uow.commit()
        return len(events)

    # ------------------------------------------------------------ refunds

    async def refund(self, new_uow: UowFactory, payment_id: uuid.UUID, amount: Money | None,
                     reason: str | None, idempotency_key: str) -> Outcome:
        _check_key(idempotency_key)
        if reason is not None and len(reason) > 500:
            raise InvalidInput("reason is limited to 500 characters", field=["input", "reason"])
        now = self.clock()
        scope = f"refund:{payment_id}"
        fp = request_fingerprint("refund", payment_id, amount.amount if amount else "full",
                 amount.currency if amount else "", reason or "")
        async with new_uow() as uow:
            t = await uow.payments.get(payment_id, for_update=True)
            if t is None or t.type is not TransactionType.PAYMENT:
                raise NotFound("Payment not found", field=["input", "transactionId"])
            claimed = await uow.idempotency.claim(scope, idempotency_key, fp, now)
            if claimed is not None:
                if claimed[0] != fp or claimed[1] is None:
                    raise IdempotencyKeyReused("This idempotency key was used with different parameters",
                                               field=["input", "idempotencyKey"])
                refund = await uow.payments.get(claimed[1])
                assert refund is not None
                await uow.commit()
                if refund.status is S.PENDING and refund.gateway_reference is None:
                    return await self._send_refund(new_uow, t, refund)  # the gateway call did not finish
                return Outcome(t, self._refund_error(refund), refund)
            if t.status not in (S.SUCCEEDED, S.PARTIALLY_REFUNDED):
                raise InvalidStateTransition(f"A {t.status.name} payment cannot be refunded")
            gw = self.gateway(t.gateway) if t.gateway else None
            if gw is None or not gw.capabilities.refunds:
                raise InvalidInput(f"{t.gateway.name if t.gateway else 'This'} payments cannot be refunded "
                                   "through Veix", field=["input", "transactionId"])
            refunds = await uow.payments.refunds_of(t.id)
            committed = sum((r.amount for r in refunds if r.status in (S.PENDING, S.SUCCEEDED)), Decimal(0))
            left = t.captured_amount - committed
            value = left
            if amount is not None:
                if amount.currency != t.currency:
                    raise InvalidInput(f"The payment is in {t.currency}", field=["input", "amount", "currency"])
                if amount.amount <= 0:
                    raise InvalidInput("The amount must be positive", field=["input", "amount", "amount"])
                value = amount.amount
            if left <= 0 or value > left:
                raise InvalidInput(f"At most {left} {t.currency} is left to refund",
                                   field=["input", "amount", "amount"], code=ErrorCode.LIMIT_EXCEEDED)
            if value != t.captured_amount and not gw.capabilities.partial_refunds:
                raise InvalidInput(f"{gw.name.name} does not support partial refunds",
                                   field=["input", "amount", "amount"])
            refund = Transaction(
                id=new_id(), business_id=t.business_id, type=TransactionType.REFUND, status=S.PENDING,
                amount=value, currency=t.currency, created_at=now, updated_at=now,
                payment_method=t.payment_method, gateway=t.gateway, customer_id=t.customer_id,
                idempotency_key=idempotency_key, parent_id=t.id, description=reason,
                payment_method_id=t.payment_method_id,
            )
            await uow.transactions.add(refund)
            try:
                await uow.ledger.post(ledger.journal_entry(
                    business_id=t.business_id, kind="refund_reserve", description="Refund requested",
                    lines=ledger.transfer(ledger.business_available(t.business_id, t.currency),
                                          ledger.refunds_pending(t.business_id, t.currency),
                                          Money(value, t.currency)),
                    occurred_at=now, transaction_id=refund.id))
            except InsufficientFunds:
                raise InsufficientFunds(
                    f"The business's {t.currency} balance cannot cover this refund",
                    field=["input", "amount"]) from None
            await uow.idempotency.complete(scope, idempotency_key, "Transaction", refund.id)
            uow.emit(_event("transaction.created", refund, payment_id=str(t.id)))
            uow.audit("payment.refund", "Transaction", refund.id, business_id=t.business_id,
                      after={"payment": str(t.id), "amount": str(value), "reason": reason})
            await uow.commit()
        return await self._send_refund(new_uow, t, refund)

    def _refund_error(self, refund: Transaction) -> VeixError | None:
        if refund.status is S.FAILED:
            return VeixError(refund.error_message or "The gateway refused the refund", code=ErrorCode.GATEWAY_ERROR)
        return None

    async def _send_refund(self, new_uow: UowFactory, payment: Transaction, refund: Transaction) -> Outcome:
        assert payment.gateway is not None and payment.gateway_reference is not None
        gw = self.gateway(payment.gateway)
        try:
            result = await gw.refund(payment.gateway_reference, refund.amount, refund.currency,
                                     f"veix-refund-{refund.id}", refund.description)
        except GatewayUnavailable as exc:
            # Unknown whether the gateway refunded: the refund stays PENDING (funds reserved);
            # retrying with the same idempotencyKey asks the gateway again, idempotently.
            return Outcome(payment, VeixError(f"The gateway is unavailable; retry with the same "
                                              f"idempotencyKey ({str(exc)[:100]})", code=ErrorCode.GATEWAY_ERROR),
                           refund)
        except GatewayFailure as exc:
            async with new_uow() as uow:
                current_refund = await uow.payments.get(refund.id, for_update=True)
                assert current_refund is not None
                await self._finish_refund(uow, current_refund, succeeded=False, message=str(exc)[:300])
                parent = await uow.payments.get(payment.id)
                await uow.commit()
            assert parent is not None
            return Outcome(parent, self._refund_error(current_refund), current_refund)
        async with new_uow() as uow:
            parent = await uow.payments.get(payment.id, for_update=True)
            current_refund = await uow.payments.get(refund.id, for_update=True)
            assert parent is not None and current_refund is not None
            current_refund.gateway_reference = result.reference
            if result.status is RefundStatus.SUCCEEDED:
                await self._finish_refund(uow, current_refund, succeeded=True, parent=parent)
            elif result.status is RefundStatus.FAILED:
                await self._finish_refund(uow, current_refund, succeeded=False, message="The gateway refused")
            else:
                current_refund.updated_at = self.clock()
                await uow.payments.save(current_refund)
            for pending in await uow.payments.unmatched_events(gw.name, parent.gateway_reference or ""):
                await self._apply_event_to(uow, gw.name, pending, parent)
            await uow.commit()
        return Outcome(parent, self._refund_error(current_refund), current_refund)

    async def _finish_refund(self, uow: UnitOfWork, refund: Transaction, *, succeeded: bool,
                             parent: Transaction | None = None, message: str | None = None) -> None:
        if refund.status is not S.PENDING:
            return
        now = self.clock()
        pending = ledger.refunds_pending(refund.business_id, refund.currency)
        money = Money(refund.amount, refund.currency)
        assert refund.gateway is not None and refund.parent_id is not None
        if succeeded:
            target = ledger.gateway_clearing(refund.gateway.value, refund.currency)
            refund.status = S.SUCCEEDED
        else:
            target = ledger.business_available(refund.business_id, refund.currency)
            refund.status = S.FAILED
            refund.error_code = "refund_failed"
            refund.error_message = message
        await uow.ledger.post(ledger.journal_entry(
            business_id=refund.business_id, kind="refund" if succeeded else "refund_release",
            description="Refund confirmed" if succeeded else "Refund failed: funds released",
            lines=ledger.transfer(pending, target, money), occurred_at=now, transaction_id=refund.id))
        refund.updated_at = now
        await uow.payments.save(refund)
        uow.emit(_event("transaction.updated", refund, payment_id=str(refund.parent_id)))
        if succeeded:
            if parent is None:
                parent = await uow.payments.get(refund.parent_id, for_update=True)
            assert parent is not None
            parent.refunded_amount += refund.amount
            if parent.status is not S.DISPUTED:
                parent.status = rules.status_after_refunds(parent.captured_amount, parent.refunded_amount)
            parent.updated_at = now
            await uow.payments.save(parent)
            uow.emit(_event("transaction.updated", parent))

    # ------------------------------------------------------------ disputes

    async def submit_evidence(self, new_uow: UowFactory, dispute_id: uuid.UUID,
                              evidence: dict[str, Any]) -> Dispute:
        if not isinstance(evidence, dict) or not evidence:
            raise InvalidInput("evidence must be a non-empty JSON object", field=["input", "evidence"])
        if len(json.dumps(evidence, default=str)) > 65536:
            raise InvalidInput("evidence is limited to 64 KiB", field=["input", "evidence"])
        async with new_uow() as uow:
            d = await uow.payments.dispute(dispute_id)
            if d is None:
                raise NotFound("Dispute not found", field=["input", "disputeId"])
            if d.status is not DisputeStatus.NEEDS_RESPONSE:
                raise InvalidStateTransition(f"A {d.status.name} dispute takes no more evidence")
            if d.evidence_due_by is not None and self.clock() > d.evidence_due_by:
                raise InvalidStateTransition("The evidence was due by " + d.evidence_due_by.isoformat())
        submit = getattr(self.gateway(d.gateway), "submit_dispute_evidence", None)
        if submit is not None:
            try:
                await submit(d.gateway_reference, evidence)
            except (GatewayUnavailable, GatewayFailure) as exc:
                raise VeixError(f"The gateway did not take the evidence: {str(exc)[:200]}",
                                code=ErrorCode.GATEWAY_ERROR) from None
        async with new_uow() as uow:
            current = await uow.payments.dispute(dispute_id, for_update=True)
            assert current is not None
            if current.status is DisputeStatus.NEEDS_RESPONSE:
                current.status = DisputeStatus.UNDER_REVIEW
            current.evidence = evidence
            current.updated_at = self.clock()
            await uow.payments.save_dispute(current)
            uow.emit(DomainEvent("dispute.updated", current.business_id,
                                 {"dispute_id": str(current.id), "status": current.status.name,
                                  "transaction_id": str(current.transaction_id)}))
            uow.audit("dispute.evidence", "Dispute", current.id, business_id=current.business_id)
            await uow.commit()
        return current

    # ------------------------------------------------------------ gateway events

    async def apply_event(self, new_uow: UowFactory, gateway: Gateway, event: WebhookEvent) -> str:
        """Process one verified gateway event, once per event id. Returns the outcome:
        ``applied``, ``stale`` (the payment already moved past it), ``duplicate``,
        ``unmatched`` (no payment with that reference yet; applied when it appears),
        or ``ignored``."""
        async with new_uow() as uow:
            if not await uow.payments.record_event(gateway, event, self.clock()):
                return "duplicate"
            t = await uow.payments.by_reference(gateway, event.reference) if event.reference else None
            if event.kind is WebhookKind.IGNORED:
                outcome = "ignored"
            elif t is None:
                outcome = "unmatched"
            else:
                outcome = await self._apply_event_to(uow, gateway, event, t)
                t.updated_at = self.clock()
                await uow.payments.save(t)
            await uow.payments.set_event_outcome(gateway, event.event_id, outcome, t.id if t else None)
            await uow.commit()
        return outcome

    async def _apply_event_to(self, uow: UnitOfWork, gateway: Gateway, event: WebhookEvent,
                              t: Transaction) -> str:
        k = event.kind
        before = t.status
        if k in (WebhookKind.REFUND_SUCCEEDED, WebhookKind.REFUND_FAILED):
            return await self._refund_event(uow, event, t)
        if k in (WebhookKind.DISPUTE_OPENED, WebhookKind.DISPUTE_UPDATED, WebhookKind.DISPUTE_WON,
                 WebhookKind.DISPUTE_LOST):
            return await self._dispute_event(uow, gateway, event, t)
        target = {
            WebhookKind.PAYMENT_REQUIRES_ACTION: S.REQUIRES_ACTION, WebhookKind.PAYMENT_PROCESSING: S.PROCESSING,
            WebhookKind.PAYMENT_AUTHORIZED: S.PENDING, WebhookKind.PAYMENT_SUCCEEDED: S.SUCCEEDED,
            WebhookKind.PAYMENT_FAILED: S.FAILED, WebhookKind.PAYMENT_CANCELED: S.CANCELED,
        }[k]
        if target is S.PENDING and t.status is S.PENDING and "capturable" not in t.gateway_data:
            t.gateway_data = {**t.gateway_data, "capturable": str(t.amount)}
            uow.emit(_event("transaction.updated", t))
            return "applied"
        if rules.is_stale(t.status, target):
            return "stale"
        if not rules.can_transition(t.status, target):
            return "stale"
        g = GatewayPaymentStatus
        status = {S.REQUIRES_ACTION: g.REQUIRES_ACTION, S.PROCESSING: g.PROCESSING, S.PENDING: g.AUTHORIZED,
                  S.SUCCEEDED: g.SUCCEEDED, S.FAILED: g.FAILED, S.CANCELED: g.CANCELED}[target]
        result = GatewayResult(status=status, reference=t.gateway_reference or event.reference or "",
                               captured_amount=event.amount or Decimal(0), decline_code=event.decline_code,
                               decline_message=event.decline_message,
                               next_action=t.next_action if target is S.REQUIRES_ACTION else None,
                               provider_status=event.provider_type)
        if gateway is Gateway.CRYPTO:  # what the chain showed: received, expected, overpaid
            t.gateway_data = {**t.gateway_data, "crypto": _jsonable(event.payload)}
        await self._apply_result(uow, t, result)
        if t.status is not before:
            uow.emit(_event("transaction.updated", t, gateway_event=event.provider_type))
        return "applied"

    async def _refund_event(self, uow: UnitOfWork, event: WebhookEvent, t: Transaction) -> str:
        refunds = await uow.payments.refunds_of(t.id)
        match = next((r for r in refunds if event.refund_reference and r.gateway_reference == event.refund_reference),
                     None)
        if match is None:
            return "unmatched"
        if match.status is not S.PENDING:
            return "stale"
        await self._finish_refund(uow, match, succeeded=event.kind is WebhookKind.REFUND_SUCCEEDED, parent=t,
                                  message=event.decline_message or "The gateway refused the refund")
        return "applied"

    async def _dispute_event(self, uow: UnitOfWork, gateway: Gateway, event: WebhookEvent,
                             t: Transaction) -> str:
        info = event.dispute
        if info is None or info.amount <= 0:
            return "ignored"  # nothing to withdraw: a malformed or informational event
        now = self.clock()
        d = await uow.payments.dispute_by_reference(gateway, info.reference)
        if d is None:
            if t.status not in (S.SUCCEEDED, S.PARTIALLY_REFUNDED, S.REFUNDED):
                return "stale"
            d = await self._open_dispute(uow, gateway, info, t, now)
        if event.kind is WebhookKind.DISPUTE_UPDATED:
            if info.evidence_due_by is not None:
                d.evidence_due_by = info.evidence_due_by
        elif event.kind in (WebhookKind.DISPUTE_WON, WebhookKind.DISPUTE_LOST):
            if d.status not in OPEN_DISPUTE:
                return "stale"
            won = event.kind is WebhookKind.DISPUTE_WON
            d.status = DisputeStatus.WON if won else DisputeStatus.LOST
            if won:
                await uow.ledger.post(ledger.journal_entry(
                    business_id=t.business_id, kind="dispute_won", description="Dispute won: funds returned",
                    lines=ledger.lines(
                        (ledger.gateway_clearing(gateway.value, d.currency), -d.amount),
                        (ledger.business_available(t.business_id, d.currency), d.withdrawn_available),
                        (ledger.business_receivable(t.business_id, d.currency), d.withdrawn_receivable)),
                    occurred_at=now, transaction_id=t.id))
                t.status = d.status_before
        d.updated_at = now
        await uow.payments.save_dispute(d)
        uow.emit(DomainEvent(f"dispute.{'created' if event.kind is WebhookKind.DISPUTE_OPENED else 'updated'}",
                             t.business_id, {"dispute_id": str(d.id), "status": d.status.name,
                                             "transaction_id": str(t.id)}))
        uow.emit(_event("transaction.updated", t, dispute_status=d.status.name))
        return "applied"

    async def _open_dispute(self, uow: UnitOfWork, gateway: Gateway, info: Any, t: Transaction,
                            now: datetime) -> Dispute:
        amount = min(info.amount, t.captured_amount)
        available = await uow.payments.available_balance(t.business_id, t.currency)
        from_available = max(Decimal(0), min(amount, available))
        from_receivable = amount - from_available
        d = Dispute(
            id=uuid.uuid4(), business_id=t.business_id, transaction_id=t.id, gateway=gateway,
            gateway_reference=info.reference, amount=amount, currency=t.currency,
            reason=(info.reason or "general")[:200], status=DisputeStatus.NEEDS_RESPONSE,
            evidence_due_by=info.evidence_due_by, evidence=None, withdrawn_available=from_available,
            withdrawn_receivable=from_receivable, status_before=t.status, created_at=now, updated_at=now)
        await uow.payments.add_dispute(d)
        await uow.ledger.post(ledger.journal_entry(
            business_id=t.business_id, kind="dispute", description="Dispute opened: funds withdrawn",
            lines=ledger.lines(
                (ledger.gateway_clearing(gateway.value, t.currency), amount),
                (ledger.business_available(t.business_id, t.currency), -from_available),
                (ledger.business_receivable(t.business_id, t.currency), -from_receivable)),
            occurred_at=now, transaction_id=t.id))
        t.status = S.DISPUTED
        uow.audit("dispute.opened", "Dispute", d.id, business_id=t.business_id,
                  after={"amount": str(amount), "reason": d.reason})
        return d

