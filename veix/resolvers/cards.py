"""Virtual cards, step-up and sandbox authorizations: from GraphQL arguments to
the use cases, the permission checks, and the DataLoaders of every card relation.

Who sees a card: a member whose role grants ``cards:read`` sees every card of
the business; a role with only ``cards:read_own`` (a cardholder) sees the cards
issued to that person. A card of another business, or a card the caller may
not see, answers exactly like one that does not exist (null, ``NOT_FOUND``).

Every mutation runs in one ``ctx.uow()``. The caller's roles are loaded before
the write transaction opens, so the checks inside it need no second
connection. ``simulateAuthorization`` is the exception that proves it: after
the checks it hands over to :func:`veix.resolvers.network.run_authorization`,
the very path the card network's endpoint takes, which owns its transaction.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from strawberry.dataloader import DataLoader
from strawberry.types.unset import UNSET

from veix.domain.authorization import AuthRequest, StoredAuth
from veix.domain.card_controls import CardControls, merge_controls, parse_controls
from veix.domain.cards import Card, CardNetwork, CardStatus, CardType
from veix.domain.countries import parse_country
from veix.domain.errors import (
    Forbidden,
    InsufficientFunds,
    InvalidInput,
    InvalidStateTransition,
    NotFound,
    StepUpRequired,
    VeixError,
)
from veix.domain.events import DomainEvent, utcnow
from veix.domain.money import parse_amount, parse_currency
from veix.domain.services import cards as card_svc
from veix.domain.services import settlement
from veix.domain.services.authorize import periods
from veix.domain.transactions import Transaction
from veix.domain.users import ensure_not_locked, record_failed_login, record_successful_login
from veix.domain.validation import optional_text, require_text
from veix.persistence import queries as q
from veix.persistence.uow import Actor, SqlUnitOfWork
from veix.resolvers import loaders
from veix.resolvers.context import Context
from veix.resolvers.ids import from_global_id, parse_global_id
from veix.resolvers.loaders import by_ids
from veix.resolvers.network import run_authorization
from veix.resolvers.pagination import PageArgs
from veix.security import totp

CARD_ID = ["input", "cardId"]
MAX_METADATA_KEYS = 50
MAX_METADATA_BYTES = 4096

# GraphQL field of CardControlsInput (snake_case in Python) -> key parse_controls reads.
CONTROL_KEYS: dict[str, str] = {
    "allowed_merchant_categories": "allowedMerchantCategories",
    "blocked_merchant_categories": "blockedMerchantCategories",
    "allowed_countries": "allowedCountries",
    "blocked_countries": "blockedCountries",
    "max_transaction_amount": "maxTransactionAmount",
    "daily_limit": "dailyLimit",
    "monthly_limit": "monthlyLimit",
    "allowed_days": "allowedDays",
    "allowed_hours": "allowedHours",
    "requires_approval": "requiresApproval",
}


# ---------------------------------------------------------------- visibility

async def visible(ctx: Context, card: Card) -> bool:
    """Whether the caller may see ``card`` (see the module docstring)."""
    role = await ctx.role_in(card.business_id)
    if role is None:
        return False
    authz = ctx.services.authorizer
    if authz.allowed(role.value, "cards:read"):
        return True
    p = ctx.principal
    return (authz.allowed(role.value, "cards:read_own") and p is not None and p.kind == "user"
            and card.cardholder_id == p.id)


async def cardholder_scope(ctx: Context, business_id: uuid.UUID) -> uuid.UUID | None:
    """None when the caller sees every card of the business, else the only
    cardholder whose cards they see (for an API key: nobody's, as its id is no user's)."""
    role = await ctx.require(business_id, "cards:read_own", field=["cards"])
    if ctx.services.authorizer.allowed(role.value, "cards:read"):
        return None
    return ctx.require_principal().id


def stepped_up(ctx: Context) -> bool:
    """A TOTP step-up verified within the last 5 minutes rides in the caller's access token."""
    p = ctx.principal
    return (p is not None and p.claims is not None
            and totp.step_up_fresh(p.claims.step_up_at, utcnow()))


