"""The Mutation root: one ``input`` per mutation, a payload with ``userErrors``."""

from __future__ import annotations

from datetime import datetime

import strawberry
from strawberry.types import Info

from veix.resolvers import access
from veix.resolvers import business as biz
from veix.resolvers.context import Context
from veix.resolvers.errors import attempt
from veix.schema.types.business import ApiKey, Business, Member, Transaction, User
from veix.schema.types.common import BusinessType, MoneyInput, Role, UserError


@strawberry.input(description="Create an account.")
class SignUpInput:
    email: str = strawberry.field(description="Login email.")
    password: str = strawberry.field(description="At least 10 characters.")
    name: str = strawberry.field(description="Display name.")


@strawberry.input(description="Log in with email and password.")
class LogInInput:
    email: str = strawberry.field(description="Login email.")
    password: str = strawberry.field(description="Password.")


@strawberry.type(description="Tokens of a session, or why there is none.")
class AuthPayload:
    access_token: str | None = strawberry.field(description="JWT for `Authorization: Bearer`; short-lived.")
    expires_at: datetime | None = strawberry.field(description="When the access token expires (UTC).")
    refresh_token: str | None = strawberry.field(
        description="Single-use token for `refreshToken`; reusing a rotated one revokes the session.")
    user: User | None = strawberry.field(description="The logged-in user.")
    user_errors: list[UserError] = strawberry.field(description="Why it failed.")


@strawberry.type(description="An API key and, once only, its secret.")
class CreateApiKeyPayload:
    api_key: ApiKey | None = strawberry.field(description="The key.")
    secret: str | None = strawberry.field(description="The full key, shown only at creation.")
    user_errors: list[UserError] = strawberry.field(description="Why it failed.")


@strawberry.input(description="A postal address.")
class AddressInput:
    line1: str = strawberry.field(description="Street and number.")
    city: str = strawberry.field(description="City.")
    postal_code: str = strawberry.field(description="Postal code.")
    country: str = strawberry.field(description="ISO 3166-1 alpha-2 code.")
    line2: str | None = strawberry.field(default=None, description="Additional line.")
    region: str | None = strawberry.field(default=None, description="State or region.")


@strawberry.input(description="Contact details.")
class ContactInfoInput:
    email: str = strawberry.field(description="Contact email.")
    phone: str | None = strawberry.field(default=None, description="Phone, E.164.")
    website: str | None = strawberry.field(default=None, description="Website URL.")


@strawberry.input(description="A new business; you become its owner.")
class CreateBusinessInput:
    name: str = strawberry.field(description="Registered name.")
    type: BusinessType = strawberry.field(description="Legal form.")
    legal_address: AddressInput = strawberry.field(description="Registered address.")
    contact_info: ContactInfoInput = strawberry.field(description="Contact details.")
    default_currency: str = strawberry.field(description="ISO 4217 currency.")
    tax_id: str | None = strawberry.field(default=None, description="Tax or VAT number.")
    timezone: str | None = strawberry.field(default=None, description="IANA time zone; UTC if omitted.")


@strawberry.input(description="Changes to a business; omitted fields stay.")
class UpdateBusinessInput:
    business_id: strawberry.ID = strawberry.field(description="The business.")
    name: str | None = strawberry.field(default=None, description="New name.")
    legal_address: AddressInput | None = strawberry.field(default=None, description="New address.")
    contact_info: ContactInfoInput | None = strawberry.field(default=None, description="New contact.")
    timezone: str | None = strawberry.field(default=None, description="New IANA time zone.")


@strawberry.type(description="A business, or why the change failed.")
class BusinessPayload:
    business: Business | None = strawberry.field(description="The business.")
    user_errors: list[UserError] = strawberry.field(description="Why it failed.")


@strawberry.input(description="Invite someone by email with a role.")
class InviteMemberInput:
    business_id: strawberry.ID = strawberry.field(description="The business.")
    email: str = strawberry.field(description="Their email; they join when they sign up.")
    role: Role = strawberry.field(description="Their role.")


@strawberry.type(description="A member, or why the change failed.")
class MemberPayload:
    member: Member | None = strawberry.field(description="The member.")
    user_errors: list[UserError] = strawberry.field(description="Why it failed.")


@strawberry.input(description="Add money to a business from the sandbox funding source.")
class FundBusinessInput:
    business_id: strawberry.ID = strawberry.field(description="The business.")
    amount: MoneyInput = strawberry.field(description="How much, in which currency.")
    idempotency_key: str = strawberry.field(
        description="Same key and parameters returns the original result; other parameters are refused.")


@strawberry.type(description="A transaction, or why it failed.")
class PaymentPayload:
    transaction: Transaction | None = strawberry.field(description="The transaction.")
    user_errors: list[UserError] = strawberry.field(description="Why it failed.")


def _errors(errs: list) -> list[UserError]:  # type: ignore[type-arg]
    return [UserError.of(e) for e in errs]


