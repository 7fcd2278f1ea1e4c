"""The unit of work: one write transaction, its outbox events and audit records.

Events raised by aggregates the repositories touched, and events emitted
explicitly, are inserted into ``outbox`` just before COMMIT; audit records are
appended to the hash chain in the same transaction. Nothing is published that
did not commit, and nothing committed is lost.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from veix.domain.audit import GENESIS, record_hash
from veix.domain.business import Business
from veix.domain.events import DomainEvent, utcnow
from veix.domain.ids import new_id
from veix.persistence.engine import WRITE
from veix.persistence.repositories.access import (
    SqlApiKeyRepository,
    SqlMembershipRepository,
    SqlRefreshTokenRepository,
    SqlUserRepository,
)
from veix.persistence.repositories.authorizations import SqlAuthorizationStore
from veix.persistence.repositories.business import SqlBusinessRepository
from veix.persistence.repositories.cards import SqlCardRepository
from veix.persistence.repositories.ledger import SqlLedgerRepository
from veix.persistence.repositories.payments import SqlPaymentRepository
from veix.persistence.repositories.transactions import (
    SqlIdempotencyStore,
    SqlTransactionRepository,
)
from veix.persistence.tables import audit_log, outbox

# Serialises appends to the audit chain on PostgreSQL (SQLite writers are already serial).
AUDIT_LOCK_KEY = 0x5E1A_0D17


@dataclass(frozen=True, slots=True)
class Actor:
    type: str  # "user" | "api_key" | "system" | "anonymous"
    id: str | None


SYSTEM = Actor("system", None)


class SqlUnitOfWork:
    def __init__(self, engine: AsyncEngine, *, actor: Actor = SYSTEM, request_id: str | None = None):
        self.engine = engine
        self.actor = actor
        self.request_id = request_id
        self._events: list[DomainEvent] = []
        self._audits: list[dict[str, Any]] = []
        self._seen: list[Business] = []
        self._conn: AsyncConnection | None = None
        self._committed = False

    @property
    def conn(self) -> AsyncConnection:
        assert self._conn is not None, "unit of work used outside 'async with'"
        return self._conn

    async def __aenter__(self) -> SqlUnitOfWork:
        conn = await self.engine.connect()
        conn = await conn.execution_options(**WRITE)
        await conn.begin()
        self._conn = conn
        fu = conn.dialect.name == "postgresql"
        self.users = SqlUserRepository(conn, fu)
        self.businesses = SqlBusinessRepository(conn, fu, self._seen)
        self.memberships = SqlMembershipRepository(conn, fu)
        self.api_keys = SqlApiKeyRepository(conn, fu)
        self.refresh_tokens = SqlRefreshTokenRepository(conn, fu)
        self.ledger = SqlLedgerRepository(conn, fu)
        self.transactions = SqlTransactionRepository(conn)
        self.idempotency = SqlIdempotencyStore(conn)
        self.cards = SqlCardRepository(conn, fu)
        self.authorizations = SqlAuthorizationStore(conn)
        self.payments = SqlPaymentRepository(conn, fu)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        conn = self._conn
        if conn is None:
            return
        try:
            if not self._committed and conn.in_transaction():
                await conn.rollback()
        finally:
            await conn.close()
            self._conn = None

    def emit(self, event: DomainEvent) -> None:
        self._events.append(event)

    def audit(
        self,
        action: str,
        object_type: str,
        object_id: uuid.UUID | str | None,
        *,
        business_id: uuid.UUID | None,
        before: dict[str, Any] | None = None,
        after: dict[str, Any] | None = None,
    ) -> None:
        self._audits.append(
            {
                "id": str(new_id()),
                "actor_type": self.actor.type,
                "actor_id": self.actor.id,
                "business_id": str(business_id) if business_id else None,
                "action": action,
                "object_type": object_type,
                "object_id": str(object_id) if object_id is not None else None,
                "before": before,
                "after": after,
                "request_id": self.request_id,
            }
        )

    async def rollback(self) -> None:
        if self._conn is not None and self._conn.in_transaction():
            await self._conn.rollback()

    async def commit(self) -> None:
        for business in self._seen:
            self._events.extend(business.events)
            business.events.clear()
        self._seen.clear()
        now = utcnow()
        if self._events:
            await self.conn.execute(
                outbox.insert(),
                [
                    {
                        "id": e.id, "business_id": e.business_id, "event_type": e.type,
                        "payload": e.payload, "created_at": e.occurred_at,
                    }
                    for e in self._events
                ],
            )
            self._events.clear()
        if self._audits:
            await self._append_audit(now)
        await self.conn.commit()
        self._committed = True

    async def _append_audit(self, now: Any) -> None:
        if self.conn.dialect.name == "postgresql":
            await self.conn.execute(
                text("SELECT pg_advisory_xact_lock(:k)"), {"k": AUDIT_LOCK_KEY}
            )
        last = (
            await self.conn.execute(
                select(audit_log.c.hash).order_by(audit_log.c.seq.desc()).limit(1)
            )
        ).scalar()
        prev = last or GENESIS
        rows = []
        for record in self._audits:
            record["created_at"] = now.isoformat()
            digest = record_hash(prev, record)
            rows.append(
                {
                    **record,
                    "id": uuid.UUID(record["id"]),
                    "business_id": uuid.UUID(record["business_id"])
                    if record["business_id"] else None,
                    "created_at": now,
                    "prev_hash": prev,
                    "hash": digest,
                }
            )
            prev = digest
        await self.conn.execute(audit_log.insert(), rows)
        self._audits.clear()
