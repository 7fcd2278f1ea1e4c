"""The ``Subscription`` type: live card transactions, fraud alerts and
transaction updates of a business, over ``graphql-transport-ws`` and the
legacy ``graphql-ws`` (see veix.resolvers.subscriptions for the stream)."""

from __future__ import annotations

import contextlib
import functools
import uuid
from collections.abc import AsyncGenerator, Awaitable, Callable
from datetime import datetime
from typing import Any

import strawberry
from strawberry.types import Info

from veix.domain.errors import NotFound
from veix.events.channels import EventMessage
from veix.persistence import queries as q
from veix.resolvers import cards as rc
from veix.resolvers import loaders
from veix.resolvers import subscriptions as rs
from veix.resolvers.context import Context
from veix.resolvers.ids import from_global_id
from veix.schema.types.business import Business, Transaction
from veix.schema.types.cards import Card, CardTransaction
from veix.schema.types.common import gid


@strawberry.type(description="A card authorization the risk engine flagged for review or declined.")
class FraudAlert:
    risk_score: float = strawberry.field(description="Fraud score in [0, 1].")
    reasons: list[str] = strawberry.field(description="The fraud rules that contributed to the score.")
    action: str = strawberry.field(description="What the risk policy did: review or decline.")
    created_at: datetime = strawberry.field(description="When the alert was raised (UTC).")
    raw: strawberry.Private[q.FraudAlertRow]

    @classmethod
    def of(cls, a: q.FraudAlertRow) -> FraudAlert:
        return cls(risk_score=a.risk_score, reasons=list(a.reasons), action=a.action,
                   created_at=a.created_at, raw=a)

    @strawberry.field(description="Global ID.")
    def id(self) -> strawberry.ID:
        return gid("FraudAlert", self.raw.id)

    @strawberry.field(description="The business of the card.")
    async def business(self, info: Info[Context, None]) -> Business:
        b = await loaders.businesses(info.context).load(self.raw.business_id)
        if b is None:
            raise NotFound("Business not found")
        return Business.of(b)

    @strawberry.field(description="The card the authorization was for.")
    async def card(self, info: Info[Context, None]) -> Card | None:
        if self.raw.card_id is None:
            return None
        c = await rc.cards(info.context).load(self.raw.card_id)
        return Card.of(c) if c is not None else None

    @strawberry.field(description="The CARD_AUTHORIZATION transaction recording the authorization.")
    async def transaction(self, info: Info[Context, None]) -> Transaction | None:
        if self.raw.transaction_id is None:
            return None
        t = await rc.transactions(info.context).load(self.raw.transaction_id)
        return Transaction.of(t) if t is not None else None


@strawberry.type(description="A card authorization was created or changed.")
class CardTransactionEvent:
    cursor: str = strawberry.field(
        description="Opaque cursor of this event: pass it as `after` to resume after it.")
    kind: str = strawberry.field(
        description="What happened: card_transaction.created, .cleared, .reversed, .expired, "
                    ".approved_for_retry or .rejected.")
    card_transaction: CardTransaction = strawberry.field(
        description="The card transaction as it is now.")


@strawberry.type(description="The risk engine raised a fraud alert.")
class FraudAlertEvent:
    cursor: str = strawberry.field(
        description="Opaque cursor of this event: pass it as `after` to resume after it.")
    alert: FraudAlert = strawberry.field(description="The alert.")


@strawberry.type(description="A transaction of the business was created or changed.")
class TransactionEvent:
    cursor: str = strawberry.field(
        description="Opaque cursor of this event: pass it as `after` to resume after it.")
    kind: str = strawberry.field(
        description="What happened: transaction.created, or a card_transaction.* event of the card "
                    "authorization the transaction records (its status follows the authorization).")
    transaction: Transaction = strawberry.field(description="The transaction as it is now.")


def _uuid(value: object) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None


BUSINESS_ID = ["businessId"]

# What a subscriber yields for a live event is built once per process and event (the hub
# hands every local subscriber the same EventMessage), and marked shareable: subscribers
# with the same document, variables and viewer then share one execution of their selection
# (veix.resolvers.subscriptions.SharingExecutor). Who may see the event is still decided per
# subscriber before it is yielded (cardholder scope, cardId); the object itself holds only
# the event and its row, the same for every viewer. The ctx passed below is used only for
# its services (the rows are read once, not under any subscriber's connection).


