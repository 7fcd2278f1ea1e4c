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
import functools
import logging
import re
import time
import uuid
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
    async with ctx._lock:
        await ctx.close()
    ctx.loaders.clear()
    ctx.forget_roles()


async def current_role(ctx: Context, business_id: uuid.UUID) -> Role | None:
    """The caller's role in the business, read now (not from the request cache):
    None once the API key is revoked or the person is no longer a member."""
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
                 ) -> Callable[[], Awaitable[None]]:
    """A re-check of the caller's access that raises once it is gone."""

    async def check() -> None:
        role = await current_role(ctx, business_id)
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
# process. Parsing it and loading the object it names once per process (not per
# subscriber) keeps fan-out from multiplying database reads by N (measured with
# `veix bench fanout`: per-subscriber loads exhausted the connection pool).


@functools.lru_cache(maxsize=4096)
def parse_event(text: str) -> EventMessage:
    """Broadcaster hands every subscriber the same string: parse it once."""
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


async def event_stream(
    ctx: Context, business_id: uuid.UUID, after: str | None, *,
    recheck: Callable[[], Awaitable[None]], max_queue: int | None = None,
) -> AsyncGenerator[EventMessage, None]:
    """Every event of the business after cursor ``after`` (None: from now on), in ``seq``
    order, each once. The caller filters by type; it must not hold the generator open
    needlessly (the broadcaster subscription lives as long as it)."""
    after_seq = seq_of_cursor(after) if after is not None else None
    broadcast = ctx.services.broadcast
    if broadcast is None:
        raise RuntimeError("no broadcaster configured")
    queue: asyncio.Queue[EventMessage] = asyncio.Queue(maxsize=max_queue or MAX_QUEUE)
    overflow = False

    async def pump(sub: Any) -> None:
        nonlocal overflow
        async for event in sub:
            try:
                msg = parse_event(event.message)
            except (ValueError, KeyError, TypeError):
                log.warning("ignoring a malformed event on %s", business_channel(business_id))
                continue
            try:
                queue.put_nowait(msg)
            except asyncio.QueueFull:
                overflow = True
                return

    last = after_seq
    seen = 0
    checked_at = time.monotonic()

    async def maybe_recheck(force: bool = False) -> None:
        nonlocal seen, checked_at
        if force or seen >= RECHECK_EVERY_EVENTS or time.monotonic() - checked_at >= RECHECK_SECONDS:
            await recheck()
            seen, checked_at = 0, time.monotonic()

    async with broadcast.subscribe(business_channel(business_id)) as sub:
        task = asyncio.create_task(pump(sub))
        try:
            await release(ctx)  # the checks are done: hold no connection while waiting
            if after_seq is not None:
                async for msg in _replay_all(ctx, business_id, after_seq):
                    seen += 1
                    await maybe_recheck()
                    last = msg.seq
                    yield msg
                    await release(ctx)
            while True:
                timeout = max(RECHECK_SECONDS - (time.monotonic() - checked_at), 0.0)
                try:
                    msg = await asyncio.wait_for(queue.get(), timeout=timeout + 0.01)
                except TimeoutError:
                    if task.done() and not overflow:
                        raise RuntimeError("the event channel closed") from None
                    await maybe_recheck(force=True)
                    continue
                if overflow:
                    resume = cursor_of(last if last is not None else msg.seq - 1)
                    raise SlowConsumer(f"slow consumer: resume with after={resume}",
                                       field=["after"])
                if last is not None and msg.seq <= last:
                    continue  # already yielded (replay seam, or re-published)
                seen += 1
                await maybe_recheck()
                last = msg.seq
                yield msg
                await release(ctx)
        finally:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task


class SubscriptionView(GraphQL[WsContext, None]):
    """Strawberry's ASGI view, mounted for websockets only (``/graphql`` over HTTP is
    veix.http.graphql): one authenticated :class:`WsContext` per connection."""

    def __init__(self, schema: Any, services: Services) -> None:
        super().__init__(schema, graphql_ide=None, allow_queries_via_get=False,
                         subscription_protocols=[GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_WS_PROTOCOL],
                         connection_init_wait_timeout=timedelta(seconds=10))
        self.services = services

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
