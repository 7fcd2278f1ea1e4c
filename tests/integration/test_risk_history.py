"""The fraud scorer's history of a card (veix.domain.risk, CardHistory).

A decision reads the per-UTC-minute aggregates of the card's approved
purchases of the last hour (velocity, ``card_risk_minutes``), the per-UTC-day
aggregates over 90 days (``card_risk_days``) and the merchants it was approved
at (``card_merchants``), all kept in the authorization's own transaction. These tests drive
authorizations through the network endpoint and ``simulateAuthorization``
(on PostgreSQL the two take different stores: raw asyncpg and SQLAlchemy
Core) and check the kept history against the ``card_transactions`` it
summarises, the window seen by both stores, the migration's backfill and the
worker's pruning.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
from sqlalchemy import select

from tests.conftest import database_url, is_postgres
from tests.integration import network_helpers
from tests.integration.conftest import Api, migrate_to
from tests.integration.network_helpers import (
    Network,
    NetworkClient,
    issue_card,
    new_business,
)
from tests.integration.test_cards_api import simulate
from veix.app import create_app
from veix.cli import background_jobs
from veix.config import Settings
from veix.domain.events import utcnow
from veix.domain.services.authorize import CardHistory
from veix.persistence.engine import make_engine
from veix.persistence.repositories.authorizations import SqlAuthorizationStore
from veix.persistence.tables import card_merchants, card_risk_days, card_risk_minutes, card_transactions

network = network_helpers.network  # the fixture: signed HTTP to the app

# Same country as the business (DE): no foreign-merchant signal. No merchant
# id: the merchant key is the lowercased, trimmed name.
BAKERY = {"name": "  Bäckerei Schmidt ", "mcc": "5462", "country": "DE"}


@dataclass(frozen=True)
class Kept:
    days: dict[date, tuple[int, Decimal, Decimal]]  # count, total, largest
    merchants: dict[str, tuple[datetime, datetime]]  # first and last seen
    minutes: dict[datetime, tuple[int, Decimal]]  # count, total


async def kept(engine: Any, card_id: uuid.UUID) -> Kept:
    rd, cm, rm = card_risk_days, card_merchants, card_risk_minutes
    async with engine.connect() as conn:
        minutes = {r.minute: (r.count, r.amount) for r in await conn.execute(
            select(rm).where(rm.c.card_id == card_id))}
        days = {r.day: (r.count, r.amount, r.max_amount) for r in await conn.execute(
            select(rd).where(rd.c.card_id == card_id))}
        merchants = {r.merchant_key: (r.first_seen_at, r.last_seen_at) for r in await conn.execute(
            select(cm).where(cm.c.card_id == card_id))}
    return Kept(days, merchants, minutes)


async def summarised(engine: Any, card_id: uuid.UUID) -> Kept:
    """What the history must hold: the card's approved purchases and
    increments in card_transactions, summed here in Python."""
    ct = card_transactions
    days: dict[date, tuple[int, Decimal, Decimal]] = {}
    merchants: dict[str, tuple[datetime, datetime]] = {}
    minutes: dict[datetime, tuple[int, Decimal]] = {}
    async with engine.connect() as conn:
        rows = (await conn.execute(select(ct).where(
            ct.c.card_id == card_id, ct.c.response_code == "00",
            ct.c.kind.in_(("purchase", "incremental"))))).all()
    # An approved increment also grows its original's billing_amount: what
    # the original's decision approved is its amount without them.
    increments: dict[uuid.UUID, Decimal] = {}
    for r in rows:
        if r.parent_id is not None:
            increments[r.parent_id] = increments.get(r.parent_id, Decimal(0)) + r.billing_amount
    for r in rows:
        day = r.created_at.astimezone(UTC).date()
        amount = r.billing_amount - increments.get(r.id, Decimal(0))
        n, total, top = days.get(day, (0, Decimal(0), amount))
        days[day] = (n + 1, total + amount, max(top, amount))
        minute = r.created_at.astimezone(UTC).replace(second=0, microsecond=0)
        n, total = minutes.get(minute, (0, Decimal(0)))
        minutes[minute] = (n + 1, total + amount)
        key = (r.merchant_id or r.merchant_name or "").strip().lower()
        first, last = merchants.get(key, (r.created_at, r.created_at))
        merchants[key] = (min(first, r.created_at), max(last, r.created_at))
    return Kept(days, merchants, minutes)


async def a_card_with_history(api: Api, app: Any, network: Network) -> tuple[Any, Any, list[Decimal]]:
    """Approved purchases at two merchants (one of them on the Core store
    through simulateAuthorization), an increment, a reversal and a decline.
    Returns the business, the card and the approved amounts."""
    biz = await new_business(api, fund="500.00")
    card = await issue_card(app, biz.id)
    first = await network.authorize(card, "20.00")
    assert first["approved"], first
    assert (await network.authorize(card, "35.50", merchant=BAKERY))["approved"]
    third = await network.authorize(card, "12.25")
    assert third["approved"], third
    increment = await network.authorize(card, "5.00", kind="incremental", original_id=first["id"])
    assert increment["approved"], increment
    await network.reverse(third["id"])  # a reversed purchase was still made: it stays in the history
    assert (await network.authorize(card, "900.00"))["response_code"] == "51"  # declines do not count
    simulated = await simulate(api, biz.token, card.id, "7.40", merchant="Café Einstein")
    assert simulated["status"] == "APPROVED", simulated
    return biz, card, [Decimal("20.00"), Decimal("35.50"), Decimal("12.25"), Decimal("5.00"), Decimal("7.40")]


async def test_each_approved_purchase_is_kept_in_the_day_and_merchant_history(api, app, network):
    _, card, amounts = await a_card_with_history(api, app, network)
    engine = app.state.services.engine

    history = await kept(engine, card.raw_id)

    assert history == await summarised(engine, card.raw_id)
    assert list(history.days.values()) == [(5, sum(amounts), Decimal("35.50"))]
    assert sum(n for n, _ in history.minutes.values()) == 5  # one minute, or two if the test crossed one
    assert sum(total for _, total in history.minutes.values()) == sum(amounts)
    assert set(history.merchants) == {"m_trattoria", "bäckerei schmidt", "café einstein"}


async def test_a_repeated_authorization_counts_once(api, app, network):
    biz = await new_business(api, fund="100.00")
    card = await issue_card(app, biz.id)
    body_id = f"auth_{uuid.uuid4().hex}"
    for _ in range(3):  # the network retries with the same id: one decision
        assert (await network.authorize(card, "10.00", network_id=body_id))["approved"]

    history = await kept(app.state.services.engine, card.raw_id)

    assert list(history.days.values()) == [(1, Decimal("10.00"), Decimal("10.00"))]
    assert list(history.minutes.values()) == [(1, Decimal("10.00"))]


async def test_both_stores_read_the_same_history_over_the_90_day_window(api, app, network):
    _, card, amounts = await a_card_with_history(api, app, network)
    now = utcnow()
    total, count = sum(amounts), len(amounts)
    full = CardHistory(
        count_10m=count, amount_10m=total, count_1h=count, amount_1h=total, history_count=count,
        history_mean=CardHistory.mean(total, count), history_max=Decimal("35.50"), seen_merchant=True)
    later = CardHistory(history_count=count, history_mean=CardHistory.mean(total, count),
                        history_max=Decimal("35.50"), seen_merchant=True)
    # The amounts are kept per UTC day: the window's first day is the whole
    # day 90 days back, so today's purchases count until the end of day 90.
    last_day = datetime.combine(now.date() + timedelta(days=90), datetime.max.time(), UTC)
    seen_until = now + timedelta(days=89)  # merchants: the exact 90 days

    async def check(history: Any) -> None:
        assert await history(card.raw_id, now, "m_trattoria") == full
        assert await history(card.raw_id, now, "bäckerei schmidt") == full
        assert (await history(card.raw_id, now, "somewhere else")).seen_merchant is False
        assert await history(card.raw_id, seen_until, "café einstein") == later
        at_end = await history(card.raw_id, last_day, "café einstein")
        assert (at_end.history_count, at_end.seen_merchant) == (count, False)
        assert await history(card.raw_id, last_day + timedelta(microseconds=1), "m_trattoria") == CardHistory()

    async with app.state.services.engine.connect() as conn:
        await check(SqlAuthorizationStore(conn).history)
    pool = app.state.services.fast_pool
    assert (pool is not None) == is_postgres(database_url())
    if pool is not None:
        from veix.persistence.fast_pg import PgAuthorizationUnitOfWork

        async with PgAuthorizationUnitOfWork(pool) as uow:
            await check(uow.authorizations.history)


async def test_both_stores_count_the_velocity_windows_by_whole_minutes(api, app, network):
    """The windows are the current UTC minute and the 10 (60) before it: an
    approval counts until the end of its minute's 10th (60th) minute on."""
    _, card, amounts = await a_card_with_history(api, app, network)
    minutes = sorted((await kept(app.state.services.engine, card.raw_id)).minutes)
    first, last = minutes[0], minutes[-1]  # the same minute unless the test crossed one
    total, count = sum(amounts), len(amounts)
    end_of = timedelta(seconds=59, microseconds=999999)

    async def check(history: Any) -> None:
        async def velocity(at: datetime) -> tuple[int, Decimal, int, Decimal]:
            h = await history(card.raw_id, at, "m_trattoria")
            return h.count_10m, h.amount_10m, h.count_1h, h.amount_1h

        assert await velocity(first + timedelta(minutes=10) + end_of) == (count, total, count, total)
        assert await velocity(last + timedelta(minutes=11)) == (0, 0, count, total)
        assert await velocity(first + timedelta(minutes=60) + end_of) == (0, 0, count, total)
        assert await velocity(last + timedelta(minutes=61)) == (0, 0, 0, 0)

    async with app.state.services.engine.connect() as conn:
        await check(SqlAuthorizationStore(conn).history)
    pool = app.state.services.fast_pool
    if pool is not None:
        from veix.persistence.fast_pg import PgAuthorizationUnitOfWork

        async with PgAuthorizationUnitOfWork(pool) as uow:
            await check(uow.authorizations.history)


