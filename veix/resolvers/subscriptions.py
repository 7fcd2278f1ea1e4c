"""GraphQL subscriptions over websockets: who may connect, who may watch what,
and the event stream of a business (replay from the outbox, then live).

One :class:`WsContext` lives as long as the websocket. It is authenticated
once, from the ``connection_init`` payload (``{"authorization": "Bearer ..."}``,
an access token or an API key); a connection without valid credentials is
refused. Between two events the context holds no database connection and no
DataLoader cache (:func:`release`), so a long-lived socket pins no pool slot
and never serves stale rows.

:func:`event_stream` subscribes to the business's broadcaster channel *first*,
then replays what the client missed (``after``) from the outbox, then goes
live, skipping every event at or below the last ``seq`` it yielded: no gap and
no duplicate at the seam. ``seq`` is global (other businesses' events fall
between two of ours), so gaps are normal; the dispatcher publishes in ``seq``
order and never past a lower ``seq`` that may still commit, so the live order
of one business is complete. Live events wait in a bounded queue: a consumer that
falls ``MAX_QUEUE`` events behind is ended with an error telling it the cursor
to resume from, so memory never grows without bound. Every
``RECHECK_EVERY_EVENTS`` events or ``RECHECK_SECONDS`` seconds the caller's
access is read again: a revoked API key, a removed member or a role that lost
the permission ends the stream with an error.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import copy
import inspect
import json
import logging
import re
import time
import uuid
import weakref
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_WS_PROTOCOL
from strawberry.types.unset import UNSET, UnsetType

from veix.domain.errors import Forbidden, LimitExceeded, NotFound, Unauthenticated
from veix.domain.team import Role
from veix.events.channels import EventMessage, business_channel, cursor_of, replay, seq_of_cursor
from veix.persistence import queries as q
from veix.resolvers.context import Context, authenticate
from veix.resolvers.services import Services

log = logging.getLogger("veix.subscriptions")

MAX_QUEUE = 1000
RECHECK_EVERY_EVENTS = 100
RECHECK_SECONDS = 30.0
REPLAY_BATCH = 1000
ENCODED_CACHE = 256  # event payloads whose JSON is kept for the other subscribers


@dataclass
class WsContext(Context):
    """The context of one websocket; Strawberry stores the ``connection_init`` payload here."""

    connection_params: dict[str, Any] | None = None


async def connect(ctx: WsContext) -> None:
    """Authenticate the connection from its ``connection_init`` payload, or refuse it."""
    params = ctx.connection_params or {}
    raw = params.get("authorization") or params.get("Authorization")
    try:
        await authenticate(ctx, raw if isinstance(raw, str) else None)
    finally:
        await release(ctx)
    if ctx.principal is None:
        raise ConnectionRejectionError({"message": ctx.auth_error or "Authentication required"})


async def release(ctx: Context) -> None:
    """Give back the read connection and drop cached loaders and roles (between two events)."""
    if ctx._conn is not None or ctx._lock.locked():  # else there is nothing to close
        async with ctx._lock:
            await ctx.close()
    ctx.loaders.clear()
    ctx.forget_roles()


async def current_role(ctx: Context, business_id: uuid.UUID, *, not_before: float | None = None) -> Role | None:
    """The caller's role in the business, read now (not from the request cache):
    None once the API key is revoked or the person is no longer a member.

    With ``not_before`` (a ``time.monotonic()`` instant), a read of the same principal's
    role in the same business that *started* at or after that instant is reused, finished or
    in flight: it saw every change committed before then. The subscribers of one process
    re-checking after the same event thus share one query."""
    p = ctx.require_principal()
    key = (p.kind, p.id, business_id)
    if not_before is None:
        not_before = time.monotonic()
    entry = _role_reads.get(key)
    if entry is None or entry[0] < not_before or (entry[1].done() and entry[1].exception() is not None):
        entry = (time.monotonic(), asyncio.ensure_future(_read_role(ctx, business_id)))
        _role_reads[key] = entry
        _role_reads.move_to_end(key)
        while len(_role_reads) > 4096:
            _role_reads.popitem(last=False)
    if entry[1].done():
        return entry[1].result()  # type: ignore[no-any-return]
    return await asyncio.shield(entry[1])  # type: ignore[no-any-return]


_role_reads: collections.OrderedDict[tuple[Any, ...], tuple[float, asyncio.Future[Role | None]]] = (
    collections.OrderedDict())


async def _read_role(ctx: Context, business_id: uuid.UUID) -> Role | None:
    p = ctx.require_principal()
    async with ctx.services.engine.connect() as conn:
        if p.kind == "api_key":
            key = (await q.api_keys_by_ids(conn, [p.id])).get(p.id)
            if key is None or key.revoked_at is not None or key.business_id != business_id:
                return None
            return key.role
        mine = (await q.memberships_of_users(conn, [p.id])).get(p.id, [])
    return next((ms.role for ms in mine if ms.business_id == business_id), None)


def access_check(ctx: Context, business_id: uuid.UUID, permissions: tuple[str, ...]
                 ) -> Callable[..., Awaitable[None]]:
    """A re-check of the caller's access that raises once it is gone (``not_before``:
    see :func:`current_role`)."""

    async def check(not_before: float | None = None) -> None:
        role = await current_role(ctx, business_id, not_before=not_before)
        if role is None:
            p = ctx.principal
            if p is not None and p.kind == "api_key":
                raise Unauthenticated("This API key has been revoked")
            raise NotFound("Not found: you are no longer a member of this business")
        for permission in permissions:
            if not ctx.services.authorizer.allowed(role.value, permission):
                raise Forbidden(f"Your role ({role.name}) no longer allows {permission}")

    return check


class SlowConsumer(LimitExceeded):
    """The subscriber fell ``MAX_QUEUE`` events behind."""


async def _replay_all(ctx: Context, business_id: uuid.UUID, after_seq: int) -> AsyncIterator[EventMessage]:
    while True:
        batch = await replay(ctx.services.engine, business_id, after_seq, limit=REPLAY_BATCH)
        for msg in batch:
            yield msg
            after_seq = msg.seq
        if len(batch) < REPLAY_BATCH:
            return


# ---------------------------------------------------------------- shared per process
# With N subscribers on one business, every event is delivered N times in this
# process. The work per event is done once per process, not once per subscriber:
# one broadcaster subscription per business channel (EventHub) parses each event
# once and hands the *same* EventMessage to every local subscriber; what is derived
# from it (the row it names, the GraphQL root object) lives in its ``memo``; and the
# selection set is executed once per (document, variables, viewer) for that root
# (SharingExecutor), the JSON of the result encoded once (SubscriptionView.encode_json).
# Measured with `veix bench fanout`: per-subscriber execution kept 2 cores saturated
# at 1,000 subscribers and 10 events/s.


def parse_event(text: str) -> EventMessage:
    return EventMessage.from_json(text)


class SharedLoads:
    """Coalesces the loads of one event's object across subscribers: the first
    asks the database, the others await the same answer. Keys carry the event's
    ``seq``, so a later event about the same object reads it afresh."""

    def __init__(self, size: int = 4096) -> None:
        self._size = size
        self._futures: collections.OrderedDict[tuple[Any, ...], asyncio.Future[Any]] = (
            collections.OrderedDict())

    async def get(self, key: tuple[Any, ...], load: Callable[[], Awaitable[Any]]) -> Any:
        future = self._futures.get(key)
        if future is None or (future.done() and future.exception() is not None):
            future = asyncio.ensure_future(load())
            self._futures[key] = future
            while len(self._futures) > self._size:
                self._futures.popitem(last=False)
        if future.done():
            return future.result()
        return await asyncio.shield(future)


shared_loads = SharedLoads()


async def load_shared(services: Services, kind: str, seq: int, object_id: uuid.UUID) -> Any:
    """The row ``object_id`` of ``kind`` as of event ``seq``, read once per process."""
    fetch = {"card_transaction": q.card_transactions_by_ids, "transaction": q.transactions_by_ids,
             "fraud_alert": q.fraud_alerts_by_ids}[kind]

    async def load() -> Any:
        async with services.engine.connect() as conn:
            return (await fetch(conn, [object_id])).get(object_id)

    return await shared_loads.get((kind, seq, object_id), load)


async def once_per_event(msg: EventMessage, key: Any, build: Callable[[], Awaitable[Any]]) -> Any:
    """``build()`` computed once for this event object (every subscriber of this process
    that receives it live shares it); a failed build is tried again by the next caller."""
    future: asyncio.Future[Any] | None = msg.memo.get(key)
    if future is None or (future.done() and future.exception() is not None):
        future = asyncio.ensure_future(build())
        msg.memo[key] = future
    if future.done():
        return future.result()
    return await asyncio.shield(future)


Prepare = tuple[Any, Callable[[EventMessage], Awaitable[Any]]]
PREPARE_SECONDS = 1.0  # the longest the hub holds an event back for its preparations
TICK_SECONDS = 0.5  # how often the hub ends the waits of its listeners that timed out


class _Listener:
    """One subscriber's bounded queue in the hub."""

    __slots__ = ("closed", "deadline", "items", "maxsize", "overflow", "prepare", "ticked", "waiter")

    def __init__(self, maxsize: int, prepare: Prepare | None = None) -> None:
        self.items: collections.deque[EventMessage] = collections.deque()
        self.maxsize = maxsize
        self.prepare = prepare
        self.ticked = False  # a hub's ticker ends our timed-out waits (no timer per wait)
        self.deadline = 0.0
        self.overflow = False
        self.closed = False
        self.waiter: asyncio.Future[bool] | None = None

    def push(self, msg: EventMessage) -> None:
        if self.overflow:
            return
        if len(self.items) >= self.maxsize:
            self.overflow = True  # the consumer ends with SlowConsumer; nothing more is kept
        else:
            self.items.append(msg)
        self._wake()

    def close(self) -> None:
        self.closed = True
        self._wake()

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(True)

    async def wait(self, seconds: float) -> bool:
        """Until something was pushed (True) or ``seconds`` passed (False; in a hub, up to
        ``TICK_SECONDS`` later)."""
        loop = asyncio.get_running_loop()
        waiter = self.waiter = loop.create_future()
        if self.ticked:
            self.deadline = loop.time() + seconds
            try:
                return await waiter
            finally:
                self.waiter = None
        timer = loop.call_later(seconds, _expire, waiter)
        try:
            return await waiter
        finally:
            timer.cancel()
            self.waiter = None


