"""Simultaneous signed authorizations never overspend (issue 3, "Done when").

Hundreds of authorizations are fired at once (``asyncio.gather`` over HTTP to
the ASGI app, so their database transactions really interleave on
PostgreSQL) at one card and one business balance, asking for more than both
the card's daily limit and the balance. Afterwards: the approved total stays
within the limit and the balance, the ledger verifies, the card's spend
counters equal the approved holds, and available + held == funded.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import delete, exists, select

from tests.integration import network_helpers
from tests.integration.network_helpers import (
    AUTHORIZATIONS,
    THURSDAY_AFTERNOON,
    Biz,
    IssuedCard,
    attempts_during,
    auth_body,
    balance,
    card_transaction_count,
    card_transactions_of,
    holds_balance,
    issue_card,
    new_business,
    spend,
)
from veix.persistence.tables import card_spend, journal_entries, postings
from veix.persistence.verify import verify_ledger

network = network_helpers.network  # the fixture: signed HTTP to the app

pytestmark = pytest.mark.postgres


@pytest.fixture(autouse=True, params=["asyncpg", "core"])
def store(request, app, monkeypatch) -> str:
    """Run each test on both implementations of the authorization store on
    PostgreSQL: the asyncpg hot path (``services.fast_pool``, what the server
    uses on PostgreSQL) and the SQLAlchemy Core store (what SQLite uses, and
    PostgreSQL whenever ``fast_pool`` is None; here forced by removing the pool
    for the test)."""
    if request.param == "core":
        monkeypatch.setattr(app.state.services, "fast_pool", None)
    return str(request.param)



DAY = "D2026-11-26"
AMOUNTS = [Decimal(x) for x in ("7.00", "13.00", "25.00", "41.00", "3.50", "19.99")]


async def _fire(network, requests: list[tuple[IssuedCard, Decimal]]) -> list[dict[str, Any]]:
    async def one(card: IssuedCard, amount: Decimal) -> dict[str, Any]:
        r = await network.post(AUTHORIZATIONS, auth_body(card, str(amount), at=THURSDAY_AFTERNOON))
        assert r.status_code == 200, r.text
        answer: dict[str, Any] = r.json()
        return answer

    return list(await asyncio.gather(*(one(card, amount) for card, amount in requests)))


async def _check_money(api, app, biz: Biz, funded: Decimal, answers: list[dict[str, Any]]) -> Decimal:
    """Available + held == funded, the holds equal the approvals, the ledger verifies."""
    approved_total = sum((Decimal(a["billing_amount"]) for a in answers if a["approved"]), Decimal(0))
    rows = await card_transactions_of(app, biz)
    assert sum((r.held_amount for r in rows), Decimal(0)) == approved_total
    assert await holds_balance(app, biz) == approved_total
    available = Decimal(await balance(api, biz))
    assert available >= 0
    assert available + approved_total == funded
    assert await verify_ledger(app.state.services.engine) == []
    return approved_total


async def _forget_empty_entries(app, biz: Biz) -> None:
    """Delete the business's journal entries without postings (left by the
    known bug above) so the shared test database verifies for the next tests."""
    async with app.state.services.engine.begin() as conn:
        await conn.execute(delete(journal_entries).where(
            journal_entries.c.business_id == biz.raw_id,
            ~exists().where(postings.c.entry_id == journal_entries.c.id)))


async def test_250_simultaneous_authorizations_on_one_card_stay_within_the_daily_limit(api, app, network, store):
    funded, limit = Decimal("800.00"), Decimal("500.00")
    biz = await new_business(api, fund=str(funded))
    card = await issue_card(app, biz.id, controls={"dailyLimit": str(limit)})
    requests = [(card, AMOUNTS[i % len(AMOUNTS)]) for i in range(250)]
    assert sum(a for _, a in requests) > funded > limit

    answers, counted = await attempts_during(network, lambda: _fire(network, requests))

    if store == "asyncpg":  # optimistic attempts met each other: the losers were decided under the lock
        assert counted[("optimistic", "conflict")] > 0 and counted[("locked", "decided")] > 0, counted
        assert counted[("optimistic", "decided")] + counted[("locked", "decided")] == len(requests), counted

    approved_total = await _check_money(api, app, biz, funded, answers)
    assert 0 < approved_total <= limit
    reasons = Counter(a["reason"] for a in answers)
    assert set(reasons) == {"approved", "daily_limit_exceeded"}, reasons
    assert await spend(app, card) == {DAY: approved_total, "M2026-11": approved_total}
    assert await card_transaction_count(app, card) == len(requests)


async def test_250_simultaneous_authorizations_on_one_card_stay_within_the_balance(api, app, network):
    funded, limit = Decimal("300.00"), Decimal("500.00")
    biz = await new_business(api, fund=str(funded))
    card = await issue_card(app, biz.id, controls={"dailyLimit": str(limit)})
    requests = [(card, AMOUNTS[i % len(AMOUNTS)]) for i in range(250)]
    assert sum(a for _, a in requests) > limit > funded

    answers = await _fire(network, requests)

    approved_total = await _check_money(api, app, biz, funded, answers)
    assert 0 < approved_total <= funded
    assert {a["reason"] for a in answers} == {"approved", "insufficient_funds"}
    assert await spend(app, card) == {DAY: approved_total, "M2026-11": approved_total}


async def test_many_cards_sharing_one_business_balance_never_overspend_it(api, app, network, store, request):
    funded, limit = Decimal("1000.00"), Decimal("150.00")
    biz = await new_business(api, fund=str(funded))
    cards = [await issue_card(app, biz.id, controls={"dailyLimit": str(limit)}) for _ in range(20)]
    requests = [(cards[i % len(cards)], AMOUNTS[i % len(AMOUNTS)]) for i in range(240)]
    assert sum(a for _, a in requests) > funded

    answers = await _fire(network, requests)

    try:
        approved_total = await _check_money(api, app, biz, funded, answers)
    finally:
        await _forget_empty_entries(app, biz)
    assert 0 < approved_total <= funded
    assert {a["reason"] for a in answers} <= {"approved", "insufficient_funds", "daily_limit_exceeded"}
    by_card = {card.raw_id: Decimal(0) for card in cards}
    for row in await card_transactions_of(app, biz):
        if row.response_code == "00":
            by_card[row.card_id] += row.billing_amount
    async with app.state.services.engine.connect() as conn:
        counters = {r.card_id: r.amount for r in await conn.execute(
            select(card_spend.c.card_id, card_spend.c.amount).where(
                card_spend.c.card_id.in_(list(by_card)), card_spend.c.period == DAY))}
    for card_id, total in by_card.items():
        assert total <= limit
        assert counters.get(card_id, Decimal(0)) == total


async def test_the_same_authorization_delivered_many_times_at_once_holds_once(api, app, network):
    biz = await new_business(api, fund="100.00")
    card = await issue_card(app, biz.id)
    body = auth_body(card, "60.00", network_id=f"auth_{uuid.uuid4().hex}", at=THURSDAY_AFTERNOON)

    responses = await asyncio.gather(*(network.post(AUTHORIZATIONS, body) for _ in range(30)))

    assert {r.status_code for r in responses} == {200}
    answers = [r.json() for r in responses]
    assert all(a == answers[0] for a in answers)
    assert answers[0]["response_code"] == "00"
    assert await card_transaction_count(app, card) == 1
    assert await balance(api, biz) == "40.00"
    assert await holds_balance(app, biz) == Decimal("60.00")


async def test_race_between_the_balance_check_and_the_hold_declines_cleanly(api, app, network, monkeypatch,
                                                                             store, request):
    """Two cards of one business both read a balance that covers only one of
    them before either holds it (the read is held open on purpose until both
    have read): the second hold fails on the locked balance and must become a
    clean 51 decline, with nothing half-written."""
    from veix.persistence.fast_pg import PgAuthorizationStore
    from veix.persistence.repositories.authorizations import SqlAuthorizationStore

    store_class: Any = SqlAuthorizationStore if store == "core" else PgAuthorizationStore
    read_features = store_class.features
    both_read = asyncio.Barrier(2)

    reads = 0

    async def features_read_together(self: Any, *args: Any) -> Any:
        nonlocal reads
        found = await read_features(self, *args)
        reads += 1
        if reads <= 2:  # the two first reads; a decision run again (the asyncpg store's retry) does not wait
            await asyncio.wait_for(both_read.wait(), timeout=10)
        return found

    biz = await new_business(api, fund="10.00")
    first, second = [await issue_card(app, biz.id) for _ in range(2)]
    monkeypatch.setattr(store_class, "features", features_read_together)

    answers = await _fire(network, [(first, Decimal("7.00")), (second, Decimal("7.00"))])

    assert sorted(a["reason"] for a in answers) == ["approved", "insufficient_funds"]
    try:
        await _check_money(api, app, biz, Decimal("10.00"), answers)
    finally:
        await _forget_empty_entries(app, biz)


async def test_clearings_and_increments_of_one_authorization_at_once_never_deadlock(api, app, network):
    """An incremental authorization locks the card, then its original; a
    clearing of that original must take the same order (card, then
    authorization), or the two can wait for each other until PostgreSQL
    cancels one (before the fix this test got 500s on both stores)."""
    biz = await new_business(api, fund="1000.00")
    card = await issue_card(app, biz.id)
    originals = [await network.authorize(card, "50.00", at=THURSDAY_AFTERNOON) for _ in range(6)]

    async def increment(original: dict[str, Any]) -> Any:
        return await network.post(AUTHORIZATIONS, auth_body(card, "5.00", kind="incremental",
                                                            original_id=original["id"], at=THURSDAY_AFTERNOON))

    async def clearing(original: dict[str, Any]) -> Any:
        return await network.post(network_helpers.CLEARINGS, {
            "id": f"clr_{uuid.uuid4().hex}", "authorization_id": original["id"], "amount": "20.00",
            "currency": "EUR", "final": False, "at": THURSDAY_AFTERNOON})

    responses = await asyncio.gather(*(f(o) for o in originals for f in (increment, clearing, increment, clearing)))

    # A deadlock ends with PostgreSQL cancelling one of the two (after deadlock_timeout): a 500.
    assert [r.status_code for r in responses] == [200] * len(responses), [r.text for r in responses]
    rows = {r.network_id: r for r in await card_transactions_of(app, biz)}
    for o in originals:
        row = rows[o["id"]]
        assert (row.billing_amount, row.cleared_amount, row.held_amount) == (
            Decimal("60.00"), Decimal("40.00"), Decimal("20.00"))
    assert await holds_balance(app, biz) == Decimal("120.00")
