"""Card, CardControls, SpendSummary, CardTransaction, their connections and enums.

Every relation resolves through a DataLoader (veix.resolvers.cards), so a page
of cards with their controls, spend and transactions costs a constant number
of SQL statements. The full PAN and CVV never appear here: only
``maskedNumber`` and ``last4`` (``revealCard`` is the one way to the PAN).
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import date, datetime
from decimal import Decimal

import strawberry
from strawberry.scalars import JSON
from strawberry.types import Info

from veix.domain import authorization as d_auth
from veix.domain import card_controls as d_controls
from veix.domain import cards as d_cards
from veix.domain.currencies import minor_units
from veix.domain.errors import NotFound
from veix.resolvers import cards as rc
from veix.resolvers import loaders
from veix.resolvers.context import Context
from veix.resolvers.pagination import Cursor
from veix.schema.types.business import Business, Transaction, User
from veix.schema.types.common import Money, Node, PageInfo, gid

CardStatus = strawberry.enum(
    d_cards.CardStatus, name="CardStatus",
    description="Lifecycle of a card: INACTIVE -> ACTIVE <-> FROZEN -> CLOSED; EXPIRED by date.")
CardType = strawberry.enum(
    d_cards.CardType, name="CardType",
    description="STANDARD; SINGLE_USE closes after its first approved authorization; SUBSCRIPTION "
                "is locked to one merchant; PREPAID spends only its own balance, loaded from the business.")
CardNetwork = strawberry.enum(d_cards.CardNetwork, name="CardNetwork", description="Card scheme.")
AuthorizationStatus = strawberry.enum(
    d_auth.AuthorizationStatus, name="AuthorizationStatus",
    description="Where a card authorization is: PENDING_APPROVAL (declined with 05 until a team member "
                "approves a retry), APPROVED (funds held), DECLINED, CLEARED, REVERSED or EXPIRED.")


def scaled(amount: Decimal, currency: str) -> Decimal:
    """A stored NUMERIC(20,6) at its currency's scale (500.000000 EUR -> 500.00)."""
    return amount.quantize(Decimal(1).scaleb(-minor_units(currency)))


def _opt(amount: Decimal | None, currency: str) -> Decimal | None:
    return scaled(amount, currency) if amount is not None else None


def _list(values: frozenset[str] | frozenset[int] | None) -> list | None:  # type: ignore[type-arg]
    return sorted(values) if values is not None else None  # type: ignore[type-var]


@strawberry.type(description="Spending controls of a card; null means no restriction of that kind.")
class CardControls:
    allowed_merchant_categories: list[str] | None = strawberry.field(
        description="Only these merchant category codes (ISO 18245, 4 digits) are accepted.")
    blocked_merchant_categories: list[str] | None = strawberry.field(
        description="These merchant category codes are declined (57).")
    allowed_countries: list[str] | None = strawberry.field(
        description="Only merchants in these ISO 3166-1 alpha-2 countries are accepted.")
    blocked_countries: list[str] | None = strawberry.field(
        description="Merchants in these countries are declined (62).")
    max_transaction_amount: Decimal | None = strawberry.field(
        description="Largest single authorization, in the card currency.")
    daily_limit: Decimal | None = strawberry.field(
        description="Most spent per day (the business's time zone), in the card currency.")
    monthly_limit: Decimal | None = strawberry.field(
        description="Most spent per calendar month (the business's time zone), in the card currency.")
    allowed_days: list[int] | None = strawberry.field(
        description="ISO weekdays 1 (Monday) .. 7 (Sunday) on which the card works, business time zone.")
    allowed_hours: list[int] | None = strawberry.field(
        description="Hours 0..23 in which the card works, business time zone.")
    requires_approval: bool = strawberry.field(
        description="Authorizations are declined (05, PENDING_APPROVAL) until a team member approves "
                    "them with decideAuthorization; a retry by the same merchant then goes through.")

    @classmethod
    def of(cls, c: d_controls.CardControls, currency: str) -> CardControls:
        return cls(
            allowed_merchant_categories=_list(c.allowed_mccs),
            blocked_merchant_categories=_list(c.blocked_mccs),
            allowed_countries=_list(c.allowed_countries), blocked_countries=_list(c.blocked_countries),
            max_transaction_amount=_opt(c.max_transaction_amount, currency),
            daily_limit=_opt(c.daily_limit, currency), monthly_limit=_opt(c.monthly_limit, currency),
            allowed_days=_list(c.allowed_days), allowed_hours=_list(c.allowed_hours),
            requires_approval=c.requires_approval)


@strawberry.type(description="What a card has spent today and this month (the business's time zone), "
                             "and what it may still spend under its limits.")
class SpendSummary:
    today: Money = strawberry.field(description="Approved spend of the current day.")
    this_month: Money = strawberry.field(description="Approved spend of the current calendar month.")
    remaining_today: Money | None = strawberry.field(
        description="What may still be spent today under the daily limit (and the monthly limits); "
                    "null without a daily limit.")
    remaining_this_month: Money | None = strawberry.field(
        description="What may still be spent this month under the monthly limit and the card's "
                    "spending limit (the tighter); null without either.")


