"""Webhook endpoints and their delivery log: the SQL the resolvers and the deliverer share."""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from veix.domain.ids import new_id
from veix.domain.webhooks import DeliveryStatus, EndpointStatus, subscribes
from veix.persistence.tables import webhook_deliveries, webhook_endpoints


@dataclass(frozen=True, slots=True)
class EndpointRow:
    id: uuid.UUID
    business_id: uuid.UUID
    url: str
    description: str | None
    event_types: list[str] | None
    secret_encrypted: str
    status: str
    disabled_reason: str | None
    failure_count: int
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, row: Any) -> EndpointRow:
        return cls(id=row.id, business_id=row.business_id, url=row.url, description=row.description,
                   event_types=list(row.event_types) if row.event_types is not None else None,
                   secret_encrypted=row.secret_encrypted, status=row.status,
                   disabled_reason=row.disabled_reason, failure_count=int(row.failure_count),
                   created_at=row.created_at, updated_at=row.updated_at)


@dataclass(frozen=True, slots=True)
class DeliveryRow:
    id: uuid.UUID
    endpoint_id: uuid.UUID
    event_id: uuid.UUID
    event_seq: int | None
    event_type: str
    status: str
    attempts: int
    next_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, row: Any) -> DeliveryRow:
        return cls(id=row.id, endpoint_id=row.endpoint_id, event_id=row.event_id,
                   event_seq=row.event_seq, event_type=row.event_type, status=row.status,
                   attempts=int(row.attempts), next_attempt_at=row.next_attempt_at,
                   last_status_code=row.last_status_code, last_error=row.last_error,
                   created_at=row.created_at, updated_at=row.updated_at)


# ------------------------------------------------------------------ secrets

def _aad(endpoint_id: uuid.UUID) -> bytes:
    return b"webhook:" + endpoint_id.bytes


def seal_secret(vault: Any, endpoint_id: uuid.UUID, secret: str) -> str:
    """``"keyid:base64(nonce || ciphertext || tag)"``, bound to the endpoint by the AAD."""
    key_id, blob = vault.encrypt(secret, aad=_aad(endpoint_id))
    return f"{key_id}:{base64.b64encode(blob).decode()}"


def open_secret(vault: Any, endpoint_id: uuid.UUID, stored: str) -> str:
    key_id, _, encoded = stored.partition(":")
    try:
        blob = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise RuntimeError("stored webhook secret is not keyid:base64") from None
    secret: str = vault.decrypt(key_id, blob, aad=_aad(endpoint_id))
    return secret


# ------------------------------------------------------------------ endpoints

async def insert_endpoint(conn: AsyncConnection, row: dict[str, Any]) -> None:
    await conn.execute(insert(webhook_endpoints).values(**row))


async def get_endpoint(conn: AsyncConnection, endpoint_id: uuid.UUID, *,
                       for_update: bool = False) -> EndpointRow | None:
    query = select(webhook_endpoints).where(webhook_endpoints.c.id == endpoint_id)
    if for_update and conn.dialect.name == "postgresql":
        query = query.with_for_update()
    row = (await conn.execute(query)).first()
    return EndpointRow.of(row) if row is not None else None


async def update_endpoint(conn: AsyncConnection, endpoint_id: uuid.UUID, **values: Any) -> None:
    await conn.execute(update(webhook_endpoints).where(webhook_endpoints.c.id == endpoint_id)
                       .values(**values))


async def delete_endpoint(conn: AsyncConnection, endpoint_id: uuid.UUID) -> None:
    await conn.execute(delete(webhook_deliveries).where(webhook_deliveries.c.endpoint_id == endpoint_id))
    await conn.execute(delete(webhook_endpoints).where(webhook_endpoints.c.id == endpoint_id))