async def test_the_worker_prunes_what_left_the_window(api, app, network):
    biz = await new_business(api, fund="100.00")
    card = await issue_card(app, biz.id)
    assert (await network.authorize(card, "10.00"))["approved"]
    engine = app.state.services.engine
    prune = background_jobs(engine, batch=2)["risk"]  # small batches: several rounds
    before = await kept(engine, card.raw_id)

    assert await prune(utcnow()) >= 0  # other tests' rows may be pruned, never this card's
    assert await kept(engine, card.raw_id) == before

    pruned = await prune(utcnow() + timedelta(days=92))

    assert pruned >= 3
    assert await kept(engine, card.raw_id) == Kept({}, {}, {})
    assert await prune(utcnow() + timedelta(days=92)) == 0


# ------------------------------------------------------------------ migrations 0006 and 0007
async def test_the_migration_fills_the_history_from_past_authorizations(scratch_url, tmp_path):
    settings = Settings(database_url=scratch_url, secrets_file=tmp_path / "secrets.json",
                        run_dispatcher=False).with_secrets()
    application = create_app(settings, migrate_on_start=True)
    async with application.router.lifespan_context(application):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=application),
                                     base_url="http://veix.test") as client, NetworkClient(application) as net:
            _, card, _ = await a_card_with_history(Api(client), application, Network(net))
        live = await kept(application.state.services.engine, card.raw_id)
    assert live.days and live.merchants and live.minutes

    await migrate_to(scratch_url, "0005", down=True)  # the tables are gone
    await migrate_to(scratch_url, "head")  # and filled again from card_transactions

    engine = make_engine(scratch_url)
    try:
        assert await kept(engine, card.raw_id) == live
    finally:
        await engine.dispose()

