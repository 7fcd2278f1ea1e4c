"""card risk history: per-day aggregates and merchant set of each card

The risk scorer's history of a card (count, mean and maximum of its approved
purchases over 90 days, and whether it was approved at a merchant before) was
aggregated from ``card_transactions`` on every authorization: a cost that
grew with the card's past. It is now kept, in the authorization's
transaction, per card and UTC day (``card_risk_days``) and per card and
merchant (``card_merchants``); a decision reads at most 91 day rows and one
merchant row. The tables are filled here from the last 91 days of
``card_transactions``.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26
"""

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import sqlalchemy as sa
from alembic import op

from veix.persistence.types import MoneyType, UTCDateTime

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

# One day more than the window (veix.domain.services.authorize.HISTORY_DAYS):
# the first day of the window is a whole UTC day.
BACKFILL_DAYS = 91


def upgrade() -> None:
    op.create_table(
        "card_risk_days",
        sa.Column("card_id", sa.Uuid(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("amount", MoneyType(), nullable=False),
        sa.Column("max_amount", MoneyType(), nullable=False),
        sa.ForeignKeyConstraint(["card_id"], ["virtual_cards.id"],
                                name=op.f("fk_card_risk_days_card_id_virtual_cards")),
        sa.PrimaryKeyConstraint("card_id", "day", name=op.f("pk_card_risk_days")),
    )
    op.create_index("ix_card_risk_days_day", "card_risk_days", ["day"])
    op.create_table(
        "card_merchants",
        sa.Column("card_id", sa.Uuid(), nullable=False),
        sa.Column("merchant_key", sa.String(length=200), nullable=False),
        sa.Column("first_seen_at", UTCDateTime(), nullable=False),
        sa.Column("last_seen_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["card_id"], ["virtual_cards.id"],
                                name=op.f("fk_card_merchants_card_id_virtual_cards")),
        sa.PrimaryKeyConstraint("card_id", "merchant_key", name=op.f("pk_card_merchants")),
    )
    since = datetime.now(UTC) - timedelta(days=BACKFILL_DAYS)
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        # An approved increment also grew its original's billing_amount: each
        # row counts with what its own decision approved (an increment comes
        # after its original, so the window holds the increments of its rows).
        bind.execute(sa.text(
            "INSERT INTO card_risk_days (card_id, day, count, amount, max_amount) "
            "SELECT t.card_id, (t.created_at AT TIME ZONE 'UTC')::date, count(*), "
            "sum(t.billing_amount - coalesce(i.total, 0)), max(t.billing_amount - coalesce(i.total, 0)) "
            "FROM card_transactions t LEFT JOIN (SELECT parent_id, sum(billing_amount) AS total "
            "FROM card_transactions WHERE response_code = '00' AND kind = 'incremental' "
            "AND created_at >= :since GROUP BY parent_id) i ON i.parent_id = t.id "
            "WHERE t.response_code = '00' AND t.kind IN ('purchase', 'incremental') AND t.created_at >= :since "
            "GROUP BY 1, 2"), {"since": since})
        bind.execute(sa.text(
            "INSERT INTO card_merchants (card_id, merchant_key, first_seen_at, last_seen_at) "
            "SELECT card_id, lower(btrim(coalesce(nullif(merchant_id, ''), merchant_name, ''))), "
            "min(created_at), max(created_at) FROM card_transactions WHERE response_code = '00' "
            "AND kind IN ('purchase', 'incremental') AND created_at >= :since GROUP BY 1, 2"),
            {"since": since})
        return
    # SQLite keeps money as TEXT (summing it in SQL would go through floats):
    # aggregate in Python, with the key of StoredAuth.merchant_key.
    ct = sa.table("card_transactions", sa.column("id", sa.Uuid()), sa.column("card_id", sa.Uuid()), sa.column("created_at", UTCDateTime()),
                  sa.column("billing_amount", MoneyType()), sa.column("merchant_id", sa.String()),
                  sa.column("merchant_name", sa.String()), sa.column("response_code", sa.String()),
                  sa.column("kind", sa.String()), sa.column("parent_id", sa.Uuid()))
    days: dict[tuple[object, object], list[Decimal]] = defaultdict(list)
    merchants: dict[tuple[object, str], list[datetime]] = defaultdict(list)
    rows = bind.execute(sa.select(ct.c.id, ct.c.card_id, ct.c.created_at, ct.c.billing_amount, ct.c.merchant_id,
                                  ct.c.merchant_name, ct.c.parent_id).where(
        ct.c.response_code == "00", ct.c.kind.in_(("purchase", "incremental")), ct.c.created_at >= since)).all()
    increments: dict[object, Decimal] = defaultdict(Decimal)
    for r in rows:
        if r.parent_id is not None:
            increments[r.parent_id] += r.billing_amount
    for r in rows:
        days[(r.card_id, r.created_at.astimezone(UTC).date())].append(r.billing_amount - increments.get(r.id, 0))
        merchants[(r.card_id, (r.merchant_id or r.merchant_name or "").strip().lower())].append(r.created_at)
    rd = sa.table("card_risk_days", sa.column("card_id", sa.Uuid()), sa.column("day", sa.Date()),
                  sa.column("count", sa.Integer()), sa.column("amount", MoneyType()),
                  sa.column("max_amount", MoneyType()))
    cm = sa.table("card_merchants", sa.column("card_id", sa.Uuid()), sa.column("merchant_key", sa.String()),
                  sa.column("first_seen_at", UTCDateTime()), sa.column("last_seen_at", UTCDateTime()))
    if days:
        bind.execute(rd.insert(), [
            {"card_id": card_id, "day": day, "count": len(amounts), "amount": sum(amounts, Decimal(0)),
             "max_amount": max(amounts)} for (card_id, day), amounts in days.items()])
        bind.execute(cm.insert(), [
            {"card_id": card_id, "merchant_key": key, "first_seen_at": min(seen), "last_seen_at": max(seen)}
            for (card_id, key), seen in merchants.items()])


def downgrade() -> None:
    op.drop_table("card_merchants")
    op.drop_table("card_risk_days")