def _expire(waiter: asyncio.Future[bool]) -> None:
    if not waiter.done():
        waiter.set_result(False)


class _Channel:
    __slots__ = ("listeners", "name", "ready", "task")

    def __init__(self, name: str) -> None:
        self.name = name
        self.listeners: set[_Listener] = set()
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.task: asyncio.Task[None] | None = None


class EventHub:
    """One broadcaster subscription per business channel for the whole process, shared
    by every local subscriber of that business: each event is parsed once and the same
    :class:`EventMessage` is appended to every subscriber's bounded queue. The channel
    is subscribed while it has a local subscriber, and unsubscribed when the last leaves.

    A listener may bring a *preparation* ``(key, prepare)``: before an event is handed to
    the listeners, the hub awaits ``prepare(event)`` once per distinct key among them (for
    at most ``PREPARE_SECONDS``), so what every subscriber would derive from the event (the
    row it names, kept in its ``memo`` by :func:`once_per_event`) is there when they wake
    and none of them waits for it on its own. A preparation is only a head start: one that
    fails or is late changes nothing but who computes it."""

    def __init__(self, broadcast: Any) -> None:
        self.broadcast = broadcast
        self._channels: dict[str, _Channel] = {}
        self._ticker: asyncio.Task[None] | None = None

    @contextlib.asynccontextmanager
    async def listen(self, business_id: uuid.UUID, maxsize: int, prepare: Prepare | None = None
                     ) -> AsyncIterator[_Listener]:
        """A queue receiving every event published to the business's channel from the moment
        this returns (the broadcaster subscription is live by then) until it exits."""
        name = business_channel(business_id)
        channel = self._channels.get(name)
        if channel is None:
            channel = self._channels[name] = _Channel(name)
            channel.task = asyncio.create_task(self._pump(channel), name=f"veix-hub-{name}")
        listener = _Listener(maxsize, prepare)
        listener.ticked = True
        channel.listeners.add(listener)
        if self._ticker is None:
            self._ticker = asyncio.create_task(self._tick(), name="veix-hub-ticker")
        try:
            await asyncio.shield(channel.ready)
            yield listener
        finally:
            channel.listeners.discard(listener)
            if not channel.listeners and channel.task is not None:
                if self._channels.get(name) is channel:
                    del self._channels[name]
                channel.task.cancel()
                with contextlib.suppress(BaseException):
                    await channel.task
            if not self._channels and self._ticker is not None:
                ticker, self._ticker = self._ticker, None
                ticker.cancel()
                with contextlib.suppress(BaseException):
                    await ticker

    async def _tick(self) -> None:
        """End the waits that timed out (one timer for the process, not one per wait)."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(TICK_SECONDS)
            now = loop.time()
            for channel in list(self._channels.values()):
                for listener in channel.listeners:
                    waiter = listener.waiter
                    if waiter is not None and listener.deadline <= now:
                        _expire(waiter)

    async def _pump(self, channel: _Channel) -> None:
        try:
            async with self.broadcast.subscribe(channel.name) as sub:
                channel.ready.set_result(None)
                async for event in sub:
                    try:
                        msg = EventMessage.from_json(event.message)
                    except (ValueError, KeyError, TypeError):
                        log.warning("ignoring a malformed event on %s", channel.name)
                        continue
                    msg.memo["received"] = time.monotonic()
                    await _prepare(msg, channel.listeners)
                    for listener in channel.listeners:
                        listener.push(msg)
        finally:
            if self._channels.get(channel.name) is channel:
                del self._channels[channel.name]
            if not channel.ready.done():
                channel.ready.set_exception(RuntimeError("the event channel closed"))
                channel.ready.exception()  # retrieved: nobody may be waiting
            for listener in channel.listeners:
                listener.close()


async def _prepare(msg: EventMessage, listeners: set[_Listener]) -> None:
    preparations: dict[Any, Callable[[EventMessage], Awaitable[Any]]] = {}
    for listener in listeners:
        if listener.prepare is not None:
            preparations.setdefault(listener.prepare[0], listener.prepare[1])
    if not preparations:
        return
    tasks = [asyncio.ensure_future(prepare(msg)) for prepare in preparations.values()]
    done, _ = await asyncio.wait(tasks, timeout=PREPARE_SECONDS)
    for task in done:
        if not task.cancelled() and task.exception() is not None:
            log.debug("an event preparation failed (its subscribers try again)", exc_info=task.exception())


_hubs: weakref.WeakKeyDictionary[Any, EventHub] = weakref.WeakKeyDictionary()


def hub_of(broadcast: Any) -> EventHub:
    """The process's hub over ``broadcast``."""
    hub = _hubs.get(broadcast)
    if hub is None:
        hub = _hubs[broadcast] = EventHub(broadcast)
    return hub


