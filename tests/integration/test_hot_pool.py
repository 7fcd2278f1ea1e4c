"""The authorization path's connection pool (veix.persistence.fast_pg.HotPool) on a real
PostgreSQL: a bound on connections, waiters served in turn, and no connection handed
out again that is closed, killed by the server or left in a transaction; amounts in
the text format its connections use for numeric; under a standing queue, the newest
waiter first and waiters that give up at their start-by time."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from decimal import Decimal

import asyncpg
import pytest

from tests.conftest import database_url
from veix.persistence.fast_pg import HotPool, QueueTimeout, asyncpg_connect_args, create_pool

pytestmark = pytest.mark.postgres


@pytest.fixture
async def pool() -> AsyncIterator[HotPool]:
    made = await create_pool(database_url(), size=2)
    try:
        yield made
    finally:
        await made.close()


async def test_at_most_size_connections_and_a_waiter_gets_the_next_one_released(pool: HotPool) -> None:
    first, second = await pool.acquire(), await pool.acquire()
    assert first is not second
    third = asyncio.create_task(pool.acquire())
    await asyncio.sleep(0.1)
    assert not third.done()  # both in use: it waits
    pool.release(first)
    assert await asyncio.wait_for(third, timeout=2) is first
    pool.release(second)
    pool.release(first)
    assert await pool.acquire() is first  # most recently released first
    pool.release(first)


async def test_a_connection_left_in_a_transaction_is_closed_not_reused(pool: HotPool) -> None:
    conn = await pool.acquire()
    await conn.execute("BEGIN")
    pool.release(conn)  # e.g. a statement cancelled mid-transaction
    assert conn.is_closed()
    again = await pool.acquire()
    assert again is not conn and await again.fetchval("SELECT 1") == 1
    assert not again.is_in_transaction()
    pool.release(again)


async def test_a_waiter_gets_a_new_connection_when_one_is_dropped(pool: HotPool) -> None:
    first, second = await pool.acquire(), await pool.acquire()
    waiting = asyncio.create_task(pool.acquire())
    await asyncio.sleep(0.05)
    await first.execute("BEGIN")
    pool.release(first)  # dropped: the waiter opens a new one instead of waiting forever
    fresh = await asyncio.wait_for(waiting, timeout=5)
    assert fresh is not first and fresh is not second and await fresh.fetchval("SELECT 1") == 1
    pool.release(fresh)
    pool.release(second)


async def test_a_connection_the_server_ended_is_skipped(pool: HotPool) -> None:
    conn = await pool.acquire()
    pid = conn.get_server_pid()
    pool.release(conn)
    admin = await asyncpg.connect(**asyncpg_connect_args(database_url()))
    try:
        assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid)
    finally:
        await admin.close()
    await asyncio.sleep(0.2)  # the client sees the socket close
    assert conn.is_closed()
    async with pool.connection() as fresh:
        assert fresh is not conn and await fresh.fetchval("SELECT 1") == 1


async def test_a_cancelled_waiter_loses_no_connection(pool: HotPool) -> None:
    first, second = await pool.acquire(), await pool.acquire()
    waiting = asyncio.create_task(pool.acquire())
    await asyncio.sleep(0.05)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    pool.release(first)
    pool.release(second)
    got = [await asyncio.wait_for(pool.acquire(), timeout=2) for _ in range(2)]
    assert {id(c) for c in got} == {id(first), id(second)}
    for conn in got:
        pool.release(conn)


async def test_closing_ends_idle_connections_and_refuses_new_acquires(pool: HotPool) -> None:
    idle, busy = await pool.acquire(), await pool.acquire()
    pool.release(idle)
    await pool.close()
    assert idle.is_closed() and not busy.is_closed()
    pool.release(busy)  # in use while closing: closed when released
    assert busy.is_closed()
    with pytest.raises(Exception, match="closed"):
        await pool.acquire()


async def test_a_failed_connect_frees_its_slot() -> None:
    """The database unreachable: each acquire fails at once (its slot is given back, so
    the next one tries again instead of waiting for a connection that never comes)."""
    pool = HotPool({"host": "127.0.0.1", "port": 1, "user": "postgres", "timeout": 2}, size=1)
    for _ in range(2):
        with pytest.raises(ConnectionRefusedError):  # not a TimeoutError from waiting
            await asyncio.wait_for(pool.acquire(), timeout=5)
    await pool.close()


@pytest.mark.parametrize("text", [
    "0.01", "100.00", "1000000.000000", "-42.500000", "123456789012345.123456", "1E+2", "0E-8", "-0.000001"])
async def test_amounts_go_and_come_back_exactly_in_text_format(pool: HotPool, text: str) -> None:
    """The pool's connections send and read numeric as text (fast_pg._init): every amount
    comes back equal, with the scale PostgreSQL keeps (2 for numeric(18, 2))."""
    value = Decimal(text)
    async with pool.connection() as conn:
        back, scaled, as_text = await conn.fetchrow(
            "SELECT $1::numeric, $1::numeric(30, 2), $1::numeric::text", value)
    assert back == value and type(back) is Decimal
    assert scaled == value.quantize(Decimal("0.01")) and scaled.as_tuple().exponent == -2
    assert Decimal(as_text) == value
    async with pool.connection() as conn:  # and in arrays, both ways
        assert await conn.fetchval("SELECT $1::numeric[]", [value, None]) == [value, None]


async def test_a_waiter_gives_up_at_its_start_by_time_and_takes_no_connection(pool: HotPool) -> None:
    first, second = await pool.acquire(), await pool.acquire()
    began = time.monotonic()
    with pytest.raises(QueueTimeout):
        await pool.acquire(start_by=began + 0.2)
    assert 0.19 <= time.monotonic() - began < 1.5
    with pytest.raises(QueueTimeout):  # already past it: no wait at all
        await pool.acquire(start_by=time.monotonic() - 1)
    pool.release(first)  # nobody is waiting any more: it goes back to the pool
    assert await pool.acquire(start_by=time.monotonic() - 1) is first  # a free one is taken even late
    pool.release(first)
    pool.release(second)


async def test_a_queue_that_moves_is_served_in_turn(pool: HotPool) -> None:
    first, second = await pool.acquire(), await pool.acquire()
    later = time.monotonic() + 5
    a = asyncio.create_task(pool.acquire(start_by=later))
    await asyncio.sleep(0)
    b = asyncio.create_task(pool.acquire(start_by=later))
    await asyncio.sleep(0.01)  # well under lifo_after (50 ms)
    pool.release(first)
    assert await asyncio.wait_for(a, timeout=2) is first and not b.done()
    pool.release(second)
    assert await asyncio.wait_for(b, timeout=2) is second
    pool.release(first)
    pool.release(second)


async def test_a_standing_queue_serves_the_newest_waiter_first(pool: HotPool) -> None:
    first, second = await pool.acquire(), await pool.acquire()
    later = time.monotonic() + 5
    oldest = asyncio.create_task(pool.acquire(start_by=later))
    await asyncio.sleep(0.1)  # it has waited longer than lifo_after: the queue is standing
    middle = asyncio.create_task(pool.acquire(start_by=later))
    await asyncio.sleep(0.01)
    newest = asyncio.create_task(pool.acquire(start_by=later))
    await asyncio.sleep(0.01)
    pool.release(first)
    assert await asyncio.wait_for(newest, timeout=2) is first
    assert not oldest.done() and not middle.done()
    pool.release(second)
    assert await asyncio.wait_for(middle, timeout=2) is second
    pool.release(first)  # the last one waiting
    assert await asyncio.wait_for(oldest, timeout=2) is first
    pool.release(first)
    pool.release(second)


async def test_a_waiter_without_a_deadline_is_served_first_once_it_is_the_oldest(pool: HotPool) -> None:
    """Adaptive LIFO cannot starve it: only waiters on a network's clock give up."""
    first, second = await pool.acquire(), await pool.acquire()
    patient = asyncio.create_task(pool.acquire())
    await asyncio.sleep(0.1)
    hurried = asyncio.create_task(pool.acquire(start_by=time.monotonic() + 5))
    await asyncio.sleep(0.01)
    pool.release(first)
    assert await asyncio.wait_for(patient, timeout=2) is first and not hurried.done()
    pool.release(second)
    assert await asyncio.wait_for(hurried, timeout=2) is second
    pool.release(first)
    pool.release(second)


async def test_a_waiter_that_gave_up_is_skipped(pool: HotPool) -> None:
    first, second = await pool.acquire(), await pool.acquire()
    gone = asyncio.create_task(pool.acquire(start_by=time.monotonic() + 0.05))
    await asyncio.sleep(0.01)
    waiting = asyncio.create_task(pool.acquire(start_by=time.monotonic() + 5))
    with pytest.raises(QueueTimeout):
        await gone
    pool.release(first)
    assert await asyncio.wait_for(waiting, timeout=2) is first
    pool.release(first)
    pool.release(second)
