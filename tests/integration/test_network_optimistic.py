"""The optimistic authorization on PostgreSQL (veix.persistence.fast_pg).

A decision is first made without a transaction or a lock: one read, one
guarded writes statement. These tests change what the decision read between
its read and its writes (the read is held open on purpose until the change
has committed, or a change is left in flight while the writes wait on it)
and check that no approval is written on stale reads: the decision runs again
under the card's lock and answers as if the change had come first. The
attempts are counted in ``veix_authorization_attempts_total`` (``/metrics``).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any

import asyncpg
import pytest

from tests.conftest import TEST_DB_URL
from tests.integration import network_helpers
from tests.integration.network_helpers import (
    AUTHORIZATIONS,
    RESTAURANT,
    attempts,
    attempts_during,
    auth_body,
    balance,
    card_transaction,
    card_transaction_count,
    holds_balance,
    issue_card,
    new_business,
    set_card_status,
    spend,
)
from veix.persistence.fast_pg import DEBIT_REFUSED, STALE_READ, asyncpg_connect_args

network = network_helpers.network  # the fixture: signed HTTP to the app

pytestmark = pytest.mark.postgres

UPDATE_CONTROLS = """mutation($i: UpdateCardControlsInput!){ updateCardControls(input:$i){
  card{ id } userErrors{ field code message } } }"""


@pytest.fixture(autouse=True)
def hot_path(app) -> None:
    if app.state.services.fast_pool is None:
        pytest.skip("the optimistic decision is the asyncpg hot path's (PostgreSQL)")


def approved(answer: dict[str, Any], amount: str) -> None:
    assert (answer["approved"], answer["response_code"]) == (True, "00"), answer
    assert answer["approved_amount"] == amount, answer


def declined(answer: dict[str, Any], code: str, reason: str) -> None:
    assert (answer["approved"], answer["response_code"], answer["reason"]) == (False, code, reason), answer


def after_the_first_read(monkeypatch, change: Callable[[], Awaitable[None]], nth: int = 1) -> None:
    """Run ``change`` once, after the first decision's card and features were read
    (with ``nth``, the nth such read: 2 is the attempt under the lock that follows
    an optimistic one) and before it writes."""
    from veix.persistence.fast_pg import PgAuthorizationStore

    read = PgAuthorizationStore.card_for_auth
    reads = 0

    async def read_then_change(self: Any, **kwargs: Any) -> Any:
        nonlocal reads
        found = await read(self, **kwargs)
        reads += 1
        if reads == nth:
            await change()
        return found

    monkeypatch.setattr(PgAuthorizationStore, "card_for_auth", read_then_change)


async def test_a_plain_approval_and_a_decline_take_one_optimistic_attempt(api, app, network):
    biz = await new_business(api, fund="100.00")
    card = await issue_card(app, biz.id, controls={"dailyLimit": "50.00"})

    answer, counted = await attempts_during(network, lambda: network.authorize(card, "30.00"))
    approved(answer, "30.00")
    assert counted == {("optimistic", "decided"): 1}
    answer, counted = await attempts_during(network, lambda: network.authorize(card, "30.00"))
    declined(answer, "61", "daily_limit_exceeded")
    assert counted == {("optimistic", "decided"): 1}
    answer, counted = await attempts_during(network, lambda: network.authorize(card, "20.00"))
    approved(answer, "20.00")
    assert counted == {("optimistic", "decided"): 1}

    assert sorted((await spend(app, card)).values()) == [Decimal("50.00"), Decimal("50.00")]  # day, month
    assert await balance(api, biz) == "50.00"
    assert await holds_balance(app, biz) == Decimal("50.00")


async def test_decisions_the_optimistic_attempt_does_not_make_run_under_the_lock(api, app, network):
    biz = await new_business(api, fund="500.00")
    single = await issue_card(app, biz.id, type="SINGLE_USE")
    answer, counted = await attempts_during(network, lambda: network.authorize(single, "10.00"))
    approved(answer, "10.00")  # the card closes itself: a write the optimistic attempt does not make
    assert counted == {("optimistic", "unsupported"): 1, ("locked", "decided"): 1}
    declined(await network.authorize(single, "10.00"), "14", "card_closed")

    card = await issue_card(app, biz.id)
    original = await network.authorize(card, "20.00")
    answer, counted = await attempts_during(
        network, lambda: network.authorize(card, "5.00", kind="incremental", original_id=original["id"]))
    approved(answer, "5.00")  # the original is read and locked in the transaction
    assert counted == {("optimistic", "unsupported"): 1, ("locked", "decided"): 1}
    assert (await card_transaction(app, original["id"])).held_amount == Decimal("25.00")

    waiting = await issue_card(app, biz.id, controls={"requiresApproval": True})
    answer, counted = await attempts_during(network, lambda: network.authorize(waiting, "15.00"))
    declined(answer, "05", "approval_required")
    assert counted == {("optimistic", "unsupported"): 1, ("locked", "decided"): 1}
    assert await balance(api, biz) == "465.00"


async def test_a_card_frozen_after_the_read_is_not_approved(api, app, network, monkeypatch):
    biz = await new_business(api, fund="100.00")
    card = await issue_card(app, biz.id)
    after_the_first_read(monkeypatch, lambda: set_card_status(app, card, "FROZEN"))

    answer, counted = await attempts_during(network, lambda: network.authorize(card, "40.00"))

    declined(answer, "62", "card_frozen")
    assert counted == {("optimistic", "conflict"): 1, ("locked", "decided"): 1}
    assert await card_transaction_count(app, card) == 1
    assert await balance(api, biz) == "100.00"
    assert await holds_balance(app, biz) == Decimal(0)
    assert await spend(app, card) == {}


async def test_controls_changed_after_the_read_are_the_ones_applied(api, app, network, monkeypatch):
    biz = await new_business(api, fund="100.00")
    card = await issue_card(app, biz.id)

    async def block_restaurants() -> None:
        data = await api.ok(UPDATE_CONTROLS, {"i": {"cardId": card.id, "controls": {
            "blockedMerchantCategories": [RESTAURANT["mcc"]]}}}, biz.token)
        assert data["updateCardControls"]["userErrors"] == []

    after_the_first_read(monkeypatch, block_restaurants)
    answer, counted = await attempts_during(network, lambda: network.authorize(card, "40.00"))

    declined(answer, "57", "merchant_category_blocked")
    assert counted == {("optimistic", "conflict"): 1, ("locked", "decided"): 1}
    assert await balance(api, biz) == "100.00"


async def test_spend_raised_after_the_read_counts_against_the_limit(api, app, network, monkeypatch):
    """Two decisions on one card both read the same spend before either writes:
    only the compare-and-set of the counters stops the second from passing a
    limit the first already used."""
    biz = await new_business(api, fund="500.00")
    card = await issue_card(app, biz.id, controls={"dailyLimit": "100.00"})
    other: dict[str, Any] = {}

    async def another_approval_first() -> None:
        other.update(await network.authorize(card, "70.00"))

    after_the_first_read(monkeypatch, another_approval_first)
    answer, counted = await attempts_during(network, lambda: network.authorize(card, "60.00"))

    approved(other, "70.00")
    declined(answer, "61", "daily_limit_exceeded")
    # The inner approval took one optimistic attempt; the outer one conflicted, then was decided under the lock.
    assert counted == {("optimistic", "decided"): 1, ("optimistic", "conflict"): 1, ("locked", "decided"): 1}
    assert sum((await spend(app, card)).values()) == Decimal("140.00")  # the day and the month
    assert await balance(api, biz) == "430.00"
    assert await holds_balance(app, biz) == Decimal("70.00")


async def test_a_card_change_in_flight_while_the_writes_wait_is_seen(api, app, network):
    """A transaction elsewhere has changed the card row and not committed when
    the decision writes: the writes statement waits for the card's lock, then
    sees the row is not the version it read (PostgreSQL re-checks the locked
    row's newest version) and the decision runs again under the lock."""
    biz = await new_business(api, fund="100.00")
    card = await issue_card(app, biz.id)
    other = await asyncpg.connect(**asyncpg_connect_args(TEST_DB_URL))
    try:
        held = other.transaction()
        await held.start()
        await other.execute("UPDATE virtual_cards SET status = 'frozen' WHERE id = $1", card.raw_id)
        before = await attempts(network)
        deciding = asyncio.create_task(network.authorize(card, "40.00"))
        for _ in range(200):  # until the writes statement waits for the card's lock
            waiting = await other.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE pg_backend_pid() = ANY(pg_blocking_pids(pid))")
            if waiting or deciding.done():
                break
            await asyncio.sleep(0.02)
        assert waiting == 1 and not deciding.done()
        await held.commit()
        answer = await asyncio.wait_for(deciding, 10)
    finally:
        await other.close()
    after = await attempts(network)

    declined(answer, "62", "card_frozen")
    assert {k: v - before.get(k, 0) for k, v in after.items() if v != before.get(k, 0)} == {
        ("optimistic", "conflict"): 1, ("locked", "decided"): 1}
    assert await balance(api, biz) == "100.00"
    assert await holds_balance(app, biz) == Decimal(0)


async def test_a_webhook_id_answered_after_the_read_keeps_its_first_answer(api, app, network, monkeypatch):
    """The same message (same webhook-id) arrives twice; the second is answered
    while the first is between its read and its writes: the first writes
    nothing and returns the stored answer."""
    biz = await new_business(api, fund="100.00")
    card = await issue_card(app, biz.id)
    body = auth_body(card, "25.00", network_id=f"auth_{uuid.uuid4().hex}")
    msg_id = f"msg_{uuid.uuid4().hex}"
    inner: list[Any] = []

    async def the_same_message_first() -> None:
        inner.append(await network.post(AUTHORIZATIONS, body, msg_id=msg_id))

    after_the_first_read(monkeypatch, the_same_message_first)
    outer = await network.post(AUTHORIZATIONS, body, msg_id=msg_id)

    assert outer.status_code == inner[0].status_code == 200
    assert outer.json() == inner[0].json()
    approved(outer.json(), "25.00")
    assert await card_transaction_count(app, card) == 1
    assert await balance(api, biz) == "75.00"


async def test_funds_taken_after_the_read_by_another_card_decline_the_decision(api, app, network, monkeypatch):
    """Another card of the business spends most of the balance between the
    decision's read and its writes: the writes statement's debit is refused
    (VXD01), nothing is written, and under the lock the decision declines 51."""
    biz = await new_business(api, fund="100.00")
    card, other_card = await issue_card(app, biz.id), await issue_card(app, biz.id)
    other: dict[str, Any] = {}

    async def the_other_card_spends() -> None:
        other.update(await network.authorize(other_card, "80.00"))

    after_the_first_read(monkeypatch, the_other_card_spends)
    answer, counted = await attempts_during(network, lambda: network.authorize(card, "50.00"))

    approved(other, "80.00")
    declined(answer, "51", "insufficient_funds")
    assert counted == {("optimistic", "decided"): 1, ("optimistic", "conflict"): 1, ("locked", "decided"): 1}
    assert await balance(api, biz) == "20.00"
    assert await holds_balance(app, biz) == Decimal("80.00")
    assert await spend(app, card) == {}


async def test_funds_taken_while_a_locked_decision_decides_are_not_overdrawn(api, app, network, monkeypatch):
    """A single-use card decides under its lock (with its debit deferred to the
    writes statement); another card takes the money after that read: the
    deferred debit is refused (VXD01, DebitRefused), and the decision runs
    again debiting at once, which declines it 51."""
    biz = await new_business(api, fund="100.00")
    single, other_card = await issue_card(app, biz.id, type="SINGLE_USE"), await issue_card(app, biz.id)
    other: dict[str, Any] = {}

    async def the_other_card_spends() -> None:
        other.update(await network.authorize(other_card, "80.00"))

    after_the_first_read(monkeypatch, the_other_card_spends, nth=2)  # the locked attempt's read
    answer, counted = await attempts_during(network, lambda: network.authorize(single, "50.00"))

    approved(other, "80.00")
    declined(answer, "51", "insufficient_funds")
    assert counted == {("optimistic", "unsupported"): 1, ("optimistic", "decided"): 1,
                       ("locked", "debit_refused"): 1, ("locked", "decided"): 1}
    assert await balance(api, biz) == "20.00"
    assert await holds_balance(app, biz) == Decimal("80.00")
    approved(await network.authorize(single, "10.00"), "10.00")  # the declined attempt did not use it up
    declined(await network.authorize(single, "1.00"), "14", "card_closed")


async def test_the_writes_guard_fails_the_statement_with_its_own_code_and_message(app):
    """What the PostgreSQL log shows when a guard fails (migration 0008)."""
    conn = await asyncpg.connect(**asyncpg_connect_args(TEST_DB_URL))
    try:
        assert await conn.fetchval("SELECT veix_writes_guard(true, true)") is True
        for unchanged, funded, code, says in ((False, False, STALE_READ, "has changed"),
                                              (True, False, DEBIT_REFUSED, "would overdraw")):
            with pytest.raises(asyncpg.PostgresError) as failed:
                await conn.fetchval("SELECT veix_writes_guard($1, $2)", unchanged, funded)
            assert failed.value.sqlstate == code and says in str(failed.value)
    finally:
        await conn.close()
