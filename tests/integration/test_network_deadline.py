"""The network's deadline (VEIX_NETWORK_DEADLINE_MS): an authorization that
waited longer than that for the database is answered 91 (issuer unavailable)
and not decided: nothing is written, and the answer is not kept under the
webhook-id, so the network's redelivery of the same message is decided. A
late redelivery of a request decided before is answered with that decision.

The wait is real: on PostgreSQL every connection of the hot path's pool is
held, on SQLite another connection holds the write lock (BEGIN IMMEDIATE),
for longer than the deadline; then they are let go and the request, which
was waiting for them, goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import func, select

from tests.integration import network_helpers
from tests.integration.network_helpers import (
    AUTHORIZATIONS,
    auth_body,
    balance,
    card_transaction,
    counter,
    holds_balance,
    issue_card,
    locked_exclusively,
    new_business,
    spend,
)
from veix.persistence.tables import outbox
from veix.resolvers.network import REDELIVERY_LOOKUP_BUDGET

network = network_helpers.network  # the fixture: signed HTTP to the app

HELD_FOR = 0.6  # seconds the database is kept busy
DEADLINE = 0.2


@contextlib.asynccontextmanager
async def database_busy(app: Any) -> AsyncIterator[None]:
    """Every decision waits for the database while this is open."""
    services = app.state.services
    if services.fast_pool is not None:  # PostgreSQL: no free connection in the hot path's pool
        pool = services.fast_pool
        held = [await pool.acquire() for _ in range(pool.size)]
        try:
            yield
        finally:
            for conn in held:
                pool.release(conn)
        return
    path = services.engine.url.database  # SQLite: another writer holds the write lock
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            other.execute("ROLLBACK")
    finally:
        other.close()


@contextlib.contextmanager
def network_deadline(app: Any, seconds: float) -> Any:
    """The app's network deadline set to ``seconds`` for the block (the session app's is 60 s)."""
    services = app.state.services
    before = services.network_deadline
    services.network_deadline = seconds
    try:
        yield
    finally:
        services.network_deadline = before


@pytest.fixture
def short_deadline(app: Any) -> Any:
    with network_deadline(app, DEADLINE):
        yield


async def outbox_count(app: Any) -> int:
    async with app.state.services.engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(outbox))).scalar_one())


async def past_deadline(network: Any) -> dict[str, float]:
    """``veix_authorizations_past_deadline_total`` by stage."""
    found = await counter(network, "veix_authorizations_past_deadline", "stage")
    return {stage: found.get((stage,), 0.0) for stage in ("queued", "decided")}


async def late_lookups(network: Any) -> dict[str, float]:
    """``veix_authorizations_late_lookups_total`` by outcome."""
    found = await counter(network, "veix_authorizations_late_lookups", "outcome")
    return {outcome: found.get((outcome,), 0.0) for outcome in ("decided_before", "new", "failed")}


async def while_busy(app: Any, requests: list[Any]) -> list[Any]:
    """Send ``requests`` (coroutines) while the database is busy for HELD_FOR; their
    answers. On PostgreSQL they are answered while it is still busy (they give up
    their place in the pool's queue at 0.9 of the deadline); on SQLite a request
    that needs the write lock is answered after."""
    async with database_busy(app):
        pending = [asyncio.create_task(r) for r in requests]
        if app.state.services.fast_pool is not None:
            return list(await asyncio.wait_for(asyncio.gather(*pending), timeout=HELD_FOR - 0.1))
        await asyncio.sleep(HELD_FOR)
    return list(await asyncio.gather(*pending))


async def test_a_request_that_waited_past_the_deadline_is_answered_91_and_nothing_is_written(
        app: Any, api: Any, network: Any, short_deadline: Any) -> None:
    biz = await new_business(api, fund="1000.00")
    card = await issue_card(app, biz.id)
    body = auth_body(card, "40.00")
    msg_id = f"msg_{uuid.uuid4().hex}"
    events, shed = await outbox_count(app), await past_deadline(network)

    async with database_busy(app):
        began = asyncio.get_running_loop().time()
        pending = asyncio.create_task(network.post(AUTHORIZATIONS, body, msg_id=msg_id))
        if app.state.services.fast_pool is not None:
            # PostgreSQL: the request gives up its place in the pool's queue at its start-by
            # time (0.9 of the deadline) and is answered while the database is still busy.
            r = await asyncio.wait_for(pending, timeout=HELD_FOR - 0.1)
            assert asyncio.get_running_loop().time() - began >= 0.9 * DEADLINE
        else:  # SQLite: it waits for the write lock inside the decision, then writes nothing
            await asyncio.sleep(HELD_FOR)
            assert not pending.done()
    if app.state.services.fast_pool is None:
        r = await pending

    assert r.status_code == 200, r.text
    answer = r.json()
    assert (answer["approved"], answer["response_code"], answer["reason"]) == (False, "91", "issuer_unavailable")
    assert answer["approved_amount"] == "0.00" and answer["card_transaction_id"] is None
    assert "pan" not in r.text and card.pan not in r.text
    assert await card_transaction(app, body["id"]) is None
    assert await balance(api, biz) == "1000.00"
    assert await holds_balance(app, biz) == Decimal(0)
    assert sum((await spend(app, card)).values(), Decimal(0)) == 0
    assert await outbox_count(app) == events
    # On PostgreSQL the request waited for a connection and was answered before its decision
    # began (the cheap way out of an overload); SQLite's wait is the write lock, inside it.
    stage = "queued" if app.state.services.fast_pool is not None else "decided"
    assert await past_deadline(network) == {**shed, stage: shed[stage] + 1}

    # The network redelivers the same message (same webhook-id): it is decided now.
    again = await network.post(AUTHORIZATIONS, body, msg_id=msg_id)
    assert again.status_code == 200, again.text
    assert (again.json()["response_code"], again.json()["approved_amount"]) == ("00", "40.00")
    assert await balance(api, biz) == "960.00"
    assert await holds_balance(app, biz) == Decimal("40.00")
    # ... and from then on that webhook-id has its answer.
    stored = await network.post(AUTHORIZATIONS, body, msg_id=msg_id)
    assert stored.json() == again.json()
    assert await balance(api, biz) == "960.00"


async def test_a_short_wait_within_the_deadline_is_decided(app: Any, api: Any, network: Any) -> None:
    with network_deadline(app, 5.0):
        biz = await new_business(api, fund="100.00")
        card = await issue_card(app, biz.id)
        async with database_busy(app):
            pending = asyncio.create_task(network.post(AUTHORIZATIONS, auth_body(card, "25.00")))
            await asyncio.sleep(0.3)
            assert not pending.done()
        r = await pending
    assert r.json()["response_code"] == "00", r.text
    assert await balance(api, biz) == "75.00"


async def test_many_requests_past_the_deadline_leave_the_ledger_and_balance_untouched(
        app: Any, api: Any, network: Any, short_deadline: Any) -> None:
    """A burst arriving while the database is busy: every one is answered
    (91), none writes, and the next request is decided normally."""
    biz = await new_business(api, fund="500.00")
    card = await issue_card(app, biz.id)
    async with database_busy(app):
        pending = [asyncio.create_task(network.post(AUTHORIZATIONS, auth_body(card, "10.00")))
                   for _ in range(30)]
        await asyncio.sleep(HELD_FOR)
    answers = [(await p).json() for p in pending]
    assert {a["response_code"] for a in answers} == {"91"}
    assert await balance(api, biz) == "500.00"
    assert await holds_balance(app, biz) == Decimal(0)
    after = await network.authorize(card, "10.00")
    assert after["response_code"] == "00"
    assert await balance(api, biz) == "490.00"


async def test_a_decision_is_not_started_in_the_last_tenth_of_the_deadline(app: Any, api: Any, network: Any) -> None:
    """Budget 2 s, the database busy for 1.9 s: past the start-by time (1.8 s)
    though not the finish-by time (2 s). On PostgreSQL the request waited in
    the pool's queue and gives up at 1.8 s, answered 91 without starting a
    decision that would likely end past the deadline; on SQLite the wait is
    for the write lock, inside the decision, which ends in time and is
    written."""
    with network_deadline(app, 2.0):
        biz = await new_business(api, fund="100.00")
        card = await issue_card(app, biz.id)
        shed = await past_deadline(network)
        async with database_busy(app):
            pending = asyncio.create_task(network.post(AUTHORIZATIONS, auth_body(card, "30.00")))
            await asyncio.sleep(1.9)
        answer = (await pending).json()
    if app.state.services.fast_pool is not None:
        assert answer["response_code"] == "91", answer
        assert await past_deadline(network) == {**shed, "queued": shed["queued"] + 1}
        assert await balance(api, biz) == "100.00"
    else:
        assert answer["response_code"] == "00", answer
        assert await past_deadline(network) == shed
        assert await balance(api, biz) == "70.00"


async def test_a_late_redelivery_of_a_decided_request_gets_its_decision_not_91(
        app: Any, api: Any, network: Any, short_deadline: Any) -> None:
    """The network retries exactly when the server is slow. A request decided
    before and delivered again past the deadline, as the same message (its
    webhook-id: NETWORK.md, the original answer) or as a new one with the same
    network id, is answered with that decision, approval or decline: a 91
    would tell the network nothing was decided while the hold stands. Nothing
    is written; a new request in the same burst still gets its 91."""
    biz = await new_business(api, fund="100.00")
    card = await issue_card(app, biz.id)
    approved_body, declined_body = auth_body(card, "40.00"), auth_body(card, "500.00")
    msg_id = f"msg_{uuid.uuid4().hex}"
    approved = await network.post(AUTHORIZATIONS, approved_body, msg_id=msg_id)
    declined = await network.post(AUTHORIZATIONS, declined_body)
    assert (approved.json()["response_code"], declined.json()["response_code"]) == ("00", "51")
    assert await card_transaction(app, declined_body["id"]) is not None  # a decline is a decision too
    events, shed, late = await outbox_count(app), await past_deadline(network), await late_lookups(network)
    fresh_body = auth_body(card, "5.00")

    same_message, same_id, declined_again, fresh = await while_busy(app, [
        network.post(AUTHORIZATIONS, approved_body, msg_id=msg_id),
        network.post(AUTHORIZATIONS, approved_body),  # a new webhook-id
        network.post(AUTHORIZATIONS, declined_body),
        network.post(AUTHORIZATIONS, fresh_body),
    ])

    assert same_message.status_code == 200 and same_message.json() == approved.json()
    assert same_id.status_code == 200 and same_id.json() == approved.json()
    assert declined_again.status_code == 200 and declined_again.json() == declined.json()
    assert (fresh.json()["response_code"], fresh.json()["card_transaction_id"]) == ("91", None)
    assert await card_transaction(app, fresh_body["id"]) is None
    assert await balance(api, biz) == "60.00"
    assert await holds_balance(app, biz) == Decimal("40.00")
    assert sum((await spend(app, card)).values(), Decimal(0)) == Decimal("80.00")  # day and month
    assert await outbox_count(app) == events
    stage = "queued" if app.state.services.fast_pool is not None else "decided"
    assert await past_deadline(network) == {**shed, stage: shed[stage] + 1}  # the fresh one only
    # (The Starlette endpoint, SQLite's, answers a known webhook-id at the door, before any wait.)
    redelivered = 3 if app.state.services.fast_pool is not None else 2
    assert await late_lookups(network) == {**late, "decided_before": late["decided_before"] + redelivered,
                                           "new": late["new"] + 1}


@pytest.mark.postgres
async def test_a_late_request_whose_lookup_does_not_come_in_time_is_answered_91(
        app: Any, api: Any, network: Any, short_deadline: Any) -> None:
    """Finding out whether a late request was decided before is one read with
    its own small budget (REDELIVERY_LOOKUP_BUDGET, PostgreSQL's
    statement_timeout on the lookups' connection): if that read cannot run
    either (here another session holds card_transactions exclusively), the
    answer is 91, in time, not an error and not a wait for the lock."""
    biz = await new_business(api, fund="100.00")
    card = await issue_card(app, biz.id)
    body = auth_body(card, "40.00")
    assert (await network.post(AUTHORIZATIONS, body)).json()["response_code"] == "00"
    late = await late_lookups(network)
    async with locked_exclusively("card_transactions"), database_busy(app):
        began = asyncio.get_running_loop().time()
        r = await asyncio.wait_for(network.post(AUTHORIZATIONS, body), timeout=5)
        waited = asyncio.get_running_loop().time() - began
    assert r.status_code == 200, r.text
    assert r.json()["response_code"] == "91"
    assert waited < DEADLINE + REDELIVERY_LOOKUP_BUDGET + 1.0  # the lock was held throughout
    assert await late_lookups(network) == {**late, "failed": late["failed"] + 1}
    # The lock gone, the same late redelivery finds its decision again.
    [again] = await while_busy(app, [network.post(AUTHORIZATIONS, body)])
    assert again.json()["response_code"] == "00"


async def test_a_burst_of_late_requests_gets_each_its_own_answer(
        app: Any, api: Any, network: Any, short_deadline: Any) -> None:
    """A retry storm: 12 requests decided before (half redelivered as the same
    message, half as new messages with the same network id) and 12 new ones,
    all late at once. On PostgreSQL they are looked up together (a batch per
    statement); each gets its own answer."""
    biz = await new_business(api, fund="1000.00")
    cards = [await issue_card(app, biz.id) for _ in range(3)]
    bodies = [auth_body(cards[i % 3], f"{10 + i}.00") for i in range(12)]
    msg_ids = [f"msg_{uuid.uuid4().hex}" for _ in bodies]
    first = [(await network.post(AUTHORIZATIONS, b, msg_id=m)).json() for b, m in zip(bodies, msg_ids, strict=True)]
    assert {a["response_code"] for a in first} == {"00"}
    fresh = [auth_body(cards[i % 3], "1.00") for i in range(12)]
    late = await late_lookups(network)

    answers = await while_busy(app, [
        *(network.post(AUTHORIZATIONS, b, msg_id=m if i % 2 else None)
          for i, (b, m) in enumerate(zip(bodies, msg_ids, strict=True))),
        *(network.post(AUTHORIZATIONS, b) for b in fresh),
    ])

    assert [a.json() for a in answers[:12]] == first
    assert {a.json()["response_code"] for a in answers[12:]} == {"91"}
    assert await balance(api, biz) == f"{1000 - sum(10 + i for i in range(12))}.00"
    now = await late_lookups(network)
    assert now["new"] == late["new"] + 12 and now["failed"] == late["failed"]