async def event_stream(
    ctx: Context, business_id: uuid.UUID, after: str | None, *,
    recheck: Callable[..., Awaitable[None]], max_queue: int | None = None, prepare: Prepare | None = None,
) -> AsyncGenerator[EventMessage, None]:
    """Every event of the business after cursor ``after`` (None: from now on), in ``seq``
    order, each once. The caller filters by type; it must not hold the generator open
    needlessly (the hub's listener lives as long as it). Live events are the hub's shared
    :class:`EventMessage` objects: read them, never change them (but their ``memo``).
    A ``recheck`` accepting ``not_before`` (see :func:`access_check`) may share its read
    with the other subscribers re-checking after the same live event. ``prepare``: see
    :class:`EventHub` (live events only)."""
    after_seq = seq_of_cursor(after) if after is not None else None
    broadcast = ctx.services.broadcast
    if broadcast is None:
        raise RuntimeError("no broadcaster configured")
    last = after_seq
    seen = 0
    checked_at = time.monotonic()
    shares_reads = "not_before" in inspect.signature(recheck).parameters  # see access_check

    async def maybe_recheck(force: bool = False, msg: EventMessage | None = None) -> None:
        nonlocal seen, checked_at
        if force or seen >= RECHECK_EVERY_EVENTS or time.monotonic() - checked_at >= RECHECK_SECONDS:
            # A live event carries the instant this process received it: a read of the
            # access that started after it (another subscriber's) is as good as a new one.
            received = msg.memo.get("received") if msg is not None and shares_reads else None
            if received is None:
                await recheck()
            else:
                await recheck(not_before=received)
            seen, checked_at = 0, time.monotonic()

    async with hub_of(broadcast).listen(business_id, max_queue or MAX_QUEUE, prepare) as listener:
        await release(ctx)  # the checks are done: hold no connection while waiting
        if after_seq is not None:
            async for msg in _replay_all(ctx, business_id, after_seq):
                seen += 1
                await maybe_recheck()
                last = msg.seq
                yield msg
                await release(ctx)
        items = listener.items
        while True:
            if listener.overflow:
                first = items[0].seq if items else (last or 0) + 1
                resume = cursor_of(last if last is not None else first - 1)
                raise SlowConsumer(f"slow consumer: resume with after={resume}", field=["after"])
            if not items:
                if listener.closed:
                    raise RuntimeError("the event channel closed")
                timeout = max(RECHECK_SECONDS - (time.monotonic() - checked_at), 0.0)
                if not await listener.wait(timeout + 0.01):
                    await maybe_recheck(force=True)
                continue
            msg = items.popleft()
            if last is not None and msg.seq <= last:
                continue  # already yielded (replay seam, or re-published)
            seen += 1
            await maybe_recheck(msg=msg)
            last = msg.seq
            yield msg
            await release(ctx)


