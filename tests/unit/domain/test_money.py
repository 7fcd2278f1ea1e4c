"""Money: exact decimals in an ISO 4217 currency, never floats, never silent rounding."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from veix.domain.errors import ErrorCode, InvalidInput, UnsupportedCurrency
from veix.domain.money import MAX_AMOUNT, Money, parse_amount, parse_currency, positive_money


def test_keeps_amounts_exact() -> None:
    total = Money.of("0.10", "USD") + Money.of("0.20", "USD")
    assert total == Money.of("0.30", "USD")
    assert total.amount == Decimal("0.30")


def test_pads_amounts_to_the_currency_minor_unit() -> None:
    money = Money.of("10.1", "USD")
    assert money.amount == Decimal("10.10")
    assert str(money.amount) == "10.10"
    assert str(money) == "10.10 USD"


@pytest.mark.parametrize(
    ("amount", "currency", "expected"),
    [
        ("100", "JPY", "100"),
        ("100.0", "JPY", "100"),  # trailing zeros are not extra precision
        (5, "USD", "5.00"),
        (Decimal("19.99"), "USD", "19.99"),
        ("10.100", "USD", "10.10"),
        ("1.234", "BHD", "1.234"),
        ("1.2", "BHD", "1.200"),
        ("-3.50", "EUR", "-3.50"),
    ],
)
def test_accepts_amounts_within_the_currency_minor_unit(
    amount: object, currency: str, expected: str
) -> None:
    money = Money.of(amount, currency)
    assert str(money.amount) == expected
    assert money.currency == currency


@pytest.mark.parametrize(
    ("amount", "currency", "places"),
    [
        ("100.5", "JPY", 0),
        ("10.001", "USD", 2),
        ("0.009", "USD", 2),
        ("1.2345", "BHD", 3),
        ("1E-3", "EUR", 2),
    ],
)
def test_rejects_more_decimals_than_the_currency_allows(
    amount: str, currency: str, places: int
) -> None:
    with pytest.raises(InvalidInput, match=f"at most {places} decimal places") as err:
        Money.of(amount, currency)
    assert err.value.field == ["amount"]
    assert err.value.code is ErrorCode.INVALID_INPUT


@pytest.mark.parametrize("currency", ["XYZ", "usd", "US", "EURO", "", None, 840, "BTC"])
def test_rejects_unknown_currencies(currency: object) -> None:
    with pytest.raises(UnsupportedCurrency) as err:
        Money.of("1.00", currency)
    assert err.value.code is ErrorCode.UNSUPPORTED_CURRENCY
    assert err.value.field == ["currency"]


def test_parse_currency_returns_a_known_code() -> None:
    assert parse_currency("EUR") == "EUR"


@pytest.mark.parametrize("amount", [0.1, 10.0, 1e3, float("nan"), True, False])
def test_rejects_floats_and_booleans(amount: object) -> None:
    with pytest.raises(InvalidInput, match="not floats"):
        Money.of(amount, "USD")


@pytest.mark.parametrize(
    "amount",
    ["NaN", "nan", "sNaN", "Infinity", "-Infinity", "inf", Decimal("NaN"), Decimal("-Infinity")],
)
def test_rejects_nan_and_infinity(amount: object) -> None:
    with pytest.raises(InvalidInput, match="finite"):
        Money.of(amount, "USD")


@pytest.mark.parametrize("amount", ["", "abc", "1,00", "1.2.3", None, [1], "0x10"])
def test_rejects_things_that_are_not_decimal_amounts(amount: object) -> None:
    with pytest.raises(InvalidInput) as err:
        Money.of(amount, "USD")
    assert err.value.field == ["amount"]


def test_accepts_the_largest_amount_numeric_20_6_can_store() -> None:
    assert Money.of("99999999999999.99", "USD").amount == Decimal("99999999999999.99")
    assert Money.of("-99999999999999.99", "USD").amount == Decimal("-99999999999999.99")


@pytest.mark.parametrize("amount", ["100000000000000", "-100000000000000", "1E+15", 10**30])
def test_rejects_amounts_too_large_for_numeric_20_6(amount: object) -> None:
    with pytest.raises(InvalidInput):
        parse_amount(amount, "CLF")


def test_rejects_an_oversize_amount_with_extra_decimals_as_invalid_input() -> None:
    with pytest.raises(InvalidInput):
        Money.of("1000000000000000000000000000.001", "USD")


def test_refuses_to_combine_different_currencies() -> None:
    with pytest.raises(InvalidInput, match="USD and EUR"):
        Money.of("1", "USD") + Money.of("1", "EUR")
    with pytest.raises(InvalidInput):
        Money.of("1", "USD") - Money.of("1", "EUR")


def test_negation_and_zero() -> None:
    assert -Money.of("1.50", "USD") == Money.of("-1.50", "USD")
    assert Money.zero("JPY") == Money.of("0", "JPY")
    assert not Money.zero("USD").is_positive()


@pytest.mark.parametrize("amount", ["0", "-0.01", "-5"])
def test_positive_money_rejects_zero_and_negative_amounts(amount: str) -> None:
    with pytest.raises(InvalidInput, match="greater than zero") as err:
        positive_money(amount, "USD", field="input.amount")
    assert err.value.field == ["input.amount"]


def test_positive_money_accepts_a_positive_amount() -> None:
    assert positive_money("0.01", "USD") == Money.of("0.01", "USD")


_CURRENCIES = {"JPY": 0, "USD": 2, "EUR": 2, "BHD": 3, "CLF": 4}
# Half of NUMERIC(20, 6)'s range, so that sums stay representable.
_HALF = int(MAX_AMOUNT / 2)


@st.composite
def _money_pair(draw: st.DrawFn) -> tuple[Money, Money]:
    currency = draw(st.sampled_from(sorted(_CURRENCIES)))
    places = _CURRENCIES[currency]
    bound = _HALF * 10**places
    a, b = (
        draw(st.integers(min_value=-bound, max_value=bound)),
        draw(st.integers(min_value=-bound, max_value=bound)),
    )
    return (
        Money.of(str(Decimal(a).scaleb(-places)), currency),
        Money.of(str(Decimal(b).scaleb(-places)), currency),
    )


@given(_money_pair())
def test_addition_and_subtraction_round_trip_exactly(pair: tuple[Money, Money]) -> None:
    a, b = pair
    assert (a + b) - b == a
    assert (a - b) + b == a
    assert (a + b).amount == a.amount + b.amount
    assert (a + b) == Money.of(str((a + b).amount), a.currency)  # still a valid amount
    assert a + b == b + a
