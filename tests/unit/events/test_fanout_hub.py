"""The per-process fan-out pieces of veix.resolvers.subscriptions, without a server:
the hub's bounded queues, its single broadcaster subscription per channel, the
per-event memo and the viewer key that decides who may share an execution."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from veix.events.channels import EventMessage, business_channel
from veix.resolvers import subscriptions as rs
from veix.resolvers.context import Principal


def _msg(business_id: uuid.UUID, seq: int) -> EventMessage:
    return EventMessage(seq, uuid.uuid4(), business_id, "test.event", {}, datetime.now(UTC))


class FakeBroadcast:
    """broadcaster.Broadcast's subscribe/publish, in memory."""

    def __init__(self) -> None:
        self.subscribers: dict[str, set[asyncio.Queue[Any]]] = {}
        self.subscribe_calls = 0

    @contextlib.asynccontextmanager
    async def subscribe(self, channel: str) -> AsyncIterator[Any]:
        self.subscribe_calls += 1
        queue: asyncio.Queue[Any] = asyncio.Queue()
        self.subscribers.setdefault(channel, set()).add(queue)

        async def events() -> AsyncIterator[Any]:
            while True:
                item = await queue.get()
                if item is None:
                    return
                yield item

        try:
            yield events()
        finally:
            self.subscribers[channel].discard(queue)
            if not self.subscribers[channel]:
                del self.subscribers[channel]

    async def publish(self, channel: str, message: str) -> None:
        for queue in self.subscribers.get(channel, ()):
            await queue.put(type("Event", (), {"message": message})())


def test_event_memo_is_not_part_of_the_event() -> None:
    a = _msg(uuid.uuid4(), 1)
    b = EventMessage(a.seq, a.id, a.business_id, a.type, a.payload, a.created_at)
    a.memo["x"] = 1
    assert a == b
    assert EventMessage.from_json(a.to_json()) == a
    assert "memo" not in a.to_json()


def test_a_listener_is_bounded_and_overflows_once() -> None:
    listener = rs._Listener(2)
    business = uuid.uuid4()
    for seq in (1, 2, 3, 4):
        listener.push(_msg(business, seq))
    assert [m.seq for m in listener.items] == [1, 2] and listener.overflow


def test_the_viewer_key_separates_principals_and_their_claims() -> None:
    class Ctx:
        def __init__(self, principal: Principal | None) -> None:
            self.principal = principal

    user = uuid.uuid4()
    assert rs.viewer_key(Ctx(None)) is None
    assert rs.viewer_key(Ctx(Principal("user", user))) == rs.viewer_key(Ctx(Principal("user", user)))
    assert rs.viewer_key(Ctx(Principal("user", user))) != rs.viewer_key(Ctx(Principal("user", uuid.uuid4())))
    assert rs.viewer_key(Ctx(Principal("user", user))) != rs.viewer_key(Ctx(Principal("api_key", user)))


async def test_one_broadcaster_subscription_fans_out_the_same_event_object() -> None:
    broadcast = FakeBroadcast()
    hub = rs.EventHub(broadcast)
    business = uuid.uuid4()
    channel = business_channel(business)
    async with contextlib.AsyncExitStack() as stack:
        listeners = [await stack.enter_async_context(hub.listen(business, 10)) for _ in range(3)]
        assert broadcast.subscribe_calls == 1 and len(broadcast.subscribers[channel]) == 1
        await broadcast.publish(channel, _msg(business, 7).to_json())
        await broadcast.publish(channel, "not json")  # ignored
        for _ in range(1000):  # up to 10 s on a loaded machine
            if all(listener.items for listener in listeners):
                break
            await asyncio.sleep(0.01)
        got = [listener.items.popleft() for listener in listeners]
        assert got[0].seq == 7 and got[0] is got[1] is got[2]
        assert "received" in got[0].memo
    assert channel not in broadcast.subscribers  # the last one out unsubscribed


async def test_once_per_event_builds_once_and_retries_a_failure() -> None:
    msg = _msg(uuid.uuid4(), 1)
    calls = 0

    async def build() -> int:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0)
        if calls == 1:
            raise ValueError("boom")
        return calls

    first = await asyncio.gather(*(rs.once_per_event(msg, "k", build) for _ in range(3)),
                                 return_exceptions=True)
    assert all(isinstance(r, ValueError) for r in first) and calls == 1
    assert await asyncio.gather(*(rs.once_per_event(msg, "k", build) for _ in range(3))) == [2, 2, 2]
    assert calls == 2


async def test_the_hub_prepares_an_event_once_before_its_listeners_wake() -> None:
    broadcast = FakeBroadcast()
    hub = rs.EventHub(broadcast)
    business = uuid.uuid4()
    channel = business_channel(business)
    builds: list[int] = []

    async def build(msg: EventMessage) -> int:
        builds.append(msg.seq)
        await asyncio.sleep(0.01)
        return msg.seq * 10

    async def prepare(msg: EventMessage) -> None:
        await rs.once_per_event(msg, "k", lambda: build(msg))

    async def failing(msg: EventMessage) -> None:
        raise ValueError("a failed preparation only costs its head start")

    async with contextlib.AsyncExitStack() as stack:
        listeners = [await stack.enter_async_context(hub.listen(business, 10, ("k", prepare)))
                     for _ in range(3)]
        listeners.append(await stack.enter_async_context(hub.listen(business, 10, ("bad", failing))))
        await broadcast.publish(channel, _msg(business, 3).to_json())
        for _ in range(1000):  # up to 10 s on a loaded machine
            if all(listener.items for listener in listeners):
                break
            await asyncio.sleep(0.01)
        got = [listener.items.popleft() for listener in listeners]
        assert got[0] is got[3] and builds == [3]
        future = got[0].memo["k"]
        assert future.done() and future.result() == 30  # ready when the listeners got it
        assert await rs.once_per_event(got[1], "k", lambda: build(got[1])) == 30 and builds == [3]


async def test_a_hub_listener_wait_times_out_without_a_timer_per_wait(monkeypatch: Any) -> None:
    monkeypatch.setattr(rs, "TICK_SECONDS", 0.01)
    hub = rs.EventHub(FakeBroadcast())
    business = uuid.uuid4()
    async with hub.listen(business, 10) as listener:
        assert listener.ticked
        assert await asyncio.wait_for(listener.wait(0.02), 2) is False
        waiting = asyncio.ensure_future(listener.wait(30))
        await asyncio.sleep(0.05)
        assert not waiting.done()
        listener.push(_msg(business, 1))
        assert await asyncio.wait_for(waiting, 2) is True
    assert hub._ticker is None  # the last listener out stopped the ticker