@contextlib.asynccontextmanager
async def _uow(ctx: Context) -> AsyncIterator[SqlUnitOfWork]:
    await ctx.roles()  # cached: the checks inside the transaction need no other connection
    async with ctx.uow() as uow:
        yield uow


async def _card_for(ctx: Context, uow: SqlUnitOfWork, card_id: uuid.UUID, permission: str, *,
                    field: list[str] = CARD_ID, for_update: bool = True) -> Card:
    card = await uow.cards.get(card_id, for_update=for_update)
    if card is None or not await visible(ctx, card):
        raise NotFound("Card not found", field=field)
    await ctx.require(card.business_id, permission, field=field)
    return card


# ---------------------------------------------------------------- input parsing

def _with_field(exc: VeixError, field: list[str]) -> VeixError:
    exc.field = field
    return exc


def _currency(value: object, field: list[str]) -> str:
    try:
        return parse_currency(value)
    except InvalidInput as exc:
        raise _with_field(exc, field) from None


def _positive(value: object, currency: str, field: list[str]) -> Decimal:
    try:
        amount = parse_amount(value, currency)
    except InvalidInput as exc:
        raise _with_field(exc, field) from None
    if amount <= 0:
        raise InvalidInput("Must be greater than zero", field=field)
    return amount


def given(value: object) -> bool:
    """False for an input field the client left out (as opposed to an explicit null)."""
    return value is not UNSET


def controls_input(raw: Any) -> dict[str, Any]:
    """The fields of a CardControlsInput the client gave, keyed as parse_controls expects."""
    if raw is None or raw is UNSET:
        return {}
    return {key: getattr(raw, attr) for attr, key in CONTROL_KEYS.items() if given(getattr(raw, attr))}


def _metadata(value: object) -> dict[str, Any]:
    field = ["input", "metadata"]
    if value is None or value is UNSET:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidInput("metadata must be a JSON object", field=field)
    if len(value) > MAX_METADATA_KEYS:
        raise InvalidInput(f"metadata has at most {MAX_METADATA_KEYS} keys", field=field)
    try:
        size = len(json.dumps(value, separators=(",", ":")).encode())
    except (TypeError, ValueError):
        raise InvalidInput("metadata must be plain JSON", field=field) from None
    if size > MAX_METADATA_BYTES:
        raise InvalidInput(f"metadata is at most {MAX_METADATA_BYTES} bytes of JSON", field=field)
    return dict(value)


def _idempotency_key(value: object) -> str:
    if not isinstance(value, str) or not 1 <= len(value) <= 255:
        raise InvalidInput("idempotencyKey must be 1 to 255 characters", field=["input", "idempotencyKey"])
    return value


# ---------------------------------------------------------------- issuing and lifecycle

async def issue_card(ctx: Context, data: Any) -> Card:
    business_id = from_global_id(data.business_id, "Business", field=["input", "businessId"])
    await ctx.require(business_id, "cards:issue", field=["input", "businessId"])
    cardholder_id = (from_global_id(data.cardholder_id, "User", field=["input", "cardholderId"])
                     if data.cardholder_id else None)
    currency = _currency(data.currency, ["input", "currency"])
    spending_limit = (_positive(data.spending_limit, currency, ["input", "spendingLimit"])
                      if data.spending_limit is not None and given(data.spending_limit) else None)
    controls = parse_controls(controls_input(data.controls), currency, field=["input", "controls"])
    merchant_lock = optional_text(data.merchant_lock if given(data.merchant_lock) else None,
                                  field=["input", "merchantLock"], max_len=200)
    metadata = _metadata(data.metadata)
    key = _idempotency_key(data.idempotency_key)
    status = data.status if given(data.status) and data.status is not None else CardStatus.ACTIVE
    services = ctx.services
    async with _uow(ctx) as uow:
        try:
            card, _new = await card_svc.issue_card(
                uow, services.vault, services.issuing, business_id=business_id,
                cardholder_id=cardholder_id, type=CardType(data.type), network=CardNetwork(data.network),
                currency=currency, spending_limit=spending_limit, controls=controls,
                merchant_lock=merchant_lock, metadata=metadata, idempotency_key=key, now=utcnow(),
                status=CardStatus(status))
        except InsufficientFunds:
            raise InsufficientFunds(
                f"The business's available {currency} balance cannot load this prepaid card",
                field=["input", "spendingLimit"]) from None
        await uow.commit()
    return card