def spend_summary(card: d_cards.Card, c: d_controls.CardControls, spent: rc.Spend) -> SpendSummary:
    cur = card.currency
    monthly = [x for x in (c.monthly_limit, card.spending_limit if card.type is not d_cards.CardType.PREPAID
                           else None) if x is not None]
    left_month = max(min(monthly) - spent.this_month, Decimal(0)) if monthly else None
    left_today = None
    if c.daily_limit is not None:
        left_today = max(c.daily_limit - spent.today, Decimal(0))
        if left_month is not None:
            left_today = min(left_today, left_month)
    return SpendSummary(
        today=Money.parts(spent.today, cur), this_month=Money.parts(spent.this_month, cur),
        remaining_today=Money.parts(left_today, cur) if left_today is not None else None,
        remaining_this_month=Money.parts(left_month, cur) if left_month is not None else None)


@strawberry.type(description="A virtual card. Its full number and CVV are never shown here: see revealCard.")
class Card(Node):
    network: CardNetwork = strawberry.field(description="Card scheme.")
    type: CardType = strawberry.field(description="Kind of card.")
    status: CardStatus = strawberry.field(description="Where the card is in its lifecycle.")
    masked_number: str = strawberry.field(
        description="First six and last four digits, e.g. 4242 42•• •••• 1234; never the full number.")
    last4: str = strawberry.field(description="Last four digits of the number.")
    expiry_date: date = strawberry.field(description="Last day the card is valid (end of its expiry month).")
    currency: str = strawberry.field(description="ISO 4217 currency the card is billed in.")
    spending_limit: Decimal | None = strawberry.field(
        description="Most the card may spend per month; for a prepaid card, the amount loaded onto it.")
    merchant_lock: str | None = strawberry.field(
        description="Subscription cards: the only merchant they are accepted by.")
    metadata: JSON | None = strawberry.field(description="Your key-value metadata.")
    created_at: datetime = strawberry.field(description="Issue time (UTC).")
    updated_at: datetime = strawberry.field(description="Last change (UTC).")
    raw: strawberry.Private[d_cards.Card]

    @classmethod
    def of(cls, c: d_cards.Card) -> Card:
        return cls(network=c.network, type=c.type, status=c.status, masked_number=c.masked_number,
                   last4=c.last4, expiry_date=c.expiry_date, currency=c.currency,
                   spending_limit=_opt(c.spending_limit, c.currency), merchant_lock=c.merchant_lock,
                   metadata=c.metadata, created_at=c.created_at, updated_at=c.updated_at, raw=c)

    @strawberry.field(description="Global ID.")
    def id(self) -> strawberry.ID:
        return gid("Card", self.raw.id)

    @strawberry.field(description="The business that issued the card.")
    async def business(self, info: Info[Context, None]) -> Business:
        b = await loaders.businesses(info.context).load(self.raw.business_id)
        if b is None:
            raise NotFound("Business not found")
        return Business.of(b)

    @strawberry.field(description="The team member the card is issued to, if any.")
    async def cardholder(self, info: Info[Context, None]) -> User | None:
        if self.raw.cardholder_id is None:
            return None
        u = await loaders.users(info.context).load(self.raw.cardholder_id)
        return User.of(u) if u else None

    @strawberry.field(description="Spending controls.")
    async def controls(self, info: Info[Context, None]) -> CardControls:
        c = await rc.controls(info.context).load(self.raw.id)
        return CardControls.of(c, self.raw.currency)

    @strawberry.field(description="Spent and remaining today and this month (business time zone).")
    async def spend(self, info: Info[Context, None]) -> SpendSummary:
        ctx = info.context
        c, spent = await asyncio.gather(rc.controls(ctx).load(self.raw.id), rc.spend(ctx).load(self.raw.id))
        return spend_summary(self.raw, c, spent)

    @strawberry.field(description="Prepaid cards: the balance left on the card; other cards: the spend "
                                  "of the current month.")
    async def current_balance(self, info: Info[Context, None]) -> Decimal | None:
        if self.raw.type is d_cards.CardType.PREPAID:
            return scaled(self.raw.current_balance, self.raw.currency)
        spent = await rc.spend(info.context).load(self.raw.id)
        return scaled(spent.this_month, self.raw.currency)

    @strawberry.field(description="Authorizations of the card, newest first.")
    async def transactions(self, info: Info[Context, None], first: int | None = None,
                           after: str | None = None) -> CardTransactionConnection:
        items, has_next = await rc.card_transaction_page(info.context, self.raw.id, first, after)
        edges = [CardTransactionEdge(node=CardTransaction.of(a, card=self.raw)) for a in items]
        return CardTransactionConnection(
            edges=edges,
            page_info=PageInfo(has_next_page=has_next, has_previous_page=after is not None,
                               start_cursor=edges[0].cursor() if edges else None,
                               end_cursor=edges[-1].cursor() if edges else None),
            card_id=self.raw.id)


