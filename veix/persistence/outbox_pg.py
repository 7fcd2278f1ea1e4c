"""The outbox dispatcher's statements on PostgreSQL (see :mod:`veix.events.dispatcher`).

They run on one plain asyncpg connection the dispatcher keeps for itself (not one
of the engine's pool: it holds the dispatch lock for as long as it leads), at most
four round trips per batch: the sequence's last value; one statement that reads the
snapshot, takes a transaction id when asked, works out the safe horizon, reads the
batch with each event's message already serialised and takes the publishing lock;
after publishing, one statement that marks the batch (moves the outbox cursor past
it) and queues its webhook deliveries; then the publishing lock's release.
"""

from __future__ import annotations

import functools
import json
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine

from veix.domain.webhooks import EndpointStatus
from veix.persistence.fast_pg import asyncpg_connect_args

# One batch: the snapshot's xmin; the id taken (when asked) and the horizon the batch
# stops at (both on every row: with no event, one row of NULLs carries them); then the
# events, in seq order, each with its message as the dispatcher publishes it
# (EventMessage.to_json's fields; created_at in UTC with microseconds) and whether its
# business has an enabled webhook endpoint. When there are events it also takes
# the publishing lock (session level, see PgOutbox.batch), released after the mark.
_BATCH = """
WITH s AS MATERIALIZED (
    SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint AS xmin,
           CASE WHEN $4::bigint IS NOT NULL THEN pg_current_xact_id()::text::bigint END AS taken),
h AS MATERIALIZED (
    SELECT s.xmin, s.taken, greatest(
        $1::bigint,
        (SELECT max(p.last) FROM unnest($2::bigint[], $3::bigint[]) AS p(bound, last) WHERE p.bound <= s.xmin),
        CASE WHEN s.taken <= s.xmin THEN $4::bigint END) AS horizon
    FROM s),
r AS (
    SELECT o.seq, o.id, o.business_id, o.event_type,
           json_build_object(
               'seq', o.seq, 'id', o.id, 'business_id', o.business_id, 'type', o.event_type,
               'payload', o.payload,
               'created_at', to_char(o.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"')
           )::text AS message,
           EXISTS (SELECT 1 FROM webhook_endpoints e
                   WHERE e.business_id = o.business_id AND e.status = $6) AS hooked
    FROM outbox o
    WHERE o.seq > coalesce((SELECT dispatched_seq FROM outbox_cursor), 0) AND o.seq <= (SELECT horizon FROM h)
    ORDER BY o.seq
    LIMIT $5)
SELECT h.xmin, h.taken, h.horizon,
       (SELECT pg_advisory_lock($7) FROM (SELECT FROM r LIMIT 1) AS any_event) AS publishing,
       r.*
FROM h LEFT JOIN r ON true ORDER BY r.seq
"""

# The batch's last seq: every row up to it is dispatched (the dispatched rows are a prefix).
_MARK = """
INSERT INTO outbox_cursor (id, dispatched_seq, updated_at) VALUES (1, $2, $1)
ON CONFLICT (id) DO UPDATE SET dispatched_seq = greatest(outbox_cursor.dispatched_seq, EXCLUDED.dispatched_seq),
                               updated_at = EXCLUDED.updated_at
"""

_DELIVERY_COLUMNS = ("id", "endpoint_id", "business_id", "event_id", "event_seq", "event_type", "payload",
                     "status", "attempts", "next_attempt_at", "created_at", "updated_at")
_MARK_AND_QUEUE = """
WITH m AS (INSERT INTO outbox_cursor (id, dispatched_seq, updated_at) VALUES (1, $2, $1)
           ON CONFLICT (id) DO UPDATE SET
               dispatched_seq = greatest(outbox_cursor.dispatched_seq, EXCLUDED.dispatched_seq),
               updated_at = EXCLUDED.updated_at)
INSERT INTO webhook_deliveries (id, endpoint_id, business_id, event_id, event_seq, event_type, payload,
                                status, attempts, next_attempt_at, created_at, updated_at)
SELECT * FROM unnest($3::uuid[], $4::uuid[], $5::uuid[], $6::uuid[], $7::bigint[], $8::text[], $9::jsonb[],
                     $10::text[], $11::integer[], $12::timestamptz[], $13::timestamptz[], $14::timestamptz[])
"""


@dataclass(frozen=True)
class OutboxEvent:
    """One row of a batch: the message as published, and what a fan-out needs (see ``payload``).
    The message is parsed once, and only for events a fan-out reads (plan_deliveries reads
    ``payload`` and ``created_at`` for every endpoint of the business)."""

    seq: int
    id: uuid.UUID
    business_id: uuid.UUID | None
    event_type: str
    message: str
    hooked: bool

    @functools.cached_property
    def _decoded(self) -> dict[str, Any]:
        return dict(json.loads(self.message))

    @property
    def payload(self) -> dict[str, Any]:
        return dict(self._decoded["payload"])

    @property
    def created_at(self) -> datetime:
        return datetime.fromisoformat(self._decoded["created_at"])