def _card_ids(msg: EventMessage) -> tuple[uuid.UUID, uuid.UUID] | None:
    """(card transaction id, card id) of a card_transaction.* event, parsed once per event."""
    ids = msg.memo.get("card_ids", False)
    if ids is False:
        ct_id, c_id = _uuid(msg.payload.get("card_transaction_id")), _uuid(msg.payload.get("card_id"))
        ids = msg.memo["card_ids"] = (ct_id, c_id) if ct_id is not None and c_id is not None else None
    return ids  # type: ignore[no-any-return]


async def _card_transaction_event(ctx: Context, bid: uuid.UUID, msg: EventMessage, ct_id: uuid.UUID
                                  ) -> CardTransactionEvent | None:
    auth = await rs.load_shared(ctx.services, "card_transaction", msg.seq, ct_id)
    if auth is None or auth.business_id != bid:
        return None
    return rs.shareable(CardTransactionEvent(cursor=msg.cursor, kind=msg.type,
                                             card_transaction=CardTransaction.of(auth)))


async def _fraud_alert_event(ctx: Context, bid: uuid.UUID, msg: EventMessage) -> FraudAlertEvent | None:
    alert_id = _uuid(msg.payload.get("alert_id"))
    if alert_id is None:
        return None
    alert = await rs.load_shared(ctx.services, "fraud_alert", msg.seq, alert_id)
    if alert is None or alert.business_id != bid:
        return None
    return rs.shareable(FraudAlertEvent(cursor=msg.cursor, alert=FraudAlert.of(alert)))


async def _transaction_event(ctx: Context, bid: uuid.UUID, msg: EventMessage) -> TransactionEvent | None:
    t_id = _uuid(msg.payload.get("transaction_id"))
    if t_id is None:
        return None
    t = await rs.load_shared(ctx.services, "transaction", msg.seq, t_id)
    if t is None or t.business_id != bid:
        return None
    return rs.shareable(TransactionEvent(cursor=msg.cursor, kind=msg.type, transaction=Transaction.of(t)))


def _preparation(key: tuple[str, uuid.UUID], wanted: Callable[[EventMessage], bool],
                 build: Callable[[EventMessage], Awaitable[object]]) -> rs.Prepare:
    """The hub's head start (see veix.resolvers.subscriptions.EventHub): the event object a
    subscription yields for ``msg``, built once under ``key`` before its subscribers wake."""

    async def prepare(msg: EventMessage) -> None:
        if wanted(msg):
            await rs.once_per_event(msg, key, functools.partial(build, msg))

    return key, prepare


def _card_transaction_wanted(msg: EventMessage) -> bool:
    return msg.type.startswith("card_transaction.") and _card_ids(msg) is not None


@strawberry.type(description="Live events of a business. Authenticate in `connection_init` with "
                             "`{\"authorization\": \"Bearer <access token or API key>\"}`. Pass the "
                             "cursor of the last event received as `after` to receive what you "
                             "missed (kept 7 days) before the live events, with no gap and no "
                             "duplicate. A subscriber more than 1,000 events behind is ended with "
                             "an error naming the cursor to resume from.")
