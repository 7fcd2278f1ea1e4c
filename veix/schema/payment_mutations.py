"""Payment mutations (createPayment, capture, cancel, refund, dispute evidence, routing settings),
merged into the Mutation root by ``build_schema``."""

from __future__ import annotations

import strawberry
from strawberry.scalars import JSON
from strawberry.types import Info

from veix.domain.services.payments import Outcome
from veix.resolvers import payments as rp
from veix.resolvers.context import Context
from veix.resolvers.errors import attempt
from veix.schema.mutations import PaymentPayload
from veix.schema.types.business import Transaction
from veix.schema.types.common import MoneyInput, UserError
from veix.schema.types.payments import Dispute, PaymentMethodType, Refund


@strawberry.input(description="Raw card details: sandbox and test only (production takes gateway tokens). "
                              "Never stored, logged or returned: only brand and last 4 digits are kept.")
class PaymentCardInput:
    number: str = strawberry.field(description="12-19 digits with a valid check digit.")
    exp_month: int = strawberry.field(description="1-12.")
    exp_year: int = strawberry.field(description="Four digits (two are read as 20xx).")
    cvc: str = strawberry.field(description="3 digits (4 for American Express).")


@strawberry.input(description="Where PayPal sends the payer back.")
class PaypalInput:
    return_url: str = strawberry.field(description="After the payer approved.")
    cancel_url: str = strawberry.field(description="After the payer cancelled.")


@strawberry.input(description="A crypto payment.")
class CryptoInput:
    asset: str = strawberry.field(description="The asset to pay in, e.g. ETH or USDC (as configured).")


@strawberry.input(description="Take a payment.")
class CreatePaymentInput:
    business_id: strawberry.ID = strawberry.field(description="The business that is paid.")
    amount: MoneyInput = strawberry.field(description="How much, in which currency.")
    method: PaymentMethodType = strawberry.field(description="CARD, PAYPAL or CRYPTO; the matching input is required.")
    idempotency_key: str = strawberry.field(
        description="Same key and parameters returns the original payment; other parameters are refused "
                    "(IDEMPOTENCY_KEY_REUSED). Kept at least 24 h.")
    card: PaymentCardInput | None = strawberry.field(default=None, description="For CARD.")
    paypal: PaypalInput | None = strawberry.field(default=None, description="For PAYPAL.")
    crypto: CryptoInput | None = strawberry.field(default=None, description="For CRYPTO.")
    customer_id: strawberry.ID | None = strawberry.field(default=None, description="Your customer reference.")
    description: str | None = strawberry.field(default=None, description="At most 500 characters.")
    metadata: JSON | None = strawberry.field(default=None, description="Your key-value data (a JSON object, 8 KiB).")
    capture: bool | None = strawberry.field(
        default=None, description="False: only authorize (status PENDING) and capture later with capturePayment. "
                                  "Default true.")


@strawberry.input(description="Capture an authorized payment, fully or partly.")
class CapturePaymentInput:
    transaction_id: strawberry.ID = strawberry.field(description="The payment.")
    idempotency_key: str = strawberry.field(description="As for createPayment.")
    amount: MoneyInput | None = strawberry.field(
        default=None, description="At most the authorized amount; omit to capture all of it.")


@strawberry.input(description="Refund a payment, fully or partly; several refunds may follow each other.")
class RefundInput:
    transaction_id: strawberry.ID = strawberry.field(description="The payment.")
    idempotency_key: str = strawberry.field(description="As for createPayment.")
    amount: MoneyInput | None = strawberry.field(
        default=None, description="At most what is captured and not yet refunded; omit to refund all of it.")
    reason: str | None = strawberry.field(default=None, description="Why; at most 500 characters.")


@strawberry.type(description="A refund and its payment, or why it failed.")
class RefundPayload:
    refund: Refund | None = strawberry.field(description="The refund.")
    transaction: Transaction | None = strawberry.field(description="The refunded payment as it is now.")
    user_errors: list[UserError] = strawberry.field(description="Why it failed.")


@strawberry.input(description="Evidence for a dispute.")
class SubmitDisputeEvidenceInput:
    dispute_id: strawberry.ID = strawberry.field(description="The dispute.")
    evidence: JSON = strawberry.field(
        description="A JSON object: receipts, shipping proof, customer communication, explanation...")


@strawberry.type(description="A dispute, or why the change failed.")
class DisputePayload:
    dispute: Dispute | None = strawberry.field(description="The dispute.")
    user_errors: list[UserError] = strawberry.field(description="Why it failed.")


