"""the outbox is written once: what is dispatched is one cursor, not a mark per row

The dispatcher marked every row it published (``dispatched_at``): a second
version of each event row, payload and all, plus an entry in every one of the
outbox's indexes, as many rows again as the authorizations wrote (about two
events per decision in the benchmark). With autovacuum behind, the outbox was
a third of the database's growth and its largest reader of blocks.

The dispatched events are a gap-free prefix of the outbox in ``seq`` order
(veix.events.dispatcher: it publishes in ``seq`` order, below a horizon every
lower ``seq`` has committed or aborted under), so one number says which are
dispatched: ``outbox_cursor.dispatched_seq``, the highest ``seq`` published
and committed. The upgrade sets it from the marks; the downgrade marks every
row up to it.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-27
"""

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

from veix.persistence.types import UTCDateTime

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

PENDING = "dispatched_at IS NULL"


def upgrade() -> None:
    op.create_table(
        "outbox_cursor",
        sa.Column("id", sa.SmallInteger(), nullable=False),
        sa.Column("dispatched_seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.CheckConstraint("id = 1", name=op.f("ck_outbox_cursor_one_row")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox_cursor")),
    )
    op.get_bind().execute(
        sa.text("INSERT INTO outbox_cursor (id, dispatched_seq, updated_at) "
                "SELECT 1, coalesce(max(seq), 0), :now FROM outbox WHERE dispatched_at IS NOT NULL")
        .bindparams(sa.bindparam("now", datetime.now(UTC), type_=UTCDateTime())))
    op.drop_index("ix_outbox_pending", table_name="outbox")
    op.drop_column("outbox", "dispatched_at")


def downgrade() -> None:
    op.add_column("outbox", sa.Column("dispatched_at", UTCDateTime(), nullable=True))
    op.execute("UPDATE outbox SET dispatched_at = (SELECT updated_at FROM outbox_cursor) "
               "WHERE seq <= (SELECT dispatched_seq FROM outbox_cursor)")
    op.create_index("ix_outbox_pending", "outbox", ["seq"],
                    postgresql_where=sa.text(PENDING), sqlite_where=sa.text(PENDING))
    op.drop_table("outbox_cursor")