# mutation -> (target status, statuses it may start from (None: any the state machine allows), audit action)
LIFECYCLE: dict[str, tuple[CardStatus, frozenset[CardStatus] | None, str]] = {
    "activate": (CardStatus.ACTIVE, frozenset({CardStatus.INACTIVE}), "card.activate"),
    "freeze": (CardStatus.FROZEN, frozenset({CardStatus.ACTIVE}), "card.freeze"),
    "unfreeze": (CardStatus.ACTIVE, frozenset({CardStatus.FROZEN}), "card.unfreeze"),
    "close": (CardStatus.CLOSED, None, "card.close"),
}


async def change_card_status(ctx: Context, card_gid: str, action: str) -> Card:
    to, sources, audit_action = LIFECYCLE[action]
    card_id = from_global_id(card_gid, "Card", field=CARD_ID)
    async with _uow(ctx) as uow:
        card = await _card_for(ctx, uow, card_id, "cards:manage")
        if sources is not None and card.status not in sources:
            raise InvalidStateTransition(
                f"Only a {' or '.join(sorted(s.name for s in sources))} card can be {action}d; "
                f"this one is {card.status.name}", field=CARD_ID)
        card = await card_svc.change_status(uow, card, to, now=utcnow(), action=audit_action)
        await uow.commit()
    return card


async def renew_card(ctx: Context, card_gid: str) -> Card:
    """A new number and expiry with the same settings; the old card closes."""
    card_id = from_global_id(card_gid, "Card", field=CARD_ID)
    async with _uow(ctx) as uow:
        card = await _card_for(ctx, uow, card_id, "cards:manage")
        new = await card_svc.renew_card(uow, ctx.services.vault, ctx.services.issuing, card, now=utcnow())
        await uow.commit()
    return new


def _text(amount: Decimal | None) -> str | None:
    return str(amount) if amount is not None else None


def _plain(values: dict[str, Any]) -> dict[str, Any]:
    """JSON-safe (the audit log is a JSON column): amounts as strings."""
    return {k: str(v) if isinstance(v, Decimal) else v for k, v in values.items()}


def _loosened(old: Decimal | None, new: Decimal | None) -> bool:
    """Raising a limit, or removing one, loosens it; adding or lowering one does not."""
    return old is not None and (new is None or new > old)


