"""The outbox dispatcher: publishes committed outbox rows to broadcaster channels.

Delivery is **at-least-once**. A batch is selected, published, then marked
dispatched and committed; a crash (or a failed publish, or a failed
commit) between publishing and marking leaves the rows unmarked, so the next
run publishes them again with the same ``id`` and ``seq``. Subscribers
de-duplicate by ``seq`` (and ``id``), which are stable. The mark is one
number, ``outbox_cursor.dispatched_seq``: the batch's last ``seq`` (the
dispatched rows are a prefix, below), so an outbox row is written once and
never updated (migration 0009).

Order. Rows are published in ``seq`` order, so per business in the order of
their commits. On SQLite writers are serial, so ``seq`` order is commit order.
On PostgreSQL ``seq`` comes from a sequence at INSERT, not at COMMIT: a
transaction holding seq 10 may commit after one holding seq 11. Publishing 11
as soon as it is visible would put 10 behind it. The dispatcher therefore only
publishes rows at or below a *safe horizon*: it reads the sequence's last value
``L``, then takes a transaction id ``D`` of its own; every seq <= L was taken by
a transaction that already had an id (the outbox row is inserted after the
transaction's other writes, which assigned it), and ids are handed out in
order, so every such id is below ``D``. Once ``pg_snapshot_xmin`` of a later
snapshot reaches ``D`` all of them have committed or aborted and everything
<= L that will ever exist is visible. (``pg_snapshot_xmax`` of a snapshot is
not such a bound: it is one past the latest *completed* id, so a transaction
still running with a higher id sits above it; the horizon once used it and
published past a running writer.) The horizon becomes safe on the next run,
a few milliseconds on, or later while a write transaction is in flight. A
long-running write transaction elsewhere delays publication (never loses or
reorders it). Consequence used by
:func:`veix.events.channels.replay`: the dispatched rows are a gap-free prefix
of the outbox.

Several dispatchers (``veix serve`` replicas and workers, ``veix worker`` processes)
may run against one PostgreSQL database: one leads. On PostgreSQL a dispatcher
works on a plain asyncpg connection of its own (not one of the engine's pool)
holding a session-level advisory lock, the dispatch lock, for as long as it
lives; a run of a dispatcher that does not get the lock returns at once and
stands by: it tries again ``FOLLOWER_INTERVAL`` later, not on every commit its
probe sees (which then reads that rarely too), so another takes over within that
long when the leader's connection ends (its process died, or a failed run closed
it) and costs next to nothing while it lives. Only the leader publishes, so
batches are never published interleaved (which would break per-business order).
A run is at most four statements (``veix.persistence.outbox_pg``): the sequence's
last value; one that reads the snapshot, takes the transaction id when the
sequence moved, advances the horizon, reads the batch with each event's message
already serialised by PostgreSQL and, when there is one, takes the publishing
lock; after publishing, one that marks the batch and queues its webhook
deliveries (so both or neither); then the publishing lock's release. (Replay
takes that lock shared: it reads before a batch is published or after it is
marked, see :func:`veix.events.channels.replay`.) A run outside ``run_forever`` (tests,
one-off runs) opens the connection and closes it again, lock included. On SQLite
a run is one write transaction that selects, publishes and marks.
Over Redis the events of a batch are published in one pipeline.

Wake-ups. Polling every ``interval`` alone puts 0 to ``interval`` (and, when the
horizon was not safe yet, up to twice that) between a COMMIT and its publication.
On PostgreSQL with asyncpg the dispatcher therefore also keeps a connection of its
own (not one of the engine's pool) that reads the outbox sequence's last value
every ``probe`` seconds (one statement, no transaction, no lock) and starts a run
as soon as it moved. A run starts no earlier than ``min_gap`` after the previous
one started, so a busy database is dispatched in batches, not once per commit. A
run whose horizon was not safe yet (a write transaction was in flight) is followed
by another one soon, after ``retry`` seconds doubling up to ``RETRY_MAX`` (or
``interval``). After a failed run only the ``interval`` counts. The probe is only
a hint: the ``interval`` poll stays, so a dead probe connection (re-opened after a
second) costs latency, never an event.

Why not LISTEN/NOTIFY: a NOTIFY takes a database-wide lock from its PRE-COMMIT to
the end of COMMIT (WAL flush included), so every writer that notifies commits one
at a time. Measured with ``veix bench authorize`` (2 workers, 32 connections), a
NOTIFY in each authorization cut throughput by about a third; the probe costs none
that we could measure.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from datetime import UTC, datetime
from typing import Any, Protocol

from sqlalchemy import insert, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from veix.events.channels import EventMessage, channel_of
from veix.persistence.engine import WRITE
from veix.persistence.outbox_pg import PgOutbox, connect
from veix.persistence.tables import DISPATCHED_SEQ, outbox, outbox_cursor
from veix.persistence.webhooks import fan_out, plan_deliveries

log = logging.getLogger("veix.events.dispatcher")

# PostgreSQL advisory locks: the leader's, held while a dispatcher lives; the
# publishing lock, held from before a batch is published until it is marked
# (replay takes it shared: veix.persistence.outbox_pg.PgOutbox).
DISPATCH_LOCK_KEY = 0x0B7B_0C5E
PUBLISHING_LOCK_KEY = 0x0B7B_0C5F
# The longest wait between two runs while the horizon is held back (below ``interval``).
RETRY_MAX = 0.05
# A dispatcher that found another one holding the dispatch lock tries again after this
# long, and its probe reads that rarely meanwhile: with several ``veix serve`` workers,
# one dispatches, the others only stand by (a new leader within this long of a failure).
FOLLOWER_INTERVAL = 0.25


class Publisher(Protocol):
    async def publish(self, channel: str, message: Any) -> None: ...


class OutboxDispatcher:
    def __init__(self, engine: AsyncEngine, broadcast: Publisher, *, batch: int = 500,
                 interval: float = 0.05, probing: bool = True, min_gap: float = 0.02,
                 retry: float = 0.002, probe: float = 0.005) -> None:
        """``probing``: run the probe (PostgreSQL with asyncpg only), see the module docstring."""
        if batch < 1:
            raise ValueError("batch must be at least 1")
        self.engine = engine
        self.broadcast = broadcast
        self.batch = batch
        self.interval = interval
        self.min_gap = min_gap
        self.retry = retry
        self.probe = probe
        self._postgres = engine.dialect.name == "postgresql"
        # The probe connection is a plain asyncpg one; other drivers only poll.
        self.probing = probing and self._postgres and engine.dialect.driver == "asyncpg"
        # PostgreSQL safe horizon: (an id of ours taken after reading the sequence, the value read), oldest first.
        self._pending: deque[tuple[int, int]] = deque()
        self._safe_seq = 0
        self._wake = asyncio.Event()
        self._db: PgOutbox | None = None  # PostgreSQL: the dispatcher's own connection
        self._serving = False  # run_forever keeps that connection (and the lock) between runs
        self._leading = False  # this connection holds the dispatch lock
        self._drained = False  # the last batch left nothing at or below the horizon
        self.probe_up = False  # the probe connection is up (tests, logs)
        self.following = False  # PostgreSQL: the last run found another dispatcher holding the lock

    @property
    def horizon_pending(self) -> bool:
        """The last run saw sequence values not yet safe to publish (PostgreSQL)."""
        return bool(self._pending)

    async def run_once(self) -> int:
        """Publish one batch of undispatched rows in ``seq`` order and mark them; returns how many."""
        if self._postgres:
            return await self._run_postgres()
        if not await self._any_pending():
            return 0  # SQLite: do not take the write lock for nothing every poll
        conn = await self.engine.connect()
        try:
            conn = await conn.execution_options(**WRITE)
            async with conn.begin():
                return await self._publish_and_mark(conn)
        finally:
            await conn.close()

    async def _any_pending(self) -> bool:
        async with self.engine.connect() as conn:
            found = (await conn.execute(
                select(outbox.c.seq).where(outbox.c.seq > DISPATCHED_SEQ).limit(1))).first()
        return found is not None

    async def _publish_and_mark(self, conn: AsyncConnection) -> int:
        """SQLite: one transaction (the database's one writer) selects, publishes, marks."""
        query = (
            select(outbox.c.seq, outbox.c.id, outbox.c.business_id, outbox.c.event_type,
                   outbox.c.payload, outbox.c.created_at)
            .where(outbox.c.seq > DISPATCHED_SEQ)
            .order_by(outbox.c.seq)
            .limit(self.batch)
        )
        rows = (await conn.execute(query)).all()
        if not rows:
            return 0
        await publish_all(self.broadcast, [(channel_of(row.business_id), EventMessage.from_row(row).to_json())
                                           for row in rows])
        await self._published()
        now = datetime.now(UTC)
        # Outbound webhooks: queue the deliveries in the transaction that marks the rows, so an
        # event is fanned out exactly once however often it is published (veix.events.webhooks).
        await fan_out(conn, rows, now)
        last = rows[-1].seq
        moved = await conn.execute(update(outbox_cursor).values(dispatched_seq=last, updated_at=now))
        if moved.rowcount == 0:  # (the migration writes the row; this is a database without it)
            await conn.execute(insert(outbox_cursor).values(id=1, dispatched_seq=last, updated_at=now))
        return len(rows)

    async def _published(self) -> None:
        """Between publishing a batch and marking it (a crash here: the batch goes again)."""

    async def _run_postgres(self) -> int:
        """PostgreSQL: on the dispatcher's own connection (see the module docstring), kept
        by ``run_forever``; a run outside it opens one and closes it again, lock included."""
        if self._db is None:
            self._db = await PgOutbox.open(self.engine, PUBLISHING_LOCK_KEY)
        try:
            return await self._run_batch(self._db)
        except BaseException:
            await self._close_db()  # a failed connection is not used again (the lock goes with it)
            raise
        finally:
            if not self._serving:
                await self._close_db()

    async def _close_db(self) -> None:
        db, self._db, self._leading = self._db, None, False
        if db is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(db.close())

    async def _run_batch(self, db: PgOutbox) -> int:
        if not self._leading:
            self._leading = await db.lead(DISPATCH_LOCK_KEY)
            self.following = not self._leading
            if not self._leading:
                return 0
        # The sequence first, then (next statement) an id of our own: every seq <= last
        # belongs to a transaction whose id is below ours (see the module docstring).
        last = await db.last_value()
        moved = last > self._safe_seq and (not self._pending or self._pending[-1][1] < last)
        if not moved and not self._pending and self._drained:
            return 0  # nothing new, nothing waiting, nothing left below the horizon
        self._drained = False
        batch = await db.batch(self._safe_seq, self._pending, last if moved else None, self.batch)
        if moved:
            assert batch.taken is not None
            self._pending.append((batch.taken, last))
        while self._pending and self._pending[0][0] <= batch.xmin:
            self._safe_seq = max(self._safe_seq, self._pending.popleft()[1])
        self._safe_seq = max(self._safe_seq, batch.horizon)
        events = batch.events
        if not events:
            self._drained = True
            return 0
        await publish_all(self.broadcast, [(channel_of(e.business_id), e.message) for e in events])
        await self._published()
        now = datetime.now(UTC)
        hooked = [e for e in events if e.hooked]
        # Outbound webhooks: queued by the statement that marks the rows, so an event is fanned
        # out exactly once however often it is published (veix.events.webhooks).
        deliveries = plan_deliveries(hooked, await db.endpoints(
            e.business_id for e in hooked if e.business_id is not None), now) \
            if hooked else []
        await db.mark(events[-1].seq, deliveries, now)
        self._drained = len(events) < self.batch
        return len(events)

    async def run_forever(self, stop: asyncio.Event) -> None:
        """Dispatch until ``stop`` is set: at once again after a full batch; when the probe saw
        a new outbox row (see the module docstring); soon again while the horizon is not safe; else
        every ``interval``. A failing run (database or broker away) is logged and retried
        after ``interval``."""
        listener = asyncio.create_task(self._run_probe(stop), name="veix-outbox-probe") if self.probing else None
        loop = asyncio.get_running_loop()
        retry = self.retry
        self._serving = True
        try:
            while not stop.is_set():
                self._wake.clear()  # what is committed from here on is seen by this run
                started = loop.time()
                failed = False
                try:
                    count = await self.run_once()
                except Exception as exc:  # database or broker away (their clients' own errors too)
                    if not isinstance(exc, SQLAlchemyError | OSError | ConnectionError) and \
                            type(exc).__module__.split(".")[0] not in {"asyncpg", "redis", "broadcaster"}:
                        raise
                    log.exception("outbox dispatch failed; retrying in %gs", self.interval)
                    count, failed = 0, True
                if count >= self.batch:
                    await asyncio.sleep(0)
                    continue
                if failed:
                    timeout = self.interval
                elif self.following:
                    # Another process dispatches: stand by, not woken by every commit.
                    await self._sleep(stop, FOLLOWER_INTERVAL, wake=False)
                    continue
                elif self._pending:
                    # Committed rows wait above the horizon for a write transaction in flight
                    # (which may move no sequence): look again soon, backing off while it stays open.
                    timeout, retry = min(retry, self.interval), min(retry * 2, self.interval, RETRY_MAX)
                else:
                    timeout, retry = self.interval, self.retry
                if not failed and self._wake.is_set():
                    timeout = 0.0  # a new row was seen during the run
                if await self._sleep(stop, timeout, wake=not failed):
                    # Woken by the probe: coalesce a burst of commits into one run.
                    gap = started + self.min_gap - loop.time()
                    if gap > 0:
                        await self._sleep(stop, gap, wake=False)
        finally:
            self._serving = False
            await self._close_db()
            if listener is not None:
                listener.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await listener

    async def _sleep(self, stop: asyncio.Event, seconds: float, *, wake: bool = True) -> bool:
        """Wait up to ``seconds`` for ``stop`` (or, with ``wake``, a wake-up); True when a
        wake-up ended the wait."""
        if seconds <= 0:
            await asyncio.sleep(0)
            return self._wake.is_set()
        waits = [asyncio.ensure_future(stop.wait())]
        if wake:
            waits.append(asyncio.ensure_future(self._wake.wait()))
        try:
            await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waits:
                waiter.cancel()
        return wake and self._wake.is_set() and not stop.is_set()

    async def _run_probe(self, stop: asyncio.Event) -> None:
        """Keep the probe connection open and probing; re-open it after ``interval`` (at least
        a second) when it fails or closes."""
        pause = max(self.interval, 1.0)
        while not stop.is_set():
            conn: Any = None
            try:
                conn = await connect(self.engine)
                closed = asyncio.get_running_loop().create_future()

                def on_close(_conn: Any, closed: asyncio.Future[None] = closed) -> None:
                    if not closed.done():
                        closed.set_result(None)

                conn.add_termination_listener(on_close)
                self.probe_up = True
                await self._probe(conn, closed)
                log.warning("outbox probe connection closed; reopening in %gs", pause)
            except asyncio.CancelledError:
                raise
            except Exception:  # database away: the interval poll goes on; try again later
                log.exception("outbox probe failed; reopening in %gs", pause)
            finally:
                self.probe_up = False
                if conn is not None and not conn.is_closed():
                    with contextlib.suppress(Exception):
                        await asyncio.shield(conn.close(timeout=2))
            await self._sleep(stop, pause, wake=False)

    async def _probe(self, conn: Any, closed: asyncio.Future[None]) -> None:
        """Until ``closed``: every ``probe`` seconds read the outbox sequence's last value (one
        cheap statement, no transaction, no lock) and wake the dispatcher when it moved (and
        once at the start: anything committed while nobody probed)."""
        sequence = await conn.fetchval("SELECT pg_get_serial_sequence('outbox', 'seq')")
        seen = None
        while not closed.done():
            value = await conn.fetchval("SELECT pg_sequence_last_value(CAST($1 AS regclass))", sequence)
            if value != seen:
                seen = value
                self._wake.set()
            await asyncio.wait([closed], timeout=FOLLOWER_INTERVAL if self.following else self.probe)


async def publish_all(broadcast: Publisher, messages: list[tuple[str, str]]) -> None:
    """Publish ``messages`` (channel, message) in order. Over broadcaster's
    Redis backend they go in one pipeline (one round trip instead of one per
    message: the dispatcher publishes every event of a batch at once)."""
    import redis.asyncio as aioredis

    conn = getattr(getattr(broadcast, "_backend", None), "_conn", None)  # broadcaster 0.3's RedisBackend
    if isinstance(conn, aioredis.Redis) and len(messages) > 1:
        pipe = conn.pipeline(transaction=False)
        for channel, message in messages:
            pipe.publish(channel, message)
        await pipe.execute()
        return
    for channel, message in messages:
        await broadcast.publish(channel, message)
