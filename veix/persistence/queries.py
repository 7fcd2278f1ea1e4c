"""Read-side queries for the API: batched (one statement per batch, never per
row) and returning plain domain dataclasses, so the number of SQL statements
of a request does not grow with the rows it returns."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Numeric, Select, and_, cast, func, literal_column, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from veix.domain.api_keys import ApiKey
from veix.domain.business import Business
from veix.domain.disputes import PaymentMethodRecord
from veix.domain.gateway import PaymentMethodType
from veix.domain.ledger import AccountKind
from veix.domain.money import Money
from veix.domain.team import Membership
from veix.domain.transactions import Gateway, Transaction
from veix.domain.users import User
from veix.persistence import mappers as m
from veix.persistence.repositories.payments import dispute_from_row
from veix.persistence.tables import (
    api_keys,
    businesses,
    disputes,
    ledger_accounts,
    memberships,
    payment_methods,
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


def _transaction_filters(
    conn: AsyncConnection, business_id: uuid.UUID, types: Sequence[str] | None = None,
    statuses: Sequence[str] | None = None, since: Any = None, until: Any = None,
    currency: str | None = None, min_amount: Decimal | None = None, max_amount: Decimal | None = None,
) -> list[Any]:
    """The WHERE conditions of a transactions page and of its count (the same set)."""
    t = transactions
    where: list[Any] = [t.c.business_id == business_id]
    if types:
        where.append(t.c.type.in_(types))
    if statuses:
        where.append(t.c.status.in_(statuses))
    if since is not None:
        where.append(t.c.created_at >= since)
    if until is not None:
        where.append(t.c.created_at < until)
    if currency:
        where.append(t.c.currency == currency)
    if min_amount is not None or max_amount is not None:
        # PostgreSQL compares NUMERIC exactly; SQLite keeps money as TEXT, compared
        # as a number there (exact to about 15 significant digits).
        pg = conn.dialect.name == "postgresql"
        amount = t.c.amount if pg else cast(literal_column("transactions.amount"), Numeric)
        if min_amount is not None:
            where.append(amount >= (min_amount if pg else float(min_amount)))
        if max_amount is not None:
            where.append(amount <= (max_amount if pg else float(max_amount)))
    return where


async def transactions_page(
    conn: AsyncConnection, business_id: uuid.UUID, first: int, after: Any, **filters: Any,
) -> tuple[list[Transaction], bool]:
    """Newest-last keyset page of one business's transactions with simple filters
    (the keyword arguments of _transaction_filters)."""
    stmt = select(transactions).where(*_transaction_filters(conn, business_id, **filters))
    stmt = _after(stmt, transactions.c.created_at, transactions.c.id, after)
    stmt = stmt.order_by(transactions.c.created_at, transactions.c.id).limit(first + 1)
    rows = [m.transaction_from_row(r) for r in await conn.execute(stmt)]
    return rows[:first], len(rows) > first


async def count_transactions(conn: AsyncConnection, business_id: uuid.UUID, **filters: Any) -> int:
    """How many transactions the same filters select, over all pages."""
    stmt = select(func.count()).select_from(transactions).where(
        *_transaction_filters(conn, business_id, **filters))
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


# ======================================================================== cards
# Batched reads for virtual cards, their controls, spend counters and card
# transactions (veix.resolvers.cards). Vault columns (encrypted PAN and CVV,
# lookup hash) are never selected here.

from decimal import Decimal  # noqa: E402

from veix.domain.authorization import StoredAuth  # noqa: E402
from veix.domain.card_controls import CardControls  # noqa: E402
from veix.domain.cards import Card  # noqa: E402
from veix.persistence.repositories.authorizations import auth_from_row  # noqa: E402
from veix.persistence.repositories.cards import card_from_row, controls_from_row  # noqa: E402
from veix.persistence.tables import (  # noqa: E402
    card_controls,
    card_spend,
    card_transactions,
    virtual_cards,
)

_VAULT_COLUMNS = frozenset({"card_number_encrypted", "card_number_hash", "cvv_encrypted", "vault_key_id"})
CARD_COLUMNS = tuple(c for c in virtual_cards.c if c.name not in _VAULT_COLUMNS)


def _before(stmt: Select[Any], at_col: Any, id_col: Any, after: Any) -> Select[Any]:
    """Keyset condition for newest-first pages: rows strictly older than the cursor."""
    if after is None:
        return stmt
    return stmt.where(or_(at_col < after.at, and_(at_col == after.at, id_col < after.id)))


def _card_filters(stmt: Select[Any], status: str | None, cardholder_id: uuid.UUID | None) -> Select[Any]:
    if status is not None:
        stmt = stmt.where(virtual_cards.c.status == status)
    if cardholder_id is not None:
        stmt = stmt.where(virtual_cards.c.cardholder_id == cardholder_id)
    return stmt


async def cards_by_ids(conn: AsyncConnection, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, Card]:
    rows = await conn.execute(select(*CARD_COLUMNS).where(virtual_cards.c.id.in_(set(ids))))
    return {r.id: card_from_row(r) for r in rows}


async def card_pages(
    conn: AsyncConnection, business_ids: Sequence[uuid.UUID], first: int, after: Any,
    status: str | None = None, cardholder_id: uuid.UUID | None = None,
) -> dict[uuid.UUID, tuple[list[Card], bool]]:
    """One newest-first page of cards for each business, in a single windowed statement.
    ``cardholder_id`` restricts the pages to that person's cards."""
    vc = virtual_cards
    base = select(
        *CARD_COLUMNS,
        func.row_number()
        .over(partition_by=vc.c.business_id, order_by=(vc.c.created_at.desc(), vc.c.id.desc()))
        .label("rn"),
    ).where(vc.c.business_id.in_(set(business_ids)))
    base = _before(_card_filters(base, status, cardholder_id), vc.c.created_at, vc.c.id, after)
    sub = base.subquery()
    stmt = select(sub).where(sub.c.rn <= first + 1).order_by(sub.c.business_id, sub.c.rn)
    grouped: dict[uuid.UUID, list[Card]] = defaultdict(list)
    for r in await conn.execute(stmt):
        grouped[r.business_id].append(card_from_row(r))
    return {bid: (grouped[bid][:first], len(grouped[bid]) > first) for bid in business_ids}


