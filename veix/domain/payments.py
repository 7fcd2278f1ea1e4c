"""Payments: the state machine, the fee policy and the input rules, as pure functions.

State machine of a ``PAYMENT`` transaction (DESIGN.md section 4)::

    PENDING ──> REQUIRES_ACTION ──> PROCESSING ──> SUCCEEDED ──> PARTIALLY_REFUNDED ──> REFUNDED
       │              │                  │             │                 │
       └──────────────┴──────────────────┴──> FAILED   └──> DISPUTED <───┘
                                                CANCELED

``PENDING`` is a payment just created, or authorized and waiting for
``capturePayment`` (``capture: false``); ``capturableAmount`` tells which.
``FAILED`` and ``CANCELED`` are final. A dispute moves a payment to
``DISPUTED``; a won dispute returns it to the status it had before.

Gateway webhooks arrive late and out of order. :func:`webhook_target` turns
an event into the status it asks for, and :func:`is_stale` says whether the
payment has already moved past it (a late ``processing`` after
``succeeded``): such an event is recorded and ignored, never an error.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from enum import Enum

from veix.domain.currencies import minor_units
from veix.domain.errors import InvalidInput, InvalidStateTransition
from veix.domain.gateway import CardDetails, GatewayPaymentStatus
from veix.domain.transactions import TransactionStatus as S

TRANSITIONS: dict[S, frozenset[S]] = {
    S.PENDING: frozenset({S.REQUIRES_ACTION, S.PROCESSING, S.SUCCEEDED, S.FAILED, S.CANCELED}),
    S.REQUIRES_ACTION: frozenset({S.PENDING, S.PROCESSING, S.SUCCEEDED, S.FAILED, S.CANCELED}),
    S.PROCESSING: frozenset({S.PENDING, S.SUCCEEDED, S.FAILED, S.CANCELED}),
    S.SUCCEEDED: frozenset({S.PARTIALLY_REFUNDED, S.REFUNDED, S.DISPUTED}),
    S.PARTIALLY_REFUNDED: frozenset({S.PARTIALLY_REFUNDED, S.REFUNDED, S.DISPUTED}),
    S.DISPUTED: frozenset({S.SUCCEEDED, S.PARTIALLY_REFUNDED, S.REFUNDED}),
    S.REFUNDED: frozenset(),
    S.FAILED: frozenset(),
    S.CANCELED: frozenset(),
}

# How far along a payment is; an event asking for a lower rank than the
# current one is stale.
_RANK = {
    S.PENDING: 0, S.REQUIRES_ACTION: 1, S.PROCESSING: 2, S.SUCCEEDED: 3,
    S.PARTIALLY_REFUNDED: 4, S.REFUNDED: 5, S.DISPUTED: 4, S.FAILED: 9, S.CANCELED: 9,
}

OPEN = frozenset({S.PENDING, S.REQUIRES_ACTION, S.PROCESSING})
CAPTURED = frozenset({S.SUCCEEDED, S.PARTIALLY_REFUNDED, S.REFUNDED, S.DISPUTED})


def can_transition(current: S, target: S) -> bool:
    return target in TRANSITIONS[current]


def check_transition(current: S, target: S) -> None:
    if not can_transition(current, target):
        raise InvalidStateTransition(
            f"A {current.name} payment cannot become {target.name}")


def is_stale(current: S, target: S) -> bool:
    """Whether an event asking for ``target`` comes after the payment moved past it."""
    if current == target:
        return True
    return not can_transition(current, target) and _RANK[target] <= _RANK[current]


def status_of(result: GatewayPaymentStatus) -> S:
    """The payment status a gateway's answer means."""
    return {
        GatewayPaymentStatus.REQUIRES_ACTION: S.REQUIRES_ACTION,
        GatewayPaymentStatus.PROCESSING: S.PROCESSING,
        GatewayPaymentStatus.AUTHORIZED: S.PENDING,
        GatewayPaymentStatus.SUCCEEDED: S.SUCCEEDED,
        GatewayPaymentStatus.FAILED: S.FAILED,
        GatewayPaymentStatus.CANCELED: S.CANCELED,
    }[result]


def status_after_refunds(captured: Decimal, refunded: Decimal) -> S:
    if refunded <= 0:
        return S.SUCCEEDED
    return S.REFUNDED if refunded >= captured else S.PARTIALLY_REFUNDED


# ---------------------------------------------------------------- fees

@dataclass(frozen=True, slots=True)
class FeeSchedule:
    """Veix's processing fee: ``percent`` of the captured amount plus ``fixed_minor``
    minor units of its currency (0.30 EUR, 30 JPY), rounded half-up to the
    currency, never more than the amount. Refunds do not return the fee
    (the card schemes keep their interchange); a won dispute returns the
    disputed amount, not the fee."""

    percent: Decimal = Decimal("2.9")
    fixed_minor: int = 30

    def fee(self, amount: Decimal, currency: str) -> Decimal:
        places = minor_units(currency)
        quantum = Decimal(1).scaleb(-places)
        raw = amount * self.percent / 100 + Decimal(self.fixed_minor).scaleb(-places)
        return min(raw.quantize(quantum, rounding=ROUND_HALF_UP), amount)


