"""DataLoaders for every relation: each batch is one SQL statement."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from strawberry.dataloader import DataLoader

from veix.domain.business import Business
from veix.domain.money import Money
from veix.domain.team import Membership
from veix.domain.users import User
from veix.persistence import queries as q
from veix.resolvers.context import Context
from veix.resolvers.pagination import PageArgs


def by_ids(ctx: Context, name: str, fetch: Callable[[Any, list[Any]], Awaitable[dict[Any, Any]]],
           default: Any = None) -> DataLoader[Any, Any]:
    """The request's loader ``name``: one ``fetch(conn, ids) -> {id: value}`` per batch."""

    async def batch(ids: list[Any]) -> Sequence[Any]:
        found = await ctx.read(lambda c: fetch(c, ids))
        return [found.get(i, default) for i in ids]

    return ctx.loader(name, batch)

def users(ctx: Context) -> DataLoader[uuid.UUID, User | None]:
    return by_ids(ctx, "users", q.users_by_ids)


def businesses(ctx: Context) -> DataLoader[uuid.UUID, Business | None]:
    return by_ids(ctx, "businesses", q.businesses_by_ids)


def balances(ctx: Context) -> DataLoader[uuid.UUID, list[Money]]:
    return by_ids(ctx, "balances", q.balances, [])


def member_counts(ctx: Context) -> DataLoader[uuid.UUID, int]:
    async def batch(ids: list[uuid.UUID]) -> Sequence[int]:
        found = await ctx.read(lambda c: q.member_counts(c, ids))
        return [found[i] for i in ids]

    return ctx.loader("member_counts", batch)


def member_pages(ctx: Context) -> DataLoader[tuple[uuid.UUID, PageArgs], Any]:
    """Key: (business id, page args). Keys sharing page args share one statement."""

    async def batch(keys: list[tuple[uuid.UUID, PageArgs]]) -> Sequence[Any]:
        by_args: dict[PageArgs, list[uuid.UUID]] = {}
        for bid, args in keys:
            by_args.setdefault(args, []).append(bid)
        results: dict[tuple[uuid.UUID, PageArgs], tuple[list[Membership], bool]] = {}
        for args, bids in by_args.items():
            pages = await ctx.read(lambda c, a=args, b=bids: q.members_pages(c, b, a.first, a.after))
            for bid in bids:
                results[(bid, args)] = pages[bid]
        return [results[k] for k in keys]

    return ctx.loader("member_pages", batch)


def memberships_of_user(ctx: Context) -> DataLoader[uuid.UUID, list[Membership]]:
    return by_ids(ctx, "memberships_of_user", q.memberships_of_users, [])


def refunds(ctx: Context) -> DataLoader[uuid.UUID, list[Any]]:
    return by_ids(ctx, "refunds", q.refunds_by_payment_ids, [])


def disputes_of_transactions(ctx: Context) -> DataLoader[uuid.UUID, Any]:
    return by_ids(ctx, "disputes_of_transactions", q.disputes_by_transaction_ids)


def payment_methods(ctx: Context) -> DataLoader[uuid.UUID, Any]:
    return by_ids(ctx, "payment_methods", q.payment_methods_by_ids)


def transactions(ctx: Context) -> DataLoader[uuid.UUID, Any]:
    return by_ids(ctx, "transactions", q.transactions_by_ids)
