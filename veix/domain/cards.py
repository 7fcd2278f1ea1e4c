"""Virtual cards: types, networks, the lifecycle state machine and PANs.

PANs follow ISO/IEC 7812: a configured BIN per network (Visa ``4…``,
Mastercard ``51-55`` / ``2221-2720``), random account digits and a Luhn
check digit, 16 digits in all. The full PAN and CVV only ever exist here in
memory on their way into the vault (see veix.security.vault).
"""

from __future__ import annotations

import secrets
import uuid
from calendar import monthrange
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from enum import Enum
from typing import Any

from veix.domain.errors import InvalidInput, InvalidStateTransition
from veix.domain.events import DomainEvent

PAN_LENGTH = 16


class CardType(str, Enum):
    STANDARD = "standard"
    SINGLE_USE = "single_use"
    SUBSCRIPTION = "subscription"
    PREPAID = "prepaid"


class CardStatus(str, Enum):
    INACTIVE = "inactive"
    ACTIVE = "active"
    FROZEN = "frozen"
    CLOSED = "closed"
    EXPIRED = "expired"


class CardNetwork(str, Enum):
    VISA = "visa"
    MASTERCARD = "mastercard"


TRANSITIONS: dict[CardStatus, frozenset[CardStatus]] = {
    CardStatus.INACTIVE: frozenset({CardStatus.ACTIVE, CardStatus.CLOSED, CardStatus.EXPIRED}),
    CardStatus.ACTIVE: frozenset({CardStatus.FROZEN, CardStatus.CLOSED, CardStatus.EXPIRED}),
    CardStatus.FROZEN: frozenset({CardStatus.ACTIVE, CardStatus.CLOSED, CardStatus.EXPIRED}),
    CardStatus.CLOSED: frozenset(),
    CardStatus.EXPIRED: frozenset(),
}

DEFAULT_BINS: dict[CardNetwork, str] = {CardNetwork.VISA: "424242", CardNetwork.MASTERCARD: "532610"}


def luhn_check_digit(partial: str) -> str:
    """The digit that makes ``partial + digit`` pass the Luhn check."""
    total = 0
    for i, ch in enumerate(reversed(partial)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return str((10 - total % 10) % 10)


def luhn_valid(pan: str) -> bool:
    return pan.isascii() and pan.isdigit() and len(pan) >= 12 and luhn_check_digit(pan[:-1]) == pan[-1]


def validate_bin(network: CardNetwork, bin_: str) -> str:
    """A BIN must be 6-8 digits inside its network's ISO/IEC 7812 range."""
    if not bin_.isdigit() or not 6 <= len(bin_) <= 8:
        raise InvalidInput(f"BIN {bin_!r} must be 6 to 8 digits")
    if network is CardNetwork.VISA and not bin_.startswith("4"):
        raise InvalidInput("Visa BINs start with 4")
    if network is CardNetwork.MASTERCARD:
        two, four = int(bin_[:2]), int(bin_[:4])
        if not (51 <= two <= 55 or 2221 <= four <= 2720):
            raise InvalidInput("Mastercard BINs are 51-55 or 2221-2720")
    return bin_


def generate_pan(bin_: str) -> str:
    body = bin_ + "".join(str(secrets.randbelow(10)) for _ in range(PAN_LENGTH - 1 - len(bin_)))
    return body + luhn_check_digit(body)


def generate_cvv() -> str:
    return f"{secrets.randbelow(1000):03d}"


def expiry_after(issued: datetime, years: int) -> date:
    """Cards expire at the end of the month ``years`` after issue."""
    year, month = issued.year + years, issued.month
    return date(year, month, monthrange(year, month)[1])


def expiry_text(expiry: date) -> str:
    return f"{expiry.year:04d}-{expiry.month:02d}"


@dataclass(slots=True)
class Card:
    id: uuid.UUID
    business_id: uuid.UUID
    cardholder_id: uuid.UUID | None
    network: CardNetwork
    type: CardType
    status: CardStatus
    masked_number: str
    last4: str
    expiry_date: date
    currency: str
    spending_limit: Decimal | None
    current_balance: Decimal
    merchant_lock: str | None
    metadata: dict[str, Any]
    public_token: str
    created_at: datetime
    updated_at: datetime
    events: list[DomainEvent] = field(default_factory=list, compare=False, repr=False)

    def snapshot(self) -> dict[str, Any]:
        return {
            "status": self.status.value, "type": self.type.value, "network": self.network.value,
            "masked_number": self.masked_number, "currency": self.currency,
            "spending_limit": str(self.spending_limit) if self.spending_limit is not None else None,
            "merchant_lock": self.merchant_lock,
            "cardholder_id": str(self.cardholder_id) if self.cardholder_id else None,
        }


def transition(card: Card, to: CardStatus, *, now: datetime) -> None:
    if to not in TRANSITIONS[card.status]:
        raise InvalidStateTransition(
            f"A {card.status.name} card cannot become {to.name}", field=["input", "cardId"])
    before = card.status
    card.status = to
    card.updated_at = now
    card.events.append(DomainEvent("card.status_changed", card.business_id, {
        "card_id": str(card.id), "from": before.name, "to": to.name}))