# ---------------------------------------------------------------- shared execution

SHARED_RESULTS = "_veix_shared_results"


def shareable(root: Any) -> Any:
    """Mark a subscription event's root object (built once per event, see
    :func:`once_per_event`) so that its selection sets are executed once per
    (document, variables, viewer) and the result reused by every subscriber."""
    object.__setattr__(root, SHARED_RESULTS, {})
    return root


def viewer_key(ctx: Any) -> tuple[Any, ...] | None:
    """Who is looking, as far as any resolver can tell: two subscribers with the same key
    see the same result. Not only the role: fields under an event may depend on the
    viewer's identity, their other memberships or a token's step-up (User.memberships,
    card visibility for cardholders, ...), so the key is the principal with its claims."""
    p = getattr(ctx, "principal", None)
    if p is None:
        return None
    return (p.kind, p.id, p.business_id, p.role, p.claims)


def _variables_key(values: Any) -> str:
    coerced = getattr(values, "coerced", values)
    return json.dumps(coerced, sort_keys=True, default=repr, separators=(",", ":"))


class _Finished:
    """Stands for a per-event executor whose shared result is already there."""

    __slots__ = ("result",)

    def __init__(self, result: Any) -> None:
        self.result = result

    def execute_operation(self, serially: bool | None = None) -> Any:
        return self.result


