"""Webhook endpoints: create, update, delete, test, list, and the delivery log.

Every operation needs ``webhooks:manage`` in the endpoint's business. An endpoint of another
business (or an ID of another type) answers exactly like one that does not exist. The secret
(``whsec_<base64 of 32 random bytes>``) is returned by ``createWebhookEndpoint`` only; it is
stored sealed by the vault and never shown again. Each mutation is audited (never the secret).
"""

from __future__ import annotations

import base64
import secrets
import uuid
from collections.abc import Sequence
from typing import Any

from veix.domain.errors import InvalidStateTransition, NotFound
from veix.domain.events import DomainEvent, utcnow
from veix.domain.webhooks import (
    TEST_EVENT,
    EndpointStatus,
    parse_description,
    parse_endpoint_url,
    parse_event_types,
)
from veix.persistence import webhooks as store
from veix.persistence.webhooks import DeliveryRow, EndpointRow
from veix.resolvers.context import Context
from veix.resolvers.ids import from_global_id
from veix.resolvers.pagination import PageArgs

PERMISSION = "webhooks:manage"
ENDPOINT_TYPE = "WebhookEndpoint"
MAX_ENDPOINTS = 20


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def _snapshot(e: EndpointRow) -> dict[str, Any]:
    return {"url": e.url, "description": e.description, "event_types": e.event_types,
            "status": e.status}


def _production(ctx: Context) -> bool:
    return bool(getattr(ctx.services, "webhook_strict_urls", True))


async def create_endpoint(ctx: Context, business_gid: str, url: str, event_types: Sequence[str] | None,
                          description: str | None) -> tuple[EndpointRow, str]:
    business_id = from_global_id(business_gid, "Business", field=["input", "businessId"])
    await ctx.require(business_id, PERMISSION, field=["input", "businessId"])
    clean_url = parse_endpoint_url(url, field=["input", "url"], production=_production(ctx))
    types = parse_event_types(event_types, field=["input", "eventTypes"])
    text = parse_description(description, field=["input", "description"])
    existing = await ctx.read(lambda c: store.endpoints_of_businesses(c, [business_id]))
    if len(existing.get(business_id, [])) >= MAX_ENDPOINTS:
        raise InvalidStateTransition(f"A business has at most {MAX_ENDPOINTS} webhook endpoints",
                                     field=["input", "businessId"])
    endpoint_id = uuid.uuid4()
    secret = new_secret()
    now = utcnow()
    row = {"id": endpoint_id, "business_id": business_id, "url": clean_url, "description": text,
           "event_types": types, "secret_encrypted": store.seal_secret(ctx.services.vault.vault,
                                                                        endpoint_id, secret),
           "status": EndpointStatus.ENABLED.value, "disabled_reason": None, "failure_count": 0,
           "created_at": now, "updated_at": now}
    async with ctx.uow() as uow:
        await store.insert_endpoint(uow.conn, row)
        created = await store.get_endpoint(uow.conn, endpoint_id)
        assert created is not None
        uow.audit("webhook_endpoint.create", ENDPOINT_TYPE, endpoint_id, business_id=business_id,
                  after=_snapshot(created))
        await uow.commit()
    return created, secret


async def _endpoint_for(ctx: Context, conn: Any, endpoint_gid: str, field: list[str]) -> EndpointRow:
    endpoint_id = from_global_id(endpoint_gid, ENDPOINT_TYPE, field=field)
    endpoint = await store.get_endpoint(conn, endpoint_id, for_update=True)
    if endpoint is None or await ctx.role_in(endpoint.business_id) is None:
        raise NotFound("Webhook endpoint not found", field=field)
    await ctx.require(endpoint.business_id, PERMISSION, field=field)
    return endpoint


