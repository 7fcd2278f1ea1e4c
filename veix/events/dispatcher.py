"""The outbox dispatcher: publishes committed outbox rows to broadcaster channels.

Delivery is **at-least-once**. A batch is selected, published, then marked
``dispatched_at`` and committed; a crash (or a failed publish, or a failed
commit) between publishing and marking leaves the rows unmarked, so the next
run publishes them again with the same ``id`` and ``seq``. Subscribers
de-duplicate by ``seq`` (and ``id``), which are stable.

Order. Rows are published in ``seq`` order, so per business in the order of
their commits. On SQLite writers are serial, so ``seq`` order is commit order.
On PostgreSQL ``seq`` comes from a sequence at INSERT, not at COMMIT: a
transaction holding seq 10 may commit after one holding seq 11. Publishing 11
as soon as it is visible would put 10 behind it. The dispatcher therefore only
publishes rows at or below a *safe horizon*: it reads the sequence's last value
``L`` and then a snapshot ``S``; every seq <= L was taken by a transaction whose
id is below ``xmax(S)`` (the outbox row is inserted after the transaction's
other writes, which assigned its id), so once ``pg_snapshot_xmin`` of a later
snapshot reaches ``xmax(S)`` all of them have committed or aborted and
everything <= L that will ever exist is visible. When no write transaction is
in flight the horizon is safe at once; otherwise it becomes safe on a later
poll, a few milliseconds on. A long-running write transaction elsewhere delays
publication (never loses or reorders it). Consequence used by
:func:`veix.events.channels.replay`: the dispatched rows are a gap-free prefix
of the outbox.

Several dispatchers (``veix serve`` replicas, ``veix worker`` processes) may run
against one PostgreSQL database: each batch is one transaction holding a
transaction-level advisory lock (so two batches are never published
interleaved, which would break per-business order) and selecting its rows
``FOR UPDATE SKIP LOCKED``; a dispatcher that does not get the lock returns at
once and tries again on its next poll, so the others take over when one dies.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from datetime import UTC, datetime
from typing import Any, Protocol

from sqlalchemy import select, text, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from veix.events.channels import EventMessage, channel_of
from veix.persistence.engine import WRITE
from veix.persistence.tables import outbox
from veix.persistence.webhooks import fan_out

log = logging.getLogger("veix.events.dispatcher")

# Serialises dispatch batches across processes on PostgreSQL.
DISPATCH_LOCK_KEY = 0x0B7B_0C5E


class Publisher(Protocol):
    async def publish(self, channel: str, message: Any) -> None: ...


class OutboxDispatcher:
    def __init__(self, engine: AsyncEngine, broadcast: Publisher, *, batch: int = 500,
                 interval: float = 0.05) -> None:
        if batch < 1:
            raise ValueError("batch must be at least 1")
        self.engine = engine
        self.broadcast = broadcast
        self.batch = batch
        self.interval = interval
        self._postgres = engine.dialect.name == "postgresql"
        self._sequence: str | None = None
        # PostgreSQL safe horizon: (xmax of a snapshot, sequence value read before it), oldest first.
        self._pending: deque[tuple[int, int]] = deque()
        self._safe_seq = 0

    async def run_once(self) -> int:
        """Publish one batch of undispatched rows in ``seq`` order and mark them; returns how many."""
        if not self._postgres and not await self._any_pending():
            return 0  # SQLite: do not take the write lock for nothing every poll
        conn = await self.engine.connect()
        try:
            conn = await conn.execution_options(**WRITE)
            async with conn.begin():
                if self._postgres:
                    return await self._run_postgres(conn)
                return await self._publish_and_mark(conn, None)
        finally:
            await conn.close()

    async def _any_pending(self) -> bool:
        async with self.engine.connect() as conn:
            found = (await conn.execute(
                select(outbox.c.seq).where(outbox.c.dispatched_at.is_(None)).limit(1))).first()
        return found is not None

    async def _run_postgres(self, conn: AsyncConnection) -> int:
        locked = (await conn.execute(text("SELECT pg_try_advisory_xact_lock(:k)"),
                                     {"k": DISPATCH_LOCK_KEY})).scalar_one()
        if not locked:
            return 0
        await self._advance_horizon(conn)
        return await self._publish_and_mark(conn, self._safe_seq)

    async def _advance_horizon(self, conn: AsyncConnection) -> None:
        if self._sequence is None:
            self._sequence = (await conn.execute(
                text("SELECT pg_get_serial_sequence('outbox', 'seq')"))).scalar_one()
        # The sequence first, the snapshot second (separate statements): every seq <= last
        # belongs to a transaction whose id is below the snapshot's xmax.
        value = (await conn.execute(text("SELECT pg_sequence_last_value(CAST(:s AS regclass))"),
                                    {"s": self._sequence})).scalar_one()
        last = 0 if value is None else int(value)  # NULL: no value handed out yet
        snap = (await conn.execute(text(
            "SELECT pg_snapshot_xmin(s)::text::bigint AS xmin, pg_snapshot_xmax(s)::text::bigint AS xmax "
            "FROM pg_current_snapshot() AS s"))).one()
        xmin, xmax = int(snap.xmin), int(snap.xmax)
        if not self._pending or self._pending[-1][1] < last:
            self._pending.append((xmax, last))
        while self._pending and self._pending[0][0] <= xmin:
            self._safe_seq = max(self._safe_seq, self._pending.popleft()[1])

    async def _publish_and_mark(self, conn: AsyncConnection, horizon: int | None) -> int:
        query = (
            select(outbox.c.seq, outbox.c.id, outbox.c.business_id, outbox.c.event_type,
                   outbox.c.payload, outbox.c.created_at)
            .where(outbox.c.dispatched_at.is_(None))
            .order_by(outbox.c.seq)
            .limit(self.batch)
        )
        if horizon is not None:
            query = query.where(outbox.c.seq <= horizon).with_for_update(skip_locked=True)
        rows = (await conn.execute(query)).all()
        if not rows:
            return 0
        for row in rows:
            message = EventMessage.from_row(row)
            await self.broadcast.publish(channel_of(row.business_id), message.to_json())
        now = datetime.now(UTC)
        # Outbound webhooks: queue the deliveries in the transaction that marks the rows, so an
        # event is fanned out exactly once however often it is published (veix.events.webhooks).
        await fan_out(conn, rows, now)
        await conn.execute(
            update(outbox).where(outbox.c.seq.in_([row.seq for row in rows]))
            .values(dispatched_at=now))
        return len(rows)

    async def run_forever(self, stop: asyncio.Event) -> None:
        """Poll until ``stop`` is set: at once again after a full batch, else after ``interval``.
        A failing run (database or broker away) is logged and retried after ``interval``."""
        while not stop.is_set():
            try:
                count = await self.run_once()
            except (SQLAlchemyError, OSError, ConnectionError):
                log.exception("outbox dispatch failed; retrying in %gs", self.interval)
                count = 0
            except Exception as exc:  # a broker client's own errors (e.g. redis.ConnectionError)
                if type(exc).__module__.split(".")[0] not in {"redis", "broadcaster"}:
                    raise
                log.exception("outbox publish failed; retrying in %gs", self.interval)
                count = 0
            if count >= self.batch:
                await asyncio.sleep(0)
                continue
            try:
                await asyncio.wait_for(stop.wait(), timeout=self.interval)
            except TimeoutError:
                pass
