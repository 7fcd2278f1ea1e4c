"""Card mutations (issuing, lifecycle, controls, reveal, sandbox authorizations,
decisions) and step-up, merged into the Mutation root by ``build_schema``."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import strawberry
from strawberry.scalars import JSON
from strawberry.types import Info

from veix.resolvers import cards as rc
from veix.resolvers.context import Context
from veix.resolvers.errors import attempt
from veix.schema.types.cards import Card, CardNetwork, CardStatus, CardTransaction, CardType
from veix.schema.types.common import MoneyInput, UserError

UNSET = strawberry.UNSET


@strawberry.input(description="Spending controls. In updateCardControls only the fields given change "
                              "(an explicit null removes that control); in issueCard omitted means none.")
class CardControlsInput:
    allowed_merchant_categories: list[str] | None = strawberry.field(
        default=UNSET, description="Only these 4-digit merchant category codes.")
    blocked_merchant_categories: list[str] | None = strawberry.field(
        default=UNSET, description="Decline these 4-digit merchant category codes.")
    allowed_countries: list[str] | None = strawberry.field(
        default=UNSET, description="Only merchants in these ISO 3166-1 alpha-2 countries.")
    blocked_countries: list[str] | None = strawberry.field(
        default=UNSET, description="Decline merchants in these countries.")
    max_transaction_amount: Decimal | None = strawberry.field(
        default=UNSET, description="Largest single authorization (> 0), card currency.")
    daily_limit: Decimal | None = strawberry.field(
        default=UNSET, description="Most per day (> 0, at most the monthly limit), card currency.")
    monthly_limit: Decimal | None = strawberry.field(
        default=UNSET, description="Most per calendar month (> 0), card currency.")
    allowed_days: list[int] | None = strawberry.field(
        default=UNSET, description="ISO weekdays 1 (Monday) .. 7 (Sunday), business time zone.")
    allowed_hours: list[int] | None = strawberry.field(
        default=UNSET, description="Hours 0..23, business time zone.")
    requires_approval: bool | None = strawberry.field(
        default=UNSET, description="Hold every authorization for a team member's approval.")


@strawberry.input(description="A new virtual card.")
class IssueCardInput:
    business_id: strawberry.ID = strawberry.field(description="The issuing business.")
    cardholder_id: strawberry.ID | None = strawberry.field(
        default=None, description="A User who is a member of the business; the card is theirs.")
    type: CardType = strawberry.field(description="Kind of card.")
    network: CardNetwork = strawberry.field(description="Card scheme.")
    currency: str = strawberry.field(description="ISO 4217 currency of the card.")
    spending_limit: Decimal | None = strawberry.field(
        default=None, description="Monthly cap; for PREPAID the amount loaded from the business balance "
                                  "(required).")
    controls: CardControlsInput | None = strawberry.field(default=None, description="Spending controls.")
    merchant_lock: str | None = strawberry.field(
        default=None, description="SUBSCRIPTION cards (required): the only merchant that may charge it.")
    metadata: JSON | None = strawberry.field(default=None, description="Your key-value metadata (a JSON object).")
    idempotency_key: str = strawberry.field(
        description="Same key and parameters returns the original card; other parameters are refused.")
    status: CardStatus | None = strawberry.field(
        default=None, description="ACTIVE (default) or INACTIVE, to be activated with activateCard.")


@strawberry.type(description="A card, or why the change failed.")
class CardPayload:
    card: Card | None = strawberry.field(description="The card.")
    user_errors: list[UserError] = strawberry.field(description="Why it failed.")


@strawberry.input(description="Names one card.")
class CardIdInput:
    card_id: strawberry.ID = strawberry.field(description="The card.")


@strawberry.input(description="New controls and limit of a card. Raising or removing a limit needs a "
                              "step-up verified within the last 5 minutes.")
class UpdateCardControlsInput:
    card_id: strawberry.ID = strawberry.field(description="The card.")
    controls: CardControlsInput = strawberry.field(description="The controls to change.")
    spending_limit: Decimal | None = strawberry.field(
        default=UNSET, description="New monthly spending limit; null removes it; omit to keep it.")


@strawberry.type(description="A card's full details, shown once to a stepped-up user; never logged.")
class RevealedCard:
    pan: str = strawberry.field(description="The full card number.")
    cvv: str = strawberry.field(description="The card verification value.")
    expiry_month: int = strawberry.field(description="Expiry month, 1-12.")
    expiry_year: int = strawberry.field(description="Expiry year, four digits.")

    def __repr__(self) -> str:  # never into logs or tracebacks
        return "RevealedCard(<redacted>)"


@strawberry.type(description="A revealed card, or why it was not revealed.")
class RevealCardPayload:
    card: RevealedCard | None = strawberry.field(description="The card's details.")
    user_errors: list[UserError] = strawberry.field(description="Why it failed.")


@strawberry.type(description="A new TOTP factor: add it to an authenticator app.")
class StepUpEnrollment:
    secret: str = strawberry.field(description="Base32 TOTP secret; shown once.")
    otpauth_uri: str = strawberry.field(description="otpauth:// URI for a QR code.")


@strawberry.type(description="A step-up enrollment, or why it failed.")
class StepUpEnrollPayload:
    enrollment: StepUpEnrollment | None = strawberry.field(description="The new factor.")
    user_errors: list[UserError] = strawberry.field(description="Why it failed.")


@strawberry.type(description="An access token proving a step-up, or why the code was refused.")
class StepUpPayload:
    access_token: str | None = strawberry.field(
        description="New access token carrying the step-up; use it for sensitive actions.")
    valid_until: datetime | None = strawberry.field(description="When the step-up stops counting (UTC).")
    user_errors: list[UserError] = strawberry.field(description="Why it failed.")


@strawberry.input(description="A sandbox authorization, decided exactly like one from the card network.")
class SimulateAuthorizationInput:
    card_id: strawberry.ID = strawberry.field(description="The card.")
    amount: MoneyInput = strawberry.field(description="Amount in the merchant's currency.")
    merchant_name: str = strawberry.field(description="Merchant name; retries are matched by it.")
    merchant_category_code: str = strawberry.field(description="4-digit merchant category code.")
    merchant_country: str = strawberry.field(description="ISO 3166-1 alpha-2 merchant country.")
    at: datetime | None = strawberry.field(
        default=None, description="Moment of the purchase for the day/hour controls; now if omitted.")


@strawberry.type(description="A card transaction, or why the request failed.")
class AuthorizationPayload:
    card_transaction: CardTransaction | None = strawberry.field(
        description="The recorded authorization (approved or declined).")
    user_errors: list[UserError] = strawberry.field(description="Why it failed.")


@strawberry.input(description="Approve or reject an authorization awaiting approval.")
class DecideAuthorizationInput:
    card_transaction_id: strawberry.ID = strawberry.field(description="The card transaction.")
    approve: bool = strawberry.field(
        description="true lets a retry by the same merchant, up to this amount, through within the "
                    "approval window; false declines it.")


def _errors(errs: list) -> list[UserError]:  # type: ignore[type-arg]
    return [UserError.of(e) for e in errs]


def _card(card: object, errs: list) -> CardPayload:  # type: ignore[type-arg]
    return CardPayload(card=Card.of(card) if card else None, user_errors=_errors(errs))  # type: ignore[arg-type]


def _auth(auth: object, errs: list) -> AuthorizationPayload:  # type: ignore[type-arg]
    return AuthorizationPayload(card_transaction=CardTransaction.of(auth) if auth else None,  # type: ignore[arg-type]
                                user_errors=_errors(errs))


@strawberry.type(description="Card and step-up mutations.")
class CardMutation:
    @strawberry.mutation(description="Issue a virtual card; idempotent by idempotencyKey. A PREPAID card "
                                     "is loaded from the business balance.")
    async def issue_card(self, info: Info[Context, None], input: IssueCardInput) -> CardPayload:
        return _card(*await attempt(lambda: rc.issue_card(info.context, input)))

    @strawberry.mutation(description="Activate an INACTIVE card.")
    async def activate_card(self, info: Info[Context, None], input: CardIdInput) -> CardPayload:
        return _card(*await attempt(lambda: rc.change_card_status(info.context, input.card_id, "activate")))

    @strawberry.mutation(description="Freeze an ACTIVE card: every authorization is declined (62).")
    async def freeze_card(self, info: Info[Context, None], input: CardIdInput) -> CardPayload:
        return _card(*await attempt(lambda: rc.change_card_status(info.context, input.card_id, "freeze")))

    @strawberry.mutation(description="Unfreeze a FROZEN card.")
    async def unfreeze_card(self, info: Info[Context, None], input: CardIdInput) -> CardPayload:
        return _card(*await attempt(lambda: rc.change_card_status(info.context, input.card_id, "unfreeze")))

    @strawberry.mutation(description="Close a card for good; a prepaid balance returns to the business.")
    async def close_card(self, info: Info[Context, None], input: CardIdInput) -> CardPayload:
        return _card(*await attempt(lambda: rc.change_card_status(info.context, input.card_id, "close")))

    @strawberry.mutation(description="Replace a card with a new number and expiry and the same settings; "
                                     "the old card closes. Returns the new card.")
    async def renew_card(self, info: Info[Context, None], input: CardIdInput) -> CardPayload:
        return _card(*await attempt(lambda: rc.renew_card(info.context, input.card_id)))

    @strawberry.mutation(description="Change a card's controls and spending limit; raising or removing a "
                                     "limit needs a fresh step-up.")
    async def update_card_controls(self, info: Info[Context, None],
                                   input: UpdateCardControlsInput) -> CardPayload:
        return _card(*await attempt(lambda: rc.update_card_controls(info.context, input)))

    @strawberry.mutation(description="Show a card's full number and CVV: needs cards:reveal and a step-up "
                                     "verified within the last 5 minutes; audited.")
    async def reveal_card(self, info: Info[Context, None], input: CardIdInput) -> RevealCardPayload:
        revealed, errs = await attempt(lambda: rc.reveal_card(info.context, input.card_id))
        if revealed is None:
            return RevealCardPayload(card=None, user_errors=_errors(errs))
        return RevealCardPayload(card=RevealedCard(
            pan=revealed.pan, cvv=revealed.cvv, expiry_month=revealed.expiry_month,
            expiry_year=revealed.expiry_year), user_errors=[])

    @strawberry.mutation(description="Enroll (or replace) your TOTP step-up factor.")
    async def enroll_step_up(self, info: Info[Context, None]) -> StepUpEnrollPayload:
        result, errs = await attempt(lambda: rc.enroll_step_up(info.context))
        if result is None:
            return StepUpEnrollPayload(enrollment=None, user_errors=_errors(errs))
        return StepUpEnrollPayload(enrollment=StepUpEnrollment(secret=result[0], otpauth_uri=result[1]),
                                   user_errors=[])

    @strawberry.mutation(description="Verify a TOTP code: returns an access token carrying a step-up "
                                     "valid for 5 minutes.")
    async def verify_step_up(self, info: Info[Context, None], code: str) -> StepUpPayload:
        result, errs = await attempt(lambda: rc.verify_step_up(info.context, code))
        if result is None:
            return StepUpPayload(access_token=None, valid_until=None, user_errors=_errors(errs))
        return StepUpPayload(access_token=result[0], valid_until=result[1], user_errors=[])

    @strawberry.mutation(description="Sandbox: authorize a purchase on a card through the same decision "
                                     "path as the card network.")
    async def simulate_authorization(self, info: Info[Context, None],
                                     input: SimulateAuthorizationInput) -> AuthorizationPayload:
        return _auth(*await attempt(lambda: rc.simulate_authorization(info.context, input)))

    @strawberry.mutation(description="Approve or reject an authorization awaiting approval.")
    async def decide_authorization(self, info: Info[Context, None],
                                   input: DecideAuthorizationInput) -> AuthorizationPayload:
        return _auth(*await attempt(lambda: rc.decide_authorization(info.context, input)))
