"""Issuing cards and moving them through their lifecycle."""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Protocol

from veix.domain import ledger
from veix.domain.card_controls import CardControls
from veix.domain.cards import (
    Card,
    CardNetwork,
    CardStatus,
    CardType,
    expiry_after,
    generate_cvv,
    generate_pan,
    transition,
)
from veix.domain.errors import IdempotencyKeyReused, InvalidInput, NotFound
from veix.domain.events import DomainEvent
from veix.domain.money import Money
from veix.domain.ports import CardVault, SealedCard, UnitOfWork
from veix.domain.services.funding import request_fingerprint


class CardRepository(Protocol):
    async def add(self, card: Card, sealed: SealedCard, controls: CardControls) -> None: ...
    async def get(self, card_id: uuid.UUID, *, for_update: bool = False) -> Card | None: ...
    async def save(self, card: Card) -> None: ...
    async def controls(self, card_id: uuid.UUID) -> CardControls: ...
    async def save_controls(self, card_id: uuid.UUID, controls: CardControls, now: datetime) -> None: ...
    async def sealed(self, card_id: uuid.UUID) -> tuple[str, bytes, bytes]: ...
    async def hash_exists(self, lookup_hash: str) -> bool: ...


class CardUnitOfWork(UnitOfWork, Protocol):
    cards: CardRepository


@dataclass(frozen=True, slots=True)
class IssuingConfig:
    bins: dict[CardNetwork, str]
    expiry_years: int = 3


def prepaid_account(card_id: uuid.UUID, business_id: uuid.UUID, currency: str) -> ledger.AccountRef:
    return ledger.AccountRef(f"card:{card_id}:prepaid:{currency}", currency,
                             ledger.AccountKind.CARD_PREPAID, business_id, allow_negative=False)


async def _unique_pan(uow: CardUnitOfWork, vault: CardVault, bin_: str) -> str:
    for _ in range(20):
        pan = generate_pan(bin_)
        if not await uow.cards.hash_exists(vault.lookup_hash(pan)):
            return pan
    raise RuntimeError("could not find an unused PAN in 20 tries: the BIN range is exhausted")


async def issue_card(
    uow: CardUnitOfWork, vault: CardVault, config: IssuingConfig, *,
    business_id: uuid.UUID, cardholder_id: uuid.UUID | None, type: CardType,
    network: CardNetwork, currency: str, spending_limit: Decimal | None,
    controls: CardControls, merchant_lock: str | None, metadata: dict[str, Any],
    idempotency_key: str, now: datetime, status: CardStatus = CardStatus.ACTIVE,
) -> tuple[Card, bool]:
    """A new card, ACTIVE unless issued INACTIVE (to be activated later)."""
    fingerprint = request_fingerprint(
        "issue", business_id, cardholder_id, type.value, network.value, currency, spending_limit,
        sorted(controls.to_json().items(), key=lambda kv: kv[0]), merchant_lock, sorted(metadata.items()),
        *(("inactive",) if status is CardStatus.INACTIVE else ()))
    scope = f"card:{business_id}"
    claimed = await uow.idempotency.claim(scope, idempotency_key, fingerprint, now)
    if claimed is not None:
        stored, result_id = claimed
        if stored != fingerprint or result_id is None:
            raise IdempotencyKeyReused("This idempotency key was used with different parameters",
                                       field=["input", "idempotencyKey"])
        original = await uow.cards.get(result_id)
        assert original is not None
        return original, False
    if status not in (CardStatus.ACTIVE, CardStatus.INACTIVE):
        raise InvalidInput("A card is issued ACTIVE or INACTIVE", field=["input", "status"])
    if type is CardType.SUBSCRIPTION and not merchant_lock:
        raise InvalidInput("A subscription card needs merchantLock", field=["input", "merchantLock"])
    if type is not CardType.SUBSCRIPTION and merchant_lock:
        raise InvalidInput("Only subscription cards are locked to a merchant", field=["input", "merchantLock"])
    if type is CardType.PREPAID and spending_limit is None:
        raise InvalidInput("A prepaid card needs spendingLimit: the amount loaded onto it",
                           field=["input", "spendingLimit"])
    if cardholder_id is not None and await uow.memberships.get_for(business_id, cardholder_id) is None:
        raise NotFound("The cardholder is not a member of this business", field=["input", "cardholderId"])
    card_id = uuid.uuid4()
    pan = await _unique_pan(uow, vault, config.bins[network])
    sealed = vault.seal(card_id, pan, generate_cvv())
    del pan
    card = Card(
        id=card_id, business_id=business_id, cardholder_id=cardholder_id, network=network,
        type=type, status=status, masked_number=sealed.masked_number,
        last4=sealed.last4, expiry_date=expiry_after(now, config.expiry_years), currency=currency,
        spending_limit=spending_limit, current_balance=Decimal(0), merchant_lock=merchant_lock,
        metadata=metadata, public_token="ct_" + secrets.token_urlsafe(18), created_at=now,
        updated_at=now)
    await uow.cards.add(card, sealed, controls)
    if type is CardType.PREPAID:
        assert spending_limit is not None
        await _load_prepaid(uow, card, Money.of(spending_limit, currency), now)
    await uow.idempotency.complete(scope, idempotency_key, "Card", card.id)
    uow.emit(DomainEvent("card.issued", business_id, {"card_id": str(card.id), "type": type.name}))
    uow.audit("card.issue", "Card", card.id, business_id=business_id, after=card.snapshot())
    return card, True


