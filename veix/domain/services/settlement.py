"""After the decision: clearings, reversals, hold expiry and team approvals.

Ledger effects (all balanced entries):
- clearing: holds -> card network settlement (the hold becomes a debt to the
  network); an over-clearing within tolerance (tips) comes from available funds;
  a final clearing releases what is left of the hold back to available funds.
- reversal and expiry: holds -> available funds (or the prepaid balance).
Spend counters move with the money: released amounts leave the counters of the
day and month the authorization counted in; over-clearings join them.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal

from veix.domain import ledger
from veix.domain.authorization import AuthorizationStatus, StoredAuth
from veix.domain.cards import CardType
from veix.domain.currencies import minor_units
from veix.domain.errors import Conflict, InsufficientFunds, InvalidInput, InvalidStateTransition, NotFound
from veix.domain.events import DomainEvent
from veix.domain.ids import new_id
from veix.domain.money import Money, parse_amount
from veix.domain.services.authorize import (
    AuthorizationConfig,
    AuthorizationUnitOfWork,
    funding_account,
    holds_account,
    settlement_account,
)
from veix.domain.services.funding import request_fingerprint
from veix.domain.transactions import Transaction, TransactionStatus, TransactionType


async def _auth(uow: AuthorizationUnitOfWork, network_id: str) -> StoredAuth:
    """The authorization, locked after its card: the decision's lock order (an
    incremental authorization locks the card, then its original), so a clearing
    or reversal and an increment of the same original never wait for each other."""
    found = await uow.authorizations.find(network_id, for_update=False)
    if found is None or found.parent_id is not None:
        raise NotFound(f"No authorization {network_id!r}", field=["authorization_id"])
    await uow.cards.get(found.card_id, for_update=True)
    auth = await uow.authorizations.get(found.id, for_update=True)  # as it is now, under the card's lock
    assert auth is not None  # authorizations are never deleted
    return auth


def _billing(auth: StoredAuth, amount: Decimal, currency: str) -> Decimal:
    """A clearing or reversal amount in the card currency."""
    if currency == auth.billing_currency:
        return parse_amount(amount, currency)
    if currency == auth.original_currency and auth.exchange_rate is not None:
        amount = parse_amount(amount, currency)
        places = Decimal(1).scaleb(-minor_units(auth.billing_currency))
        return parse_amount((amount * auth.exchange_rate).quantize(places, rounding=ROUND_HALF_UP),
                            auth.billing_currency)
    raise InvalidInput(f"Currency {currency} is neither the billing nor the merchant currency",
                       field=["currency"])


async def _seen(uow: AuthorizationUnitOfWork, scope: str, message_id: str, now: datetime,
                *params: object) -> bool:
    """Clearings and reversals are idempotent by their network id: a repeat with
    the same parameters changes nothing; with other parameters it is refused."""
    fingerprint = request_fingerprint(scope, *params)
    claimed = await uow.idempotency.claim(scope, message_id, fingerprint, now)
    if claimed is None:
        return False
    if claimed[0] != fingerprint:
        raise Conflict(f"{message_id!r} was already used with other parameters", field=["id"])
    return True


async def _release(uow: AuthorizationUnitOfWork, auth: StoredAuth, amount: Decimal, now: datetime,
                   kind: str) -> None:
    if amount <= 0:
        return
    card = await uow.cards.get(auth.card_id, for_update=True)
    assert card is not None
    await uow.ledger.post(ledger.journal_entry(
        business_id=auth.business_id, kind=kind, description=f"Release hold {auth.network_id[:60]}",
        lines=ledger.transfer(holds_account(auth.business_id, auth.billing_currency), funding_account(card),
                              Money.of(amount, auth.billing_currency)),
        occurred_at=now, transaction_id=auth.transaction_id))
    deltas = {p: -amount for p in (auth.spend_day, auth.spend_month) if p}
    if deltas:
        await uow.authorizations.add_spend(auth.card_id, deltas)
    if card.type is CardType.PREPAID:
        card.current_balance += amount
        await uow.cards.save(card)
    auth.held_amount -= amount
    auth.released_amount += amount


def _event(uow: AuthorizationUnitOfWork, auth: StoredAuth, kind: str, amount: Decimal) -> None:
    uow.emit(DomainEvent(f"card_transaction.{kind}", auth.business_id, {
        "card_transaction_id": str(auth.id), "card_id": str(auth.card_id),
        "transaction_id": str(auth.transaction_id), "status": auth.status.name,
        "amount": str(amount), "currency": auth.billing_currency}))


async def clear(uow: AuthorizationUnitOfWork, cfg: AuthorizationConfig, *, clearing_id: str,
                authorization_id: str, amount: Decimal, currency: str, final: bool,
                now: datetime) -> StoredAuth:
    auth = await _auth(uow, authorization_id)
    if await _seen(uow, "network_clearing", clearing_id, now, authorization_id, amount, currency, final):
        return auth  # the same clearing again: already posted
    if auth.status not in (AuthorizationStatus.APPROVED, AuthorizationStatus.CLEARED):
        raise InvalidStateTransition(f"A {auth.status.name} authorization cannot be cleared")
    billing = _billing(auth, amount, currency)
    if billing <= 0:
        raise InvalidInput("Clearing amount must be greater than zero", field=["amount"])
    authorized = auth.billing_amount
    ceiling = authorized * (1 + cfg.overclear_tolerance)
    if auth.cleared_amount + billing > ceiling:
        raise Conflict(f"Clearing would exceed the authorized amount by more than "
                       f"{cfg.overclear_tolerance:.0%}", field=["amount"])
    from_hold = min(billing, auth.held_amount)
    extra = billing - from_hold
    card = await uow.cards.get(auth.card_id, for_update=True)
    assert card is not None
    lines = []
    if from_hold > 0:
        lines += ledger.transfer(holds_account(auth.business_id, auth.billing_currency),
                                 settlement_account(auth.billing_currency),
                                 Money.of(from_hold, auth.billing_currency))
    if extra > 0:
        lines += ledger.transfer(funding_account(card), settlement_account(auth.billing_currency),
                                 Money.of(extra, auth.billing_currency))
    try:
        await uow.ledger.post(ledger.journal_entry(
            business_id=auth.business_id, kind="card_clearing", description=f"Clearing {clearing_id[:80]}",
            lines=lines, occurred_at=now, transaction_id=auth.transaction_id))
    except InsufficientFunds:
        raise InsufficientFunds("Not enough available funds for the amount cleared above the hold",
                                field=["amount"]) from None
    auth.held_amount -= from_hold
    auth.cleared_amount += billing
    if extra > 0:
        await uow.authorizations.add_spend(auth.card_id, {p: extra for p in (auth.spend_day, auth.spend_month) if p})
        if card.type is CardType.PREPAID:
            card.current_balance -= extra
            await uow.cards.save(card)
    if final:
        await _release(uow, auth, auth.held_amount, now, "card_hold_release")
        auth.status = AuthorizationStatus.CLEARED
    auth.updated_at = now
    await uow.authorizations.update(auth, TransactionStatus.SUCCEEDED if final else None)
    clearing_txn = Transaction(
        id=new_id(), business_id=auth.business_id, type=TransactionType.CARD_CLEARING,
        status=TransactionStatus.SUCCEEDED, amount=billing, currency=auth.billing_currency,
        created_at=now, updated_at=now, payment_method="card",
        metadata={"card_transaction_id": str(auth.id), "clearing_id": clearing_id,
                  "authorization_id": auth.network_id, "final": final})
    await uow.transactions.add(clearing_txn)
    _event(uow, auth, "cleared", billing)
    return auth


async def reverse(uow: AuthorizationUnitOfWork, *, reversal_id: str, authorization_id: str,
                  amount: Decimal | None, currency: str | None, now: datetime) -> StoredAuth:
    auth = await _auth(uow, authorization_id)
    if await _seen(uow, "network_reversal", reversal_id, now, authorization_id, amount, currency):
        return auth  # the same reversal again: already released
    if auth.status is not AuthorizationStatus.APPROVED or auth.held_amount <= 0:
        raise InvalidStateTransition(f"A {auth.status.name} authorization has no hold to reverse")
    release = auth.held_amount if amount is None else _billing(auth, amount, currency or auth.billing_currency)
    if release <= 0:
        raise InvalidInput("Reversal amount must be greater than zero", field=["amount"])
    if release > auth.held_amount:
        raise Conflict(f"Reversal of {release} exceeds the remaining hold of {auth.held_amount}",
                       field=["amount"])
    await _release(uow, auth, release, now, "card_reversal")
    if auth.held_amount == 0 and auth.cleared_amount == 0:
        auth.status = AuthorizationStatus.REVERSED
    auth.updated_at = now
    await uow.authorizations.update(
        auth, TransactionStatus.CANCELED if auth.status is AuthorizationStatus.REVERSED else None)
    _event(uow, auth, "reversed", release)
    return auth


async def expire_hold(uow: AuthorizationUnitOfWork, auth: StoredAuth, now: datetime) -> None:
    """Release a hold the network never cleared within the configured days."""
    remaining = auth.held_amount
    await _release(uow, auth, remaining, now, "card_hold_expiry")
    auth.status = AuthorizationStatus.CLEARED if auth.cleared_amount > 0 else AuthorizationStatus.EXPIRED
    auth.updated_at = now
    await uow.authorizations.update(
        auth, TransactionStatus.CANCELED if auth.status is AuthorizationStatus.EXPIRED
        else TransactionStatus.SUCCEEDED)
    _event(uow, auth, "expired", remaining)


async def decide(uow: AuthorizationUnitOfWork, cfg: AuthorizationConfig, auth: StoredAuth, *,
                 approve: bool, decided_by: uuid.UUID | None, now: datetime) -> StoredAuth:
    if auth.status is not AuthorizationStatus.PENDING_APPROVAL or auth.decided_by is not None:
        raise InvalidStateTransition("Only an undecided authorization awaiting approval can be decided",
                                     field=["input", "cardTransactionId"])
    before = auth.status.name
    auth.decided_by = decided_by or uuid.UUID(int=0)
    if approve:
        auth.approval_expires_at = now + cfg.approval_window
    else:
        auth.status = AuthorizationStatus.DECLINED
        auth.decline_reason = "approval_rejected"
    auth.updated_at = now
    await uow.authorizations.update(auth)
    _event(uow, auth, "approved_for_retry" if approve else "rejected", auth.billing_amount)
    uow.audit("card_transaction.decide", "CardTransaction", auth.id, business_id=auth.business_id,
              before={"status": before}, after={"status": auth.status.name, "approve": approve})
    return auth
