"""authorization hot path: fewer index entries per decision, a pending-outbox index

Every card authorization writes a journal entry, two postings and an outbox
row. Indexes nothing reads are dropped (postings.account_id,
journal_entries.business_id and journal_entries.transaction_id: the ledger is
only read whole, by ``veix ledger verify``, and through ledger_accounts), and
the outbox's index on ``dispatched_at`` (every row, NULL ones included, plus a
new entry when a row is dispatched) becomes an index on ``seq`` of the rows
still to dispatch: exactly the dispatcher's query, which had to intersect the
whole primary key with every NULL entry ever written (dead ones included) on
each poll.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

PENDING = "dispatched_at IS NULL"


def upgrade() -> None:
    op.drop_index("ix_postings_account_id", table_name="postings")
    op.drop_index("ix_journal_entries_business_id", table_name="journal_entries")
    op.drop_index("ix_journal_entries_transaction_id", table_name="journal_entries")
    op.drop_index("ix_outbox_dispatched_at", table_name="outbox")
    op.create_index("ix_outbox_pending", "outbox", ["seq"],
                    postgresql_where=sa.text(PENDING), sqlite_where=sa.text(PENDING))


def downgrade() -> None:
    op.drop_index("ix_outbox_pending", table_name="outbox")
    op.create_index("ix_outbox_dispatched_at", "outbox", ["dispatched_at"])
    op.create_index("ix_journal_entries_transaction_id", "journal_entries", ["transaction_id"])
    op.create_index("ix_journal_entries_business_id", "journal_entries", ["business_id"])
    op.create_index("ix_postings_account_id", "postings", ["account_id"])
