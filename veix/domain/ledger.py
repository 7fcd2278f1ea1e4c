"""Double-entry ledger rules, enforced here and nowhere else.

A posting's ``amount`` is the signed change to its account's balance. A
journal entry has at least two postings and sums to zero in every currency.
Accounts with ``allow_negative = False`` (a business's available funds) can
never go below zero: :func:`apply_posting` refuses it.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import Enum

from veix.domain.errors import InsufficientFunds, InvariantViolation
from veix.domain.ids import new_id
from veix.domain.money import Money, parse_amount


class AccountKind(str, Enum):
    BUSINESS_AVAILABLE = "business_available"
    FUNDING_SOURCE = "funding_source"
    CARD_PREPAID = "card_prepaid"
    BUSINESS_HOLDS = "business_holds"
    CARD_SETTLEMENT = "card_settlement"
    GATEWAY_CLEARING = "gateway_clearing"
    PLATFORM_FEES = "platform_fees"
    REFUNDS_PENDING = "refunds_pending"
    BUSINESS_RECEIVABLE = "business_receivable"


@dataclass(frozen=True, slots=True)
class AccountRef:
    """Identifies an account before it is known to exist (created on first use)."""

    code: str
    currency: str
    kind: AccountKind
    business_id: uuid.UUID | None
    allow_negative: bool


def business_available(business_id: uuid.UUID, currency: str) -> AccountRef:
    return AccountRef(
        f"business:{business_id}:available:{currency}",
        currency,
        AccountKind.BUSINESS_AVAILABLE,
        business_id,
        allow_negative=False,
    )


def funding_source(source: str, currency: str) -> AccountRef:
    return AccountRef(
        f"external:{source}:{currency}", currency, AccountKind.FUNDING_SOURCE, None, True
    )


def gateway_clearing(gateway: str, currency: str) -> AccountRef:
    """What a gateway owes Veix (negative) for captured payments not yet paid out."""
    return AccountRef(f"gateway:{gateway}:{currency}", currency, AccountKind.GATEWAY_CLEARING, None, True)


def platform_fees(currency: str) -> AccountRef:
    return AccountRef(f"platform:fees:{currency}", currency, AccountKind.PLATFORM_FEES, None, True)


def refunds_pending(business_id: uuid.UUID, currency: str) -> AccountRef:
    """Refunds sent to a gateway and not yet confirmed: reserved from the business's funds."""
    return AccountRef(f"business:{business_id}:refunds_pending:{currency}", currency,
                      AccountKind.REFUNDS_PENDING, business_id, allow_negative=False)


def business_receivable(business_id: uuid.UUID, currency: str) -> AccountRef:
    """What a business owes (a negative balance) when a dispute took more than it had."""
    return AccountRef(f"business:{business_id}:receivable:{currency}", currency,
                      AccountKind.BUSINESS_RECEIVABLE, business_id, allow_negative=True)


def lines(*pairs: tuple[AccountRef, Decimal]) -> list[PostingLine]:
    """Posting lines from (account, signed amount) pairs, leaving out zeros."""
    return [PostingLine(account, amount) for account, amount in pairs if amount != 0]


@dataclass(frozen=True, slots=True)
class PostingLine:
    account: AccountRef
    amount: Decimal


@dataclass(frozen=True, slots=True)
class JournalEntry:
    id: uuid.UUID
    business_id: uuid.UUID | None
    kind: str
    description: str
    lines: tuple[PostingLine, ...]
    occurred_at: datetime
    transaction_id: uuid.UUID | None = None
    metadata: dict[str, str] = field(default_factory=dict)


def journal_entry(
    *,
    business_id: uuid.UUID | None,
    kind: str,
    description: str,
    lines: list[PostingLine],
    occurred_at: datetime,
    transaction_id: uuid.UUID | None = None,
) -> JournalEntry:
    """Build an entry, refusing anything unbalanced or malformed."""
    if len(lines) < 2:
        raise InvariantViolation("a journal entry needs at least two postings")
    totals: dict[str, Decimal] = defaultdict(Decimal)
    for line in lines:
        if line.amount == 0:
            raise InvariantViolation("a posting of zero moves nothing")
        if parse_amount(line.amount, line.account.currency) != line.amount:
            raise InvariantViolation("posting amount is not exact in its currency")
        totals[line.account.currency] += line.amount
    unbalanced = {cur: total for cur, total in totals.items() if total != 0}
    if unbalanced:
        raise InvariantViolation(f"journal entry does not balance: {unbalanced}")
    return JournalEntry(
        new_id(), business_id, kind, description, tuple(lines), occurred_at, transaction_id
    )


def transfer(
    source: AccountRef, destination: AccountRef, money: Money
) -> list[PostingLine]:
    """The two postings moving ``money`` from ``source`` to ``destination``."""
    return [PostingLine(source, -money.amount), PostingLine(destination, money.amount)]


def apply_posting(balance: Decimal, amount: Decimal, *, allow_negative: bool) -> Decimal:
    """The new balance, or ``InsufficientFunds`` if a non-negative account would dip."""
    new_balance = balance + amount
    if not allow_negative and new_balance < 0:
        raise InsufficientFunds("Insufficient funds for this movement")
    return new_balance
