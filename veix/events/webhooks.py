"""Outbound webhook delivery: sends queued deliveries, signed, retried with backoff.

Fan-out. :class:`veix.events.dispatcher.OutboxDispatcher` calls
:func:`veix.persistence.webhooks.fan_out` in the very transaction that marks a batch of
outbox rows dispatched: one ``webhook_deliveries`` row per (event, enabled endpoint of the
business subscribed to the event's type). A re-published batch (crash before the mark) rolled
back its deliveries too, and ``unique (endpoint_id, event_id)`` backs it up: an event is queued
once per endpoint.

Delivery. :meth:`WebhookDeliverer.run_once` *claims* due deliveries (``pending`` or ``failed``
with ``next_attempt_at <= now``, of enabled endpoints) in a short transaction that moves their
``next_attempt_at`` a lease ahead (PostgreSQL: ``FOR UPDATE SKIP LOCKED``, so several workers
share the queue), commits, then POSTs them with no transaction open (an endpoint may take up
to the 10 s timeout), and records the outcomes in a second transaction. A worker that dies
mid-send leaves the lease to expire and another retries: at-least-once, and the receiver
de-duplicates by ``webhook-id``, which is the event id and is the same on every attempt.

Each request is signed the Standard Webhooks way (``webhook-id``, ``webhook-timestamp``,
``webhook-signature: v1,<HMAC>``) with the endpoint's secret. The body is
``{"id", "type", "timestamp", "business_id", "seq", "data"}``, identical on every attempt.
2xx is success; anything else (or a network error, a timeout) is a failed attempt, retried
per :class:`veix.domain.webhooks.RetryPolicy`; after 3 days the delivery is abandoned. An
endpoint whose ``disable_after`` consecutive deliveries were abandoned is disabled and a
``webhook_endpoint.disabled`` event is written to the outbox (so other endpoints and
subscribers hear of it). Per endpoint, one run sends in event order; retries can overtake, so
receivers order by ``seq`` if they care.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from veix.domain.ids import new_id
from veix.domain.webhooks import (
    DISABLE_AFTER,
    DISABLED_EVENT,
    DeliveryStatus,
    EndpointStatus,
    RetryPolicy,
    should_disable,
)
from veix.persistence.engine import WRITE
from veix.persistence.tables import outbox, webhook_deliveries, webhook_endpoints
from veix.persistence.webhooks import open_secret
from veix.security.signatures import signed_headers
from veix.security.vault import VaultError

log = logging.getLogger("veix.events.webhooks")

TIMEOUT = 10.0
LEASE = timedelta(seconds=60)
USER_AGENT = "veix-webhooks/1"
_DUE = (DeliveryStatus.PENDING.value, DeliveryStatus.FAILED.value)


@dataclass(frozen=True, slots=True)
class _Claimed:
    id: uuid.UUID
    endpoint_id: uuid.UUID
    business_id: uuid.UUID
    event_id: uuid.UUID
    event_seq: int | None
    event_type: str
    payload: dict[str, Any]
    attempts: int
    created_at: datetime
    url: str
    secret_encrypted: str


@dataclass(frozen=True, slots=True)
class _Outcome:
    delivery: _Claimed
    ok: bool
    status_code: int | None
    error: str | None


def body_of(d: _Claimed) -> bytes:
    data = d.payload.get("data", {})
    document = {
        "id": str(d.event_id),
        "type": d.event_type,
        "timestamp": d.payload.get("created_at"),
        "business_id": str(d.business_id),
        "seq": d.event_seq,
        "data": data,
    }
    return json.dumps(document, separators=(",", ":"), default=str).encode()


class WebhookDeliverer:
    def __init__(self, engine: AsyncEngine, vault: Any, *, http_client: httpx.AsyncClient | None = None,
                 batch: int = 100, interval: float = 1.0, policy: RetryPolicy | None = None,
                 disable_after: int = DISABLE_AFTER, rng: random.Random | None = None) -> None:
        self.engine = engine
        self.vault = vault
        self.http_client = http_client
        self.batch = batch
        self.interval = interval
        self.policy = policy or RetryPolicy()
        self.disable_after = disable_after
        self.rng = rng or random.Random()
        self._postgres = engine.dialect.name == "postgresql"

    # ------------------------------------------------------------ one pass
    async def run_once(self, now: datetime | None = None) -> int:
        """Send every delivery due at ``now`` (default: the current time); returns how many
        attempts were made."""
        moment = now or datetime.now(UTC)
        claimed = await self._claim(moment)
        if not claimed:
            return 0
        by_endpoint: dict[uuid.UUID, list[_Claimed]] = {}
        for d in claimed:
            by_endpoint.setdefault(d.endpoint_id, []).append(d)
        client = self.http_client
        own = client is None
        if client is None:
            client = httpx.AsyncClient(timeout=TIMEOUT, follow_redirects=False)
        try:
            groups = await asyncio.gather(*(self._send_all(client, items)
                                            for items in by_endpoint.values()))
        finally:
            if own:
                await client.aclose()
        outcomes = [o for group in groups for o in group]
        await self._record(outcomes, moment)
        return len(outcomes)

    async def _claim(self, now: datetime) -> list[_Claimed]:
        d, e = webhook_deliveries, webhook_endpoints
        query = (
            select(d.c.id, d.c.endpoint_id, d.c.business_id, d.c.event_id, d.c.event_seq,
                   d.c.event_type, d.c.payload, d.c.attempts, d.c.created_at,
                   e.c.url, e.c.secret_encrypted)
            .join(e, e.c.id == d.c.endpoint_id)
            .where(d.c.status.in_(_DUE), d.c.next_attempt_at <= now,
                   e.c.status == EndpointStatus.ENABLED.value)
            .order_by(d.c.next_attempt_at, d.c.event_seq, d.c.id)
            .limit(self.batch)
        )
        if self._postgres:
            query = query.with_for_update(of=d, skip_locked=True)
        else:
            async with self.engine.connect() as reader:  # SQLite: no write lock for nothing
                if (await reader.execute(query.with_only_columns(d.c.id))).first() is None:
                    return []
        async with self._write() as conn:
            rows = (await conn.execute(query)).all()
            if rows:
                await conn.execute(update(d).where(d.c.id.in_([r.id for r in rows]))
                                   .values(next_attempt_at=now + LEASE))
            await conn.commit()
        claimed = [_Claimed(id=r.id, endpoint_id=r.endpoint_id, business_id=r.business_id,
                            event_id=r.event_id, event_seq=r.event_seq, event_type=r.event_type,
                            payload=dict(r.payload), attempts=int(r.attempts),
                            created_at=r.created_at, url=r.url,
                            secret_encrypted=r.secret_encrypted) for r in rows]
        claimed.sort(key=lambda c: (c.event_seq or 0, c.created_at))
        return claimed

    async def _send_all(self, client: httpx.AsyncClient, items: Sequence[_Claimed]) -> list[_Outcome]:
        return [await self._send(client, d) for d in items]  # in event order per endpoint

    async def _send(self, client: httpx.AsyncClient, d: _Claimed) -> _Outcome:
        try:
            secret = open_secret(self.vault, d.endpoint_id, d.secret_encrypted)
        except (VaultError, RuntimeError, ValueError) as exc:  # a vault key gone: retried like any failure
            log.error("cannot open the secret of webhook endpoint %s: %s", d.endpoint_id, exc)
            return _Outcome(d, False, None, "secret unavailable")
        body = body_of(d)
        headers = {**signed_headers(secret, str(d.event_id), body),
                   "content-type": "application/json", "user-agent": USER_AGENT}
        try:
            response = await client.post(d.url, content=body, headers=headers, timeout=TIMEOUT)
        except httpx.TimeoutException:
            return _Outcome(d, False, None, "timeout")
        except httpx.HTTPError as exc:
            return _Outcome(d, False, None, f"{type(exc).__name__}: {exc}"[:500])
        if 200 <= response.status_code < 300:
            return _Outcome(d, True, response.status_code, None)
        return _Outcome(d, False, response.status_code, f"HTTP {response.status_code}")

    async def _record(self, outcomes: Sequence[_Outcome], now: datetime) -> None:
        d, e = webhook_deliveries, webhook_endpoints
        async with self._write() as conn:
            for o in outcomes:
                attempts = o.delivery.attempts + 1
                values: dict[str, Any] = {"attempts": attempts, "last_status_code": o.status_code,
                                          "last_error": o.error, "updated_at": now}
                if o.ok:
                    values.update(status=DeliveryStatus.SUCCEEDED.value, next_attempt_at=None)
                    await conn.execute(update(e).where(e.c.id == o.delivery.endpoint_id)
                                       .values(failure_count=0))
                else:
                    retry_at = self.policy.next_attempt(attempts, o.delivery.created_at, now, self.rng)
                    if retry_at is None:
                        values.update(status=DeliveryStatus.ABANDONED.value, next_attempt_at=None)
                        await self._count_abandoned(conn, o.delivery.endpoint_id, now)
                    else:
                        values.update(status=DeliveryStatus.FAILED.value, next_attempt_at=retry_at)
                await conn.execute(update(d).where(d.c.id == o.delivery.id).values(**values))
            await conn.commit()

    async def _count_abandoned(self, conn: AsyncConnection, endpoint_id: uuid.UUID,
                               now: datetime) -> None:
        e = webhook_endpoints
        await conn.execute(update(e).where(e.c.id == endpoint_id)
                           .values(failure_count=e.c.failure_count + 1))
        row = (await conn.execute(select(e.c.business_id, e.c.status, e.c.failure_count, e.c.url)
                                  .where(e.c.id == endpoint_id))).first()
        if row is None or row.status != EndpointStatus.ENABLED.value:
            return
        if not should_disable(int(row.failure_count), self.disable_after):
            return
        reason = f"{int(row.failure_count)} consecutive deliveries failed for 3 days"
        await conn.execute(update(e).where(e.c.id == endpoint_id).values(
            status=EndpointStatus.DISABLED.value, disabled_reason=reason, updated_at=now))
        await conn.execute(outbox.insert().values(
            id=new_id(), business_id=row.business_id, event_type=DISABLED_EVENT,
            payload={"endpoint_id": str(endpoint_id), "url": row.url, "reason": reason},
            created_at=now))
        log.warning("webhook endpoint %s disabled: %s", endpoint_id, reason)

    def _write(self) -> Any:
        return _WriteConn(self.engine)

    # ------------------------------------------------------------ loop
    async def run_forever(self, stop: asyncio.Event) -> None:
        """Poll until ``stop`` is set; a failing pass (database away) is logged and retried."""
        while not stop.is_set():
            try:
                count = await self.run_once()
            except (SQLAlchemyError, OSError):
                log.exception("webhook delivery failed; retrying in %gs", self.interval)
                count = 0
            if count >= self.batch:
                await asyncio.sleep(0)
                continue
            try:
                await asyncio.wait_for(stop.wait(), timeout=self.interval)
            except TimeoutError:
                pass


class _WriteConn:
    """A write connection with its transaction begun (BEGIN IMMEDIATE on SQLite)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.conn: AsyncConnection | None = None

    async def __aenter__(self) -> AsyncConnection:
        conn = await self.engine.connect()
        self.conn = await conn.execution_options(**WRITE)
        await self.conn.begin()
        return self.conn

    async def __aexit__(self, *exc: object) -> None:
        assert self.conn is not None
        try:
            if self.conn.in_transaction():
                await self.conn.rollback()
        finally:
            await self.conn.close()
