"""Money: an exact Decimal amount in an ISO 4217 currency.

An amount with more decimals than the currency's minor unit is an error, not
a rounding: ``Money.of("10.001", "USD")`` raises, ``Money.of("10.1", "USD")``
is ``10.10 USD``.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from veix.domain.currencies import is_known_currency, minor_units
from veix.domain.errors import InvalidInput, UnsupportedCurrency

# NUMERIC(20, 6): 14 integer digits at most.
MAX_AMOUNT = Decimal("99999999999999.999999")


def parse_currency(code: object, *, field: str = "currency") -> str:
    """Validate an ISO 4217 code (upper case, three letters, in circulation)."""
    if not isinstance(code, str) or not is_known_currency(code):
        raise UnsupportedCurrency(
            f"Unknown currency {code!r}: use an ISO 4217 code such as EUR", field=[field]
        )
    return code


def parse_amount(value: object, currency: str, *, field: str = "amount") -> Decimal:
    """An exact Decimal for ``currency``, refusing floats, NaN and extra decimals."""
    if isinstance(value, bool | float):
        raise InvalidInput("Amounts are decimal strings, not floats", field=[field])
    if isinstance(value, str) and (value != value.strip() or "_" in value):
        raise InvalidInput(f"{value!r} is not a decimal amount", field=[field])
    try:
        amount = value if isinstance(value, Decimal) else Decimal(str(value))
    except (InvalidOperation, ValueError):
        raise InvalidInput(f"{value!r} is not a decimal amount", field=[field]) from None
    if not amount.is_finite():
        raise InvalidInput("Amount must be a finite number", field=[field])
    if abs(amount) > MAX_AMOUNT:
        raise InvalidInput("Amount is too large", field=[field])
    exponent = amount.as_tuple().exponent
    assert isinstance(exponent, int)
    places = minor_units(currency)
    if -exponent > places and amount != amount.quantize(Decimal(1).scaleb(-places)):
        raise InvalidInput(
            f"{currency} allows at most {places} decimal places, got {amount}", field=[field]
        )
    amount = amount.quantize(Decimal(1).scaleb(-places))
    return amount + 0 if amount == 0 else amount  # no "-0.00"


@dataclass(frozen=True, slots=True)
class Money:
    """An amount in one currency; arithmetic only between equal currencies."""

    amount: Decimal
    currency: str

    def __post_init__(self) -> None:
        # Money built directly (not through ``of``) obeys the same rules.
        parse_currency(self.currency)
        exact = parse_amount(self.amount, self.currency)
        if exact != self.amount:
            raise InvalidInput(f"{self.amount} is not exact in {self.currency}")
        object.__setattr__(self, "amount", exact)  # canonical scale: 10.5 -> 10.50

    @classmethod
    def of(cls, amount: object, currency: object) -> Money:
        code = parse_currency(currency)
        return cls(parse_amount(amount, code), code)

    @classmethod
    def zero(cls, currency: str) -> Money:
        return cls.of(Decimal(0), currency)

    def _same(self, other: Money) -> None:
        if other.currency != self.currency:
            raise InvalidInput(f"Cannot combine {self.currency} and {other.currency}")

    def __add__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.amount + other.amount, self.currency)

    def __sub__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.amount - other.amount, self.currency)

    def __neg__(self) -> Money:
        return Money(-self.amount, self.currency)

    def is_positive(self) -> bool:
        return self.amount > 0

    def __str__(self) -> str:
        return f"{self.amount} {self.currency}"


def positive_money(amount: object, currency: object, *, field: str = "amount") -> Money:
    """Money that must be strictly positive (funding, payments, refunds)."""
    money = Money.of(amount, currency)
    if not money.is_positive():
        raise InvalidInput("Amount must be greater than zero", field=[field])
    return money