async def update_card_controls(ctx: Context, data: Any) -> Card:
    """Given fields replace the current controls (an explicit null removes one).
    Raising or removing a limit needs a fresh step-up (DESIGN.md section 8)."""
    card_id = from_global_id(data.card_id, "Card", field=CARD_ID)
    raw = controls_input(data.controls)
    async with _uow(ctx) as uow:
        card = await _card_for(ctx, uow, card_id, "cards:controls")
        current = await uow.cards.controls(card.id)
        merged = merge_controls(current, raw, card.currency, field=["input", "controls"])
        limit = card.spending_limit
        if given(data.spending_limit):
            if card.type is CardType.PREPAID:
                raise InvalidInput("A prepaid card's spending limit is the amount loaded onto it",
                                   field=["input", "spendingLimit"])
            limit = (None if data.spending_limit is None
                     else _positive(data.spending_limit, card.currency, ["input", "spendingLimit"]))
        loosened = [
            path for path, old, new in (
                (["input", "controls", "maxTransactionAmount"], current.max_transaction_amount,
                 merged.max_transaction_amount),
                (["input", "controls", "dailyLimit"], current.daily_limit, merged.daily_limit),
                (["input", "controls", "monthlyLimit"], current.monthly_limit, merged.monthly_limit),
                (["input", "spendingLimit"], card.spending_limit, limit),
            ) if _loosened(old, new)
        ]
        if loosened and not stepped_up(ctx):
            raise StepUpRequired(
                "Raising or removing a limit needs a step-up verified within the last 5 minutes "
                "(enrollStepUp, then verifyStepUp)", field=loosened[0])
        now = utcnow()
        before = {"controls": _plain(current.to_json()), "spending_limit": _text(card.spending_limit)}
        await uow.cards.save_controls(card.id, merged, now)
        card.spending_limit = limit
        card.updated_at = now
        await uow.cards.save(card)
        uow.emit(DomainEvent("card.controls_updated", card.business_id, {"card_id": str(card.id)}))
        uow.audit("card.update_controls", "Card", card.id, business_id=card.business_id, before=before,
                  after={"controls": _plain(merged.to_json()), "spending_limit": _text(limit),
                         "step_up": bool(loosened)})
        await uow.commit()
    return card


# ---------------------------------------------------------------- reveal and step-up

@dataclass(frozen=True, slots=True, repr=False)
class Revealed:
    pan: str
    cvv: str
    expiry_month: int
    expiry_year: int

    def __repr__(self) -> str:  # never into logs or tracebacks
        return "Revealed(<redacted>)"


async def reveal_card(ctx: Context, card_gid: str) -> Revealed:
    """The full number and CVV: permission cards:reveal, a fresh step-up, audited."""
    card_id = from_global_id(card_gid, "Card", field=CARD_ID)
    async with _uow(ctx) as uow:
        card = await _card_for(ctx, uow, card_id, "cards:reveal", for_update=False)
        if not stepped_up(ctx):
            raise StepUpRequired("Revealing a card needs a step-up verified within the last 5 minutes "
                                 "(enrollStepUp, then verifyStepUp)", field=CARD_ID)
        key_id, pan_blob, cvv_blob = await uow.cards.sealed(card.id)
        pan, cvv = ctx.services.vault.open(card.id, key_id, pan_blob, cvv_blob)
        uow.audit("card.reveal", "Card", card.id, business_id=card.business_id,
                  after={"masked_number": card.masked_number})
        await uow.commit()
    return Revealed(pan, cvv, card.expiry_date.month, card.expiry_date.year)


def _totp_aad(user_id: uuid.UUID) -> bytes:
    return b"totp:" + user_id.bytes


def seal_totp_secret(ctx: Context, user_id: uuid.UUID, secret: str) -> str:
    """``"keyid:base64(nonce || ciphertext || tag)"``, bound to the user by the AAD."""
    key_id, blob = ctx.services.vault.vault.encrypt(secret, aad=_totp_aad(user_id))
    return f"{key_id}:{base64.b64encode(blob).decode()}"


def open_totp_secret(ctx: Context, user_id: uuid.UUID, stored: str) -> str:
    key_id, _, encoded = stored.partition(":")
    try:
        blob = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise RuntimeError("stored step-up secret is not keyid:base64") from None
    secret: str = ctx.services.vault.vault.decrypt(key_id, blob, aad=_totp_aad(user_id))
    return secret


