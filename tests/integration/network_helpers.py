"""Helpers for the card network integration tests (NETWORK.md).

Setup goes through the public API where it exists (sign-up, business,
funding, balances through GraphQL); every network message goes over HTTP to
the ASGI app, signed the Standard Webhooks way. Until the GraphQL
``issueCard`` mutation exists, cards are issued through the domain use case
in :func:`issue_card`, the one place to switch over to the API later.

Import the fixtures into a test module with
``from tests.integration.network_helpers import network  # noqa: F401``.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select

from tests.conftest import TEST_DB_URL
from tests.integration.conftest import Api
from veix.domain.card_controls import parse_controls
from veix.domain.cards import CardNetwork, CardStatus, CardType, expiry_text
from veix.domain.events import utcnow
from veix.domain.services import cards as card_svc
from veix.domain.services import settlement
from veix.persistence.fast_pg import asyncpg_connect_args
from veix.persistence.tables import card_spend, card_transactions, fraud_alerts, ledger_accounts
from veix.persistence.uow import SqlUnitOfWork
from veix.resolvers.ids import parse_global_id, to_global_id
from veix.security.signatures import signed_headers

AUTHORIZATIONS = "/v1/network/authorizations"
CLEARINGS = "/v1/network/clearings"
REVERSALS = "/v1/network/reversals"

BALANCES = "query($id: ID!){ business(id:$id){ balances{ amount currency } } }"

# A restaurant in the business's own country (the default business is in DE,
# Europe/Berlin): no foreign-merchant or high-risk signal for the fraud score.
RESTAURANT = {"name": "Trattoria Roma", "mcc": "5812", "country": "DE", "id": "m_trattoria"}
# A Thursday, 14:00 in Berlin: inside any weekday/office-hours control, not at night.
THURSDAY_AFTERNOON = "2026-11-26T13:00:00Z"


def raw_id(gid: str) -> uuid.UUID:
    return parse_global_id(gid)[1]


# ------------------------------------------------------------------ businesses
@dataclass(frozen=True)
class Biz:
    token: str
    id: str  # GraphQL global ID

    @property
    def raw_id(self) -> uuid.UUID:
        return raw_id(self.id)


async def new_business(api: Api, *, fund: str | None = "1000.00", currency: str = "EUR",
                       **overrides: Any) -> Biz:
    """A fresh owner and business (Acme GmbH, DE, Europe/Berlin, EUR), funded through GraphQL."""
    token, _ = await api.sign_up("Owner")
    business = Biz(token, await api.create_business(token, **overrides))
    if fund is not None:
        await fund_business(api, business, fund, currency)
    return business


async def fund_business(api: Api, business: Biz, amount: str, currency: str = "EUR") -> None:
    body = await api.fund(business.token, business.id, amount, currency)
    assert "errors" not in body, body
    assert body["data"]["fundBusiness"]["userErrors"] == [], body


async def balances(api: Api, business: Biz) -> dict[str, str]:
    """Available funds per currency through GraphQL, as the exact decimal strings shown."""
    data = await api.ok(BALANCES, {"id": business.id}, business.token)
    return {b["currency"]: b["amount"] for b in data["business"]["balances"]}


async def balance(api: Api, business: Biz, currency: str = "EUR") -> str:
    return (await balances(api, business)).get(currency, "0")


# ------------------------------------------------------------------ cards
@dataclass(frozen=True)
class IssuedCard:
    id: str  # GraphQL global ID ("Card")
    pan: str
    cvv: str
    expiry: str  # YYYY-MM

    @property
    def raw_id(self) -> uuid.UUID:
        return raw_id(self.id)


async def issue_card(app: Any, business_gid: str, *, type: str = "STANDARD", network: str = "VISA",
                     currency: str = "EUR", spending_limit: str | None = None,
                     controls: Mapping[str, Any] | None = None, merchant_lock: str | None = None,
                     metadata: Mapping[str, Any] | None = None) -> IssuedCard:
    """Issue a card for the business and return its PAN and CVV.

    Arguments mirror the GraphQL ``IssueCardInput`` (enum names, camelCase
    controls, decimal strings), so this can switch to the ``issueCard`` and
    ``revealCard`` mutations without touching the tests.
    """
    services = app.state.services
    parsed = parse_controls(dict(controls or {}), currency, field=["input", "controls"])
    async with SqlUnitOfWork(services.engine) as uow:
        card, _ = await card_svc.issue_card(
            uow, services.vault, services.issuing, business_id=raw_id(business_gid),
            cardholder_id=None, type=CardType[type], network=CardNetwork[network], currency=currency,
            spending_limit=Decimal(spending_limit) if spending_limit is not None else None,
            controls=parsed, merchant_lock=merchant_lock, metadata=dict(metadata or {}),
            idempotency_key=uuid.uuid4().hex, now=utcnow())
        pan, cvv = services.vault.open(card.id, *await uow.cards.sealed(card.id))
        await uow.commit()
    return IssuedCard(to_global_id("Card", card.id), pan, cvv, expiry_text(card.expiry_date))


async def set_card_status(app: Any, card: IssuedCard, status: str) -> None:
    """Move a card through its lifecycle with the domain use case (freeze, close, expire).

    ``INACTIVE`` is not reachable from ``ACTIVE`` (cards are issued active), so
    it is written directly: the state a card would have before activation.
    """
    services = app.state.services
    async with SqlUnitOfWork(services.engine) as uow:
        found = await card_svc.get_locked(uow, card.raw_id)
        if status == "INACTIVE":
            found.status = CardStatus.INACTIVE
            await uow.cards.save(found)
        else:
            await card_svc.change_status(uow, found, CardStatus[status], now=utcnow(),
                                         action=f"card.{status.lower()}")
        await uow.commit()


# ------------------------------------------------------------------ signed HTTP
def _body_bytes(body: Mapping[str, Any] | bytes | str) -> bytes:
    if isinstance(body, bytes):
        return body
    if isinstance(body, str):
        return body.encode()
    return json.dumps(body, separators=(",", ":")).encode()


class NetworkClient(httpx.AsyncClient):
    """An HTTP client for the ASGI app that knows the app (and so its network secret)."""

    def __init__(self, app: Any) -> None:
        # App exceptions become 500 responses, as a real server would send,
        # so "never a 500" can be asserted on the status code.
        super().__init__(transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
                         base_url="http://network.test", timeout=60)
        self.app = app


async def post_signed(client: httpx.AsyncClient, path: str, body: Mapping[str, Any] | bytes | str, *,
                      msg_id: str | None = None, secret: str | None = None,
                      timestamp: int | None = None) -> httpx.Response:
    """POST ``body`` (a dict is sent as compact JSON; bytes as they are) with Standard Webhooks headers."""
    if secret is None:
        secret = client.app.state.services.network_secret  # type: ignore[attr-defined]
    raw = _body_bytes(body)
    headers = signed_headers(secret, msg_id or f"msg_{uuid.uuid4().hex}", raw, timestamp=timestamp)
    return await client.post(path, content=raw, headers={**headers, "content-type": "application/json"})


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def auth_body(card: IssuedCard, amount: str = "10.00", currency: str = "EUR", *,
              network_id: str | None = None, merchant: Mapping[str, Any] | None = None,
              at: str | datetime | None = None, kind: str = "purchase", original_id: str | None = None,
              cvv: str | None = None, expiry: str | None = None, **extra: Any) -> dict[str, Any]:
    """An authorization request (NETWORK.md); ``at`` defaults to now."""
    when = at if isinstance(at, str) else iso(at or utcnow())
    body: dict[str, Any] = {
        "id": network_id or f"auth_{uuid.uuid4().hex}", "pan": card.pan,
        "expiry": expiry or card.expiry, "amount": amount, "currency": currency,
        "merchant": dict(merchant or RESTAURANT), "kind": kind, "original_id": original_id, "at": when,
    }
    if cvv is not None:
        body["cvv"] = cvv
    body.update(extra)
    return body


class Network:
    """The card network as the tests drive it: signed requests over HTTP."""

    def __init__(self, client: NetworkClient) -> None:
        self.client = client
        self.app = client.app

    async def post(self, path: str, body: Mapping[str, Any] | bytes | str, **kwargs: Any) -> httpx.Response:
        return await post_signed(self.client, path, body, **kwargs)

    async def authorize(self, card: IssuedCard, amount: str = "10.00", currency: str = "EUR",
                        **kwargs: Any) -> dict[str, Any]:
        """A signed authorization that must be authentic and well formed: its 200 answer."""
        r = await self.post(AUTHORIZATIONS, auth_body(card, amount, currency, **kwargs))
        assert r.status_code == 200, r.text
        answer: dict[str, Any] = r.json()
        return answer

    async def clear(self, authorization_id: str, amount: str, currency: str = "EUR", *,
                    final: bool | None = None, status: int = 200, **extra: Any) -> dict[str, Any]:
        body: dict[str, Any] = {"id": f"clr_{uuid.uuid4().hex}", "authorization_id": authorization_id,
                                "amount": amount, "currency": currency, "at": iso(utcnow()), **extra}
        if final is not None:
            body["final"] = final
        r = await self.post(CLEARINGS, body)
        assert r.status_code == status, r.text
        answer: dict[str, Any] = r.json()
        return answer

    async def reverse(self, authorization_id: str, amount: str | None = None, *, status: int = 200,
                      **extra: Any) -> dict[str, Any]:
        body: dict[str, Any] = {"id": f"rev_{uuid.uuid4().hex}", "authorization_id": authorization_id,
                                "at": iso(utcnow()), **extra}
        if amount is not None:
            body["amount"] = amount
        r = await self.post(REVERSALS, body)
        assert r.status_code == status, r.text
        answer: dict[str, Any] = r.json()
        return answer


@pytest.fixture
async def network(app: Any, api: Api) -> AsyncIterator[Network]:
    """Depends on ``api`` so the ledger is verified after every network test."""
    async with NetworkClient(app) as client:
        yield Network(client)


# ------------------------------------------------------------------ reading the database
async def card_transaction(app: Any, network_id: str) -> Any:
    """The ``card_transactions`` row of a network authorization id (or None)."""
    async with app.state.services.engine.connect() as conn:
        return (await conn.execute(select(card_transactions)
                                   .where(card_transactions.c.network_id == network_id))).first()


async def card_transaction_count(app: Any, card: IssuedCard) -> int:
    async with app.state.services.engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(card_transactions)
                                       .where(card_transactions.c.card_id == card.raw_id))).scalar_one())


async def card_transactions_of(app: Any, business: Biz) -> list[Any]:
    async with app.state.services.engine.connect() as conn:
        return list((await conn.execute(select(card_transactions)
                                        .where(card_transactions.c.business_id == business.raw_id))).all())


async def spend(app: Any, card: IssuedCard) -> dict[str, Decimal]:
    """The card's spend counters by period ("D2026-11-26", "M2026-11")."""
    async with app.state.services.engine.connect() as conn:
        rows = await conn.execute(select(card_spend.c.period, card_spend.c.amount)
                                  .where(card_spend.c.card_id == card.raw_id))
        return {r.period: r.amount for r in rows}


