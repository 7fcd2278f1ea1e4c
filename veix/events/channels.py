"""The live-events contract shared by the outbox dispatcher and GraphQL subscriptions.

Every committed outbox row is published once or more (at-least-once) as an
:class:`EventMessage` in JSON to ``business_channel(business_id)``
(``veix.business.<uuid>``), or to :data:`PLATFORM_CHANNEL` when the event
belongs to no business. ``seq`` is the outbox's global, increasing cursor:
within one business it only grows, and a subscriber de-duplicates by it
(and by the stable ``id``). Clients see it only as an opaque cursor
(:func:`cursor_of`) and pass it back as ``after``; :func:`replay` reads what
they missed from the outbox.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from veix.domain.errors import InvalidInput
from veix.persistence.tables import DISPATCHED_SEQ, outbox

CHANNEL_PREFIX = "veix.business."
PLATFORM_CHANNEL = "veix.platform"
DEFAULT_RETENTION = timedelta(days=7)
_CURSOR_PREFIX = "evt:"


def business_channel(business_id: uuid.UUID) -> str:
    return f"{CHANNEL_PREFIX}{business_id}"


def channel_of(business_id: uuid.UUID | None) -> str:
    """The channel an event of ``business_id`` (None: platform-wide) is published to."""
    return PLATFORM_CHANNEL if business_id is None else business_channel(business_id)


@dataclass(frozen=True)
class EventMessage:
    seq: int
    id: uuid.UUID
    business_id: uuid.UUID
    type: str
    payload: dict[str, Any]
    created_at: datetime
    # Scratch space of this very object, not part of the event: a subscriber process hands
    # the same object to all its local subscribers, which keep what they derive from it
    # (the row it names, the GraphQL root object) here to compute it once.
    memo: dict[Any, Any] = field(default_factory=dict, compare=False, hash=False, repr=False)

    @property
    def cursor(self) -> str:
        return cursor_of(self.seq)

    def to_json(self) -> str:
        return json.dumps(
            {
                "seq": self.seq,
                "id": str(self.id),
                "business_id": str(self.business_id) if self.business_id is not None else None,
                "type": self.type,
                "payload": self.payload,
                "created_at": self.created_at.astimezone(UTC).isoformat(),
            },
            separators=(",", ":"),
            default=str,
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> EventMessage:
        data = json.loads(text)
        business = data.get("business_id")
        return cls(
            seq=int(data["seq"]),
            id=uuid.UUID(data["id"]),
            # None only on the platform channel, never on a business channel.
            business_id=uuid.UUID(business) if business is not None else None,  # type: ignore[arg-type]
            type=str(data["type"]),
            payload=dict(data["payload"]),
            created_at=datetime.fromisoformat(data["created_at"]),
        )

    @classmethod
    def from_row(cls, row: Any) -> EventMessage:
        return cls(seq=int(row.seq), id=row.id, business_id=row.business_id, type=row.event_type,
                   payload=dict(row.payload), created_at=row.created_at)


def cursor_of(seq: int) -> str:
    """The opaque cursor of an event: base64url of ``evt:<seq>``, unpadded."""
    return base64.urlsafe_b64encode(f"{_CURSOR_PREFIX}{seq}".encode()).decode().rstrip("=")


def seq_of_cursor(cursor: str) -> int:
    """The ``seq`` a cursor stands for; a malformed cursor is ``InvalidInput`` on ``after``."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        text = base64.urlsafe_b64decode(padded.encode("ascii")).decode("ascii")
        if not text.startswith(_CURSOR_PREFIX):
            raise ValueError(text)
        digits = text[len(_CURSOR_PREFIX):]
        if not digits.isdigit() or not digits.isascii():
            raise ValueError(text)
        return int(digits)
    except (ValueError, binascii.Error, UnicodeError):
        raise InvalidInput("after is not a valid event cursor", field=["after"]) from None


async def replay(
    engine: AsyncEngine,
    business_id: uuid.UUID,
    after_seq: int,
    *,
    limit: int = 1000,
    retention: timedelta = DEFAULT_RETENTION,
    now: datetime | None = None,
    dispatched_only: bool = True,
) -> list[EventMessage]:
    """Committed events of ``business_id`` with ``seq > after_seq``, in ``seq`` order, at most
    ``limit``, none older than ``retention``.

    By default only events the dispatcher has already published: the dispatcher publishes in
    ``seq`` order and only below a horizon every lower ``seq`` has committed or aborted under
    (see :mod:`veix.events.dispatcher`), so the dispatched events are a gap-free prefix. A
    subscriber therefore subscribes to the live channel first, then replays, then drops live
    messages whose ``seq`` it has already seen: nothing is missed at the seam (an event not
    dispatched yet will arrive live) and nothing is shown twice.
    """
    since = (now or datetime.now(UTC)) - retention
    conditions = [outbox.c.business_id == business_id, outbox.c.seq > after_seq,
                  outbox.c.created_at >= since]
    if dispatched_only and engine.dialect.name == "postgresql":
        # SQLite serialises writers, so committed seqs have no holes there: every committed
        # event is safe to replay, and one not yet published arrives live and is dropped as seen.
        conditions.append(outbox.c.seq <= DISPATCHED_SEQ)
    query = (
        select(outbox.c.seq, outbox.c.id, outbox.c.business_id, outbox.c.event_type,
               outbox.c.payload, outbox.c.created_at)
        .where(*conditions)
        .order_by(outbox.c.seq)
        .limit(limit)
    )
    async with engine.connect() as conn:
        if conn.dialect.name == "postgresql" and dispatched_only:
            # The seam: the dispatcher publishes a batch, then marks it. A subscriber that
            # joined the channel after the publish but read before the mark committed would
            # miss those events. The dispatcher holds its publishing lock from before the
            # publish until the mark has committed: taking it shared waits for an in-flight
            # batch; the query after it sees the marks.
            from veix.events.dispatcher import PUBLISHING_LOCK_KEY

            async with conn.begin():
                await conn.execute(text("SELECT pg_advisory_xact_lock_shared(:k)"), {"k": PUBLISHING_LOCK_KEY})
                rows = (await conn.execute(query)).all()
        else:
            rows = (await conn.execute(query)).all()
    return [EventMessage.from_row(row) for row in rows]