DEFAULT_FEES: dict[str, FeeSchedule] = {
    "sandbox": FeeSchedule(Decimal("2.9"), 30),
    "stripe": FeeSchedule(Decimal("2.9"), 30),
    "paypal": FeeSchedule(Decimal("3.49"), 49),
    "crypto": FeeSchedule(Decimal("1.0"), 0),
}


def parse_fees(text: str) -> dict[str, FeeSchedule]:
    """``"stripe=2.9+30,paypal=3.49+49"`` over :data:`DEFAULT_FEES`; ValueError when malformed."""
    fees = dict(DEFAULT_FEES)
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, spec = part.partition("=")
        percent, _, fixed = spec.partition("+")
        name = name.strip().lower()
        if name not in DEFAULT_FEES:
            raise ValueError(f"bad fee {part!r}: unknown gateway {name!r}")
        try:
            schedule = FeeSchedule(Decimal(percent.strip()), int(fixed.strip() or 0))
        except (ArithmeticError, ValueError):
            raise ValueError(f"bad fee {part!r}: expected <gateway>=<percent>+<fixed minor units>") from None
        if not (0 <= schedule.percent < 100) or schedule.fixed_minor < 0:
            raise ValueError(f"bad fee {part!r}: percent in [0, 100), fixed >= 0")
        fees[name] = schedule
    return fees


def parse_asset_specs(text: str) -> list[tuple[str, int, str | None, dict[str, Decimal]]]:
    """``"ETH:18::USD=3000;USDC:6:0xA0b8...:USD=1"`` -> (symbol, decimals, token, prices)."""
    specs = []
    for part in filter(None, (p.strip() for p in text.split(";"))):
        try:
            symbol, decimals, token, prices = part.split(":", 3)
            priced = {cur.strip().upper(): Decimal(val.strip()) for cur, _, val in
                      (p.partition("=") for p in prices.split(",") if p.strip())}
            places = int(decimals)
        except (ValueError, ArithmeticError):
            raise ValueError(f"bad crypto asset {part!r}: expected SYMBOL:decimals:token:CUR=price,...") from None
        if not symbol.strip().isalnum() or not 0 <= places <= 36 or not priced or min(priced.values()) <= 0:
            raise ValueError(f"bad crypto asset {part!r}")
        specs.append((symbol.strip().upper(), places, token.strip() or None, priced))
    return specs


# ---------------------------------------------------------------- input rules

_DIGITS = re.compile(r"^[0-9]+$")


class CardBrand(str, Enum):
    VISA = "Visa"
    MASTERCARD = "Mastercard"
    AMEX = "American Express"
    DISCOVER = "Discover"
    UNKNOWN = "Card"


def luhn_valid(number: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(number)):
        d = ord(ch) - 48
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def brand_of(number: str) -> CardBrand:
    if number.startswith("4"):
        return CardBrand.VISA
    if number[:2] in {"51", "52", "53", "54", "55"} or 2221 <= int(number[:4] or 0) <= 2720:
        return CardBrand.MASTERCARD
    if number[:2] in {"34", "37"}:
        return CardBrand.AMEX
    if number.startswith("6011") or number.startswith("65"):
        return CardBrand.DISCOVER
    return CardBrand.UNKNOWN


def card_display(number: str) -> str:
    return f"{brand_of(number).value} •••• {number[-4:]}"


def validate_card(number: str, exp_month: int, exp_year: int, cvc: str, now: datetime) -> CardDetails:
    """A card that can be sent to a gateway, or ``InvalidInput`` naming the bad field.

    Error messages never repeat the number.
    """
    base = ["input", "card"]
    digits = number.replace(" ", "").replace("-", "")
    if not _DIGITS.match(digits) or not 12 <= len(digits) <= 19:
        raise InvalidInput("The card number must be 12 to 19 digits", field=[*base, "number"])
    if not luhn_valid(digits):
        raise InvalidInput("The card number is not valid (check digit)", field=[*base, "number"])
    if not 1 <= exp_month <= 12:
        raise InvalidInput("expMonth must be 1 to 12", field=[*base, "expMonth"])
    if exp_year < 100:
        exp_year += 2000
    if not 2000 <= exp_year <= now.year + 50:
        raise InvalidInput("expYear is not a plausible year", field=[*base, "expYear"])
    if (exp_year, exp_month) < (now.year, now.month):
        raise InvalidInput("The card has expired", field=[*base, "expMonth"])
    expected_cvc = 4 if brand_of(digits) is CardBrand.AMEX else 3
    if not _DIGITS.match(cvc) or len(cvc) != expected_cvc:
        raise InvalidInput(f"The CVC must be {expected_cvc} digits", field=[*base, "cvc"])
    return CardDetails(digits, exp_month, exp_year, cvc)


def validate_redirect_url(url: str, field: list[str]) -> str:
    if not isinstance(url, str) or not re.match(r"^https?://[^\s/$.?#][^\s]*$", url) or len(url) > 2000:
        raise InvalidInput("Must be an absolute http(s) URL", field=field)
    return url