async def fraud_alerts_of(app: Any, card: IssuedCard) -> list[Any]:
    async with app.state.services.engine.connect() as conn:
        return list((await conn.execute(select(fraud_alerts)
                                        .where(fraud_alerts.c.card_id == card.raw_id))).all())


async def holds_balance(app: Any, business: Biz, currency: str = "EUR") -> Decimal:
    """The balance of the business's holds account in the ledger."""
    code = f"business:{business.raw_id}:holds:{currency}"
    async with app.state.services.engine.connect() as conn:
        row = (await conn.execute(select(ledger_accounts.c.balance)
                                  .where(ledger_accounts.c.code == code))).first()
    return row.balance if row else Decimal(0)


async def expire_due_holds(app: Any, now: datetime, business: Biz) -> list[str]:
    """What the hold-expiry job does at ``now`` (for one business, so other
    tests' holds stay untouched): expire every approved authorization whose
    ``hold_expires_at`` has passed. Returns their network ids."""
    services = app.state.services
    ct = card_transactions
    async with services.engine.connect() as conn:
        ids = [r.network_id for r in await conn.execute(
            select(ct.c.network_id).where(
                ct.c.business_id == business.raw_id, ct.c.status == "approved", ct.c.parent_id.is_(None),
                ct.c.hold_expires_at <= now))]
    for network_id in ids:
        async with SqlUnitOfWork(services.engine) as uow:
            auth = await uow.authorizations.find(network_id)
            assert auth is not None
            await settlement.expire_hold(uow, auth, now)
            await uow.commit()
    return ids