_executor_classes: dict[type, type] = {}


def sharing_executor(base: type) -> type:
    """A subclass of the schema's graphql-core executor that executes a subscription event's
    selection set once per (operation, variables, viewer) for a :func:`shareable` root: the
    first subscriber starts the execution in a task, with a context of its own over the same
    principal (so no subscriber's connection or cancellation is involved), and every other
    subscriber with the same key receives the same ExecutionResult."""
    cls = _executor_classes.get(base)
    if cls is not None:
        return cls

    class SharingExecutor(base):  # type: ignore[valid-type,misc]
        _veix_share_key: tuple[Any, ...] | None = None

        def build_per_event_executor(self, payload: Any) -> Any:
            key = self._veix_share_key
            if key is None:
                viewer = viewer_key(self.context_value)
                key = self._veix_share_key = ((id(self.operation), _variables_key(self.variable_values), viewer)
                                              if viewer is not None else ())
            results: dict[Any, Any] | None = getattr(payload, SHARED_RESULTS, None)
            if results is not None and key:
                entry = results.get(key)
                if (entry is not None and entry[0] is self.operation and entry[1].done()
                        and entry[1].exception() is None):
                    return _Finished(entry[1].result())  # no copy of the executor needed
            return super().build_per_event_executor(payload)

        def execute_operation(self, serially: bool | None = None) -> Any:
            results: dict[Any, Any] | None = getattr(self.root_value, SHARED_RESULTS, None)
            key = self._veix_share_key
            if results is None or serially is not False or not key:
                return super().execute_operation(serially)
            entry = results.get(key)
            if entry is None or entry[0] is not self.operation or (
                    entry[1].done() and entry[1].exception() is not None):
                entry = results[key] = (self.operation, self._veix_start())
            task = entry[1]
            if task.done():
                return task.result()
            return asyncio.shield(task)

        def _veix_start(self) -> asyncio.Future[Any]:
            """Start the shared execution with a context of its own. A selection whose
            resolvers do not await (the usual event fields) is finished here and now, so the
            other subscribers of the event take its result without waiting."""
            mine = self.context_value
            ctx = type(mine)(mine.services, mine.request_id)
            ctx.principal = mine.principal
            self.context_value = ctx  # this per-event copy is ours alone
            try:
                result = super().execute_operation(False)
            except BaseException:
                _release_soon(ctx)
                raise
            if self.is_awaitable(result):
                return asyncio.ensure_future(self._veix_finish(result, ctx))
            _release_soon(ctx)
            done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            done.set_result(result)
            return done

        async def _veix_finish(self, result: Any, ctx: Any) -> Any:
            try:
                return await result
            finally:
                await release(ctx)

    _executor_classes[base] = SharingExecutor
    return SharingExecutor