async def endpoints_of_businesses(conn: AsyncConnection, business_ids: Sequence[uuid.UUID],
                                  ) -> dict[uuid.UUID, list[EndpointRow]]:
    """Every endpoint of the businesses, oldest first (one statement)."""
    found: dict[uuid.UUID, list[EndpointRow]] = {b: [] for b in business_ids}
    if not business_ids:
        return found
    rows = (await conn.execute(
        select(webhook_endpoints).where(webhook_endpoints.c.business_id.in_(list(set(business_ids))))
        .order_by(webhook_endpoints.c.created_at, webhook_endpoints.c.id))).all()
    for row in rows:
        found.setdefault(row.business_id, []).append(EndpointRow.of(row))
    return found


async def delivery_pages(conn: AsyncConnection, endpoint_id: uuid.UUID, first: int,
                         after: tuple[datetime, uuid.UUID] | None) -> tuple[list[DeliveryRow], bool, int]:
    """Deliveries of an endpoint, oldest first (keyset on created_at, id), and the total."""
    d = webhook_deliveries
    query = select(d).where(d.c.endpoint_id == endpoint_id)
    if after is not None:
        at, ident = after
        query = query.where(or_(d.c.created_at > at, and_(d.c.created_at == at, d.c.id > ident)))
    rows = (await conn.execute(query.order_by(d.c.created_at, d.c.id).limit(first + 1))).all()
    total = (await conn.execute(select(func.count()).select_from(d)
                                .where(d.c.endpoint_id == endpoint_id))).scalar_one()
    items = [DeliveryRow.of(r) for r in rows[:first]]
    return items, len(rows) > first, int(total)


# ------------------------------------------------------------------ fan-out

async def fan_out(conn: AsyncConnection, events: Sequence[Any], now: datetime) -> int:
    """Queue one delivery per (event, enabled endpoint of its business subscribed to its type).

    ``events`` are outbox rows (``seq, id, business_id, event_type, payload, created_at``).
    Runs in the dispatcher's transaction, so an event is fanned out exactly when it is marked
    dispatched. ``webhook.test`` events go only to the endpoint their payload names.
    """
    businesses = {e.business_id for e in events if e.business_id is not None}
    if not businesses:
        return 0
    e = webhook_endpoints
    endpoints = (await conn.execute(
        select(e.c.id, e.c.business_id, e.c.event_types)
        .where(e.c.business_id.in_(businesses), e.c.status == EndpointStatus.ENABLED.value))).all()
    values = plan_deliveries(events, endpoints, now)
    if values:
        await conn.execute(insert(webhook_deliveries), values)
    return len(values)


def plan_deliveries(events: Sequence[Any], endpoints: Sequence[Any], now: datetime) -> list[dict[str, Any]]:
    """The deliveries to queue for ``events`` (as in :func:`fan_out`) given the enabled
    ``endpoints`` (``id, business_id, event_types``) of their businesses: webhook_deliveries rows."""
    by_business: dict[uuid.UUID, list[Any]] = {}
    for endpoint in endpoints:
        by_business.setdefault(endpoint.business_id, []).append(endpoint)
    values: list[dict[str, Any]] = []
    for event in events:
        for endpoint in by_business.get(event.business_id, []):
            targeted = (event.event_type == "webhook.test"
                        and str(event.payload.get("endpoint_id")) == str(endpoint.id))
            if not targeted and not subscribes(endpoint.event_types, event.event_type):
                continue
            # Queue times increase by a microsecond in event order, so the delivery log (ordered
            # by created_at, id) lists one batch in event order.
            queued = now + timedelta(microseconds=len(values))
            values.append({
                "id": new_id(), "endpoint_id": endpoint.id, "business_id": event.business_id,
                "event_id": event.id, "event_seq": event.seq, "event_type": event.event_type,
                "payload": {"created_at": event.created_at.isoformat(), "data": dict(event.payload)},
                "status": DeliveryStatus.PENDING.value, "attempts": 0, "next_attempt_at": queued,
                "created_at": queued, "updated_at": queued,
            })
    return values