async def card_counts(
    conn: AsyncConnection, business_ids: Sequence[uuid.UUID], status: str | None = None,
    cardholder_id: uuid.UUID | None = None,
) -> dict[uuid.UUID, int]:
    stmt = (select(virtual_cards.c.business_id, func.count())
            .where(virtual_cards.c.business_id.in_(set(business_ids))))
    stmt = _card_filters(stmt, status, cardholder_id).group_by(virtual_cards.c.business_id)
    counts = {r[0]: int(r[1]) for r in await conn.execute(stmt)}
    return {bid: counts.get(bid, 0) for bid in business_ids}


async def controls_by_card_ids(
    conn: AsyncConnection, card_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, CardControls]:
    rows = await conn.execute(select(card_controls).where(card_controls.c.card_id.in_(set(card_ids))))
    return {r.card_id: controls_from_row(r) for r in rows}


async def card_spend_by_ids(
    conn: AsyncConnection, card_ids: Sequence[uuid.UUID], periods: Sequence[str]
) -> dict[uuid.UUID, tuple[str, dict[str, Decimal]]]:
    """For each card: its business's time zone and its spend counters among ``periods``
    (the caller passes every period that can be "today" or "this month" in some zone)."""
    vc = virtual_cards
    stmt = (
        select(vc.c.id, businesses.c.timezone, card_spend.c.period, card_spend.c.amount)
        .join(businesses, businesses.c.id == vc.c.business_id)
        .join(card_spend, and_(card_spend.c.card_id == vc.c.id, card_spend.c.period.in_(set(periods))),
              isouter=True)
        .where(vc.c.id.in_(set(card_ids)))
    )
    out: dict[uuid.UUID, tuple[str, dict[str, Decimal]]] = {}
    for r in await conn.execute(stmt):
        _, spent = out.setdefault(r.id, (r.timezone, {}))
        if r.period is not None:
            spent[r.period] = r.amount
    return out


async def card_transactions_by_ids(
    conn: AsyncConnection, ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, StoredAuth]:
    rows = await conn.execute(select(card_transactions).where(card_transactions.c.id.in_(set(ids))))
    return {r.id: auth_from_row(r) for r in rows}


