"""fast_pg.LateLookups: late authorizations' lookups of their earlier answers
on PostgreSQL, batched, on a connection of their own (what the network
endpoint does with them: test_network_deadline)."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import asyncpg
import pytest

from tests.conftest import TEST_DB_URL
from tests.integration import network_helpers
from tests.integration.network_helpers import (
    AUTHORIZATIONS,
    auth_body,
    issue_card,
    locked_exclusively,
    new_business,
)
from veix.domain.authorization import StoredAuth
from veix.persistence.fast_pg import _ANSWERED_BEFORE_SQL, LateLookups

pytestmark = pytest.mark.postgres
network = network_helpers.network


async def test_many_lookups_at_once_each_get_their_own_answer(app: Any, api: Any, network: Any) -> None:
    biz = await new_business(api, fund="500.00")
    card = await issue_card(app, biz.id)
    decided = []
    for i in range(5):
        body, msg_id = auth_body(card, f"{i + 1}.00"), f"msg_{uuid.uuid4().hex}"
        decided.append((msg_id, body["id"], (await network.post(AUTHORIZATIONS, body, msg_id=msg_id)).json()))
    lookups = await LateLookups.open(TEST_DB_URL, statement_timeout=1.0)
    try:
        keys: list[tuple[str | None, str]] = []
        for msg_id, network_id, _ in decided:
            keys += [(msg_id, network_id), (None, network_id), (f"msg_{uuid.uuid4().hex}", network_id)]
        keys += [(f"msg_{uuid.uuid4().hex}", f"auth_{uuid.uuid4().hex}") for _ in range(20)]
        found = await asyncio.gather(*(lookups.find(m, n, within=5.0) for m, n in keys))
    finally:
        await lookups.close()
    for d, (msg_id, network_id, answer) in enumerate(decided):
        by_message, by_id, by_id_new_message = found[3 * d:3 * d + 3]
        assert by_message == (200, answer)  # the answer kept under the webhook-id, exactly
        for auth in (by_id, by_id_new_message):
            assert isinstance(auth, StoredAuth)
            assert (auth.network_id, str(auth.id)) == (network_id, answer["card_transaction_id"])
    assert found[15:] == [None] * 20


async def test_the_lookup_reads_by_index_whatever_the_statistics_say(app: Any) -> None:
    """The plan is generic and made once per connection: it must not hash
    whole tables because they were small when it was made."""
    lookups = await LateLookups.open(TEST_DB_URL, statement_timeout=1.0)
    try:
        async with lookups._pool.connection() as conn:
            await conn.execute("ANALYZE network_messages; ANALYZE card_transactions")
            plan = json.dumps(await conn.fetchval("EXPLAIN (FORMAT JSON) " + _ANSWERED_BEFORE_SQL,
                                                  ["m1", "m2"], ["a1", "a2"]))
    finally:
        await lookups.close()
    assert "Seq Scan" not in plan and "Hash" not in plan, plan
    assert "pk_network_messages" in plan and "uq_card_transactions_network_id" in plan, plan


async def test_a_lookup_that_does_not_come_in_time_times_out(app: Any) -> None:
    lookups = await LateLookups.open(TEST_DB_URL, statement_timeout=0.2)
    try:
        async with locked_exclusively("network_messages"):
            with pytest.raises((TimeoutError, asyncpg.QueryCanceledError)):
                await lookups.find("m", "a", within=0.5)
        assert await lookups.find("m", "a", within=5.0) is None  # the connection was kept, and works
    finally:
        await lookups.close()


async def test_closing_stops_the_batch_in_flight(app: Any) -> None:
    lookups = await LateLookups.open(TEST_DB_URL, statement_timeout=5.0)
    try:
        async with locked_exclusively("network_messages") as other:
            waiting = asyncio.create_task(lookups.find("m", "a", within=1.0))
            await asyncio.sleep(0.1)  # its statement waits for the lock
            await asyncio.wait_for(lookups.close(), timeout=0.5)  # not the 5 s statement timeout
            # ... and no statement of it is left waiting on the server
            await asyncio.sleep(0.2)
            assert await other.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE 'SELECT k.i,%'") == 0
            with pytest.raises(TimeoutError):
                await waiting
    finally:
        await lookups.close()  # (again: a no-op)