class Subscription:
    @strawberry.subscription(description="Card authorizations of the business as they are decided and "
                                         "as they change (clearing, reversal, expiry, approval). Needs "
                                         "cards:read; a cardholder receives only their own cards' events.")
    async def card_transactions(
        self, info: Info[Context, None], business_id: strawberry.ID, card_id: strawberry.ID | None = None,
        after: str | None = None,
    ) -> AsyncGenerator[CardTransactionEvent, None]:
        ctx = info.context
        try:
            bid = from_global_id(business_id, "Business", field=BUSINESS_ID)
            scope = await rc.cardholder_scope(ctx, bid)
            only_card: uuid.UUID | None = None
            if card_id is not None:
                only_card = from_global_id(card_id, "Card", field=["cardId"])
                card = await rc.cards(ctx).load(only_card)
                if card is None or card.business_id != bid or not await rc.visible(ctx, card):
                    raise NotFound("No Card with this ID", field=["cardId"])
            holders: dict[uuid.UUID, uuid.UUID | None] = {}

            async def mine(card_uuid: uuid.UUID) -> bool:
                if scope is None:
                    return True
                if card_uuid not in holders:
                    if len(holders) > 10_000:
                        holders.clear()
                    found = await ctx.read(lambda c: q.cards_by_ids(c, [card_uuid]))
                    holders[card_uuid] = found[card_uuid].cardholder_id if card_uuid in found else None
                return holders[card_uuid] == scope

            check = rs.access_check(ctx, bid, ("cards:read_own",) if scope is not None else ("cards:read",))
            key = ("cardTransactions", bid)

            async def build(msg: EventMessage) -> CardTransactionEvent | None:
                ids = _card_ids(msg)
                assert ids is not None
                return await _card_transaction_event(ctx, bid, msg, ids[0])

            async def admit(msg: EventMessage) -> bool:
                ids = _card_ids(msg)
                assert ids is not None  # (_card_transaction_wanted)
                return (only_card is None or ids[1] == only_card) and await mine(ids[1])

            async with contextlib.aclosing(_stream(ctx, bid, after, check, key, _card_transaction_wanted, build,
                                                   admit)) as events:
                async for event in events:
                    yield event
        finally:
            await rs.release(ctx)  # the checks or the last event may hold a connection

    @strawberry.subscription(description="Fraud alerts of the business's cards as the risk engine "
                                         "raises them. Needs transactions:read and cards:read.")
    async def fraud_alerts(
        self, info: Info[Context, None], business_id: strawberry.ID, after: str | None = None,
    ) -> AsyncGenerator[FraudAlertEvent, None]:
        async for event in _events(info.context, business_id, after, ("transactions:read", "cards:read"),
                                   "fraudAlerts", lambda m: m.type == "fraud_alert.created", _fraud_alert_event):
            yield event

    @strawberry.subscription(description="Transactions of the business (funding, card authorizations, "
                                         "payments) as they are created and change. Needs "
                                         "transactions:read.")
    async def transaction_updates(
        self, info: Info[Context, None], business_id: strawberry.ID, after: str | None = None,
    ) -> AsyncGenerator[TransactionEvent, None]:
        async for event in _events(info.context, business_id, after, ("transactions:read",), "transactionUpdates",
                                   lambda m: m.type.startswith(("transaction.", "card_transaction.")),
                                   _transaction_event):
            yield event


async def _events(ctx: Context, business_id: strawberry.ID, after: str | None, permissions: tuple[str, ...],
                  name: str, wanted: Callable[[EventMessage], bool],
                  make: Callable[[Context, uuid.UUID, EventMessage], Awaitable[Any]]) -> AsyncGenerator[Any, None]:
    """The stream of a subscription that needs ``permissions`` and yields ``make(...)`` for every
    event ``wanted`` picks (built once per event for every subscriber of this process)."""
    try:
        bid = from_global_id(business_id, "Business", field=BUSINESS_ID)
        for permission in permissions:
            await ctx.require(bid, permission, field=BUSINESS_ID)
        build = functools.partial(make, ctx, bid)
        async with contextlib.aclosing(_stream(ctx, bid, after, rs.access_check(ctx, bid, permissions),
                                               (name, bid), wanted, build)) as events:
            async for event in events:
                yield event
    finally:
        await rs.release(ctx)  # the checks or the last event may hold a connection


async def _stream(ctx: Context, bid: uuid.UUID, after: str | None, recheck: Callable[..., Awaitable[None]],
                  key: tuple[str, uuid.UUID],
                  wanted: Callable[[EventMessage], bool], build: Callable[[EventMessage], Awaitable[Any]],
                  admit: Callable[[EventMessage], Awaitable[bool]] | None = None) -> AsyncGenerator[Any, None]:
    """The events of a subscription: every message ``wanted`` picks (and ``admit``, a
    per-subscriber check, lets through) as ``build`` makes it, once per event for every
    subscriber of this process sharing ``key``."""
    stream = rs.event_stream(ctx, bid, after, recheck=recheck, prepare=_preparation(key, wanted, build))
    try:
        async for msg in stream:
            if not wanted(msg) or (admit is not None and not await admit(msg)):
                continue
            event = await rs.once_per_event(msg, key, functools.partial(build, msg))
            if event is not None:
                yield event
    finally:
        await stream.aclose()  # unsubscribe now, not when the collector finds it
