"""payments: transaction columns, payment methods, disputes, gateway events, counters, settings

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from veix.persistence.types import MoneyType, UTCDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
PAYMENT_ROWS = "parent_id IS NULL AND type = 'payment'"


def upgrade() -> None:
    with op.batch_alter_table("transactions") as batch:
        batch.add_column(sa.Column("parent_id", sa.Uuid(), nullable=True))
        batch.add_column(sa.Column("payment_method_id", sa.Uuid(), nullable=True))
        batch.add_column(sa.Column("captured_amount", MoneyType(), server_default="0", nullable=False))
        batch.add_column(sa.Column("description", sa.String(length=500), nullable=True))
        batch.add_column(sa.Column("routing", JSON, nullable=True))
        batch.add_column(sa.Column("gateway_data", JSON, nullable=True))
    op.create_index("ix_transactions_gateway_reference", "transactions", ["gateway", "gateway_reference"],
                    postgresql_where=sa.text(PAYMENT_ROWS), sqlite_where=sa.text(PAYMENT_ROWS))
    op.create_index("ix_transactions_parent", "transactions", ["parent_id", "created_at"],
                    postgresql_where=sa.text("parent_id IS NOT NULL"),
                    sqlite_where=sa.text("parent_id IS NOT NULL"))

    op.create_table(
        "payment_methods",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("business_id", sa.Uuid(), nullable=False),
        sa.Column("type", sa.String(length=16), nullable=False),
        sa.Column("display", sa.String(length=100), nullable=False),
        sa.Column("gateway", sa.String(length=16), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["business_id"], ["businesses.id"],
                                name=op.f("fk_payment_methods_business_id_businesses")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payment_methods")),
    )
    op.create_index(op.f("ix_payment_methods_business_id"), "payment_methods", ["business_id"])

    op.create_table(
        "disputes",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("business_id", sa.Uuid(), nullable=False),
        sa.Column("transaction_id", sa.Uuid(), nullable=False),
        sa.Column("gateway", sa.String(length=16), nullable=False),
        sa.Column("gateway_reference", sa.String(length=128), nullable=False),
        sa.Column("amount", MoneyType(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("reason", sa.String(length=200), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("evidence_due_by", UTCDateTime(), nullable=True),
        sa.Column("evidence", JSON, nullable=True),
        sa.Column("withdrawn_available", MoneyType(), server_default="0", nullable=False),
        sa.Column("withdrawn_receivable", MoneyType(), server_default="0", nullable=False),
        sa.Column("status_before", sa.String(length=32), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["business_id"], ["businesses.id"],
                                name=op.f("fk_disputes_business_id_businesses")),
        sa.ForeignKeyConstraint(["transaction_id"], ["transactions.id"],
                                name=op.f("fk_disputes_transaction_id_transactions")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_disputes")),
        sa.UniqueConstraint("gateway", "gateway_reference", name="uq_disputes_gateway_reference"),
    )
    op.create_index(op.f("ix_disputes_business_id"), "disputes", ["business_id"])
    op.create_index(op.f("ix_disputes_transaction_id"), "disputes", ["transaction_id"])

    op.create_table(
        "gateway_events",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("gateway", sa.String(length=16), nullable=False),
        sa.Column("event_id", sa.String(length=255), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("provider_type", sa.String(length=100), nullable=False),
        sa.Column("reference", sa.String(length=128), nullable=True),
        sa.Column("transaction_id", sa.Uuid(), nullable=True),
        sa.Column("outcome", sa.String(length=32), nullable=False),
        sa.Column("payload", JSON, nullable=False),
        sa.Column("received_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_gateway_events")),
        sa.UniqueConstraint("gateway", "event_id", name="uq_gateway_events_gateway_event"),
    )

    op.create_table(
        "counters",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_counters")),
    )

    op.create_table(
        "business_payment_settings",
        sa.Column("business_id", sa.Uuid(), nullable=False),
        sa.Column("routes", JSON, nullable=True),
        sa.Column("stripe_account", sa.String(length=64), nullable=True),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["business_id"], ["businesses.id"],
                                name=op.f("fk_business_payment_settings_business_id_businesses")),
        sa.PrimaryKeyConstraint("business_id", name=op.f("pk_business_payment_settings")),
    )


def downgrade() -> None:
    op.drop_table("business_payment_settings")
    op.drop_table("counters")
    op.drop_table("gateway_events")
    op.drop_index(op.f("ix_disputes_transaction_id"), table_name="disputes")
    op.drop_index(op.f("ix_disputes_business_id"), table_name="disputes")
    op.drop_table("disputes")
    op.drop_index(op.f("ix_payment_methods_business_id"), table_name="payment_methods")
    op.drop_table("payment_methods")
    op.drop_index("ix_transactions_parent", table_name="transactions")
    op.drop_index("ix_transactions_gateway_reference", table_name="transactions")
    with op.batch_alter_table("transactions") as batch:
        for column in ("gateway_data", "routing", "description", "captured_amount", "payment_method_id", "parent_id"):
            batch.drop_column(column)
