"""WebhookEndpoint and its delivery log."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import Enum

import strawberry
from strawberry.types import Info

from veix.persistence.webhooks import DeliveryRow, EndpointRow
from veix.resolvers import webhooks as rw
from veix.resolvers.context import Context
from veix.resolvers.pagination import Cursor
from veix.schema.types.common import Node, PageInfo, gid


@strawberry.enum(description="Whether an endpoint receives deliveries.")
class WebhookEndpointStatus(Enum):
    ENABLED = "enabled"
    DISABLED = "disabled"


@strawberry.enum(description="Where a delivery is: PENDING (not tried yet), FAILED (the last attempt "
                             "failed; retried at nextAttemptAt), SUCCEEDED, ABANDONED (failed for 3 days).")
class WebhookDeliveryStatus(Enum):
    PENDING = "pending"
    FAILED = "failed"
    SUCCEEDED = "succeeded"
    ABANDONED = "abandoned"


@strawberry.type(description="One event sent (or to be sent) to one endpoint, with its attempts.")
class WebhookDelivery(Node):
    id: strawberry.ID = strawberry.field(description="Global ID.")
    event_id: str = strawberry.field(
        description="The event's id; sent as the webhook-id header, the same on every attempt.")
    event_type: str = strawberry.field(description="The event type, e.g. card_transaction.created.")
    status: WebhookDeliveryStatus = strawberry.field(description="Delivery state.")
    attempts: int = strawberry.field(description="Attempts made so far.")
    last_status_code: int | None = strawberry.field(
        description="HTTP status of the last attempt; null if none or no response.")
    last_error: str | None = strawberry.field(description="Why the last attempt failed, if it did.")
    next_attempt_at: datetime | None = strawberry.field(
        description="When the next attempt is due (UTC); null once succeeded or abandoned.")
    created_at: datetime = strawberry.field(description="When the delivery was queued (UTC).")
    updated_at: datetime = strawberry.field(description="Last change (UTC).")

    @classmethod
    def of(cls, d: DeliveryRow) -> WebhookDelivery:
        return cls(id=gid("WebhookDelivery", d.id), event_id=str(d.event_id), event_type=d.event_type,
                   status=WebhookDeliveryStatus(d.status), attempts=d.attempts,
                   last_status_code=d.last_status_code, last_error=d.last_error,
                   next_attempt_at=d.next_attempt_at, created_at=d.created_at, updated_at=d.updated_at)


@strawberry.type(description="An edge of a webhook delivery connection.")
class WebhookDeliveryEdge:
    node: WebhookDelivery = strawberry.field(description="The delivery.")
    cursor: str = strawberry.field(description="Opaque cursor of this edge.")


@strawberry.type(description="A page of webhook deliveries, oldest first.")
class WebhookDeliveryConnection:
    edges: list[WebhookDeliveryEdge] = strawberry.field(description="The deliveries of this page.")
    page_info: PageInfo = strawberry.field(description="Pagination information.")
    total_count: int = strawberry.field(description="Number of deliveries of the endpoint.")


@strawberry.type(description="A URL of yours that receives a business's events as signed webhooks "
                             "(Standard Webhooks: webhook-id, webhook-timestamp, webhook-signature).")
class WebhookEndpoint(Node):
    id: strawberry.ID = strawberry.field(description="Global ID.")
    url: str = strawberry.field(description="Where events are POSTed.")
    description: str | None = strawberry.field(description="Your note about the endpoint.")
    event_types: list[str] | None = strawberry.field(
        description="Subscribed event types (e.g. card.*, transaction.created); null = every event.")
    status: WebhookEndpointStatus = strawberry.field(description="Whether it receives deliveries.")
    disabled_reason: str | None = strawberry.field(description="Why it was disabled, if it is.")
    created_at: datetime = strawberry.field(description="Creation time (UTC).")
    updated_at: datetime = strawberry.field(description="Last change (UTC).")
    row: strawberry.Private[EndpointRow]

    @classmethod
    def of(cls, e: EndpointRow) -> WebhookEndpoint:
        return cls(id=gid("WebhookEndpoint", e.id), url=e.url, description=e.description,
                   event_types=e.event_types, status=WebhookEndpointStatus(e.status),
                   disabled_reason=e.disabled_reason, created_at=e.created_at,
                   updated_at=e.updated_at, row=e)

    @strawberry.field(description="Whether it receives deliveries (status ENABLED).")
    def enabled(self) -> bool:
        return self.status == WebhookEndpointStatus.ENABLED

    @strawberry.field(description="The delivery log, oldest first: each event, its status and attempts.")
    async def deliveries(self, info: Info[Context, None], first: int | None = None,
                         after: str | None = None) -> WebhookDeliveryConnection:
        items, has_next, total = await rw.deliveries(info.context, self.row, first, after)
        edges = [WebhookDeliveryEdge(node=WebhookDelivery.of(d), cursor=Cursor(d.created_at, d.id).encode())
                 for d in items]
        return WebhookDeliveryConnection(
            edges=edges,
            page_info=PageInfo(has_next_page=has_next, has_previous_page=after is not None,
                               start_cursor=edges[0].cursor if edges else None,
                               end_cursor=edges[-1].cursor if edges else None),
            total_count=total,
        )


async def business_webhook_endpoints(info: Info[Context, None], business_id: uuid.UUID,
                                     ) -> list[WebhookEndpoint]:
    return [WebhookEndpoint.of(e) for e in await rw.list_endpoints(info.context, business_id)]