@strawberry.type(description="An edge of a card connection.")
class CardEdge:
    node: Card = strawberry.field(description="The card.")

    @strawberry.field(description="Opaque cursor of this edge.")
    def cursor(self) -> str:
        return Cursor(self.node.created_at, self.node.raw.id).encode()


@strawberry.type(description="A page of cards.")
class CardConnection:
    edges: list[CardEdge] = strawberry.field(description="The cards of this page.")
    page_info: PageInfo = strawberry.field(description="Pagination information.")
    key: strawberry.Private[rc.CardPageKey]

    @strawberry.field(description="Number of cards you can see (with the status filter, if any).")
    async def total_count(self, info: Info[Context, None]) -> int:
        return await rc.card_total(info.context, self.key)


async def business_cards(info: Info[Context, None], business_id: uuid.UUID, first: int | None,
                         after: str | None, status: d_cards.CardStatus | None) -> CardConnection:
    """``Business.cards``: a cardholder sees only the cards issued to them."""
    items, has_next, key = await rc.card_page(info.context, business_id, first, after, status)
    edges = [CardEdge(node=Card.of(c)) for c in items]
    return CardConnection(
        edges=edges,
        page_info=PageInfo(has_next_page=has_next, has_previous_page=after is not None,
                           start_cursor=edges[0].cursor() if edges else None,
                           end_cursor=edges[-1].cursor() if edges else None),
        key=key)


@strawberry.type(description="One authorization of a card (ISO 8583 response code, amounts, risk).")
class CardTransaction(Node):
    merchant_name: str | None = strawberry.field(description="Merchant name as sent by the network.")
    merchant_category_code: str | None = strawberry.field(description="ISO 18245 merchant category code.")
    merchant_country: str | None = strawberry.field(description="ISO 3166-1 alpha-2 merchant country.")
    original_amount: Money = strawberry.field(description="Amount in the merchant's currency.")
    billing_amount: Money = strawberry.field(description="Amount in the card currency.")
    exchange_rate: Decimal | None = strawberry.field(
        description="Merchant-to-card currency rate used, when the currencies differ.")
    status: AuthorizationStatus = strawberry.field(description="Where the authorization is.")
    response_code: str = strawberry.field(
        description="ISO 8583 response code: 00 approved, 05 do not honour (or awaiting approval), "
                    "14 invalid card, 51 insufficient funds, 54 expired, 57 not permitted, "
                    "59 suspected fraud, 61 amount limit, 62 restricted, 65 frequency limit.")
    decline_reason: str | None = strawberry.field(description="Why it was declined, as a stable word.")
    risk_score: float = strawberry.field(description="Fraud score in [0, 1].")
    risk_reasons: list[str] = strawberry.field(description="The fraud rules that contributed to the score.")
    created_at: datetime = strawberry.field(description="When the authorization was decided (UTC).")
    raw: strawberry.Private[d_auth.StoredAuth]
    prefetched_card: strawberry.Private[d_cards.Card | None] = None

    @classmethod
    def of(cls, a: d_auth.StoredAuth, *, card: d_cards.Card | None = None) -> CardTransaction:
        return cls(
            merchant_name=a.merchant_name, merchant_category_code=a.merchant_category_code,
            merchant_country=a.merchant_country,
            original_amount=Money.parts(a.original_amount, a.original_currency),
            billing_amount=Money.parts(a.billing_amount, a.billing_currency),
            exchange_rate=a.exchange_rate, status=a.status, response_code=a.response_code,
            decline_reason=a.decline_reason, risk_score=a.risk_score, risk_reasons=list(a.risk_reasons),
            created_at=a.created_at, raw=a, prefetched_card=card)

    @strawberry.field(description="Global ID.")
    def id(self) -> strawberry.ID:
        return gid("CardTransaction", self.raw.id)

    @strawberry.field(description="The card.")
    async def card(self, info: Info[Context, None]) -> Card:
        c = self.prefetched_card or await rc.cards(info.context).load(self.raw.card_id)
        if c is None:
            raise NotFound("Card not found")
        return Card.of(c)

    @strawberry.field(description="The CARD_AUTHORIZATION transaction recording it.")
    async def transaction(self, info: Info[Context, None]) -> Transaction:
        t = await rc.transactions(info.context).load(self.raw.transaction_id)
        if t is None:
            raise NotFound("Transaction not found")
        return Transaction.of(t)


@strawberry.type(description="An edge of a card transaction connection.")
class CardTransactionEdge:
    node: CardTransaction = strawberry.field(description="The card transaction.")

    @strawberry.field(description="Opaque cursor of this edge.")
    def cursor(self) -> str:
        return Cursor(self.node.created_at, self.node.raw.id).encode()


@strawberry.type(description="A page of card transactions.")
class CardTransactionConnection:
    edges: list[CardTransactionEdge] = strawberry.field(description="The card transactions of this page.")
    page_info: PageInfo = strawberry.field(description="Pagination information.")
    card_id: strawberry.Private[uuid.UUID]

    @strawberry.field(description="Number of authorizations of the card.")
    async def total_count(self, info: Info[Context, None]) -> int:
        return await rc.card_transaction_counts(info.context).load(self.card_id)