async def card_transaction_pages(
    conn: AsyncConnection, card_ids: Sequence[uuid.UUID], first: int, after: Any
) -> dict[uuid.UUID, tuple[list[StoredAuth], bool]]:
    """One newest-first page of card transactions for each card, in one windowed statement."""
    ct = card_transactions
    base = select(
        ct,
        func.row_number()
        .over(partition_by=ct.c.card_id, order_by=(ct.c.created_at.desc(), ct.c.id.desc()))
        .label("rn"),
    ).where(ct.c.card_id.in_(set(card_ids)))
    base = _before(base, ct.c.created_at, ct.c.id, after)
    sub = base.subquery()
    stmt = select(sub).where(sub.c.rn <= first + 1).order_by(sub.c.card_id, sub.c.rn)
    grouped: dict[uuid.UUID, list[StoredAuth]] = defaultdict(list)
    for r in await conn.execute(stmt):
        grouped[r.card_id].append(auth_from_row(r))
    return {cid: (grouped[cid][:first], len(grouped[cid]) > first) for cid in card_ids}


async def card_transaction_counts(
    conn: AsyncConnection, card_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, int]:
    stmt = (select(card_transactions.c.card_id, func.count())
            .where(card_transactions.c.card_id.in_(set(card_ids)))
            .group_by(card_transactions.c.card_id))
    counts = {r[0]: int(r[1]) for r in await conn.execute(stmt)}
    return {cid: counts.get(cid, 0) for cid in card_ids}


# ================================================================= fraud alerts
# Batched read of the fraud_alerts table for the fraudAlerts subscription
# (veix.schema.subscriptions).

from dataclasses import dataclass  # noqa: E402
from datetime import datetime  # noqa: E402

from veix.persistence.tables import fraud_alerts  # noqa: E402


@dataclass(frozen=True, slots=True)
class FraudAlertRow:
    id: uuid.UUID
    business_id: uuid.UUID
    card_id: uuid.UUID | None
    transaction_id: uuid.UUID | None
    card_transaction_id: uuid.UUID | None
    risk_score: float
    reasons: tuple[str, ...]
    action: str
    created_at: datetime


async def fraud_alerts_by_ids(
    conn: AsyncConnection, ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, FraudAlertRow]:
    rows = await conn.execute(select(fraud_alerts).where(fraud_alerts.c.id.in_(set(ids))))
    return {r.id: FraudAlertRow(id=r.id, business_id=r.business_id, card_id=r.card_id,
                                transaction_id=r.transaction_id, card_transaction_id=r.card_transaction_id,
                                risk_score=float(r.risk_score), reasons=tuple(r.reasons or ()),
                                action=r.action, created_at=r.created_at)
            for r in rows}


# ---------------------------------------------------------------- payments

async def refunds_by_payment_ids(conn: AsyncConnection, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, list[Transaction]]:
    t = transactions
    rows = await conn.execute(select(t).where(t.c.parent_id.in_(set(ids))).order_by(t.c.created_at, t.c.id))
    found: dict[uuid.UUID, list[Transaction]] = {}
    for r in rows:
        found.setdefault(r.parent_id, []).append(m.transaction_from_row(r))
    return found


async def disputes_by_transaction_ids(conn: AsyncConnection, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, Any]:
    rows = await conn.execute(select(disputes).where(disputes.c.transaction_id.in_(set(ids)))
                              .order_by(disputes.c.created_at))
    return {r.transaction_id: dispute_from_row(r) for r in rows}  # the latest wins


async def disputes_by_ids(conn: AsyncConnection, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, Any]:
    rows = await conn.execute(select(disputes).where(disputes.c.id.in_(set(ids))))
    return {r.id: dispute_from_row(r) for r in rows}


async def payment_methods_by_ids(conn: AsyncConnection, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, Any]:
    pm = payment_methods
    rows = await conn.execute(select(pm).where(pm.c.id.in_(set(ids))))
    return {r.id: PaymentMethodRecord(r.id, r.business_id, PaymentMethodType(r.type), r.display,
                                      Gateway(r.gateway), r.created_at) for r in rows}
