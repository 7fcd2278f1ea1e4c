"""cards, spend counters, network messages, fraud alerts

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from veix.persistence.types import MoneyType, UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table(
        "network_messages",
        sa.Column("id", sa.String(length=128), nullable=False),
        sa.Column("endpoint", sa.String(length=32), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=False),
        sa.Column(
            "response",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_network_messages")),
    )
    op.create_table(
        "card_spend",
        sa.Column("card_id", sa.Uuid(), nullable=False),
        sa.Column("period", sa.String(length=12), nullable=False),
        sa.Column("amount", MoneyType(), nullable=False),
        sa.ForeignKeyConstraint(
            ["card_id"], ["virtual_cards.id"], name=op.f("fk_card_spend_card_id_virtual_cards")
        ),
        sa.PrimaryKeyConstraint("card_id", "period", name=op.f("pk_card_spend")),
    )
    op.create_table(
        "fraud_alerts",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("business_id", sa.Uuid(), nullable=False),
        sa.Column("card_id", sa.Uuid(), nullable=True),
        sa.Column("transaction_id", sa.Uuid(), nullable=True),
        sa.Column("card_transaction_id", sa.Uuid(), nullable=True),
        sa.Column("risk_score", sa.Float(), nullable=False),
        sa.Column(
            "reasons",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["business_id"], ["businesses.id"], name=op.f("fk_fraud_alerts_business_id_businesses")
        ),
        sa.ForeignKeyConstraint(
            ["card_id"], ["virtual_cards.id"], name=op.f("fk_fraud_alerts_card_id_virtual_cards")
        ),
        sa.ForeignKeyConstraint(
            ["transaction_id"], ["transactions.id"], name=op.f("fk_fraud_alerts_transaction_id_transactions")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fraud_alerts")),
    )
    with op.batch_alter_table("fraud_alerts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_fraud_alerts_business_id"), ["business_id"], unique=False)

    with op.batch_alter_table("card_transactions", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("kind", sa.String(length=24), server_default="purchase", nullable=False)
        )
        batch_op.add_column(sa.Column("parent_id", sa.Uuid(), nullable=True))
        batch_op.add_column(sa.Column("approved_amount", MoneyType(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("held_amount", MoneyType(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("cleared_amount", MoneyType(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("released_amount", MoneyType(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("spend_day", sa.String(length=12), nullable=True))
        batch_op.add_column(sa.Column("spend_month", sa.String(length=12), nullable=True))
        batch_op.add_column(sa.Column("hold_expires_at", UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column("approval_expires_at", UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column("decided_by", sa.Uuid(), nullable=True))
        batch_op.add_column(
            sa.Column(
                "risk_reasons",
                sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
                nullable=True,
            )
        )
        batch_op.create_index("ix_card_transactions_hold_expiry", ["status", "hold_expires_at"], unique=False)


def downgrade() -> None:

    with op.batch_alter_table("card_transactions", schema=None) as batch_op:
        batch_op.drop_index("ix_card_transactions_hold_expiry")
        batch_op.drop_column("risk_reasons")
        batch_op.drop_column("decided_by")
        batch_op.drop_column("approval_expires_at")
        batch_op.drop_column("hold_expires_at")
        batch_op.drop_column("spend_month")
        batch_op.drop_column("spend_day")
        batch_op.drop_column("released_amount")
        batch_op.drop_column("cleared_amount")
        batch_op.drop_column("held_amount")
        batch_op.drop_column("approved_amount")
        batch_op.drop_column("parent_id")
        batch_op.drop_column("kind")

    with op.batch_alter_table("fraud_alerts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_fraud_alerts_business_id"))

    op.drop_table("fraud_alerts")
    op.drop_table("card_spend")
    op.drop_table("network_messages")