async def enroll_step_up(ctx: Context) -> tuple[str, str]:
    """A new TOTP secret (replacing any previous one) and its otpauth:// URI."""
    p = ctx.require_user()
    secret = totp.new_secret()
    async with ctx.uow() as uow:
        user = await uow.users.get(p.id)
        if user is None:
            raise NotFound("User not found")
        replaced = user.step_up_secret is not None
        if replaced and not stepped_up(ctx):
            # Otherwise a stolen access token could enrol its own factor and reveal cards.
            raise StepUpRequired("Replacing your step-up factor needs a step-up with the current one",
                                 field=["enrollStepUp"])
        user.step_up_secret = seal_totp_secret(ctx, user.id, secret)
        await uow.users.save(user)
        uow.audit("user.step_up_enroll", "User", user.id, business_id=None, after={"replaced": replaced})
        await uow.commit()
    return secret, totp.provisioning_uri(secret, user.email)


async def verify_step_up(ctx: Context, code: str) -> tuple[str, datetime]:
    """Check a TOTP code; a new access token carries the step-up moment."""
    p = ctx.require_user()
    now = utcnow()
    async with ctx.uow() as uow:
        user = await uow.users.get(p.id)
        if user is None:
            raise NotFound("User not found")
        if user.step_up_secret is None:
            raise InvalidInput("No step-up factor enrolled: call enrollStepUp first", field=["code"])
        ensure_not_locked(user, now)
        secret = open_totp_secret(ctx, user.id, user.step_up_secret)
        if not totp.verify_code(secret, code, at=now):
            # Wrong codes count with wrong passwords: 5 in a row lock the account for 15 minutes.
            record_failed_login(user, now)
            await uow.users.save(user)
            uow.audit("user.step_up_failed", "User", user.id, business_id=None)
            await uow.commit()
            raise InvalidInput("The code is wrong or has expired", field=["code"])
        if user.failed_logins or user.locked_until:
            record_successful_login(user)
            await uow.users.save(user)
        uow.audit("user.step_up", "User", user.id, business_id=None)
        await uow.commit()
    moment = now.replace(microsecond=0)  # JWT times are whole seconds
    token, _ = ctx.services.tokens.issue_access(user.id, step_up_at=moment, now=now)
    return token, moment + totp.STEP_UP_VALIDITY


# ---------------------------------------------------------------- authorizations

async def simulate_authorization(ctx: Context, data: Any) -> StoredAuth:
    """A sandbox authorization through the network's own decision path."""
    p = ctx.require_principal()
    if ctx.services.live_keys:
        raise Forbidden("simulateAuthorization is only available in the sandbox")
    card_id = from_global_id(data.card_id, "Card", field=CARD_ID)
    currency = _currency(data.amount.currency, ["input", "amount", "currency"])
    amount = _positive(data.amount.amount, currency, ["input", "amount", "amount"])
    merchant = require_text(data.merchant_name, field=["input", "merchantName"], max_len=200)
    mcc = data.merchant_category_code
    if not isinstance(mcc, str) or len(mcc) != 4 or not mcc.isdigit():
        raise InvalidInput("Merchant category codes are 4 digits", field=["input", "merchantCategoryCode"])
    country = parse_country(data.merchant_country, field=["input", "merchantCountry"])
    at = data.at if given(data.at) else None
    if at is not None and (at.tzinfo is None or at.utcoffset() is None):
        raise InvalidInput("at must carry a time zone (e.g. Z)", field=["input", "at"])
    async with _uow(ctx) as uow:
        card = await _card_for(ctx, uow, card_id, "cards:manage", for_update=False)
    req = AuthRequest(
        network_id="sim_" + uuid.uuid4().hex, amount=amount, currency=currency, merchant_name=merchant,
        mcc=mcc, merchant_country=country, at=at.astimezone(UTC) if at is not None else utcnow(),
        card_id=card.id)
    result = await run_authorization(ctx.services, req, actor=Actor(p.kind, str(p.id)),
                                     request_id=ctx.request_id)
    auth_id = result.card_transaction_id
    if auth_id is None:
        raise NotFound("Card not found", field=CARD_ID)
    found = await ctx.read(lambda c: q.card_transactions_by_ids(c, [auth_id]))
    return found[auth_id]


