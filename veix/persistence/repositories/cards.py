"""Cards and their controls."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Row, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from veix.domain.card_controls import CardControls
from veix.domain.cards import Card, CardNetwork, CardStatus, CardType
from veix.domain.ports import SealedCard
from veix.persistence.tables import card_controls, virtual_cards


def card_from_row(r: Row[Any]) -> Card:
    return Card(
        id=r.id, business_id=r.business_id, cardholder_id=r.cardholder_id,
        network=CardNetwork(r.network), type=CardType(r.card_type), status=CardStatus(r.status),
        masked_number=r.masked_number, last4=r.last4, expiry_date=r.expiry_date, currency=r.currency,
        spending_limit=r.spending_limit, current_balance=r.current_balance,
        merchant_lock=r.merchant_lock, metadata=r.metadata or {}, public_token=r.public_token,
        created_at=r.created_at, updated_at=r.updated_at,
    )


def _set(v: Any) -> frozenset[Any] | None:
    return frozenset(v) if v is not None else None


def controls_from_row(r: Row[Any] | None) -> CardControls:
    if r is None:
        return CardControls()
    return CardControls(
        allowed_mccs=_set(r.allowed_merchant_categories), blocked_mccs=_set(r.blocked_merchant_categories),
        allowed_countries=_set(r.allowed_countries), blocked_countries=_set(r.blocked_countries),
        max_transaction_amount=r.max_transaction_amount, daily_limit=r.daily_limit,
        monthly_limit=r.monthly_limit, allowed_days=_set(r.allowed_days),
        allowed_hours=_set(r.allowed_hours), requires_approval=bool(r.requires_approval),
    )


def controls_values(card_id: uuid.UUID, c: CardControls, now: datetime) -> dict[str, Any]:
    j = c.to_json()
    return {
        "card_id": card_id,
        "allowed_merchant_categories": j["allowed_merchant_categories"],
        "blocked_merchant_categories": j["blocked_merchant_categories"],
        "allowed_countries": j["allowed_countries"], "blocked_countries": j["blocked_countries"],
        "max_transaction_amount": c.max_transaction_amount, "daily_limit": c.daily_limit,
        "monthly_limit": c.monthly_limit, "allowed_days": j["allowed_days"],
        "allowed_hours": j["allowed_hours"], "requires_approval": c.requires_approval,
        "updated_at": now,
    }


def card_values(card: Card) -> dict[str, Any]:
    return {
        "business_id": card.business_id, "cardholder_id": card.cardholder_id,
        "network": card.network.value, "card_type": card.type.value, "status": card.status.value,
        "masked_number": card.masked_number, "last4": card.last4, "expiry_date": card.expiry_date,
        "currency": card.currency, "spending_limit": card.spending_limit,
        "current_balance": card.current_balance, "merchant_lock": card.merchant_lock,
        "metadata": card.metadata, "public_token": card.public_token,
        "created_at": card.created_at, "updated_at": card.updated_at,
    }


class SqlCardRepository:
    def __init__(self, conn: AsyncConnection, for_update_ok: bool) -> None:
        self.conn = conn
        self.for_update_ok = for_update_ok

    async def add(self, card: Card, sealed: SealedCard, controls: CardControls) -> None:
        await self.conn.execute(virtual_cards.insert().values(
            id=card.id, card_number_encrypted=sealed.pan_blob, card_number_hash=sealed.lookup_hash,
            cvv_encrypted=sealed.cvv_blob, vault_key_id=sealed.key_id, **card_values(card)))
        await self.conn.execute(card_controls.insert().values(
            controls_values(card.id, controls, card.created_at)))

    async def get(self, card_id: uuid.UUID, *, for_update: bool = False) -> Card | None:
        stmt = select(virtual_cards).where(virtual_cards.c.id == card_id)
        if for_update and self.for_update_ok:
            stmt = stmt.with_for_update()
        row = (await self.conn.execute(stmt)).first()
        return card_from_row(row) if row else None

    async def save(self, card: Card) -> None:
        values = card_values(card)
        await self.conn.execute(update(virtual_cards).where(virtual_cards.c.id == card.id).values(values))

    async def controls(self, card_id: uuid.UUID) -> CardControls:
        row = (await self.conn.execute(
            select(card_controls).where(card_controls.c.card_id == card_id))).first()
        return controls_from_row(row)

    async def save_controls(self, card_id: uuid.UUID, controls: CardControls, now: datetime) -> None:
        values = controls_values(card_id, controls, now)
        del values["card_id"]
        await self.conn.execute(update(card_controls).where(card_controls.c.card_id == card_id)
                                .values(values))

    async def sealed(self, card_id: uuid.UUID) -> tuple[str, bytes, bytes]:
        row = (await self.conn.execute(
            select(virtual_cards.c.vault_key_id, virtual_cards.c.card_number_encrypted,
                   virtual_cards.c.cvv_encrypted).where(virtual_cards.c.id == card_id))).one()
        return row.vault_key_id, row.card_number_encrypted, row.cvv_encrypted

    async def hash_exists(self, lookup_hash: str) -> bool:
        row = (await self.conn.execute(select(virtual_cards.c.id).where(
            virtual_cards.c.card_number_hash == lookup_hash))).first()
        return row is not None

    async def set_balance(self, card_id: uuid.UUID, balance: Decimal) -> None:
        await self.conn.execute(update(virtual_cards).where(virtual_cards.c.id == card_id)
                                .values(current_balance=balance))
