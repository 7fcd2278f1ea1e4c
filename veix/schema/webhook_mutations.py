"""Webhook endpoint mutations, merged into the Mutation root by ``build_schema``."""

from __future__ import annotations

import strawberry
from strawberry.types import Info

from veix.resolvers import webhooks as rw
from veix.resolvers.context import Context
from veix.resolvers.errors import attempt
from veix.schema.types.common import UserError
from veix.schema.types.webhooks import WebhookEndpoint

UNSET = strawberry.UNSET


@strawberry.input(description="A new webhook endpoint of a business.")
class CreateWebhookEndpointInput:
    business_id: strawberry.ID = strawberry.field(description="The business whose events are sent.")
    url: str = strawberry.field(
        description="Where to POST events: https, and not a private or loopback address (in production).")
    event_types: list[str] | None = strawberry.field(
        default=None, description="Event types to receive: a family (card.*, card_transaction.*, "
                                  "business.*, member.*, transaction.*, dispute.*) or a name "
                                  "(transaction.updated, fraud_alert.created, ...); omit or null for every "
                                  "event.")
    description: str | None = strawberry.field(default=None, description="Your note, at most 500 characters.")


@strawberry.type(description="A new endpoint and, once only, its signing secret.")
class CreateWebhookEndpointPayload:
    endpoint: WebhookEndpoint | None = strawberry.field(description="The endpoint.")
    secret: str | None = strawberry.field(
        description="The signing secret (whsec_...), shown only now: verify webhook-signature with it.")
    user_errors: list[UserError] = strawberry.field(description="Why it failed.")


@strawberry.input(description="Changes to a webhook endpoint; omitted fields stay.")
class UpdateWebhookEndpointInput:
    endpoint_id: strawberry.ID = strawberry.field(description="The endpoint.")
    url: str | None = strawberry.field(default=UNSET, description="New URL.")
    event_types: list[str] | None = strawberry.field(
        default=UNSET, description="New event types; null subscribes to every event.")
    description: str | None = strawberry.field(default=UNSET, description="New note; null removes it.")
    enabled: bool | None = strawberry.field(
        default=UNSET, description="false disables it; true re-enables it (and resets its failure count).")


@strawberry.type(description="A webhook endpoint, or why the change failed.")
class WebhookEndpointPayload:
    endpoint: WebhookEndpoint | None = strawberry.field(description="The endpoint.")
    user_errors: list[UserError] = strawberry.field(description="Why it failed.")


@strawberry.input(description="Names one webhook endpoint.")
class WebhookEndpointIdInput:
    endpoint_id: strawberry.ID = strawberry.field(description="The endpoint.")


@strawberry.type(description="The ID of a deleted endpoint, or why it was not deleted.")
class DeleteWebhookEndpointPayload:
    deleted_endpoint_id: strawberry.ID | None = strawberry.field(
        description="The endpoint deleted, with its delivery log.")
    user_errors: list[UserError] = strawberry.field(description="Why it failed.")


@strawberry.type(description="A queued test event, or why none was sent.")
class SendTestWebhookPayload:
    endpoint: WebhookEndpoint | None = strawberry.field(description="The endpoint.")
    event_id: str | None = strawberry.field(
        description="The webhook.test event's id (its webhook-id); see the endpoint's deliveries.")
    user_errors: list[UserError] = strawberry.field(description="Why it failed.")


def _errors(errors: list[object]) -> list[UserError]:
    return [UserError.of(e) for e in errors]  # type: ignore[arg-type]


@strawberry.type(description="Webhook endpoint mutations.")
class WebhookMutation:
    @strawberry.mutation(description="Create a webhook endpoint; the secret is shown once. "
                                     "Needs webhooks:manage.")
    async def create_webhook_endpoint(self, info: Info[Context, None], input: CreateWebhookEndpointInput,
                                      ) -> CreateWebhookEndpointPayload:
        result, errors = await attempt(lambda: rw.create_endpoint(
            info.context, str(input.business_id), input.url, input.event_types, input.description))
        if result is None:
            return CreateWebhookEndpointPayload(endpoint=None, secret=None, user_errors=_errors(errors))
        endpoint, secret = result
        return CreateWebhookEndpointPayload(endpoint=WebhookEndpoint.of(endpoint), secret=secret,
                                            user_errors=[])

    @strawberry.mutation(description="Change a webhook endpoint's URL, event types, note or state. "
                                     "Needs webhooks:manage.")
    async def update_webhook_endpoint(self, info: Info[Context, None], input: UpdateWebhookEndpointInput,
                                      ) -> WebhookEndpointPayload:
        endpoint, errors = await attempt(lambda: rw.update_endpoint(
            info.context, str(input.endpoint_id), url=input.url, event_types=input.event_types,
            description=input.description, enabled=input.enabled, unset=UNSET))
        return WebhookEndpointPayload(endpoint=WebhookEndpoint.of(endpoint) if endpoint else None,
                                      user_errors=_errors(errors))

    @strawberry.mutation(description="Delete a webhook endpoint and its delivery log. Needs webhooks:manage.")
    async def delete_webhook_endpoint(self, info: Info[Context, None], input: WebhookEndpointIdInput,
                                      ) -> DeleteWebhookEndpointPayload:
        deleted, errors = await attempt(lambda: rw.delete_endpoint(info.context, str(input.endpoint_id)))
        return DeleteWebhookEndpointPayload(
            deleted_endpoint_id=strawberry.ID(str(input.endpoint_id)) if deleted else None,
            user_errors=_errors(errors))

    @strawberry.mutation(description="Send a webhook.test event to one endpoint, delivered and retried "
                                     "like any other event. Needs webhooks:manage.")
    async def send_test_webhook(self, info: Info[Context, None], input: WebhookEndpointIdInput,
                                ) -> SendTestWebhookPayload:
        result, errors = await attempt(lambda: rw.send_test(info.context, str(input.endpoint_id)))
        if result is None:
            return SendTestWebhookPayload(endpoint=None, event_id=None, user_errors=_errors(errors))
        endpoint, event_id = result
        return SendTestWebhookPayload(endpoint=WebhookEndpoint.of(endpoint), event_id=str(event_id),
                                      user_errors=[])
