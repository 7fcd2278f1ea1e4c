"""card risk minutes: per-minute aggregates for the fraud score's velocity windows

The velocity features (approved purchases of the card in the last 10 minutes
and hour) were read from the card's last hour of ``card_transactions`` on
every authorization: a cost that grew with the card's traffic (a busy fleet
card, a card under a fraud burst). They are now kept, in the authorization's
transaction, per card and UTC minute (``card_risk_minutes``); a decision reads
at most 61 rows. The table is filled here from the last 61 minutes of
``card_transactions``.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-27
"""

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import sqlalchemy as sa
from alembic import op

from veix.persistence.types import MoneyType, UTCDateTime

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

# The longer velocity window (veix.domain.services.authorize.velocity_window):
# the current minute and the 60 before.
BACKFILL_MINUTES = 61


def upgrade() -> None:
    op.create_table(
        "card_risk_minutes",
        sa.Column("card_id", sa.Uuid(), nullable=False),
        sa.Column("minute", UTCDateTime(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("amount", MoneyType(), nullable=False),
        sa.ForeignKeyConstraint(["card_id"], ["virtual_cards.id"],
                                name=op.f("fk_card_risk_minutes_card_id_virtual_cards")),
        sa.PrimaryKeyConstraint("card_id", "minute", name=op.f("pk_card_risk_minutes")),
    )
    now = datetime.now(UTC)
    since = now.replace(second=0, microsecond=0) - timedelta(minutes=BACKFILL_MINUTES - 1)
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        # As 0006: each row counts with what its own decision approved (an
        # increment also grew its original's billing_amount).
        bind.execute(sa.text(
            "INSERT INTO card_risk_minutes (card_id, minute, count, amount) "
            "SELECT t.card_id, date_trunc('minute', t.created_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC', "
            "count(*), sum(t.billing_amount - coalesce(i.total, 0)) "
            "FROM card_transactions t LEFT JOIN (SELECT parent_id, sum(billing_amount) AS total "
            "FROM card_transactions WHERE response_code = '00' AND kind = 'incremental' "
            "AND created_at >= :since GROUP BY parent_id) i ON i.parent_id = t.id "
            "WHERE t.response_code = '00' AND t.kind IN ('purchase', 'incremental') AND t.created_at >= :since "
            "GROUP BY 1, 2"), {"since": since})
        return
    # SQLite keeps money as TEXT (summing it in SQL would go through floats): aggregate in Python.
    ct = sa.table("card_transactions", sa.column("id", sa.Uuid()), sa.column("card_id", sa.Uuid()),
                  sa.column("created_at", UTCDateTime()), sa.column("billing_amount", MoneyType()),
                  sa.column("response_code", sa.String()), sa.column("kind", sa.String()),
                  sa.column("parent_id", sa.Uuid()))
    rows = bind.execute(sa.select(ct.c.id, ct.c.card_id, ct.c.created_at, ct.c.billing_amount, ct.c.parent_id).where(
        ct.c.response_code == "00", ct.c.kind.in_(("purchase", "incremental")), ct.c.created_at >= since)).all()
    increments: dict[object, Decimal] = defaultdict(Decimal)
    for r in rows:
        if r.parent_id is not None:
            increments[r.parent_id] += r.billing_amount
    minutes: dict[tuple[object, datetime], list[Decimal]] = defaultdict(list)
    for r in rows:
        minute = r.created_at.astimezone(UTC).replace(second=0, microsecond=0)
        minutes[(r.card_id, minute)].append(r.billing_amount - increments.get(r.id, 0))
    rm = sa.table("card_risk_minutes", sa.column("card_id", sa.Uuid()), sa.column("minute", UTCDateTime()),
                  sa.column("count", sa.Integer()), sa.column("amount", MoneyType()))
    if minutes:
        bind.execute(rm.insert(), [
            {"card_id": card_id, "minute": minute, "count": len(amounts), "amount": sum(amounts, Decimal(0))}
            for (card_id, minute), amounts in minutes.items()])


def downgrade() -> None:
    op.drop_table("card_risk_minutes")
