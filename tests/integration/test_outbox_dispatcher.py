"""The outbox dispatcher through real things: GraphQL funding writes the events, the app's
broadcaster (memory), or a real Redis, carries them to a subscriber."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from broadcaster import Broadcast
from sqlalchemy import BigInteger, Column, Integer, MetaData, String, Table, Uuid, insert, select, text

from tests.conftest import TEST_REDIS_URL
from tests.integration.conftest import Api, migrate_to
from tests.integration.payment_helpers import eventually
from veix.app import create_app
from veix.domain.errors import InvalidInput
from veix.events.channels import (
    EventMessage,
    business_channel,
    cursor_of,
    replay,
    seq_of_cursor,
)
from veix.events.dispatcher import DISPATCH_LOCK_KEY, PUBLISHING_LOCK_KEY, OutboxDispatcher
from veix.persistence.engine import make_engine
from veix.persistence.jobs import prune_outbox
from veix.persistence.tables import DISPATCHED_SEQ, outbox
from veix.persistence.types import JSONType, UTCDateTime
from veix.resolvers.ids import parse_global_id


def raw(global_id: str) -> uuid.UUID:
    return parse_global_id(global_id)[1]


class Listener:
    """Collects the EventMessages published on one channel."""

    def __init__(self) -> None:
        self.messages: list[EventMessage] = []

    async def pump(self, subscriber: Any) -> None:
        async for event in subscriber:
            self.messages.append(EventMessage.from_json(event.message))

    def of_type(self, event_type: str) -> list[EventMessage]:
        return [m for m in self.messages if m.type == event_type]

    async def wait_for(self, predicate: Any, within: float = 5.0, drive: Any = None) -> None:
        deadline = time.monotonic() + within
        while not predicate():
            assert time.monotonic() < deadline, f"timed out; got {self.messages}"
            if drive is not None:
                await drive()
            await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def listening(broadcast: Broadcast, channel: str) -> AsyncIterator[Listener]:
    listener = Listener()
    async with broadcast.subscribe(channel) as subscriber:
        task = asyncio.create_task(listener.pump(subscriber))
        try:
            yield listener
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def drain(dispatcher: OutboxDispatcher) -> int:
    total = 0
    for _ in range(1000):
        count = await dispatcher.run_once()
        total += count
        if count == 0:
            return total
    raise AssertionError("the outbox never drained")


async def dispatched(app: Any, ids: list[uuid.UUID]) -> list[bool]:
    """Whether each event is marked dispatched: at or below the outbox cursor."""
    async with app.state.services.engine.connect() as conn:
        rows = (await conn.execute(select(outbox.c.id, outbox.c.seq <= DISPATCHED_SEQ)
                                   .where(outbox.c.id.in_(ids)))).all()
    found = {row[0]: bool(row[1]) for row in rows}
    return [found[i] for i in ids]


async def fund(api: Api, token: str, business_id: str, amount: str) -> None:
    body = await api.fund(token, business_id, amount)
    assert "errors" not in body and body["data"]["fundBusiness"]["userErrors"] == [], body


def test_cursor_round_trip_and_malformed_cursors() -> None:
    assert seq_of_cursor(cursor_of(42)) == 42
    assert cursor_of(42) != "42"
    for bad in ("", "!!!", cursor_of(1)[:-1] + "$", "ZXZ0Og", "Zm9vOjE", "ZXZ0Oi0x"):
        with pytest.raises(InvalidInput) as caught:
            seq_of_cursor(bad)
        assert caught.value.field == ["after"]
    message = EventMessage(7, uuid.uuid4(), uuid.uuid4(), "transaction.created", {"a": "1.00"},
                           datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC))
    assert EventMessage.from_json(message.to_json()) == message
    assert business_channel(message.business_id) == f"veix.business.{message.business_id}"


async def test_funding_events_reach_the_channel_in_seq_order_and_are_marked(
        app: Any, api: Api, owner: tuple[str, str]) -> None:
    token, business_id = owner
    broadcast = app.state.broadcast
    dispatcher = OutboxDispatcher(app.state.services.engine, broadcast)
    await drain(dispatcher)  # what earlier tests left
    async with listening(broadcast, business_channel(raw(business_id))) as listener:
        for amount in ("10.00", "20.00", "30.00"):
            await fund(api, token, business_id, amount)
        await listener.wait_for(lambda: len(listener.of_type("transaction.created")) >= 3,
                                drive=dispatcher.run_once)
        created = listener.of_type("transaction.created")
        assert len(created) == 3
        seqs = [m.seq for m in created]
        assert seqs == sorted(seqs) and len(set(seqs)) == 3
        assert all(m.business_id == raw(business_id) for m in listener.messages)
        assert all(await dispatched(app, [m.id for m in created]))

        # Replay after the first: exactly the later events of this business, in order.
        later = await replay(app.state.services.engine, raw(business_id), created[0].seq)
        assert [m.id for m in later] == [m.id for m in listener.messages if m.seq > created[0].seq]
        assert [m.seq for m in later if m.type == "transaction.created"] == seqs[1:]
        assert await replay(app.state.services.engine, raw(business_id), created[-1].seq) == [
            m for m in listener.messages if m.seq > created[-1].seq]
        assert await replay(app.state.services.engine, uuid.uuid4(), 0) == []

        # Nothing new: a second run publishes nothing.
        seen = len(listener.messages)
        assert await dispatcher.run_once() == 0
        await asyncio.sleep(0.1)
        assert len(listener.messages) == seen


class CrashBeforeCommit(OutboxDispatcher):
    """Publishes, then dies before the batch is marked."""

    async def _published(self) -> None:
        raise RuntimeError("killed between publish and commit")


async def test_rows_published_but_not_marked_are_published_again_with_the_same_id_and_seq(
        app: Any, api: Api, owner: tuple[str, str]) -> None:
    token, business_id = owner
    broadcast = app.state.broadcast
    engine = app.state.services.engine
    await drain(OutboxDispatcher(engine, broadcast))
    async with listening(broadcast, business_channel(raw(business_id))) as listener:
        await fund(api, token, business_id, "15.00")

        crashing = CrashBeforeCommit(engine, broadcast)

        async def crash() -> None:
            with pytest.raises(RuntimeError, match="killed"):
                await crashing.run_once()

        await listener.wait_for(lambda: len(listener.of_type("transaction.created")) >= 1, drive=crash)
        first = listener.of_type("transaction.created")[0]
        assert await dispatched(app, [first.id]) == [False]

        restarted = OutboxDispatcher(engine, broadcast)
        await listener.wait_for(lambda: len(listener.of_type("transaction.created")) >= 2,
                                drive=restarted.run_once)
        again = listener.of_type("transaction.created")[1]
        assert (again.id, again.seq, again.payload) == (first.id, first.seq, first.payload)
        assert await dispatched(app, [first.id]) == [True]
        assert await drain(restarted) == 0


async def test_platform_events_go_to_the_platform_channel(app: Any) -> None:
    broadcast = app.state.broadcast
    engine = app.state.services.engine
    dispatcher = OutboxDispatcher(engine, broadcast)
    await drain(dispatcher)
    event_id = uuid.uuid4()
    async with listening(broadcast, "veix.platform") as listener:
        async with engine.begin() as conn:
            await conn.execute(insert(outbox).values(
                id=event_id, business_id=None, event_type="platform.test", payload={"x": 1},
                created_at=datetime.now(UTC)))
        await listener.wait_for(lambda: any(m.id == event_id for m in listener.messages),
                                drive=dispatcher.run_once)
    assert await dispatched(app, [event_id]) == [True]


async def test_the_app_runs_the_dispatcher_in_the_background(app: Any, owner: tuple[str, str]) -> None:
    token, business_id = owner
    settings = app.state.settings.model_copy(update={"run_dispatcher": True})
    live = create_app(settings, migrate_on_start=False)
    async with live.router.lifespan_context(live):
        transport = httpx.ASGITransport(app=live)
        async with httpx.AsyncClient(transport=transport, base_url="http://veix.test") as client:
            async with listening(live.state.broadcast, business_channel(raw(business_id))) as listener:
                await fund(Api(client), token, business_id, "12.34")
                await listener.wait_for(lambda: any(
                    m.type == "transaction.created" for m in listener.messages), within=10)


@pytest.mark.postgres
async def test_a_lower_seq_committing_late_is_not_overtaken(app: Any) -> None:
    """seq is taken at INSERT: a transaction holding a lower seq that commits after a higher one
    holds the higher one back, and both are published in seq order."""
    engine = app.state.services.engine
    broadcast = app.state.broadcast
    dispatcher = OutboxDispatcher(engine, broadcast)
    await drain(dispatcher)
    business = uuid.uuid4()

    def row(event_type: str) -> dict[str, Any]:
        return {"id": uuid.uuid4(), "business_id": business, "event_type": event_type,
                "payload": {}, "created_at": datetime.now(UTC)}

    slow_row, fast_row = row("slow"), row("fast")
    async with listening(broadcast, business_channel(business)) as listener:
        async with engine.connect() as slow:
            await slow.begin()
            # A real unit of work has written before its outbox insert: it has a transaction id.
            await slow.execute(text("SELECT pg_current_xact_id()"))
            await slow.execute(insert(outbox).values(**slow_row))
            async with engine.begin() as fast:
                await fast.execute(insert(outbox).values(**fast_row))
            for _ in range(5):
                await dispatcher.run_once()
            assert await dispatched(app, [fast_row["id"]]) == [False]
            await slow.commit()
        await listener.wait_for(lambda: len(listener.messages) >= 2, drive=dispatcher.run_once)
        assert [m.type for m in listener.messages] == ["slow", "fast"]
        assert listener.messages[0].seq < listener.messages[1].seq


@contextlib.asynccontextmanager
async def running(dispatcher: OutboxDispatcher) -> AsyncIterator[None]:
    stop = asyncio.Event()
    task = asyncio.create_task(dispatcher.run_forever(stop))
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=10)


@pytest.mark.postgres
async def test_a_commit_wakes_the_dispatcher_at_once(app: Any, api: Api, owner: tuple[str, str]) -> None:
    """The dispatcher's probe sees the new outbox rows: they are published long before its
    next poll (here an hour away)."""
    token, business_id = owner
    engine, broadcast = app.state.services.engine, app.state.broadcast
    await drain(OutboxDispatcher(engine, broadcast))
    dispatcher = OutboxDispatcher(engine, broadcast, interval=3600)
    async with listening(broadcast, business_channel(raw(business_id))) as listener, running(dispatcher):
        deadline = time.monotonic() + 15
        while not dispatcher.probe_up:
            assert time.monotonic() < deadline, "the dispatcher's probe never started"
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)  # the run the probe's start triggers
        for amount in ("1.00", "2.00"):
            await fund(api, token, business_id, amount)
            await listener.wait_for(lambda n=amount: any(
                m.type == "transaction.created" and m.payload.get("amount") == n for m in listener.messages),
                within=15)  # generous for a loaded machine: the alternative is the 3,600 s poll
        seqs = [m.seq for m in listener.messages]
        assert seqs == sorted(seqs)


@pytest.mark.postgres
async def test_a_horizon_held_back_is_looked_at_again_soon(app: Any) -> None:
    """A write transaction holds the horizon back: once it ends (moving no sequence, so the
    probe sees nothing), the waiting row is published after a short retry, not after the
    poll interval."""
    engine, broadcast = app.state.services.engine, app.state.broadcast
    await drain(OutboxDispatcher(engine, broadcast))
    business = uuid.uuid4()
    dispatcher = OutboxDispatcher(engine, broadcast, interval=3600, probing=False)
    async with listening(broadcast, business_channel(business)) as listener, running(dispatcher):
        async with engine.connect() as other:
            await other.begin()
            await other.execute(text("SELECT pg_current_xact_id()"))  # in flight, with an xid
            async with engine.begin() as conn:
                await conn.execute(insert(outbox).values(
                    id=uuid.uuid4(), business_id=business, event_type="held", payload={},
                    created_at=datetime.now(UTC)))
            dispatcher._wake.set()  # as the probe would
            # Generous bounds for a loaded machine: the alternative is the 3,600 s poll.
            deadline = time.monotonic() + 15
            while not dispatcher.horizon_pending:
                assert time.monotonic() < deadline, "the run never saw the row"
                await asyncio.sleep(0.005)
            await asyncio.sleep(0.1)
            assert listener.messages == []
            await other.rollback()
        await listener.wait_for(lambda: len(listener.messages) == 1, within=15)


@pytest.mark.redis
async def test_delivery_over_real_redis(app: Any, api: Api, owner: tuple[str, str]) -> None:
    """broadcaster 0.3.1 over redis-py < 8 (pinned: with 8 its Redis backend delivers nothing)."""
    import redis.asyncio as aioredis

    token, business_id = owner
    channel = business_channel(raw(business_id))
    publisher, subscriber = Broadcast(TEST_REDIS_URL), Broadcast(TEST_REDIS_URL)
    probe = aioredis.from_url(TEST_REDIS_URL)
    await publisher.connect()
    await subscriber.connect()
    try:
        dispatcher = OutboxDispatcher(app.state.services.engine, publisher)
        await drain(dispatcher)
        async with listening(subscriber, channel) as listener:
            # SUBSCRIBE travels on another connection than PUBLISH: wait until Redis has it.
            deadline = time.monotonic() + 5
            while (await probe.pubsub_numsub(channel))[0][1] < 1:
                assert time.monotonic() < deadline, "SUBSCRIBE never reached Redis"
                await asyncio.sleep(0.01)
            await fund(api, token, business_id, "42.00")
            await listener.wait_for(lambda: len(listener.of_type("transaction.created")) >= 1,
                                    drive=dispatcher.run_once)
            message = listener.of_type("transaction.created")[0]
            assert message.business_id == raw(business_id)
            assert await dispatched(app, [message.id]) == [True]
    finally:
        await subscriber.disconnect()
        await publisher.disconnect()
        await probe.aclose()


@pytest.mark.redis
async def test_a_batch_goes_to_redis_in_one_pipeline_in_seq_order(app: Any, api: Api,
                                                                    owner: tuple[str, str]) -> None:
    token, business_id = owner
    channel = business_channel(raw(business_id))
    publisher, subscriber = Broadcast(TEST_REDIS_URL), Broadcast(TEST_REDIS_URL)
    await publisher.connect()
    await subscriber.connect()
    one_by_one: list[str] = []
    direct = publisher._backend._conn.publish  # type: ignore[attr-defined]

    async def counting(channel: str, message: Any) -> Any:
        one_by_one.append(channel)
        return await direct(channel, message)

    publisher._backend._conn.publish = counting  # type: ignore[attr-defined]
    try:
        dispatcher = OutboxDispatcher(app.state.services.engine, publisher)
        await drain(dispatcher)
        one_by_one.clear()  # (a batch of one goes as a plain PUBLISH)
        async with listening(subscriber, channel) as listener:
            import redis.asyncio as aioredis

            probe = aioredis.from_url(TEST_REDIS_URL)
            try:
                deadline = time.monotonic() + 5
                while (await probe.pubsub_numsub(channel))[0][1] < 1:
                    assert time.monotonic() < deadline, "SUBSCRIBE never reached Redis"
                    await asyncio.sleep(0.01)
            finally:
                await probe.aclose()
            for amount in ("1.00", "2.00", "3.00", "4.00"):
                await fund(api, token, business_id, amount)
            assert await dispatcher.run_once() >= 4  # one batch
            await listener.wait_for(lambda: len(listener.of_type("transaction.created")) >= 4)
            created = listener.of_type("transaction.created")
            assert [m.payload["amount"] for m in created] == ["1.00", "2.00", "3.00", "4.00"]
            assert [m.seq for m in listener.messages] == sorted(m.seq for m in listener.messages)
            assert one_by_one == []  # the batch went as a pipeline
    finally:
        await subscriber.disconnect()
        await publisher.disconnect()


@pytest.mark.postgres
async def test_a_dispatcher_finding_another_leading_stands_by_then_takes_over(
        app: Any, api: Api, owner: tuple[str, str]) -> None:
    """While another process holds the dispatch lock, a dispatcher tries again only every
    FOLLOWER_INTERVAL (not on each commit its probe sees); when the lock is free it
    publishes what waited."""
    from veix.events.dispatcher import FOLLOWER_INTERVAL

    token, business_id = owner
    engine, broadcast = app.state.services.engine, app.state.broadcast
    await drain(OutboxDispatcher(engine, broadcast))
    dispatcher = OutboxDispatcher(engine, broadcast, interval=3600)
    runs = 0
    run_once = dispatcher.run_once

    async def counted() -> int:
        nonlocal runs
        runs += 1
        return await run_once()

    dispatcher.run_once = counted  # type: ignore[method-assign]
    async with listening(broadcast, business_channel(raw(business_id))) as listener:
        async with engine.connect() as leader:
            await leader.begin()
            await leader.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": DISPATCH_LOCK_KEY})
            async with running(dispatcher):
                started = time.monotonic()
                for i in range(10):  # commits the probe sees
                    await fund(api, token, business_id, f"{i + 1}.00")
                    await asyncio.sleep(0.05)
                elapsed = time.monotonic() - started
                assert dispatcher.following
                assert runs <= 2 + elapsed / FOLLOWER_INTERVAL, (runs, elapsed)  # not one per commit
                assert listener.messages == []
                await leader.rollback()  # the other "process" stops leading
                await listener.wait_for(lambda: len(listener.of_type("transaction.created")) == 10,
                                        within=15)
                assert not dispatcher.following


@pytest.mark.postgres
async def test_a_writer_with_a_higher_id_than_every_finished_one_still_holds_the_horizon(app: Any) -> None:
    """Transactions have ids above the latest *finished* one (a snapshot's xmax) while they
    run: X (an id, no row), Y (seq L) and W (seq L + 1) all open, none finished since. W
    commits first; W's row must still wait for Y's, which commits after it: published in
    seq order, nothing while a writer that may hold a lower seq runs."""
    engine, broadcast = app.state.services.engine, app.state.broadcast
    await drain(OutboxDispatcher(engine, broadcast))
    business = uuid.uuid4()
    dispatcher = OutboxDispatcher(engine, broadcast, interval=3600, probing=False)

    def row(event_type: str) -> dict[str, Any]:
        return {"id": uuid.uuid4(), "business_id": business, "event_type": event_type,
                "payload": {}, "created_at": datetime.now(UTC)}

    async with listening(broadcast, business_channel(business)) as listener:
        async with engine.connect() as x, engine.connect() as y, engine.connect() as w:
            for conn in (x, y, w):
                await conn.begin()
                await conn.execute(text("SELECT pg_current_xact_id()"))  # ids X < Y < W, none finished
            await y.execute(insert(outbox).values(**row("first")))   # seq L
            await w.execute(insert(outbox).values(**row("second")))  # seq L + 1
            await dispatcher.run_once()
            await w.commit()
            for _ in range(3):
                await dispatcher.run_once()
            await asyncio.sleep(0.05)
            assert listener.messages == []  # "second" is visible, but "first" may still come
            await x.rollback()
            await y.commit()
        await listener.wait_for(lambda: len(listener.messages) >= 2, drive=dispatcher.run_once)
    assert [m.type for m in listener.messages] == ["first", "second"]


@pytest.mark.postgres
async def test_when_the_leaders_connection_dies_another_dispatcher_takes_over(
        app: Any, api: Api, owner: tuple[str, str]) -> None:
    """Two dispatchers run; one leads (it holds the dispatch lock on its own connection).
    That connection is killed: nothing is lost or reordered and again exactly one leads.
    Then the leader stops (as when its process ends): the other one takes over."""
    token, business_id = owner
    engine, broadcast = app.state.services.engine, app.state.broadcast
    await drain(OutboxDispatcher(engine, broadcast))
    dispatchers = [OutboxDispatcher(engine, broadcast), OutboxDispatcher(engine, broadcast)]
    stops = [asyncio.Event(), asyncio.Event()]
    tasks = [asyncio.create_task(d.run_forever(s)) for d, s in zip(dispatchers, stops, strict=True)]

    def amounts() -> list[str]:
        return [m.payload["amount"] for m in listener.of_type("transaction.created")]

    async def one_leads() -> int:
        deadline = time.monotonic() + 5
        while sorted(d.following for d in dispatchers) != [False, True]:
            assert time.monotonic() < deadline, [d.following for d in dispatchers]
            await asyncio.sleep(0.02)
        return next(i for i, d in enumerate(dispatchers) if not d.following)

    try:
        async with listening(broadcast, business_channel(raw(business_id))) as listener:
            await fund(api, token, business_id, "1.00")
            await listener.wait_for(lambda: amounts() == ["1.00"])
            leader = dispatchers[await one_leads()]
            assert leader._db is not None
            async with engine.connect() as admin:
                assert (await admin.execute(text("SELECT pg_terminate_backend(:p)"),
                                            {"p": leader._db.conn.get_server_pid()})).scalar()
            for amount in ("2.00", "3.00"):
                await fund(api, token, business_id, amount)
            await listener.wait_for(lambda: len(amounts()) == 3, within=10)
            assert amounts() == ["1.00", "2.00", "3.00"]

            now_leading = await one_leads()
            stops[now_leading].set()
            await asyncio.wait_for(tasks[now_leading], timeout=10)
            await fund(api, token, business_id, "4.00")
            await listener.wait_for(lambda: len(amounts()) == 4, within=10)
            assert amounts() == ["1.00", "2.00", "3.00", "4.00"]
            assert not dispatchers[1 - now_leading].following
            seqs = [m.seq for m in listener.messages]
            assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    finally:
        for stop in stops:
            stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=10)
    async with engine.connect() as conn:  # both stopped: the lock went with their connections
        assert (await conn.execute(text(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid IN (:k, :p)"),
            {"k": DISPATCH_LOCK_KEY, "p": PUBLISHING_LOCK_KEY})).scalar_one() == 0


@pytest.mark.postgres
async def test_a_replay_waits_for_a_batch_published_but_not_yet_marked(app: Any) -> None:
    """The seam between live and replayed events: a subscriber joins the channel after a
    batch went out and replays before the batch is marked. The replay waits for the mark
    (the dispatcher's publishing lock) and returns the batch, so nothing falls between."""
    engine = app.state.services.engine
    await drain(OutboxDispatcher(engine, app.state.broadcast))
    business = uuid.uuid4()
    published, release = asyncio.Event(), asyncio.Event()

    class Held:
        """A broker that takes the messages, then keeps the dispatcher waiting."""

        async def publish(self, channel: str, message: Any) -> None:
            published.set()
            await release.wait()

    async with engine.begin() as conn:
        await conn.execute(insert(outbox).values(
            id=uuid.uuid4(), business_id=business, event_type="seam.test", payload={"n": 1},
            created_at=datetime.now(UTC)))
    dispatching = asyncio.create_task(drain(OutboxDispatcher(engine, Held())))  # type: ignore[arg-type]
    try:
        await asyncio.wait_for(published.wait(), timeout=5)
        replaying = asyncio.create_task(replay(engine, business, 0))
        await asyncio.sleep(0.3)
        assert not replaying.done()  # published, not marked: the replay waits
        release.set()
        assert [m.type for m in await asyncio.wait_for(replaying, timeout=5)] == ["seam.test"]
        assert await asyncio.wait_for(dispatching, timeout=5) == 1
    finally:
        release.set()
        if not dispatching.done():
            dispatching.cancel()


async def test_a_broker_failure_is_retried_and_nothing_is_lost(
        app: Any, api: Api, owner: tuple[str, str]) -> None:
    """The broker refuses the first publishes (its client's own error): the running
    dispatcher logs, backs off and publishes the same events later, in order, each once
    marked (on PostgreSQL it gives up its connection, and the lock, and takes them again)."""
    import redis

    token, business_id = owner
    engine, broadcast = app.state.services.engine, app.state.broadcast
    await drain(OutboxDispatcher(engine, broadcast))

    class Flaky:
        def __init__(self) -> None:
            self.refusals = 3

        async def publish(self, channel: str, message: Any) -> None:
            if self.refusals:
                self.refusals -= 1
                raise redis.ConnectionError("broker away")
            await broadcast.publish(channel, message)

    flaky = Flaky()
    dispatcher = OutboxDispatcher(engine, flaky, interval=0.05)
    async with listening(broadcast, business_channel(raw(business_id))) as listener:
        for amount in ("1.00", "2.00"):
            await fund(api, token, business_id, amount)
        async with running(dispatcher):
            await listener.wait_for(lambda: len(listener.of_type("transaction.created")) == 2, within=10)
            assert flaky.refusals == 0
            created = listener.of_type("transaction.created")
            assert [m.payload["amount"] for m in created] == ["1.00", "2.00"]
            ids = [m.id for m in created]

            async def marked() -> bool:  # published first, marked after: the mark can come a moment later
                return all(await dispatched(app, ids))

            await eventually(marked, seconds=10)
            assert not dispatcher.following


# ------------------------------------------------------------------ pruning
async def business_events(app: Any, business_id: str) -> list[tuple[uuid.UUID, bool]]:
    """(id, dispatched) of the business's events still in the outbox, in seq order."""
    async with app.state.services.engine.connect() as conn:
        rows = (await conn.execute(select(outbox.c.id, outbox.c.seq <= DISPATCHED_SEQ)
                                   .where(outbox.c.business_id == raw(business_id)).order_by(outbox.c.seq))).all()
    return [(row[0], bool(row[1])) for row in rows]


async def test_pruning_deletes_only_events_both_dispatched_and_older_than_the_window(
        app: Any, api: Api, owner: tuple[str, str]) -> None:
    token, business_id = owner
    engine = app.state.services.engine
    dispatcher = OutboxDispatcher(engine, app.state.broadcast)
    await fund(api, token, business_id, "10.00")
    await drain(dispatcher)
    started = datetime.now(UTC)
    await fund(api, token, business_id, "20.00")  # not dispatched yet
    events = await business_events(app, business_id)
    old = [event for event, done in events if done]
    assert old and len(old) < len(events) and all(done for _, done in events[:len(old)])

    assert await prune_outbox(engine, started - timedelta(hours=1)) >= 0  # too young: kept
    assert [e for e, _ in await business_events(app, business_id)] == [e for e, _ in events]

    # pages of two, at most one page a call: the first call leaves the rest to the next
    later = datetime.now(UTC) + timedelta(seconds=1)
    assert await prune_outbox(engine, later, batch=2, most=1) == 2
    while await prune_outbox(engine, later, batch=2, most=1):
        pass
    assert await business_events(app, business_id) == events[len(old):]  # the undispatched stay

    async with listening(app.state.broadcast, business_channel(raw(business_id))) as listener:
        await listener.wait_for(lambda: len(listener.messages) >= len(events) - len(old), drive=dispatcher.run_once)
    assert [m.id for m in listener.messages] == [e for e, _ in events[len(old):]]
    replayed = await replay(engine, raw(business_id), 0)
    assert [m.id for m in replayed] == [e for e, _ in events[len(old):]]


# ------------------------------------------------------------------ migration 0009
# The outbox as it was up to revision 0008: a dispatched_at per row.
OUTBOX_0008 = Table(
    "outbox", MetaData(),
    Column("seq", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True),
    Column("id", Uuid), Column("business_id", Uuid), Column("event_type", String(64)),
    Column("payload", JSONType), Column("created_at", UTCDateTime), Column("dispatched_at", UTCDateTime))


async def test_migrating_keeps_what_was_dispatched_and_going_back_restores_the_marks(scratch_url: str) -> None:
    await migrate_to(scratch_url, "0008")
    engine = make_engine(scratch_url)
    now = datetime.now(UTC)
    seqs = []
    async with engine.begin() as conn:
        for n in range(5):  # (seq from the outbox's own sequence: the dispatcher's horizon reads it)
            seqs.append((await conn.execute(insert(OUTBOX_0008).values(
                id=uuid.uuid4(), business_id=None, event_type="platform.test", payload={"n": n}, created_at=now,
                dispatched_at=now if n < 3 else None).returning(OUTBOX_0008.c.seq))).scalar_one())
    await engine.dispose()  # three dispatched, two not yet

    await migrate_to(scratch_url, "head")
    engine = make_engine(scratch_url)
    broadcast = Broadcast("memory://")
    await broadcast.connect()
    try:
        async with listening(broadcast, "veix.platform") as listener:
            dispatcher = OutboxDispatcher(engine, broadcast)
            await listener.wait_for(lambda: len(listener.messages) >= 2, drive=dispatcher.run_once)
            assert await drain(dispatcher) == 0
        assert [m.seq for m in listener.messages] == seqs[3:]  # the first three were published before
        async with engine.connect() as conn:
            assert (await conn.execute(select(DISPATCHED_SEQ))).scalar_one() == seqs[-1]
    finally:
        await broadcast.disconnect()
        await engine.dispose()

    await migrate_to(scratch_url, "0008", down=True)
    engine = make_engine(scratch_url)
    try:
        async with engine.connect() as conn:
            marks = (await conn.execute(select(OUTBOX_0008.c.seq, OUTBOX_0008.c.dispatched_at)
                                        .order_by(OUTBOX_0008.c.seq))).all()
    finally:
        await engine.dispose()
    assert [(seq, at is not None) for seq, at in marks] == [(seq, True) for seq in seqs]
