"""Payment mutations: input parsing, permissions, then the processor."""

from __future__ import annotations

from typing import Any

from veix.domain.disputes import Dispute, PaymentMethodRecord, PaymentSettings
from veix.domain.errors import InvalidInput, NotFound, VeixError
from veix.domain.events import utcnow
from veix.domain.gateway import PaymentMethodType, PaypalDetails
from veix.domain.money import Money, parse_currency, positive_money
from veix.domain.payments import validate_card, validate_redirect_url
from veix.domain.routing import parse_routes
from veix.domain.services.payments import NewPayment, Outcome, PaymentProcessor
from veix.domain.transactions import Gateway, Transaction, TransactionType
from veix.persistence import queries as q
from veix.resolvers.context import Context
from veix.resolvers.ids import from_global_id

MAX_CUSTOMER_ID = 128
MAX_DESCRIPTION = 500


def processor(ctx: Context) -> PaymentProcessor:
    p: PaymentProcessor | None = ctx.services.payments
    if p is None:
        raise VeixError("Payments are not configured on this server")
    return p


def _money(value: Any, field: list[str]) -> Money:
    try:
        currency = parse_currency(value.currency)
    except InvalidInput as exc:
        exc.field = [*field, "currency"]
        raise
    try:
        return positive_money(value.amount, currency)
    except InvalidInput as exc:
        exc.field = [*field, "amount"]
        raise


async def _payment(ctx: Context, txn_gid: str, permission: str, field: list[str]) -> Transaction:
    txn_id = from_global_id(txn_gid, "Transaction", field=field)
    t = (await ctx.read(lambda c: q.transactions_by_ids(c, [txn_id]))).get(txn_id)
    if t is None or await ctx.role_in(t.business_id) is None:
        raise NotFound("Payment not found", field=field)
    await ctx.require(t.business_id, permission, field=field)
    if t.type is not TransactionType.PAYMENT:
        raise InvalidInput(f"A {t.type.name} transaction is not a payment", field=field)
    return t


async def create_payment(ctx: Context, data: Any) -> Outcome:
    business_id = from_global_id(data.business_id, "Business", field=["input", "businessId"])
    await ctx.require(business_id, "payments:create", field=["input", "businessId"])
    money = _money(data.amount, ["input", "amount"])
    method = PaymentMethodType(data.method.value if hasattr(data.method, "value") else data.method)
    card = paypal = None
    asset: str | None = None
    if data.card is not None:
        c = data.card
        card = validate_card(c.number, c.exp_month, c.exp_year, c.cvc, utcnow())
    if data.paypal is not None:
        paypal = PaypalDetails(validate_redirect_url(data.paypal.return_url, ["input", "paypal", "returnUrl"]),
                               validate_redirect_url(data.paypal.cancel_url, ["input", "paypal", "cancelUrl"]))
    if data.crypto is not None:
        asset = (data.crypto.asset or "").strip().upper()
        if not asset.isalnum() or not 2 <= len(asset) <= 10:
            raise InvalidInput("asset must be a symbol such as ETH or USDC", field=["input", "crypto", "asset"])
        gw = ctx.services.gateways.get(Gateway.CRYPTO) if ctx.services.gateways else None
        known = getattr(gw, "assets", None)
        if known is not None and asset not in known:
            raise InvalidInput(f"Unsupported asset {asset}; this server accepts {', '.join(sorted(known))}",
                               field=["input", "crypto", "asset"])
    customer = data.customer_id
    if customer is not None and not 1 <= len(customer) <= MAX_CUSTOMER_ID:
        raise InvalidInput("customerId must be 1 to 128 characters", field=["input", "customerId"])
    if data.description is not None and len(data.description) > MAX_DESCRIPTION:
        raise InvalidInput("description is limited to 500 characters", field=["input", "description"])
    metadata = data.metadata if data.metadata is not None else {}
    if not isinstance(metadata, dict):
        raise InvalidInput("metadata must be a JSON object", field=["input", "metadata"])
    new = NewPayment(
        business_id=business_id, money=money, method=method,
        capture=True if data.capture is None else bool(data.capture), idempotency_key=data.idempotency_key,
        card=card, paypal=paypal, crypto_asset=asset, customer_id=customer, description=data.description,
        metadata=metadata)
    return await processor(ctx).create(ctx.uow, new)


