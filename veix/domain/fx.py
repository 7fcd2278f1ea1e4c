"""Currency conversion for card authorizations.

A card authorization arrives in the merchant's currency and is held in the
card's (billing) currency: ``convert`` turns the amount with a rate from an
:class:`ExchangeRateProvider` and returns the rate it used, which is stored
with the authorization (``exchange_rate`` in NETWORK.md).

Rates are exact Decimals with at most 6 decimal places (``"1.080235"``): how
many units of the quote currency one unit of the base currency buys, for the
pair ``BASE/QUOTE``. :class:`TableRates` derives what a table does not list:

* the same currency converts at exactly 1;
* the inverse of a listed pair is ``1 / rate``, rounded half-up to 6 decimals;
* a cross rate goes through a base currency (USD by default) when both legs
  are listed (either way round): ``EUR/GBP = EUR/USD * USD/GBP``, computed
  exactly and rounded half-up to 6 decimals once.

``DEFAULT_RATES`` is a static development table. Production plugs in a live
provider (the processor's daily settlement rates, or a market data feed
cached in memory and refreshed in the background) that implements the
protocol; ``rate`` is called inside the authorization transaction, so it must
answer from memory, without I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from types import MappingProxyType
from typing import Protocol

from veix.domain.currencies import is_known_currency, minor_units
from veix.domain.errors import InvalidInput, UnsupportedCurrency

RATE_PLACES = 6
_RATE_QUANTUM = Decimal(1).scaleb(-RATE_PLACES)
ONE = Decimal(1)


class ExchangeRateProvider(Protocol):
    def rate(self, from_currency: str, to_currency: str) -> Decimal:
        """Units of ``to_currency`` per unit of ``from_currency``.

        Raises :class:`UnsupportedCurrency` when the pair cannot be priced.
        """
        ...


def _quantize_rate(value: Decimal) -> Decimal:
    return value.quantize(_RATE_QUANTUM, rounding=ROUND_HALF_UP)


def _currency(code: object, context: str) -> str:
    if not isinstance(code, str) or not is_known_currency(code):
        raise UnsupportedCurrency(f"Unknown currency {code!r} in {context}")
    return code


def _parse_pair(pair: object) -> tuple[str, str]:
    if not isinstance(pair, str):
        raise InvalidInput(f"A currency pair is written like 'EUR/USD', got {pair!r}")
    parts = pair.split("/")
    if len(parts) != 2 or not all(len(part) == 3 for part in parts):
        raise InvalidInput(f"A currency pair is written like 'EUR/USD', got {pair!r}")
    base, quote = (_currency(part, f"pair {pair!r}") for part in parts)
    if base == quote:
        raise InvalidInput(f"Pair {pair!r} names the same currency twice")
    return base, quote


def _parse_rate(value: object, pair: str) -> Decimal:
    if isinstance(value, bool | float):
        raise InvalidInput(f"Rate of {pair} must be a Decimal or a decimal string, not {value!r}")
    if isinstance(value, str) and (value != value.strip() or "_" in value):
        raise InvalidInput(f"Rate of {pair} is not a decimal number: {value!r}")
    try:
        rate = value if isinstance(value, Decimal) else Decimal(str(value))
    except (InvalidOperation, ValueError):
        raise InvalidInput(f"Rate of {pair} is not a decimal number: {value!r}") from None
    if not rate.is_finite() or rate <= 0:
        raise InvalidInput(f"Rate of {pair} must be a positive number, got {value!r}")
    if rate != _quantize_rate(rate):
        raise InvalidInput(f"Rate of {pair} has more than {RATE_PLACES} decimal places: {value!r}")
    return rate


class TableRates:
    """An :class:`ExchangeRateProvider` over a fixed table of pairs.

    ``TableRates({"EUR/USD": Decimal("1.080235")})`` prices EUR/USD directly,
    USD/EUR as the inverse, and, with more pairs against the ``base``
    currency, crosses between them.
    """

    __slots__ = ("_base", "_direct")

    def __init__(self, rates: Mapping[str, Decimal], *, base: str = "USD") -> None:
        self._base = _currency(base, "the base currency")
        direct: dict[tuple[str, str], Decimal] = {}
        for pair, value in rates.items():
            base_code, quote_code = _parse_pair(pair)
            direct[(base_code, quote_code)] = _parse_rate(value, pair)
        self._direct = direct

    @classmethod
    def from_setting(cls, text: str, *, base: str = "USD") -> TableRates:
        """Parse ``"EUR/USD=1.0802,GBP/USD=1.2710"`` (the ``VEIX_FX_RATES`` setting).

        Whitespace around entries and a trailing comma are allowed; a
        setting without entries, a malformed entry, an unknown
        currency, a non-positive rate or a pair listed twice raises
        :class:`InvalidInput`.
        """
        rates: dict[str, Decimal] = {}
        entries = [entry.strip() for entry in text.split(",") if entry.strip()]
        if not entries:
            raise InvalidInput("No exchange rates given: expected 'EUR/USD=1.0802,GBP/USD=1.2710'")
        seen: set[tuple[str, str]] = set()
        for entry in entries:
            pair, sep, value = entry.partition("=")
            pair, value = pair.strip(), value.strip()
            if not sep or not pair or not value:
                raise InvalidInput(f"Malformed exchange rate {entry!r}: expected 'EUR/USD=1.0802'")
            key = _parse_pair(pair)
            if key in seen:
                raise InvalidInput(f"Exchange rate {pair} is given twice")
            seen.add(key)
            rates[pair] = _parse_rate(value, pair)
        return cls(rates, base=base)

    @property
    def base(self) -> str:
        return self._base

    def pairs(self) -> dict[str, Decimal]:
        """The listed pairs, as given (``{"EUR/USD": Decimal("1.080235")}``)."""
        return {f"{a}/{b}": rate for (a, b), rate in self._direct.items()}

    def _leg(self, from_currency: str, to_currency: str) -> Decimal | None:
        """Exact rate from a listed pair or its exact inverse; None if unlisted."""
        rate = self._direct.get((from_currency, to_currency))
        if rate is not None:
            return rate
        inverse = self._direct.get((to_currency, from_currency))
        if inverse is not None:
            return ONE / inverse
        return None

    def rate(self, from_currency: str, to_currency: str) -> Decimal:
        _currency(from_currency, "an exchange rate")
        _currency(to_currency, "an exchange rate")
        if from_currency == to_currency:
            return ONE
        rate = self._direct.get((from_currency, to_currency))
        if rate is not None:
            return rate
        derived = self._leg(from_currency, to_currency)
        if derived is None and self._base not in (from_currency, to_currency):
            first = self._leg(from_currency, self._base)
            second = self._leg(self._base, to_currency)
            if first is not None and second is not None:
                derived = first * second
        if derived is None:
            raise UnsupportedCurrency(f"No exchange rate for {from_currency}/{to_currency}")
        rounded = _quantize_rate(derived)
        if rounded == 0:
            raise UnsupportedCurrency(
                f"The {from_currency}/{to_currency} rate is below {_RATE_QUANTUM}: quote the other way"
            )
        return rounded


def convert(
    amount: Decimal, from_currency: str, to_currency: str, provider: ExchangeRateProvider
) -> tuple[Decimal, Decimal]:
    """``amount`` in ``to_currency`` and the rate used.

    The result is rounded half-up to the target currency's minor units (JPY
    0, USD 2, BHD 3); the rate is returned as the provider gave it.
    """
    if not isinstance(amount, Decimal) or not amount.is_finite():
        raise InvalidInput(f"Cannot convert {amount!r}: amounts are finite Decimals")
    _currency(from_currency, "a conversion")
    _currency(to_currency, "a conversion")
    rate = ONE if from_currency == to_currency else provider.rate(from_currency, to_currency)
    places = Decimal(1).scaleb(-minor_units(to_currency))
    converted = (amount * rate).quantize(places, rounding=ROUND_HALF_UP)
    return (converted + 0 if converted == 0 else converted), rate  # no "-0.00"


# Indicative mid-market levels (2024), quoted the market way round. A
# development and test default only: never use it to settle real money.
DEFAULT_RATE_TABLE: Mapping[str, Decimal] = MappingProxyType(
    {
        "EUR/USD": Decimal("1.080235"),
        "GBP/USD": Decimal("1.271000"),
        "AUD/USD": Decimal("0.655000"),
        "USD/JPY": Decimal("151.200000"),
        "USD/CHF": Decimal("0.885000"),
        "USD/CAD": Decimal("1.365000"),
        "USD/SEK": Decimal("10.450000"),
        "USD/NOK": Decimal("10.700000"),
        "USD/DKK": Decimal("6.905000"),
        "USD/PLN": Decimal("3.980000"),
    }
)

DEFAULT_RATES = TableRates(DEFAULT_RATE_TABLE)
