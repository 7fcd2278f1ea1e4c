"""What the composition root hands every request: built once per process."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from veix.security.authz import Authorizer
from veix.security.tokens import TokenService


@dataclass
class Services:
    engine: AsyncEngine
    authorizer: Authorizer
    tokens: TokenService
    hasher: Any  # veix.domain.ports.PasswordHasher
    refresh_ttl_days: int
    live_keys: bool
    broadcast: Any = None
    vault: Any = None  # veix.security.card_vault.VaultCardStore (the domain's CardVault port)
    issuing: Any = None  # veix.domain.services.cards.IssuingConfig
    auth_config: Any = None  # veix.domain.services.authorize.AuthorizationConfig
    scorer: Any = None  # veix.domain.risk.RiskScorer
    rates: Any = None  # veix.domain.fx.ExchangeRateProvider
    network_secret: str = ""
    network_deadline: float = 1.5  # seconds from a network request's arrival to its latest decision
    fast_pool: Any = None  # fast_pg.HotPool: the authorization hot path's connections (PostgreSQL only)
    # fast_pg.LateLookups (PostgreSQL only): late authorizations' lookups of their earlier answers
    late_lookups: Any = None
    # Webhook endpoint URLs: https only, no private/loopback hosts (production). Development
    # (False) also allows http and local receivers.
    webhook_strict_urls: bool = True
    # Payments: the processor and the configured gateways by veix.domain.transactions.Gateway.
    payments: Any = None  # veix.domain.services.payments.PaymentProcessor
    gateways: Any = None  # dict[Gateway, PaymentGateway]
