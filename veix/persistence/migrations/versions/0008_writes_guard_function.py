"""the authorization writes statement's guard: a function with its own error codes

The hot path's single writes statement (veix.persistence.fast_pg) must write
nothing when what an optimistic decision read has changed, or when a debit
would overdraw its account. It failed itself with a division by zero, which
PostgreSQL logged as ``ERROR: division by zero`` with the whole statement:
alarming and unhelpful to whoever reads the server's log. ``veix_writes_guard``
fails it with a message that says what happened and an error code of its own
(``VXS01`` a stale read, ``VXD01`` a refused debit). PostgreSQL only; SQLite
has no such statement.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-27
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("""
        CREATE OR REPLACE FUNCTION veix_writes_guard(unchanged boolean, funded boolean)
        RETURNS boolean LANGUAGE plpgsql AS $$
        BEGIN
            IF NOT unchanged THEN
                RAISE EXCEPTION USING ERRCODE = 'VXS01', MESSAGE = 'veix: what this optimistic card '
                    'authorization read has changed (or its webhook-id was answered): nothing written, '
                    'decided again under the card lock';
            END IF;
            IF NOT funded THEN
                RAISE EXCEPTION USING ERRCODE = 'VXD01', MESSAGE = 'veix: a debit of this card '
                    'authorization would overdraw its account: nothing written, decided again';
            END IF;
            RETURN true;
        END
        $$""")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP FUNCTION IF EXISTS veix_writes_guard(boolean, boolean)")