@strawberry.input(description="How a business's payments are routed.")
class UpdatePaymentSettingsInput:
    business_id: strawberry.ID = strawberry.field(description="The business.")
    routes: str | None = strawberry.field(
        default=None, description="Gateway order per method, e.g. 'card=stripe,sandbox;paypal=paypal'; "
                                  "null to use the server's routes.")
    stripe_account: str | None = strawberry.field(
        default=None, description="The business's Stripe Connect account (acct_...): card payments through "
                                  "Stripe go to it, with Veix's fee as the application fee.")


@strawberry.type(description="A business's payment routing.")
class PaymentSettings:
    routes: JSON | None = strawberry.field(description="Gateway order per method, or null for the server's.")
    stripe_account: str | None = strawberry.field(description="Stripe Connect account.")


@strawberry.type(description="Payment settings, or why the change failed.")
class PaymentSettingsPayload:
    settings: PaymentSettings | None = strawberry.field(description="The settings.")
    user_errors: list[UserError] = strawberry.field(description="Why it failed.")


def _errors(errors: list[object]) -> list[UserError]:
    return [UserError.of(e) for e in errors]  # type: ignore[arg-type]


def _payload(outcome: Outcome | None, errors: list[object]) -> PaymentPayload:
    if outcome is None:
        return PaymentPayload(transaction=None, user_errors=_errors(errors))
    return PaymentPayload(transaction=Transaction.of(outcome.transaction),
                          user_errors=_errors([outcome.error] if outcome.error else []))


@strawberry.type(description="Payment mutations.")
class PaymentMutation:
    @strawberry.mutation(description="Take a payment: validated, risk-scored, routed to a gateway (failing over "
                                     "once on an outage), recorded with its fee and posted to the ledger. A "
                                     "declined card returns the FAILED transaction and a CARD_DECLINED error. "
                                     "Needs payments:create.")
    async def create_payment(self, info: Info[Context, None], input: CreatePaymentInput) -> PaymentPayload:
        outcome, errors = await attempt(lambda: rp.create_payment(info.context, input))
        return _payload(outcome, errors)

    @strawberry.mutation(description="Capture a payment created with capture: false. Needs payments:create.")
    async def capture_payment(self, info: Info[Context, None], input: CapturePaymentInput) -> PaymentPayload:
        outcome, errors = await attempt(lambda: rp.capture_payment(info.context, input))
        return _payload(outcome, errors)

    @strawberry.mutation(description="Cancel a payment that is not captured yet (releases the authorization). "
                                     "Needs payments:create.")
    async def cancel_payment(self, info: Info[Context, None], transaction_id: strawberry.ID) -> PaymentPayload:
        outcome, errors = await attempt(lambda: rp.cancel_payment(info.context, str(transaction_id)))
        return _payload(outcome, errors)

    @strawberry.mutation(description="Continue a payment after the payer acted: PayPal approval (then captured "
                                     "or authorized), 3-D Secure. Needs payments:create.")
    async def confirm_payment(self, info: Info[Context, None], transaction_id: strawberry.ID) -> PaymentPayload:
        outcome, errors = await attempt(lambda: rp.confirm_payment(info.context, str(transaction_id)))
        return _payload(outcome, errors)

    @strawberry.mutation(description="Refund a captured payment, fully or partly; never more than captured. The "
                                     "amount leaves the business balance at once (INSUFFICIENT_FUNDS if it "
                                     "cannot). Needs payments:refund.")
    async def refund_payment(self, info: Info[Context, None], input: RefundInput) -> RefundPayload:
        outcome, errors = await attempt(lambda: rp.refund_payment(info.context, input))
        if outcome is None:
            return RefundPayload(refund=None, transaction=None, user_errors=_errors(errors))
        return RefundPayload(refund=Refund.of(outcome.refund) if outcome.refund else None,
                             transaction=Transaction.of(outcome.transaction),
                             user_errors=_errors([outcome.error] if outcome.error else []))

    @strawberry.mutation(description="Submit evidence for a dispute that needs a response. Needs disputes:manage.")
    async def submit_dispute_evidence(self, info: Info[Context, None],
                                      input: SubmitDisputeEvidenceInput) -> DisputePayload:
        d, errors = await attempt(lambda: rp.submit_dispute_evidence(info.context, input))
        return DisputePayload(dispute=Dispute.of(d) if d else None, user_errors=_errors(errors))

    @strawberry.mutation(description="Set a business's gateway order per method and its Stripe Connect account. "
                                     "Needs payments:configure.")
    async def update_payment_settings(self, info: Info[Context, None],
                                      input: UpdatePaymentSettingsInput) -> PaymentSettingsPayload:
        s, errors = await attempt(lambda: rp.update_payment_settings(info.context, input))
        return PaymentSettingsPayload(
            settings=PaymentSettings(routes=s.routes, stripe_account=s.stripe_account) if s else None,
            user_errors=_errors(errors))
