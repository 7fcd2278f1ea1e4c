"""The Query root."""

from __future__ import annotations

import strawberry
from strawberry.types import Info

from veix.domain.errors import InvalidInput
from veix.resolvers import business as biz
from veix.resolvers import cards, loaders, payments
from veix.resolvers.context import Context
from veix.resolvers.ids import parse_global_id
from veix.resolvers.pagination import Cursor
from veix.schema.types.business import (
    ApiKey,
    Business,
    BusinessConnection,
    BusinessEdge,
    Member,
    Transaction,
    User,
)
from veix.schema.types.cards import Card, CardTransaction
from veix.schema.types.common import Node, PageInfo
from veix.schema.types.payments import Dispute, PaymentMethod


@strawberry.type(description="Everything that can be read.")
class Query:
    @strawberry.field(description="Any object by its global ID; null if it does not exist or is not yours.")
    async def node(self, info: Info[Context, None], id: strawberry.ID) -> Node | None:
        ctx = info.context
        type_name, _ = parse_global_id(id)
        if type_name == "Business":
            b = await biz.get_business(ctx, id)
            return Business.of(b) if b else None
        if type_name == "Transaction":
            t = await biz.get_transaction(ctx, id)
            return Transaction.of(t) if t else None
        if type_name == "User":
            p = ctx.require_principal()
            _, raw = parse_global_id(id)
            if p.kind == "user" and raw == p.id:
                u = await loaders.users(ctx).load(raw)
                return User.of(u) if u else None
            return None
        if type_name == "Member":
            m = await biz.get_member(ctx, id)
            return Member.of(m, ctx=ctx) if m else None
        if type_name == "ApiKey":
            k = await biz.get_api_key(ctx, id)
            return ApiKey.of(k) if k else None
        if type_name == "Card":
            c = await cards.get_card(ctx, id)
            return Card.of(c) if c else None
        if type_name == "PaymentMethod":
            pm = await payments.get_payment_method(ctx, id)
            return PaymentMethod.of(pm) if pm else None
        if type_name == "Dispute":
            d = await payments.get_dispute(ctx, id)
            return Dispute.of(d) if d else None
        if type_name == "CardTransaction":
            a = await cards.get_card_transaction(ctx, id)
            return CardTransaction.of(a) if a else None
        raise InvalidInput(f"Unknown ID type {type_name!r}")

    @strawberry.field(description="The logged-in user (null for API keys and anonymous callers).")
    async def me(self, info: Info[Context, None]) -> User | None:
        ctx = info.context
        p = ctx.require_principal()
        if p.kind != "user":
            return None
        u = await loaders.users(ctx).load(p.id)
        return User.of(u) if u else None

    @strawberry.field(description="A business you belong to; null otherwise.")
    async def business(self, info: Info[Context, None], id: strawberry.ID) -> Business | None:
        b = await biz.get_business(info.context, id)
        return Business.of(b) if b else None

    @strawberry.field(description="The businesses you belong to, oldest first.")
    async def businesses(self, info: Info[Context, None], first: int | None = None,
                         after: str | None = None) -> BusinessConnection:
        ctx = info.context
        ctx.require_principal()
        items, has_next, total = await biz.list_businesses(ctx, first, after)
        edges = [BusinessEdge(node=Business.of(b), cursor=Cursor(b.created_at, b.id).encode())
                 for b in items]
        return BusinessConnection(
            edges=edges,
            page_info=PageInfo(has_next_page=has_next, has_previous_page=after is not None,
                               start_cursor=edges[0].cursor if edges else None,
                               end_cursor=edges[-1].cursor if edges else None),
            total_count=total,
        )

    @strawberry.field(description="A card you may see (a cardholder: only their own); null otherwise.")
    async def card(self, info: Info[Context, None], id: strawberry.ID) -> Card | None:
        c = await cards.get_card(info.context, id)
        return Card.of(c) if c else None

    @strawberry.field(description="A transaction of one of your businesses; null otherwise.")
    async def transaction(self, info: Info[Context, None], id: strawberry.ID) -> Transaction | None:
        t = await biz.get_transaction(info.context, id)
        return Transaction.of(t) if t else None