@dataclass(frozen=True, slots=True)
class OutboxBatch:
    xmin: int  # the oldest transaction id still running when the batch was read
    taken: int | None  # the id taken for a new sequence value, when asked
    horizon: int  # the batch stops at this seq
    events: list[OutboxEvent]


class PgOutbox:
    """The dispatcher's own connection and its statements.

    The publishing lock (``publishing_key``) covers a batch from before it is
    published until its mark has committed: a subscriber that joins a channel
    and then replays the dispatched events (veix.events.channels.replay) takes it
    shared, so it reads either before the batch is published (and receives it
    live) or after it is marked (and replays it), never in between."""

    def __init__(self, conn: Any, publishing_key: int) -> None:
        self.conn = conn
        self.publishing_key = publishing_key
        self._sequence: str | None = None

    @classmethod
    async def open(cls, engine: AsyncEngine, publishing_key: int) -> PgOutbox:
        return cls(await connect(engine), publishing_key)

    async def close(self) -> None:
        """Close the connection (and with it end the dispatch lock, if held)."""
        if not self.conn.is_closed():
            await self.conn.close(timeout=2)

    async def lead(self, key: int) -> bool:
        """Take the dispatch lock for this connection's lifetime, if free."""
        return bool(await self.conn.fetchval("SELECT pg_try_advisory_lock($1)", key))

    async def last_value(self) -> int:
        """The outbox sequence's last value handed out (0 before the first)."""
        if self._sequence is None:
            self._sequence = await self.conn.fetchval("SELECT pg_get_serial_sequence('outbox', 'seq')")
        value = await self.conn.fetchval("SELECT pg_sequence_last_value($1::regclass)", self._sequence)
        return 0 if value is None else int(value)

    async def batch(self, safe: int, pending: Iterable[tuple[int, int]], last: int | None,
                    limit: int) -> OutboxBatch:
        """Up to ``limit`` undispatched events at or below the safe horizon, in seq order.

        The horizon is the highest of ``safe`` and every ``(bound, last)`` pair (``pending``)
        whose bound is at or below this snapshot's xmin. With ``last`` (a sequence value read
        before this call) the statement also takes a transaction id, which bounds ``last``, and
        counts ``last`` in when no transaction older than that id runs. With events, the
        publishing lock is held when this returns: ``mark`` releases it (or closing)."""
        pairs = list(pending)
        rows = await self.conn.fetch(
            _BATCH, safe, [b for b, _ in pairs], [v for _, v in pairs], last, limit,
            EndpointStatus.ENABLED.value, self.publishing_key)
        head = rows[0]
        events = [OutboxEvent(r["seq"], r["id"], r["business_id"], r["event_type"], r["message"], r["hooked"])
                  for r in rows if r["seq"] is not None]
        return OutboxBatch(int(head["xmin"]), None if head["taken"] is None else int(head["taken"]),
                           int(head["horizon"]), events)

    async def endpoints(self, business_ids: Iterable[uuid.UUID]) -> list[Any]:
        """The enabled endpoints (``id, business_id, event_types``) of these businesses."""
        rows = await self.conn.fetch(
            "SELECT id, business_id, event_types::text AS event_types FROM webhook_endpoints "
            "WHERE business_id = ANY($1::uuid[]) AND status = $2",
            list(set(business_ids)), EndpointStatus.ENABLED.value)
        return [_Endpoint(r["id"], r["business_id"],
                          None if r["event_types"] is None else json.loads(r["event_types"])) for r in rows]

    async def mark(self, last: int, deliveries: Sequence[dict[str, Any]], now: datetime) -> None:
        """Mark the events dispatched, every one up to ``last`` (the batch's last seq: the cursor
        moves there), and queue their deliveries (one statement, so both or neither), then
        release the publishing lock ``batch`` took."""
        if not deliveries:
            await self.conn.execute(_MARK, now, last)
        else:
            columns = [[d[c] for d in deliveries] for c in _DELIVERY_COLUMNS]
            payload = _DELIVERY_COLUMNS.index("payload")
            columns[payload] = [json.dumps(p, separators=(",", ":")) for p in columns[payload]]
            await self.conn.execute(_MARK_AND_QUEUE, now, last, *columns)
        await self.conn.fetchval("SELECT pg_advisory_unlock($1)", self.publishing_key)


@dataclass(frozen=True, slots=True)
class _Endpoint:
    id: uuid.UUID
    business_id: uuid.UUID
    event_types: list[str] | None


async def connect(engine: AsyncEngine) -> Any:
    """A plain asyncpg connection to the engine's database (not one of its pool's)."""
    return await asyncpg.connect(**asyncpg_connect_args(engine.url), timeout=10)
