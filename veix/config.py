"""One settings object, from ``VEIX_*`` environment variables.

In development, secrets that are not set are generated once into a git-ignored
local file (``.veix-secrets.json``) with a warning, so the embedded default
runs with no setup; in production the service refuses to start without them
and says which are missing.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import secrets
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from veix.domain.payments import parse_asset_specs, parse_fees
from veix.domain.routing import parse_routes

log = logging.getLogger("veix.config")

SECRET_NAMES = ("secret_key", "vault_key", "network_secret")


class MissingSecrets(RuntimeError):
    pass


def _generate(name: str) -> str:
    if name == "vault_key":
        return "v1:" + base64.b64encode(secrets.token_bytes(32)).decode()
    if name in ("network_secret", "sandbox_webhook_secret"):
        return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    return secrets.token_urlsafe(48)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VEIX_", extra="ignore")

    env: Literal["development", "production"] = "development"
    database_url: str = "sqlite+aiosqlite:///./veix.db"
    broadcast_url: str = "memory://"
    # Publish outbox events from inside ``veix serve`` (off when only ``veix worker`` should).
    run_dispatcher: bool = True
    secret_key: str | None = None
    vault_key: str | None = None
    network_secret: str | None = None
    secrets_file: Path = Path(".veix-secrets.json")
    access_token_minutes: int = Field(15, ge=1, le=1440)
    refresh_token_days: int = Field(30, ge=1, le=365)
    db_pool_size: int = Field(10, ge=1, le=200)
    max_query_depth: int = Field(12, ge=2, le=50)
    max_query_tokens: int = Field(2000, ge=50)
    log_level: str = "INFO"
    # Cards (the cards issue). BINs must lie in their network's ISO/IEC 7812 range.
    visa_bin: str = "424242"
    mastercard_bin: str = "532610"
    card_expiry_years: int = Field(3, ge=1, le=10)
    hold_days: int = Field(7, ge=1, le=60)
    approval_window_hours: int = Field(24, ge=1, le=168)
    max_authorizations_per_hour: int = Field(60, ge=1)
    # An authorization not decided this long after its request arrived is answered 91 and not
    # decided: the network has stood in for us by then (README "Card network endpoint").
    network_deadline_ms: int = Field(1500, ge=10, le=60_000)
    overclear_tolerance: str = "0.20"
    dcvv_window_seconds: int = Field(300, ge=30, le=3600)
    fx_rates: str = ""  # "EUR/USD=1.0802,GBP/USD=1.2710"; empty = built-in development table
    risk_review_threshold: float = Field(0.5, ge=0, le=1)
    risk_decline_threshold: float = Field(0.8, ge=0, le=1)
    # Payments (README "Payments"). Gateways that are not configured are skipped by the router.
    payment_routes: str = "card=stripe,sandbox;paypal=paypal;crypto=crypto"
    payment_fees: str = ""  # "stripe=2.9+30,paypal=3.49+49": percent + fixed minor units
    public_url: str = "http://127.0.0.1:8000"  # where payers are sent back to (sandbox 3-D Secure)
    sandbox_gateway: bool | None = None  # default: on in development, off in production
    sandbox_webhook_secret: str | None = None
    sandbox_latency_ms: int = Field(0, ge=0, le=60_000)  # added to every sandbox call
    sandbox_failure_rate: float = Field(0.0, ge=0, le=1)  # share of sandbox calls that fail as outages
    stripe_api_key: str | None = None
    stripe_webhook_secret: str | None = None
    stripe_api_base: str | None = None  # a local Stripe-compatible server (tests); None = api.stripe.com
    paypal_client_id: str | None = None
    paypal_client_secret: str | None = None
    paypal_webhook_id: str | None = None
    paypal_api_base: str | None = None  # None = PayPal's sandbox environment
    crypto_rpc_url: str | None = None  # an Ethereum JSON-RPC endpoint; "eth-tester://" = in-process (development)
    crypto_xpub: str | None = None  # the merchant account's extended public key (m/44'/60'/0')
    # "ETH:18::USD=3000,EUR=2760;USDC:6:0xA0b8...:USD=1" - symbol:decimals:token address:prices
    crypto_assets: str = "ETH:18::USD=3000,EUR=2760"
    crypto_confirmations: int = Field(3, ge=1, le=100)
    crypto_expiry_minutes: int = Field(30, ge=1, le=1440)
    crypto_poll_seconds: float = Field(5.0, gt=0)

    @model_validator(mode="after")
    def _payment_settings_parse(self) -> Settings:
        """Refuse malformed payment settings at start-up, naming the variable."""
        for name, parse in (("payment_routes", parse_routes), ("payment_fees", parse_fees),
                            ("crypto_assets", parse_asset_specs)):
            try:
                parse(getattr(self, name))
            except ValueError as exc:
                raise ValueError(f"VEIX_{name.upper()}: {exc}") from None
        return self

    @property
    def sandbox_enabled(self) -> bool:
        return self.env == "development" if self.sandbox_gateway is None else self.sandbox_gateway

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def is_memory_broadcast(self) -> bool:
        return self.broadcast_url.startswith("memory")

    def with_secrets(self) -> Settings:
        """Fill missing secrets (development) or refuse (production)."""
        if self.env == "production" and self.crypto_rpc_url == "eth-tester://":
            raise MissingSecrets("VEIX_CRYPTO_RPC_URL=eth-tester:// is an in-process test chain: not in production")
        names = SECRET_NAMES + (("sandbox_webhook_secret",) if self.sandbox_enabled else ())
        missing = [n for n in names if not getattr(self, n)]
        if not missing:
            return self
        if self.env == "production":
            names = ", ".join(f"VEIX_{n.upper()}" for n in missing)
            raise MissingSecrets(f"production needs these secrets set: {names}")
        stored: dict[str, str] = {}
        if self.secrets_file.exists():
            stored = json.loads(self.secrets_file.read_text())
        generated = [n for n in missing if n not in stored]
        for name in generated:
            stored[name] = _generate(name)
        if generated:
            self.secrets_file.write_text(json.dumps(stored, indent=2))
            os.chmod(self.secrets_file, 0o600)
            log.warning(
                "development secrets %s generated into %s (git-ignored); set VEIX_* in production",
                ", ".join(generated), self.secrets_file,
            )
        return self.model_copy(update={n: stored[n] for n in missing})


def load_settings(**overrides: object) -> Settings:
    return Settings(**overrides).with_secrets()  # type: ignore[arg-type]
