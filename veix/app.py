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
from veix.domain.events import utcnow
from veix.domain.fx import DEFAULT_RATES, TableRates
from veix.domain.payments import parse_asset_specs, parse_fees
from veix.domain.risk import RiskPolicy, RulesScorer
from veix.domain.routing import parse_routes
from veix.domain.services.authorize import AuthorizationConfig
from veix.domain.services.cards import IssuingConfig
from veix.domain.services.payments import PaymentProcessor, PaymentsConfig
from veix.domain.transactions import Gateway
from veix.events.dispatcher import OutboxDispatcher
from veix.events.webhooks import WebhookDeliverer
from veix.http.graphql import GraphQLEndpoint
from veix.http.health import healthz, readyz_endpoint
from veix.http.metrics import metrics_endpoint
from veix.http.network import NetworkFrontDoor, fast_authorization_endpoint, network_routes
from veix.http.payments import payment_routes
from veix.persistence.engine import make_engine
from veix.persistence.migrate import migrate
from veix.persistence.uow import SqlUnitOfWork
from veix.resolvers.network import REDELIVERY_LOOKUP_BUDGET
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
        "network_deadline": settings.network_deadline_ms / 1000,
    }


def parse_crypto_assets(text: str) -> dict[str, Any]:
    """``VEIX_CRYPTO_ASSETS`` -> CryptoAsset by symbol."""
    from veix.gateways.crypto import CryptoAsset

    return {symbol: CryptoAsset(symbol, places, token, prices)
            for symbol, places, token, prices in parse_asset_specs(text)}


IN_PROCESS_CHAIN = "eth-tester://"


def build_gateways(settings: Settings, engine: Any) -> dict[Gateway, Any]:
    """The configured gateways: each one only when its settings are there."""
    gateways: dict[Gateway, Any] = {}
    if settings.sandbox_enabled:
        from veix.gateways.sandbox import SandboxGateway

        assert settings.sandbox_webhook_secret is not None
        gateways[Gateway.SANDBOX] = SandboxGateway(
            settings.sandbox_webhook_secret, public_url=settings.public_url,
            latency=settings.sandbox_latency_ms / 1000, failure_rate=settings.sandbox_failure_rate)
    if settings.stripe_api_key and settings.stripe_webhook_secret:
        from veix.gateways.stripe import StripeGateway

        gateways[Gateway.STRIPE] = StripeGateway(settings.stripe_api_key, settings.stripe_webhook_secret,
                                                 base_url=settings.stripe_api_base or None)
    if settings.paypal_client_id and settings.paypal_client_secret and settings.paypal_webhook_id:
        from veix.gateways.paypal import PaypalGateway

        gateways[Gateway.PAYPAL] = PaypalGateway(settings.paypal_client_id, settings.paypal_client_secret,
                                                 settings.paypal_webhook_id, base_url=settings.paypal_api_base or None)
    if settings.crypto_rpc_url and settings.crypto_xpub:
        from web3 import AsyncHTTPProvider, AsyncWeb3

        from veix.gateways.crypto import CryptoGateway

        if settings.crypto_rpc_url == IN_PROCESS_CHAIN:
            # Development: an in-process chain (eth-tester, a dev dependency) instead of a node.
            from web3.providers.eth_tester import AsyncEthereumTesterProvider

            provider: Any = AsyncEthereumTesterProvider()
        else:
            provider = AsyncHTTPProvider(settings.crypto_rpc_url)
        gateways[Gateway.CRYPTO] = CryptoGateway(
            AsyncWeb3(provider), xpub=settings.crypto_xpub,
            assets=parse_crypto_assets(settings.crypto_assets), allocate_index=deposit_index_allocator(engine),
            confirmations=settings.crypto_confirmations,
            expiry=timedelta(minutes=settings.crypto_expiry_minutes))
    return gateways


def deposit_index_allocator(engine: Any) -> Any:
    """Crypto deposit addresses: the next derivation index, from a database counter (never reused)."""

    async def allocate() -> int:
        async with SqlUnitOfWork(engine) as uow:
            value = await uow.payments.next_counter("crypto_deposit_index")
            await uow.commit()
        return value - 1

    return allocate


def build_payments(settings: Settings, engine: Any, gateways: dict[Gateway, Any], scorer: Any) -> PaymentProcessor:
    processor = PaymentProcessor(
        gateways, PaymentsConfig(routes=parse_routes(settings.payment_routes), fees=parse_fees(settings.payment_fees),
                                 policy=RiskPolicy(settings.risk_review_threshold, settings.risk_decline_threshold)),
        scorer, utcnow)
    sandbox = gateways.get(Gateway.SANDBOX)
    if sandbox is not None:
        sandbox.listen(lambda event: processor.apply_event(lambda: SqlUnitOfWork(engine), Gateway.SANDBOX, event))
    return processor