async def _load_prepaid(uow: CardUnitOfWork, card: Card, money: Money, now: datetime) -> None:
    entry = ledger.journal_entry(
        business_id=card.business_id, kind="prepaid_load", description=f"Load card {card.last4}",
        lines=ledger.transfer(ledger.business_available(card.business_id, money.currency),
                              prepaid_account(card.id, card.business_id, money.currency), money),
        occurred_at=now)
    await uow.ledger.post(entry)
    card.current_balance += money.amount
    await uow.cards.save(card)


async def _unload_prepaid(uow: CardUnitOfWork, card: Card, now: datetime) -> None:
    if card.type is not CardType.PREPAID or card.current_balance <= 0:
        return
    money = Money.of(card.current_balance, card.currency)
    entry = ledger.journal_entry(
        business_id=card.business_id, kind="prepaid_unload",
        description=f"Return balance of card {card.last4}",
        lines=ledger.transfer(prepaid_account(card.id, card.business_id, card.currency),
                              ledger.business_available(card.business_id, card.currency), money),
        occurred_at=now)
    await uow.ledger.post(entry)
    card.current_balance = Decimal(0)


async def get_locked(uow: CardUnitOfWork, card_id: uuid.UUID) -> Card:
    card = await uow.cards.get(card_id, for_update=True)
    if card is None:
        raise NotFound("Card not found", field=["input", "cardId"])
    return card


async def change_status(uow: CardUnitOfWork, card: Card, to: CardStatus, *, now: datetime,
                        action: str) -> Card:
    before = card.snapshot()
    transition(card, to, now=now)
    if to in (CardStatus.CLOSED, CardStatus.EXPIRED):
        await _unload_prepaid(uow, card, now)
    await uow.cards.save(card)
    for event in card.events:
        uow.emit(event)
    card.events.clear()
    uow.audit(action, "Card", card.id, business_id=card.business_id, before=before, after=card.snapshot())
    return card


async def renew_card(uow: CardUnitOfWork, vault: CardVault, config: IssuingConfig, card: Card, *,
                     now: datetime) -> Card:
    """A new PAN and expiry with the same settings; the old card closes and a
    prepaid balance moves to the new card."""
    if card.status in (CardStatus.CLOSED, CardStatus.EXPIRED):
        transition(card, CardStatus.CLOSED, now=now)  # raises INVALID_STATE_TRANSITION
    controls = await uow.cards.controls(card.id)
    balance = card.current_balance if card.type is CardType.PREPAID else Decimal(0)
    new, _ = await issue_card(
        uow, vault, config, business_id=card.business_id, cardholder_id=card.cardholder_id,
        type=card.type if card.type is not CardType.PREPAID else CardType.STANDARD,
        network=card.network, currency=card.currency, spending_limit=card.spending_limit
        if card.type is not CardType.PREPAID else None, controls=controls,
        merchant_lock=card.merchant_lock, metadata={**card.metadata, "renewed_from": str(card.id)},
        idempotency_key=f"renew:{card.id}", now=now)
    if card.type is CardType.PREPAID:
        new.type = CardType.PREPAID
        new.spending_limit = card.spending_limit
        await uow.cards.save(new)
    await change_status(uow, card, CardStatus.CLOSED, now=now, action="card.close_on_renew")
    if balance > 0:
        await _load_prepaid(uow, new, Money.of(balance, card.currency), now)
    uow.audit("card.renew", "Card", new.id, business_id=card.business_id,
              before={"renewed_from": str(card.id)}, after=new.snapshot())
    return new


def expiry_of(card: Card) -> date:
    return card.expiry_date