async def capture_payment(ctx: Context, data: Any) -> Outcome:
    t = await _payment(ctx, data.transaction_id, "payments:create", ["input", "transactionId"])
    amount = _money(data.amount, ["input", "amount"]) if data.amount is not None else None
    return await processor(ctx).capture(ctx.uow, t.id, amount, data.idempotency_key)


async def cancel_payment(ctx: Context, transaction_id: str) -> Outcome:
    t = await _payment(ctx, transaction_id, "payments:create", ["transactionId"])
    return await processor(ctx).cancel(ctx.uow, t.id)


async def confirm_payment(ctx: Context, transaction_id: str) -> Outcome:
    t = await _payment(ctx, transaction_id, "payments:create", ["transactionId"])
    if t.gateway is None or t.gateway_reference is None:
        raise InvalidInput("The payment has nothing to confirm", field=["transactionId"])
    current = await processor(ctx).confirm(ctx.uow, t.gateway, t.gateway_reference, {})
    return Outcome(current, processor(ctx).error_of(current))


async def refund_payment(ctx: Context, data: Any) -> Outcome:
    t = await _payment(ctx, data.transaction_id, "payments:refund", ["input", "transactionId"])
    amount = _money(data.amount, ["input", "amount"]) if data.amount is not None else None
    return await processor(ctx).refund(ctx.uow, t.id, amount, data.reason, data.idempotency_key)


async def submit_dispute_evidence(ctx: Context, data: Any) -> Dispute:
    dispute_id = from_global_id(data.dispute_id, "Dispute", field=["input", "disputeId"])
    d = (await ctx.read(lambda c: q.disputes_by_ids(c, [dispute_id]))).get(dispute_id)
    if d is None or await ctx.role_in(d.business_id) is None:
        raise NotFound("Dispute not found", field=["input", "disputeId"])
    await ctx.require(d.business_id, "disputes:manage", field=["input", "disputeId"])
    return await processor(ctx).submit_evidence(ctx.uow, d.id, data.evidence)


async def get_dispute(ctx: Context, dispute_gid: str) -> Dispute | None:
    try:
        dispute_id = from_global_id(dispute_gid, "Dispute", field=["id"])
    except NotFound:
        return None
    d = (await ctx.read(lambda c: q.disputes_by_ids(c, [dispute_id]))).get(dispute_id)
    if d is None or await ctx.role_in(d.business_id) is None:
        return None
    await ctx.require(d.business_id, "transactions:read", field=["id"])
    return d


async def get_payment_method(ctx: Context, method_gid: str) -> PaymentMethodRecord | None:
    try:
        method_id = from_global_id(method_gid, "PaymentMethod", field=["id"])
    except NotFound:
        return None
    pm = (await ctx.read(lambda c: q.payment_methods_by_ids(c, [method_id]))).get(method_id)
    if pm is None or await ctx.role_in(pm.business_id) is None:
        return None
    await ctx.require(pm.business_id, "transactions:read", field=["id"])
    return pm


async def update_payment_settings(ctx: Context, data: Any) -> PaymentSettings:
    business_id = from_global_id(data.business_id, "Business", field=["input", "businessId"])
    await ctx.require(business_id, "payments:configure", field=["input", "businessId"])
    routes: dict[str, list[str]] | None = None
    if data.routes:
        try:
            parsed = parse_routes(data.routes)
        except ValueError as exc:
            raise InvalidInput(str(exc), field=["input", "routes"]) from None
        routes = {m.value: [g.value for g in order] for m, order in parsed.items()}
    account = data.stripe_account
    if account is not None and (not account.startswith("acct_") or len(account) > 64):
        raise InvalidInput("stripeAccount must be a Stripe account id (acct_...)", field=["input", "stripeAccount"])
    settings = PaymentSettings(business_id, routes, account)
    async with ctx.uow() as uow:
        await uow.payments.save_settings(settings, utcnow())
        uow.audit("payments.settings", "Business", business_id, business_id=business_id,
                  after={"routes": routes, "stripe_account": account})
        await uow.commit()
    return settings