async def update_endpoint(ctx: Context, endpoint_gid: str, *, url: object, event_types: object,
                          description: object, enabled: object, unset: object) -> EndpointRow:
    """Fields equal to ``unset`` stay; ``eventTypes: null`` subscribes to every event."""
    field = ["input", "endpointId"]
    await ctx.roles()  # loaded before the write transaction opens
    values: dict[str, Any] = {}
    if url is not unset:
        values["url"] = parse_endpoint_url(url, field=["input", "url"], production=_production(ctx))
    if event_types is not unset:
        values["event_types"] = parse_event_types(event_types,  # type: ignore[arg-type]
                                                  field=["input", "eventTypes"])
    if description is not unset:
        values["description"] = parse_description(description, field=["input", "description"])
    async with ctx.uow() as uow:
        before = await _endpoint_for(ctx, uow.conn, endpoint_gid, field)
        if enabled is True and before.status != EndpointStatus.ENABLED.value:
            values.update(status=EndpointStatus.ENABLED.value, disabled_reason=None, failure_count=0)
        elif enabled is False and before.status != EndpointStatus.DISABLED.value:
            values.update(status=EndpointStatus.DISABLED.value, disabled_reason="disabled by a user")
        values["updated_at"] = utcnow()
        await store.update_endpoint(uow.conn, before.id, **values)
        after = await store.get_endpoint(uow.conn, before.id)
        assert after is not None
        uow.audit("webhook_endpoint.update", ENDPOINT_TYPE, before.id, business_id=before.business_id,
                  before=_snapshot(before), after=_snapshot(after))
        await uow.commit()
    return after


async def delete_endpoint(ctx: Context, endpoint_gid: str) -> uuid.UUID:
    await ctx.roles()
    async with ctx.uow() as uow:
        endpoint = await _endpoint_for(ctx, uow.conn, endpoint_gid, ["input", "endpointId"])
        await store.delete_endpoint(uow.conn, endpoint.id)
        uow.audit("webhook_endpoint.delete", ENDPOINT_TYPE, endpoint.id,
                  business_id=endpoint.business_id, before=_snapshot(endpoint))
        await uow.commit()
    return endpoint.id


async def send_test(ctx: Context, endpoint_gid: str) -> tuple[EndpointRow, uuid.UUID]:
    """A ``webhook.test`` event through the outbox, delivered (to this endpoint only) like any other."""
    await ctx.roles()
    async with ctx.uow() as uow:
        endpoint = await _endpoint_for(ctx, uow.conn, endpoint_gid, ["input", "endpointId"])
        if endpoint.status != EndpointStatus.ENABLED.value:
            raise InvalidStateTransition("The endpoint is disabled; enable it first",
                                         field=["input", "endpointId"])
        event = DomainEvent(TEST_EVENT, endpoint.business_id,
                            {"endpoint_id": str(endpoint.id), "message": "A test event from Veix."})
        uow.emit(event)
        uow.audit("webhook_endpoint.test", ENDPOINT_TYPE, endpoint.id,
                  business_id=endpoint.business_id, after={"event_id": str(event.id)})
        await uow.commit()
    return endpoint, event.id


async def list_endpoints(ctx: Context, business_id: uuid.UUID) -> list[EndpointRow]:
    await ctx.require(business_id, PERMISSION, field=["webhookEndpoints"])

    async def batch(keys: list[uuid.UUID]) -> list[list[EndpointRow]]:
        found = await ctx.read(lambda c: store.endpoints_of_businesses(c, keys))
        return [found.get(k, []) for k in keys]

    result: list[EndpointRow] = await ctx.loader("webhook_endpoints", batch).load(business_id)
    return result


async def deliveries(ctx: Context, endpoint: EndpointRow, first: int | None,
                     after: str | None) -> tuple[list[DeliveryRow], bool, int]:
    await ctx.require(endpoint.business_id, PERMISSION, field=["deliveries"])
    args = PageArgs.of(first, after)
    cursor = (args.after.at, args.after.id) if args.after is not None else None
    return await ctx.read(lambda c: store.delivery_pages(c, endpoint.id, args.first, cursor))