async def decide_authorization(ctx: Context, data: Any) -> StoredAuth:
    """Approve (a retry by the same merchant, up to the amount, then goes through) or reject
    an authorization that awaits approval."""
    p = ctx.require_principal()
    field = ["input", "cardTransactionId"]
    auth_id = from_global_id(data.card_transaction_id, "CardTransaction", field=field)
    async with _uow(ctx) as uow:
        auth = await uow.authorizations.get(auth_id, for_update=True)
        card = await uow.cards.get(auth.card_id) if auth is not None else None
        if auth is None or card is None or not await visible(ctx, card):
            raise NotFound("Card transaction not found", field=field)
        await ctx.require(auth.business_id, "authorizations:decide", field=field)
        auth = await settlement.decide(uow, ctx.services.auth_config, auth, approve=bool(data.approve),
                                       decided_by=p.id if p.kind == "user" else None, now=utcnow())
        await uow.commit()
    return auth


# ---------------------------------------------------------------- reads

async def get_card(ctx: Context, card_gid: str) -> Card | None:
    type_name, card_id = parse_global_id(card_gid)
    if type_name != "Card":
        return None
    ctx.require_principal()
    card = await cards(ctx).load(card_id)
    if card is None or not await visible(ctx, card):
        return None
    return card


async def get_card_transaction(ctx: Context, gid: str) -> StoredAuth | None:
    type_name, auth_id = parse_global_id(gid)
    if type_name != "CardTransaction":
        return None
    ctx.require_principal()
    auth = await card_transactions(ctx).load(auth_id)
    if auth is None:
        return None
    card = await cards(ctx).load(auth.card_id)
    if card is None or not await visible(ctx, card):
        return None
    return auth


CardPageKey = tuple[uuid.UUID, PageArgs, str | None, uuid.UUID | None]


async def card_page(ctx: Context, business_id: uuid.UUID, first: int | None, after: str | None,
                    status: CardStatus | None) -> tuple[list[Card], bool, CardPageKey]:
    """A newest-first page of the business's cards the caller may see; the key also
    identifies the page for its total count."""
    holder = await cardholder_scope(ctx, business_id)
    key: CardPageKey = (business_id, PageArgs.of(first, after),
                        CardStatus(status).value if status is not None else None, holder)
    items, has_next = await card_pages(ctx).load(key)
    return items, has_next, key


async def card_total(ctx: Context, key: CardPageKey) -> int:
    business_id, _args, status, holder = key
    return await card_counts(ctx).load((business_id, status, holder))


async def card_transaction_page(ctx: Context, card_id: uuid.UUID, first: int | None,
                                after: str | None) -> tuple[list[StoredAuth], bool]:
    """Newest first. Whoever may see the card sees its authorizations."""
    return await card_transaction_pages(ctx).load((card_id, PageArgs.of(first, after)))


@dataclass(frozen=True, slots=True)
class Spend:
    """Spend counters of the business-local day and month containing ``at``."""

    today: Decimal
    this_month: Decimal


def _candidate_periods(now: datetime) -> list[str]:
    """Every period key that is "today" or "this month" somewhere on Earth (UTC-12..UTC+14)."""
    out: set[str] = set()
    for days in (-1, 0, 1):
        out.update(periods(now + timedelta(days=days)))
    return sorted(out)


# ---------------------------------------------------------------- DataLoaders (one statement per batch)

def cards(ctx: Context) -> DataLoader[uuid.UUID, Card | None]:
    return by_ids(ctx, "cards", q.cards_by_ids)


def controls(ctx: Context) -> DataLoader[uuid.UUID, CardControls]:
    return by_ids(ctx, "card_controls", q.controls_by_card_ids, CardControls())


