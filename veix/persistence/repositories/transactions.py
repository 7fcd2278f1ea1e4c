"""Transactions and idempotency keys."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from veix.domain.transactions import Transaction
from veix.persistence import mappers as m
from veix.persistence.tables import idempotency_keys, transactions

# DESIGN.md section 4: keys are kept at least 24 h.
IDEMPOTENCY_RETENTION = timedelta(hours=48)


class SqlTransactionRepository:
    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    async def get(self, transaction_id: uuid.UUID) -> Transaction | None:
        stmt = select(transactions).where(transactions.c.id == transaction_id)
        row = (await self.conn.execute(stmt)).first()
        return m.transaction_from_row(row) if row else None

    async def add(self, transaction: Transaction) -> None:
        await self.conn.execute(transactions.insert().values(m.transaction_values(transaction)))


class SqlIdempotencyStore:
    """Claiming a key inserts its row inside the caller's transaction.

    On PostgreSQL a concurrent request with the same key blocks on the unique
    index until the first one commits or rolls back, then sees its row: two
    requests with one key can never both take effect. On SQLite write
    transactions are serialised, which gives the same guarantee.
    """

    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn
        self.insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert

    async def claim(
        self, scope: str, key: str, request_hash: str, now: datetime
    ) -> tuple[str, uuid.UUID | None] | None:
        result = await self.conn.execute(
            self.insert(idempotency_keys)
            .values(
                scope=scope, key=key, request_hash=request_hash, created_at=now,
                expires_at=now + IDEMPOTENCY_RETENTION,
            )
            .on_conflict_do_nothing(index_elements=["scope", "key"])
        )
        if result.rowcount == 1:
            return None
        row = (
            await self.conn.execute(
                select(idempotency_keys.c.request_hash, idempotency_keys.c.result_id).where(
                    idempotency_keys.c.scope == scope, idempotency_keys.c.key == key
                )
            )
        ).one()
        return row.request_hash, row.result_id

    async def complete(
        self, scope: str, key: str, result_type: str, result_id: uuid.UUID
    ) -> None:
        await self.conn.execute(
            update(idempotency_keys)
            .where(idempotency_keys.c.scope == scope, idempotency_keys.c.key == key)
            .values(result_type=result_type, result_id=result_id)
        )
