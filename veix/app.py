"""Composition root: builds the engine, broadcaster, security services, schema
and the Starlette app. Nothing else wires layers together."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hashlib
import hmac
import logging
from collections.abc import AsyncIterator
from datetime import timedelta
from decimal import Decimal
from typing import Any

from broadcaster import Broadcast
from starlette.applications import Starlette
from starlette.routing import Route, WebSocketRoute

from veix.config import Settings, load_settings
from veix.domain.cards import CardNetwork, validate_bin
from veix.domain.fx import DEFAULT_RATES, TableRates
from veix.domain.risk import RiskPolicy, RulesScorer
from veix.domain.services.authorize import AuthorizationConfig
from veix.domain.services.cards import IssuingConfig
from veix.events.dispatcher import OutboxDispatcher
from veix.events.webhooks import WebhookDeliverer
from veix.http.graphql import GraphQLEndpoint
from veix.http.health import healthz, readyz_endpoint
from veix.http.metrics import metrics_endpoint
from veix.http.network import network_routes
from veix.persistence.engine import make_engine
from veix.persistence.migrate import migrate
from veix.resolvers.services import Services
from veix.resolvers.subscriptions import SubscriptionView
from veix.schema import build_schema
from veix.security import passwords
from veix.security.authz import Authorizer
from veix.security.card_vault import VaultCardStore
from veix.security.tokens import TokenService
from veix.security.vault import Vault

log = logging.getLogger("veix")


class Argon2Hasher:
    """The domain's PasswordHasher port over security.passwords."""

    def hash(self, plain: str) -> str:
        return passwords.hash_password(plain)

    def verify(self, stored_hash: str, plain: str) -> bool:
        return passwords.verify_password(stored_hash, plain)

    def dummy_verify(self, plain: str) -> None:
        passwords.dummy_verify(plain)


def build_card_parts(settings: Settings) -> dict[str, Any]:
    """Vault, issuing and authorization configuration from the settings."""
    assert settings.vault_key is not None and settings.secret_key is not None
    bins = {CardNetwork.VISA: validate_bin(CardNetwork.VISA, settings.visa_bin),
            CardNetwork.MASTERCARD: validate_bin(CardNetwork.MASTERCARD, settings.mastercard_bin)}
    dcvv_secret = hmac.new(settings.secret_key.encode(), b"veix-dynamic-cvv", hashlib.sha256).digest()
    return {
        "vault": VaultCardStore(Vault.from_setting(settings.vault_key)),
        "issuing": IssuingConfig(bins=bins, expiry_years=settings.card_expiry_years),
        "auth_config": AuthorizationConfig(
            hold_days=settings.hold_days, approval_window=timedelta(hours=settings.approval_window_hours),
            max_authorizations_per_hour=settings.max_authorizations_per_hour, dcvv_secret=dcvv_secret,
            dcvv_window_seconds=settings.dcvv_window_seconds,
            overclear_tolerance=Decimal(settings.overclear_tolerance),
            policy=RiskPolicy(settings.risk_review_threshold, settings.risk_decline_threshold)),
        "scorer": RulesScorer(),
        "rates": TableRates.from_setting(settings.fx_rates) if settings.fx_rates else DEFAULT_RATES,
        "network_secret": settings.network_secret or "",
    }


def build_services(settings: Settings, broadcast: Any = None) -> Services:
    assert settings.secret_key is not None
    return Services(
        engine=make_engine(settings.database_url, pool_size=settings.db_pool_size),
        authorizer=Authorizer.load(),
        tokens=TokenService(settings.secret_key,
                            access_ttl=timedelta(minutes=settings.access_token_minutes)),
        hasher=Argon2Hasher(),
        refresh_ttl_days=settings.refresh_token_days,
        live_keys=settings.env == "production",
        webhook_strict_urls=settings.env == "production",
        broadcast=broadcast,
        **build_card_parts(settings),
    )


def create_app(settings: Settings | None = None, *, migrate_on_start: bool | None = None) -> Starlette:
    settings = settings or load_settings()
    broadcast = Broadcast(settings.broadcast_url)
    services = build_services(settings, broadcast)
    schema = build_schema(max_depth=settings.max_query_depth, max_tokens=settings.max_query_tokens)
    should_migrate = settings.is_sqlite if migrate_on_start is None else migrate_on_start

    async def broadcast_ping() -> None:
        if settings.broadcast_url.startswith(("redis://", "rediss://")):
            import redis.asyncio as aioredis

            client = aioredis.from_url(settings.broadcast_url)
            try:
                await client.ping()
            finally:
                await client.aclose()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if should_migrate:
            await migrate(services.engine)
        await broadcast.connect()
        if not settings.is_sqlite:
            from veix.persistence.fast_pg import create_pool

            services.fast_pool = await create_pool(settings.database_url, size=settings.db_pool_size)
        # Everything built so far lives as long as the process: move it out of
        # the collector's generations so request garbage does not trigger full
        # scans of it (measured: a third of a nested query's time went to GC).
        gc.collect()
        gc.freeze()
        stop_dispatch = asyncio.Event()
        dispatching: asyncio.Task[None] | None = None
        delivering: asyncio.Task[None] | None = None
        if settings.run_dispatcher:
            dispatcher = OutboxDispatcher(services.engine, broadcast)
            dispatching = asyncio.create_task(dispatcher.run_forever(stop_dispatch),
                                              name="veix-outbox-dispatcher")
            delivering = asyncio.create_task(
                WebhookDeliverer(services.engine, services.vault.vault).run_forever(stop_dispatch),
                name="veix-webhook-deliverer")
        try:
            yield
        finally:
            if dispatching is not None:
                stop_dispatch.set()
                try:
                    await asyncio.wait_for(dispatching, timeout=10)
                except TimeoutError:
                    log.warning("outbox dispatcher did not stop in 10s; cancelled")
                except Exception:
                    log.exception("outbox dispatcher failed")
            if delivering is not None:
                stop_dispatch.set()
                try:
                    await asyncio.wait_for(delivering, timeout=15)
                except TimeoutError:
                    log.warning("webhook deliverer did not stop in 15s; cancelled")
                except Exception:
                    log.exception("webhook deliverer failed")
            if services.fast_pool is not None:
                await services.fast_pool.close()
            await broadcast.disconnect()
            await services.engine.dispose()

    endpoint = GraphQLEndpoint(schema, services)
    app = Starlette(
        routes=[
            Route("/graphql", endpoint.handle, methods=["GET", "POST"]),
            WebSocketRoute("/graphql", SubscriptionView(schema, services)),
            Route("/healthz", healthz),
            Route("/readyz", readyz_endpoint(services.engine, broadcast_ping)),
            Route("/metrics", metrics_endpoint),
            *network_routes(services, fast=not settings.is_sqlite),
        ],
        lifespan=lifespan,
    )
    app.state.services = services
    app.state.broadcast = broadcast
    app.state.settings = settings
    app.state.schema = schema
    return app


def app_factory() -> Starlette:
    """Entry point for ``uvicorn --factory`` (``veix serve``): each worker process builds its app."""
    return create_app(load_settings())