def _auth(session: access.Session | None, errs: list) -> AuthPayload:  # type: ignore[type-arg]
    if session is None:
        return AuthPayload(access_token=None, expires_at=None, refresh_token=None, user=None,
                           user_errors=_errors(errs))
    return AuthPayload(access_token=session.access_token, expires_at=session.expires_at,
                       refresh_token=session.refresh_token, user=User.of(session.user),
                       user_errors=[])


@strawberry.type(description="Everything that changes state.")
class Mutation:
    @strawberry.mutation(description="Create an account (or claim an invitation) and log in.")
    async def sign_up(self, info: Info[Context, None], input: SignUpInput) -> AuthPayload:
        ctx = info.context
        return _auth(*await attempt(lambda: access.sign_up(
            ctx, email=input.email, password=input.password, name=input.name)))

    @strawberry.mutation(description="Log in; 5 failures in a row lock the account for 15 minutes.")
    async def log_in(self, info: Info[Context, None], input: LogInInput) -> AuthPayload:
        ctx = info.context
        return _auth(*await attempt(lambda: access.log_in(
            ctx, email=input.email, password=input.password)))

    @strawberry.mutation(description="Exchange a refresh token for new tokens (rotation).")
    async def refresh_token(self, info: Info[Context, None], refresh_token: str) -> AuthPayload:
        ctx = info.context
        return _auth(*await attempt(lambda: access.refresh(ctx, refresh_token=refresh_token)))

    @strawberry.mutation(description="Create an API key for a partner; the secret is shown once.")
    async def create_api_key(self, info: Info[Context, None], business_id: strawberry.ID,
                             name: str, role: Role) -> CreateApiKeyPayload:
        ctx = info.context
        result, errs = await attempt(lambda: access.create_api_key(
            ctx, business_gid=business_id, name=name, role=role))
        if result is None:
            return CreateApiKeyPayload(api_key=None, secret=None, user_errors=_errors(errs))
        return CreateApiKeyPayload(api_key=ApiKey.of(result[0]), secret=result[1], user_errors=[])

    @strawberry.mutation(description="Revoke an API key at once.")
    async def revoke_api_key(self, info: Info[Context, None], id: strawberry.ID) -> CreateApiKeyPayload:
        ctx = info.context
        key, errs = await attempt(lambda: access.revoke_api_key(ctx, key_gid=id))
        return CreateApiKeyPayload(api_key=ApiKey.of(key) if key else None, secret=None,
                                   user_errors=_errors(errs))

    @strawberry.mutation(description="Create a business; you become its owner.")
    async def create_business(self, info: Info[Context, None], input: CreateBusinessInput) -> BusinessPayload:
        b, errs = await attempt(lambda: biz.create_business(info.context, input))
        return BusinessPayload(business=Business.of(b) if b else None, user_errors=_errors(errs))

    @strawberry.mutation(description="Change a business's details.")
    async def update_business(self, info: Info[Context, None], input: UpdateBusinessInput) -> BusinessPayload:
        b, errs = await attempt(lambda: biz.update_business(info.context, input))
        return BusinessPayload(business=Business.of(b) if b else None, user_errors=_errors(errs))

    @strawberry.mutation(description="Run the KYB checks; the result is in complianceStatus.")
    async def submit_verification(self, info: Info[Context, None],
                                  business_id: strawberry.ID) -> BusinessPayload:
        b, errs = await attempt(lambda: biz.submit_verification(info.context, business_id))
        return BusinessPayload(business=Business.of(b) if b else None, user_errors=_errors(errs))

    @strawberry.mutation(description="Invite a person to the team with a role.")
    async def invite_member(self, info: Info[Context, None], input: InviteMemberInput) -> MemberPayload:
        m, errs = await attempt(lambda: biz.invite_member(info.context, input))
        return MemberPayload(member=Member.of(m, ctx=info.context) if m else None, user_errors=_errors(errs))

    @strawberry.mutation(description="Change a member's role; the last owner cannot be demoted.")
    async def change_member_role(self, info: Info[Context, None], member_id: strawberry.ID,
                                 role: Role) -> MemberPayload:
        m, errs = await attempt(lambda: biz.change_member_role(info.context, member_id, role))
        return MemberPayload(member=Member.of(m, ctx=info.context) if m else None, user_errors=_errors(errs))

    @strawberry.mutation(description="Remove a member; the last owner cannot be removed.")
    async def remove_member(self, info: Info[Context, None], member_id: strawberry.ID) -> MemberPayload:
        m, errs = await attempt(lambda: biz.remove_member(info.context, member_id))
        return MemberPayload(member=Member.of(m, ctx=info.context) if m else None, user_errors=_errors(errs))

    @strawberry.mutation(description="Fund a business (sandbox); idempotent by idempotencyKey.")
    async def fund_business(self, info: Info[Context, None], input: FundBusinessInput) -> PaymentPayload:
        t, errs = await attempt(lambda: biz.fund_business(info.context, input))
        return PaymentPayload(transaction=Transaction.of(t) if t else None, user_errors=_errors(errs))
