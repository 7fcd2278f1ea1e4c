"""Business, Member, User, ApiKey, Transaction types and their connections."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated

import strawberry
from strawberry.scalars import JSON
from strawberry.types import Info

from veix.domain import api_keys as d_keys
from veix.domain import business as d_business
from veix.domain import team as d_team
from veix.domain import transactions as d_txn
from veix.domain import users as d_users
from veix.domain.errors import NotFound
from veix.domain.money import Money as DomainMoney
from veix.resolvers import loaders
from veix.resolvers.context import Context
from veix.resolvers.pagination import Cursor, PageArgs
from veix.schema.types.common import (
    BusinessStatus,
    BusinessType,
    Gateway,
    Money,
    Node,
    PageInfo,
    Role,
    TransactionStatus,
    TransactionType,
    VerificationStatus,
    gid,
)

if TYPE_CHECKING:
    from veix.schema.types.cards import CardConnection, CardStatus
    from veix.schema.types.payments import Dispute, GatewayAttempt, PaymentMethod, Refund
    from veix.schema.types.webhooks import WebhookEndpoint


@strawberry.type(description="A postal address.")
class Address:
    line1: str = strawberry.field(description="Street and number.")
    line2: str | None = strawberry.field(description="Additional address line.")
    city: str = strawberry.field(description="City or locality.")
    region: str | None = strawberry.field(description="State, province or region.")
    postal_code: str = strawberry.field(description="Postal or ZIP code.")
    country: str = strawberry.field(description="ISO 3166-1 alpha-2 country code.")


@strawberry.type(description="How to reach a business.")
class ContactInfo:
    email: str = strawberry.field(description="Contact email address.")
    phone: str | None = strawberry.field(description="Phone number in E.164 form.")
    website: str | None = strawberry.field(description="Website URL.")


@strawberry.type(description="One KYB check and its result.")
class ComplianceCheck:
    name: str = strawberry.field(description="Check name: tax_id, legal_address, contact, sanctions.")
    status: str = strawberry.field(description="passed or failed.")
    checked_at: datetime = strawberry.field(description="When the check ran (UTC).")
    detail: str | None = strawberry.field(description="Why it passed or failed.")


@strawberry.type(description="A business's compliance state, from its last verification.")
class ComplianceStatus:
    kyb_verified: bool = strawberry.field(description="Every KYB check passed.")
    sanctions_clear: bool = strawberry.field(description="The sanctions screen passed.")
    pci_saq: str | None = strawberry.field(description="PCI DSS self-assessment type, if filed.")
    checks: list[ComplianceCheck] = strawberry.field(description="Each check of the last run.")


@strawberry.type(description="A person who can log in.")
class User(Node):
    id: strawberry.ID = strawberry.field(description="Global ID.")
    email: str = strawberry.field(description="Login email, lower-cased.")
    name: str = strawberry.field(description="Display name (empty until an invitee signs up).")
    step_up_enrolled: bool = strawberry.field(description="Has enrolled a TOTP step-up factor.")
    raw_id: strawberry.Private[uuid.UUID]

    @classmethod
    def of(cls, u: d_users.User) -> User:
        return cls(id=gid("User", u.id), email=u.email, name=u.name,
                   step_up_enrolled=u.step_up_secret is not None, raw_id=u.id)

    @strawberry.field(description="The businesses this user belongs to, with the role in each.")
    async def memberships(self, info: Info[Context, None]) -> list[Membership]:
        ctx = info.context
        mine = await loaders.memberships_of_user(ctx).load(self.raw_id)
        visible = await ctx.roles() if ctx.principal and ctx.principal.id != self.raw_id else None
        return [Membership(business_id=ms.business_id, role=ms.role) for ms in mine
                if visible is None or ms.business_id in visible]


@strawberry.type(description="A user's role in one business.")
class Membership:
    role: Role = strawberry.field(description="The role in this business.")
    business_id: strawberry.Private[uuid.UUID]

    @strawberry.field(description="The business.")
    async def business(self, info: Info[Context, None]) -> Business:
        b = await loaders.businesses(info.context).load(self.business_id)
        if b is None:
            raise NotFound("Business not found")
        return Business.of(b)


@strawberry.type(description="A member of a business's team.")
class Member(Node):
    role: Role = strawberry.field(description="Role in the business.")
    invited_at: datetime = strawberry.field(description="When the member was invited (UTC).")
    joined_at: datetime | None = strawberry.field(
        description="When the member joined; null while the invitee has not signed up.")
    raw_id: strawberry.Private[uuid.UUID]
    user_id: strawberry.Private[uuid.UUID]
    business_id: strawberry.Private[uuid.UUID]
    # Set by the members connection, which loads a page's users in one batch,
    # so that `user` resolves synchronously instead of one await per member.
    prefetched_user: strawberry.Private[d_users.User | None] = None
    # Without a prefetched user, `user` loads it through the request's loader.
    ctx: strawberry.Private[Context | None] = None

    @classmethod
    def of(cls, m: d_team.Membership, user: d_users.User | None = None, *,
           ctx: Context | None = None) -> Member:
        return cls(role=m.role, invited_at=m.invited_at, joined_at=m.joined_at, raw_id=m.id,
                   user_id=m.user_id, business_id=m.business_id, prefetched_user=user, ctx=ctx)

    @strawberry.field(description="Global ID.")
    def id(self) -> strawberry.ID:
        return gid("Member", self.raw_id)

    @strawberry.field(description="The person.")
    def user(self) -> User:  # or an awaitable of one; no `info`: argument handling costs
        if self.prefetched_user is not None:
            return User.of(self.prefetched_user)
        assert self.ctx is not None, "Member built without a prefetched user or a context"
        return self._load_user(self.ctx)  # type: ignore[return-value]

    async def _load_user(self, ctx: Context) -> User:
        u = await loaders.users(ctx).load(self.user_id)
        if u is None:
            raise NotFound("User not found")
        return User.of(u)


@strawberry.type(description="An edge of a member connection.")
class MemberEdge:
    node: Member = strawberry.field(description="The member.")
    invited_at: strawberry.Private[datetime]

    @strawberry.field(description="Opaque cursor of this edge.")
    def cursor(self) -> str:
        return Cursor(self.invited_at, self.node.raw_id).encode()


@strawberry.type(description="A page of members.")
class MemberConnection:
    edges: list[MemberEdge] = strawberry.field(description="The members of this page.")
    page_info: PageInfo = strawberry.field(description="Pagination information.")
    business_id: strawberry.Private[uuid.UUID]

    @strawberry.field(description="Number of members of the business.")
    async def total_count(self, info: Info[Context, None]) -> int:
        return await loaders.member_counts(info.context).load(self.business_id)


@strawberry.type(description="A partner credential scoped to one business and role.")
class ApiKey(Node):
    id: strawberry.ID = strawberry.field(description="Global ID.")
    name: str = strawberry.field(description="Name given at creation.")
    role: Role = strawberry.field(description="Role the key acts with.")
    prefix: str = strawberry.field(description="Public part of the key, e.g. vx_test_ab12cd34.")
    created_at: datetime = strawberry.field(description="Creation time (UTC).")
    last_used_at: datetime | None = strawberry.field(description="Last use, to the minute.")
    revoked_at: datetime | None = strawberry.field(description="Revocation time, if revoked.")

    @classmethod
    def of(cls, k: d_keys.ApiKey) -> ApiKey:
        return cls(id=gid("ApiKey", k.id), name=k.name, role=k.role, prefix=k.prefix,
                   created_at=k.created_at, last_used_at=k.last_used_at,
                   revoked_at=k.revoked_at)


@strawberry.type(description="A movement of money: payment, refund, funding, card authorization...")
class Transaction(Node):
    id: strawberry.ID = strawberry.field(description="Global ID.")
    type: TransactionType = strawberry.field(description="Kind of movement.")
    status: TransactionStatus = strawberry.field(description="Current status.")
    amount: Money = strawberry.field(description="Gross amount.")
    timestamp: datetime = strawberry.field(description="When it happened (UTC).")
    customer_id: strawberry.ID | None = strawberry.field(description="Your customer reference.")
    gateway: Gateway | None = strawberry.field(description="Gateway that processed it.")
    gateway_reference: str | None = strawberry.field(description="The gateway's own ID.")
    metadata: JSON | None = strawberry.field(description="Your key-value metadata.")
    risk_score: float = strawberry.field(description="Fraud score in [0, 1].")
    processing_fee: Money = strawberry.field(description="Fee charged for processing.")
    refunded_amount: Money = strawberry.field(description="Total refunded so far.")
    error_code: str | None = strawberry.field(description="Failure code, if failed.")
    error_message: str | None = strawberry.field(description="Failure explanation, if failed.")
    next_action: JSON | None = strawberry.field(
        description="What the payer must do next (3-D Secure, PayPal approval, crypto address).")
    created_at: datetime = strawberry.field(description="Creation time (UTC).")
    updated_at: datetime = strawberry.field(description="Last change (UTC).")
    captured_amount: Money = strawberry.field(
        description="Captured so far (a payment authorized with `capture: false` shows 0 until captured).")
    description: str | None = strawberry.field(description="Your description; for a refund, its reason.")
    business_id: strawberry.Private[uuid.UUID]
    raw: strawberry.Private[d_txn.Transaction]

    @classmethod
    def of(cls, t: d_txn.Transaction) -> Transaction:
        return cls(
            id=gid("Transaction", t.id), type=t.type, status=t.status,
            amount=Money.parts(t.amount, t.currency), timestamp=t.created_at,
            customer_id=strawberry.ID(t.customer_id) if t.customer_id else None,
            gateway=t.gateway, gateway_reference=t.gateway_reference, metadata=t.metadata,
            risk_score=t.risk_score,
            processing_fee=Money.parts(t.processing_fee, t.currency),
            refunded_amount=Money.parts(t.refunded_amount, t.currency),
            error_code=t.error_code, error_message=t.error_message, next_action=t.next_action,
            created_at=t.created_at, updated_at=t.updated_at, business_id=t.business_id,
            captured_amount=Money.parts(t.captured_amount, t.currency), description=t.description, raw=t,
        )

    @strawberry.field(description="What the payment was made with.")
    async def payment_method(
        self, info: Info[Context, None]
    ) -> Annotated[PaymentMethod, strawberry.lazy("veix.schema.types.payments")] | None:
        from veix.schema.types.payments import PaymentMethod

        if self.raw.payment_method_id is None:
            return None
        pm = await loaders.payment_methods(info.context).load(self.raw.payment_method_id)
        return PaymentMethod.of(pm) if pm else None

    @strawberry.field(description="Refunds of this payment, oldest first.")
    async def refunds(
        self, info: Info[Context, None]
    ) -> list[Annotated[Refund, strawberry.lazy("veix.schema.types.payments")]]:
        from veix.schema.types.payments import Refund

        if self.raw.type is not d_txn.TransactionType.PAYMENT:
            return []
        return [Refund.of(r) for r in await loaders.refunds(info.context).load(self.raw.id)]

    @strawberry.field(description="The dispute (chargeback) of this payment, if any.")
    async def dispute(
        self, info: Info[Context, None]
    ) -> Annotated[Dispute, strawberry.lazy("veix.schema.types.payments")] | None:
        from veix.schema.types.payments import Dispute

        if self.raw.type is not d_txn.TransactionType.PAYMENT:
            return None
        d = await loaders.disputes_of_transactions(info.context).load(self.raw.id)
        return Dispute.of(d) if d else None

    @strawberry.field(description="What can still be captured (a payment authorized with `capture: false`).")
    def capturable_amount(self) -> Money | None:
        value = self.raw.gateway_data.get("capturable") if self.raw.gateway_data else None
        return Money.parts(Decimal(value), self.raw.currency) if value is not None else None

    @strawberry.field(description="What the gateway reported: its own status word, and for crypto what the chain "
                                  "showed (received, expected and overpaid amounts in the asset's base units).")
    def gateway_details(self) -> JSON | None:
        return self.raw.gateway_data or None

    @strawberry.field(description="Gateways tried for this payment, in order; a failover shows two.")
    def routing(self) -> list[Annotated[GatewayAttempt, strawberry.lazy("veix.schema.types.payments")]]:
        from veix.schema.types.payments import GatewayAttempt

        return [GatewayAttempt(gateway=d_txn.Gateway[a["gateway"]], outcome=a["outcome"], detail=a.get("detail"))
                for a in self.raw.routing or []]

    @strawberry.field(description="The business the transaction belongs to.")
    async def business(self, info: Info[Context, None]) -> Business:
        b = await loaders.businesses(info.context).load(self.business_id)
        if b is None:
            raise NotFound("Business not found")
        return Business.of(b)


@strawberry.type(description="An edge of a transaction connection.")
class TransactionEdge:
    node: Transaction = strawberry.field(description="The transaction.")
    cursor: str = strawberry.field(description="Opaque cursor of this edge.")


@strawberry.type(description="A page of transactions.")
class TransactionConnection:
    edges: list[TransactionEdge] = strawberry.field(description="The transactions of this page.")
    page_info: PageInfo = strawberry.field(description="Pagination information.")
    count: strawberry.Private[Callable[[], Awaitable[int]]]

    @strawberry.field(description="Number of transactions of the business that match the filter, over all "
                                  "pages (counted only when asked for).")
    async def total_count(self) -> int:
        return await self.count()


@strawberry.input(description="Narrow a transaction list.")
class TransactionFilter:
    types: list[TransactionType] | None = strawberry.field(default=None, description="Only these types.")
    statuses: list[TransactionStatus] | None = strawberry.field(default=None, description="Only these.")
    from_: datetime | None = strawberry.field(default=None, name="from", description="Created at or after.")
    to: datetime | None = strawberry.field(default=None, description="Created before (UTC).")
    min_amount: Decimal | None = strawberry.field(default=None, description="Minimum amount.")
    max_amount: Decimal | None = strawberry.field(default=None, description="Maximum amount.")
    currency: str | None = strawberry.field(default=None, description="Only this currency.")


@strawberry.type(description="A business using Veix: its team, money and verification.")
class Business(Node):
    id: strawberry.ID = strawberry.field(description="Global ID.")
    name: str = strawberry.field(description="Registered name.")
    type: BusinessType = strawberry.field(description="Legal form.")
    status: BusinessStatus = strawberry.field(description="Operating status.")
    tax_id: str | None = strawberry.field(description="Tax or VAT number.")
    registration_date: datetime = strawberry.field(description="When it registered with Veix (UTC).")
    legal_address: Address = strawberry.field(description="Registered address.")
    contact_info: ContactInfo = strawberry.field(description="Contact details.")
    verification_status: VerificationStatus = strawberry.field(description="KYB state.")
    compliance_status: ComplianceStatus = strawberry.field(description="Result of the last KYB run.")
    default_currency: str = strawberry.field(description="ISO 4217 currency used by default.")
    timezone: str = strawberry.field(description="IANA time zone for card controls and reports.")
    created_at: datetime = strawberry.field(description="Creation time (UTC).")
    updated_at: datetime = strawberry.field(description="Last change (UTC).")
    raw_id: strawberry.Private[uuid.UUID]

    @classmethod
    def of(cls, b: d_business.Business) -> Business:
        a, c = b.legal_address, b.contact_info
        return cls(
            id=gid("Business", b.id), name=b.name, type=b.type, status=b.status,
            tax_id=b.tax_id, registration_date=b.registration_date,
            legal_address=Address(line1=a.line1, line2=a.line2, city=a.city, region=a.region,
                                  postal_code=a.postal_code, country=a.country),
            contact_info=ContactInfo(email=c.email, phone=c.phone, website=c.website),
            verification_status=b.verification_status,
            compliance_status=ComplianceStatus(
                kyb_verified=b.kyb_verified, sanctions_clear=b.sanctions_clear, pci_saq=None,
                checks=[ComplianceCheck(name=x.name, status=x.status, checked_at=x.checked_at,
                                        detail=x.detail) for x in b.compliance_checks],
            ),
            default_currency=b.default_currency, timezone=b.timezone,
            created_at=b.created_at, updated_at=b.updated_at, raw_id=b.id,
        )

    @strawberry.field(description="Available funds per currency, from the ledger.")
    async def balances(self, info: Info[Context, None]) -> list[Money]:
        ctx = info.context
        await ctx.require(self.raw_id, "ledger:read", field=["balances"])
        found: list[DomainMoney] = await loaders.balances(ctx).load(self.raw_id)
        return [Money.of(x) for x in found]

    @strawberry.field(description="The team, oldest invitation first.")
    async def members(self, info: Info[Context, None], first: int | None = None,
                      after: str | None = None) -> MemberConnection:
        ctx = info.context
        await ctx.require(self.raw_id, "members:read", field=["members"])
        args = PageArgs.of(first, after)
        items, has_next = await loaders.member_pages(ctx).load((self.raw_id, args))
        users: list[d_users.User | None] = [None] * len(items)
        if _selects(info, "edges", "node", "user"):
            # One batch for the users of every business's page in this request.
            users = await loaders.users(ctx).load_many([m.user_id for m in items])
        edges = [MemberEdge(node=Member.of(m, u, ctx=ctx), invited_at=m.invited_at)
                 for m, u in zip(items, users, strict=True)]
        return MemberConnection(
            edges=edges,
            page_info=PageInfo(has_next_page=has_next, has_previous_page=args.after is not None,
                               start_cursor=edges[0].cursor() if edges else None,
                               end_cursor=edges[-1].cursor() if edges else None),
            business_id=self.raw_id,
        )

    @strawberry.field(description="API keys of the business (prefix only; secrets are never shown again).")
    async def api_keys(self, info: Info[Context, None]) -> list[ApiKey]:
        from veix.resolvers.business import list_api_keys

        return [ApiKey.of(k) for k in await list_api_keys(info.context, self.raw_id)]

    @strawberry.field(description="Virtual cards of the business, newest first; a cardholder sees only "
                                  "the cards issued to them.")
    async def cards(
        self, info: Info[Context, None], first: int | None = None, after: str | None = None,
        status: Annotated[CardStatus, strawberry.lazy("veix.schema.types.cards")] | None = None,
    ) -> Annotated[CardConnection, strawberry.lazy("veix.schema.types.cards")]:
        from veix.schema.types.cards import business_cards

        return await business_cards(info, self.raw_id, first, after, status)

    @strawberry.field(description="Webhook endpoints of the business, oldest first (needs webhooks:manage).")
    async def webhook_endpoints(
        self, info: Info[Context, None],
    ) -> list[Annotated[WebhookEndpoint, strawberry.lazy("veix.schema.types.webhooks")]]:
        from veix.schema.types.webhooks import business_webhook_endpoints

        return await business_webhook_endpoints(info, self.raw_id)

    @strawberry.field(description="Money movements of the business, oldest first.")
    async def transactions(self, info: Info[Context, None], first: int | None = None,
                           after: str | None = None,
                           filter: TransactionFilter | None = None) -> TransactionConnection:
        from veix.resolvers.business import transactions_page

        ctx = info.context
        await ctx.require(self.raw_id, "transactions:read", field=["transactions"])
        items, has_next, count = await transactions_page(ctx, self.raw_id, first, after, filter)
        edges = [TransactionEdge(node=Transaction.of(t), cursor=Cursor(t.created_at, t.id).encode())
                 for t in items]
        return TransactionConnection(
            edges=edges,
            page_info=PageInfo(has_next_page=has_next, has_previous_page=after is not None,
                               start_cursor=edges[0].cursor if edges else None,
                               end_cursor=edges[-1].cursor if edges else None),
            count=count,
        )


@strawberry.type(description="An edge of a business connection.")
class BusinessEdge:
    node: Business = strawberry.field(description="The business.")
    cursor: str = strawberry.field(description="Opaque cursor of this edge.")


@strawberry.type(description="A page of businesses.")
class BusinessConnection:
    edges: list[BusinessEdge] = strawberry.field(description="The businesses of this page.")
    page_info: PageInfo = strawberry.field(description="Pagination information.")
    total_count: int = strawberry.field(description="Number of businesses you can see.")


def _selects(info: Info[Context, None], *path: str) -> bool:
    """Whether the client's selection under this field includes ``path``."""
    level = info.selected_fields
    for name in path:
        found = [f for sel in level for f in getattr(sel, "selections", [])
                 if getattr(f, "name", None) == name]
        if not found:
            return False
        level = found
    return True