def later(days: float = 0, **kwargs: float) -> datetime:
    return utcnow() + timedelta(days=days, **kwargs)


@contextlib.asynccontextmanager
async def locked_exclusively(table: str) -> AsyncIterator[asyncpg.Connection]:
    """``table`` locked ACCESS EXCLUSIVE by another session for the block, whose
    connection it yields (PostgreSQL: even reads of the table wait)."""
    conn = await asyncpg.connect(**asyncpg_connect_args(TEST_DB_URL))
    try:
        async with conn.transaction():
            await conn.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
            yield conn
    finally:
        await conn.close()


# ------------------------------------------------------------------ metrics
async def counter(network: Network, family: str, *labels: str) -> dict[tuple[str, ...], float]:
    """The Prometheus counter ``family``_total by the values of ``labels``, read from /metrics."""
    r = await network.client.get("/metrics")
    assert r.status_code == 200
    found: dict[tuple[str, ...], float] = {}
    for metric in text_string_to_metric_families(r.text):
        if metric.name == family:
            for sample in metric.samples:
                if sample.name.endswith("_total"):
                    found[tuple(sample.labels[label] for label in labels)] = sample.value
    return found


async def attempts(network: Network) -> dict[tuple[str, str], float]:
    """``veix_authorization_attempts_total`` by (path, outcome)."""
    return {(path, outcome): n for (path, outcome), n in
            (await counter(network, "veix_authorization_attempts", "path", "outcome")).items()}


async def attempts_during(network: Network, action: Callable[[], Awaitable[Any]]) -> tuple[Any, dict[tuple[str, str], float]]:
    before = await attempts(network)
    result = await action()
    after = await attempts(network)
    return result, {k: v - before.get(k, 0) for k, v in after.items() if v != before.get(k, 0)}
