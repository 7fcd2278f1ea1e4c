"""Read-side queries for the API: batched (one statement per batch, never per
row) and returning plain domain dataclasses, so the number of SQL statements
of a request does not grow with the rows it returns."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Select, and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from veix.domain.api_keys import ApiKey
from veix.domain.business import Business
from veix.domain.ledger import AccountKind
from veix.domain.money import Money
from veix.domain.team import Membership
from veix.domain.transactions import Transaction
from veix.domain.users import User
from veix.persistence import mappers as m
from veix.persistence.tables import (
    api_keys,
    businesses,
    ledger_accounts,
    memberships,
    transactions,
    users,
)


def _after(stmt: Select[Any], at_col: Any, id_col: Any, after: Any) -> Select[Any]:
    if after is None:
        return stmt
    return stmt.where(or_(at_col > after.at, and_(at_col == after.at, id_col > after.id)))


async def users_by_ids(conn: AsyncConnection, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, User]:
    rows = await conn.execute(select(users).where(users.c.id.in_(set(ids))))
    return {r.id: m.user_from_row(r) for r in rows}


async def businesses_by_ids(
    conn: AsyncConnection, ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, Business]:
    rows = await conn.execute(select(businesses).where(businesses.c.id.in_(set(ids))))
    return {r.id: m.business_from_row(r) for r in rows}


async def memberships_of_users(
    conn: AsyncConnection, user_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, list[Membership]]:
    stmt = (
        select(memberships)
        .where(memberships.c.user_id.in_(set(user_ids)))
        .order_by(memberships.c.invited_at, memberships.c.id)
    )
    out: dict[uuid.UUID, list[Membership]] = defaultdict(list)
    for r in await conn.execute(stmt):
        out[r.user_id].append(m.membership_from_row(r))
    return out


async def memberships_by_ids(
    conn: AsyncConnection, ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, Membership]:
    rows = await conn.execute(select(memberships).where(memberships.c.id.in_(set(ids))))
    return {r.id: m.membership_from_row(r) for r in rows}


async def businesses_page(
    conn: AsyncConnection, business_ids: Sequence[uuid.UUID], first: int, after: Any
) -> tuple[list[Business], bool]:
    """A page of the given businesses (those the caller belongs to), oldest first."""
    stmt = select(businesses).where(businesses.c.id.in_(set(business_ids)))
    stmt = _after(stmt, businesses.c.created_at, businesses.c.id, after)
    stmt = stmt.order_by(businesses.c.created_at, businesses.c.id).limit(first + 1)
    rows = [m.business_from_row(r) for r in await conn.execute(stmt)]
    return rows[:first], len(rows) > first


async def members_pages(
    conn: AsyncConnection, business_ids: Sequence[uuid.UUID], first: int, after: Any
) -> dict[uuid.UUID, tuple[list[Membership], bool]]:
    """One page of members for each business, in a single windowed statement."""
    base = select(
        memberships,
        func.row_number()
        .over(partition_by=memberships.c.business_id,
              order_by=(memberships.c.invited_at, memberships.c.id))
        .label("rn"),
    ).where(memberships.c.business_id.in_(set(business_ids)))
    base = _after(base, memberships.c.invited_at, memberships.c.id, after)
    sub = base.subquery()
    stmt = select(sub).where(sub.c.rn <= first + 1).order_by(sub.c.business_id, sub.c.rn)
    grouped: dict[uuid.UUID, list[Membership]] = defaultdict(list)
    for r in await conn.execute(stmt):
        grouped[r.business_id].append(m.membership_from_row(r))
    return {bid: (grouped[bid][:first], len(grouped[bid]) > first) for bid in business_ids}


async def member_counts(
    conn: AsyncConnection, business_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, int]:
    stmt = (
        select(memberships.c.business_id, func.count())
        .where(memberships.c.business_id.in_(set(business_ids)))
        .group_by(memberships.c.business_id)
    )
    counts = {r[0]: int(r[1]) for r in await conn.execute(stmt)}
    return {bid: counts.get(bid, 0) for bid in business_ids}


async def balances(
    conn: AsyncConnection, business_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, list[Money]]:
    stmt = (
        select(ledger_accounts.c.business_id, ledger_accounts.c.currency,
               ledger_accounts.c.balance)
        .where(
            ledger_accounts.c.business_id.in_(set(business_ids)),
            ledger_accounts.c.kind == AccountKind.BUSINESS_AVAILABLE.value,
        )
        .order_by(ledger_accounts.c.currency)
    )
    out: dict[uuid.UUID, list[Money]] = defaultdict(list)
    for r in await conn.execute(stmt):
        out[r.business_id].append(Money(r.balance, r.currency))
    return out


async def transactions_by_ids(
    conn: AsyncConnection, ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, Transaction]:
    rows = await conn.execute(select(transactions).where(transactions.c.id.in_(set(ids))))
    return {r.id: m.transaction_from_row(r) for r in rows}


async def transactions_page(
    conn: AsyncConnection, business_id: uuid.UUID, first: int, after: Any,
    types: Sequence[str] | None = None, statuses: Sequence[str] | None = None,
    since: Any = None, until: Any = None, currency: str | None = None,
) -> tuple[list[Transaction], bool]:
    """Newest-last keyset page of one business's transactions with simple filters."""
    stmt = select(transactions).where(transactions.c.business_id == business_id)
    if types:
        stmt = stmt.where(transactions.c.type.in_(types))
    if statuses:
        stmt = stmt.where(transactions.c.status.in_(statuses))
    if since is not None:
        stmt = stmt.where(transactions.c.created_at >= since)
    if until is not None:
        stmt = stmt.where(transactions.c.created_at < until)
    if currency:
        stmt = stmt.where(transactions.c.currency == currency)
    stmt = _after(stmt, transactions.c.created_at, transactions.c.id, after)
    stmt = stmt.order_by(transactions.c.created_at, transactions.c.id).limit(first + 1)
    rows = [m.transaction_from_row(r) for r in await conn.execute(stmt)]
    return rows[:first], len(rows) > first


async def count_transactions(conn: AsyncConnection, business_id: uuid.UUID) -> int:
    stmt = select(func.count()).where(transactions.c.business_id == business_id)
    return int((await conn.execute(stmt)).scalar_one())


async def api_key_by_prefix(conn: AsyncConnection, prefix: str) -> ApiKey | None:
    row = (await conn.execute(select(api_keys).where(api_keys.c.prefix == prefix))).first()
    return m.api_key_from_row(row) if row else None


async def api_keys_by_ids(
    conn: AsyncConnection, ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, ApiKey]:
    rows = await conn.execute(select(api_keys).where(api_keys.c.id.in_(set(ids))))
    return {r.id: m.api_key_from_row(r) for r in rows}


async def api_keys_of_business(conn: AsyncConnection, business_id: uuid.UUID) -> list[ApiKey]:
    stmt = (select(api_keys).where(api_keys.c.business_id == business_id)
            .order_by(api_keys.c.created_at, api_keys.c.id))
    return [m.api_key_from_row(r) for r in await conn.execute(stmt)]