def spend(ctx: Context) -> DataLoader[uuid.UUID, Spend]:
    async def batch(ids: list[uuid.UUID]) -> Sequence[Spend]:
        now = utcnow()
        found = await ctx.read(lambda c: q.card_spend_by_ids(c, ids, _candidate_periods(now)))
        out = []
        for i in ids:
            timezone, spent = found.get(i, ("UTC", {}))
            day, month = periods(now.astimezone(ZoneInfo(timezone)))
            out.append(Spend(spent.get(day, Decimal(0)), spent.get(month, Decimal(0))))
        return out

    return ctx.loader("card_spend", batch)


def card_pages(ctx: Context) -> DataLoader[CardPageKey, tuple[list[Card], bool]]:
    """Keys sharing page arguments, status and cardholder share one statement."""

    async def batch(keys: list[CardPageKey]) -> Sequence[tuple[list[Card], bool]]:
        groups: dict[tuple[PageArgs, str | None, uuid.UUID | None], list[uuid.UUID]] = {}
        for bid, args, status, holder in keys:
            groups.setdefault((args, status, holder), []).append(bid)
        results: dict[CardPageKey, tuple[list[Card], bool]] = {}
        for (args, status, holder), bids in groups.items():
            pages = await ctx.read(lambda c, a=args, s=status, h=holder, b=bids: q.card_pages(
                c, b, a.first, a.after, status=s, cardholder_id=h))
            for bid in bids:
                results[(bid, args, status, holder)] = pages[bid]
        return [results[k] for k in keys]

    return ctx.loader("card_pages", batch)


def card_counts(ctx: Context) -> DataLoader[tuple[uuid.UUID, str | None, uuid.UUID | None], int]:
    async def batch(keys: list[tuple[uuid.UUID, str | None, uuid.UUID | None]]) -> Sequence[int]:
        groups: dict[tuple[str | None, uuid.UUID | None], list[uuid.UUID]] = {}
        for bid, status, holder in keys:
            groups.setdefault((status, holder), []).append(bid)
        results: dict[tuple[uuid.UUID, str | None, uuid.UUID | None], int] = {}
        for (status, holder), bids in groups.items():
            counts = await ctx.read(lambda c, s=status, h=holder, b=bids: q.card_counts(
                c, b, status=s, cardholder_id=h))
            for bid in bids:
                results[(bid, status, holder)] = counts[bid]
        return [results[k] for k in keys]

    return ctx.loader("card_counts", batch)


def card_transactions(ctx: Context) -> DataLoader[uuid.UUID, StoredAuth | None]:
    return by_ids(ctx, "card_transactions", q.card_transactions_by_ids)


def card_transaction_pages(
    ctx: Context,
) -> DataLoader[tuple[uuid.UUID, PageArgs], tuple[list[StoredAuth], bool]]:
    async def batch(keys: list[tuple[uuid.UUID, PageArgs]]) -> Sequence[tuple[list[StoredAuth], bool]]:
        by_args: dict[PageArgs, list[uuid.UUID]] = {}
        for cid, args in keys:
            by_args.setdefault(args, []).append(cid)
        results: dict[tuple[uuid.UUID, PageArgs], tuple[list[StoredAuth], bool]] = {}
        for args, cids in by_args.items():
            pages = await ctx.read(lambda c, a=args, i=cids: q.card_transaction_pages(c, i, a.first, a.after))
            for cid in cids:
                results[(cid, args)] = pages[cid]
        return [results[k] for k in keys]

    return ctx.loader("card_transaction_pages", batch)


def card_transaction_counts(ctx: Context) -> DataLoader[uuid.UUID, int]:
    async def batch(ids: list[uuid.UUID]) -> Sequence[int]:
        found = await ctx.read(lambda c: q.card_transaction_counts(c, ids))
        return [found[i] for i in ids]

    return ctx.loader("card_transaction_counts", batch)


def transactions(ctx: Context) -> DataLoader[uuid.UUID, Transaction | None]:
    return loaders.transactions(ctx)