def build_services(settings: Settings, broadcast: Any = None) -> Services:
    assert settings.secret_key is not None
    engine = make_engine(settings.database_url, pool_size=settings.db_pool_size)
    card_parts = build_card_parts(settings)
    gateways = build_gateways(settings, engine)
    return Services(
        engine=engine,
        authorizer=Authorizer.load(),
        tokens=TokenService(settings.secret_key,
                            access_ttl=timedelta(minutes=settings.access_token_minutes)),
        hasher=Argon2Hasher(),
        refresh_ttl_days=settings.refresh_token_days,
        live_keys=settings.env == "production",
        webhook_strict_urls=settings.env == "production",
        broadcast=broadcast,
        gateways=gateways,
        payments=build_payments(settings, engine, gateways, card_parts["scorer"]),
        **card_parts,
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
            from veix.persistence.fast_pg import LateLookups, create_pool

            # Newest first only once the queue has stood for half the network's deadline:
            # a shorter slow spell is served in turn, every request in time (HotPool).
            services.fast_pool = await create_pool(settings.database_url, size=settings.db_pool_size,
                                                   lifo_after=settings.network_deadline_ms / 2000)
            # One more: requests past their deadline look up whether they were decided before.
            services.late_lookups = await LateLookups.open(settings.database_url,
                                                           statement_timeout=REDELIVERY_LOOKUP_BUDGET)
        # Everything built so far lives as long as the process: move it out of
        # the collector's generations so request garbage does not trigger full
        # scans of it (measured: a third of a nested query's time went to GC).
        gc.collect()
        gc.freeze()
        stop_dispatch = asyncio.Event()
        dispatching: asyncio.Task[None] | None = None
        background: list[asyncio.Task[None]] = []
        delivering: asyncio.Task[None] | None = None
        if settings.run_dispatcher:
            dispatcher = OutboxDispatcher(services.engine, broadcast)
            dispatching = asyncio.create_task(dispatcher.run_forever(stop_dispatch),
                                              name="veix-outbox-dispatcher")
            delivering = asyncio.create_task(
                WebhookDeliverer(services.engine, services.vault.vault).run_forever(stop_dispatch),
                name="veix-webhook-deliverer")
            background.append(asyncio.create_task(
                payments_maintenance(services.engine, services.payments, services.gateways,
                                     settings.crypto_poll_seconds, stop_dispatch), name="veix-payments-upkeep"))
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
            for task in background:
                stop_dispatch.set()
                try:
                    await asyncio.wait_for(task, timeout=10)
                except TimeoutError:
                    log.warning("%s did not stop in 10s; cancelled", task.get_name())
            await close_gateways(services.gateways)
            for pool in (services.fast_pool, services.late_lookups):
                if pool is not None:
                    await pool.close()
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
            *payment_routes(services),
        ],
        lifespan=lifespan,
    )
    app.state.services = services
    app.state.broadcast = broadcast
    app.state.settings = settings
    app.state.schema = schema
    if not settings.is_sqlite:
        return NetworkFrontDoor(app, fast_authorization_endpoint(services))  # type: ignore[return-value]
    return app


async def close_gateways(gateways: dict[Gateway, Any] | None) -> None:
    for gw in (gateways or {}).values():
        close = getattr(gw, "aclose", None)
        if close is not None:
            await close()


async def payments_round(engine: Any, processor: PaymentProcessor, gateways: dict[Gateway, Any]) -> dict[str, int]:
    """One round of payment upkeep: apply gateway events that arrived before their payment
    (kept as "unmatched"), and with the crypto gateway configured, read the chain for deposits."""
    from veix.persistence.repositories.payments import unmatched_references

    def new_uow() -> SqlUnitOfWork:
        return SqlUnitOfWork(engine)

    done: dict[str, int] = {"late_events": 0}
    async with engine.connect() as conn:
        refs = await unmatched_references(conn, utcnow() - timedelta(days=3))
    for gateway, reference in refs:
        done["late_events"] += await processor.apply_late_events(new_uow, Gateway(gateway), reference)
    crypto = gateways.get(Gateway.CRYPTO)
    if crypto is not None:
        from veix.gateways.crypto_watch import watch_once

        for outcome, count in (await watch_once(engine, crypto, processor, new_uow, utcnow())).items():
            done[f"crypto_{outcome}"] = count
    return done


async def payments_maintenance(engine: Any, processor: PaymentProcessor, gateways: dict[Gateway, Any],
                               interval: float, stop: asyncio.Event) -> None:
    """:func:`payments_round` every ``interval`` seconds until ``stop``."""
    while not stop.is_set():
        try:
            done = await payments_round(engine, processor, gateways)
            if any(done.values()):
                log.info("payments upkeep: %s", done)
        except Exception:
            log.exception("payments upkeep round failed")
        try:
            await asyncio.wait_for(stop.wait(), timeout=interval)
        except TimeoutError:
            pass


def app_factory() -> Starlette:
    """Entry point for ``uvicorn --factory`` (``veix serve``): each worker process builds its app."""
    return create_app(load_settings())