def _release_soon(ctx: Context) -> None:
    """:func:`release` without waiting; nothing to do for a context that never read."""
    if ctx._conn is None and not ctx._lock.locked():
        ctx.loaders.clear()
        ctx.forget_roles()
        return
    task = asyncio.ensure_future(release(ctx))
    _releases.add(task)
    task.add_done_callback(_releases.discard)


_releases: set[asyncio.Future[None]] = set()


class SubscriptionView(GraphQL[WsContext, None]):
    """Strawberry's ASGI view, mounted for websockets only (``/graphql`` over HTTP is
    veix.http.graphql): one authenticated :class:`WsContext` per connection."""

    def __init__(self, schema: Any, services: Services) -> None:
        # A shallow copy whose subscriptions share each event's execution (SharingExecutor);
        # the HTTP endpoint keeps the original.
        schema = copy.copy(schema)
        schema.execution_context_class = sharing_executor(schema.execution_context_class)
        super().__init__(schema, graphql_ide=None, allow_queries_via_get=False,
                         subscription_protocols=[GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_WS_PROTOCOL],
                         connection_init_wait_timeout=timedelta(seconds=10))
        self.services = services
        self._encoded: collections.OrderedDict[int, tuple[Any, str]] = collections.OrderedDict()

    def encode_json(self, data: object) -> str | bytes:
        """Event messages whose payload is only ``data`` reuse the JSON of that data: the
        subscribers sharing one ExecutionResult (see SharingExecutor) share its encoding."""
        if type(data) is dict and data.get("type") in ("next", "data"):
            payload = data.get("payload")
            if type(payload) is dict and len(payload) == 1 and type(payload.get("data")) is dict:
                inner = payload["data"]
                hit = self._encoded.get(id(inner))
                if hit is None or hit[0] is not inner:  # the entry keeps `inner` alive: ids stay unique
                    hit = (inner, json.dumps(payload, separators=(",", ":")))
                    self._encoded[id(inner)] = hit
                    if len(self._encoded) > ENCODED_CACHE:
                        self._encoded.popitem(last=False)
                return (f'{{"id":{json.dumps(data.get("id"))},"type":"{data["type"]}",'
                        f'"payload":{hit[1]}}}')
        return super().encode_json(data)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            ctx = scope.get("veix.context")
            if ctx is not None:  # the socket is gone: give its read connection back
                await release(ctx)

    async def get_context(self, request: Any, response: Any) -> WsContext:
        request_id = request.headers.get("x-request-id") or ""
        if not re.fullmatch(r"[A-Za-z0-9._-]{1,64}", request_id):
            request_id = uuid.uuid4().hex
        ctx = WsContext(self.services, request_id)
        request.scope["veix.context"] = ctx
        return ctx

    async def on_ws_connect(self, context: WsContext) -> UnsetType | dict[str, object] | None:
        await connect(context)
        return UNSET
