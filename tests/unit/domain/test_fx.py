"""Currency conversion: direct, inverse and cross rates, rounding to minor units."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from veix.domain.errors import ErrorCode, InvalidInput, UnsupportedCurrency
from veix.domain.fx import (
    DEFAULT_RATE_TABLE,
    DEFAULT_RATES,
    ExchangeRateProvider,
    TableRates,
    convert,
)

RATES = TableRates(
    {
        "EUR/USD": Decimal("1.080235"),
        "GBP/USD": Decimal("1.2710"),
        "USD/JPY": Decimal("151.20"),
    }
)


def test_direct_rate() -> None:
    assert RATES.rate("EUR", "USD") == Decimal("1.080235")
    assert convert(Decimal("42.50"), "EUR", "USD", RATES) == (Decimal("45.91"), Decimal("1.080235"))


def test_inverse_rate_is_derived_and_rounded_to_six_decimals() -> None:
    assert RATES.rate("USD", "EUR") == Decimal("0.925724")  # 1 / 1.080235 = 0.92572449...
    assert RATES.rate("JPY", "USD") == Decimal("0.006614")  # 1 / 151.2 = 0.00661375...
    assert convert(Decimal("100.00"), "USD", "EUR", RATES) == (Decimal("92.57"), Decimal("0.925724"))


def test_cross_rate_goes_through_the_base_currency() -> None:
    # EUR -> USD -> GBP: 1.080235 / 1.2710 = 0.84990952...
    assert RATES.rate("EUR", "GBP") == Decimal("0.849910")
    # GBP -> USD -> JPY: 1.2710 * 151.2 = 192.1752
    assert RATES.rate("GBP", "JPY") == Decimal("192.175200")
    # EUR -> JPY with both legs in the "wrong" direction for one of them.
    assert RATES.rate("JPY", "EUR") == Decimal("0.006123")  # 1 / (1.080235 * 151.2)


def test_cross_rate_through_another_base() -> None:
    rates = TableRates({"EUR/GBP": Decimal("0.85"), "EUR/CHF": Decimal("0.95")}, base="EUR")
    assert rates.base == "EUR"
    assert rates.rate("GBP", "CHF") == Decimal("1.117647")  # 0.95 / 0.85
    with pytest.raises(UnsupportedCurrency):
        RATES.rate("GBP", "CHF")  # CHF is not in the USD table


def test_same_currency_is_one() -> None:
    assert RATES.rate("CHF", "CHF") == Decimal(1)
    assert convert(Decimal("10.10"), "CHF", "CHF", RATES) == (Decimal("10.10"), Decimal(1))


def test_jpy_rounds_to_whole_yen_half_up() -> None:
    amount, rate = convert(Decimal("10.00"), "USD", "JPY", RATES)
    assert (amount, rate) == (Decimal("1512"), Decimal("151.20"))
    assert str(amount) == "1512"
    # 0.01 USD = 1.512 JPY -> 2; 3.30 USD = 498.96 -> 499; half-up at .5
    assert convert(Decimal("0.01"), "USD", "JPY", RATES)[0] == Decimal(2)
    halves = TableRates({"USD/JPY": Decimal("100.5")})
    assert convert(Decimal("1"), "USD", "JPY", halves)[0] == Decimal(101)
    assert convert(Decimal("3"), "USD", "JPY", halves)[0] == Decimal(302)  # 301.5 -> 302


def test_rounding_follows_the_target_minor_units() -> None:
    rates = TableRates({"USD/BHD": Decimal("0.376")})
    assert convert(Decimal("10.05"), "USD", "BHD", rates)[0] == Decimal("3.779")  # 3.7788
    assert str(convert(Decimal("1"), "BHD", "USD", rates)[0]) == "2.66"  # 1 / 0.376 = 2.659574
    assert str(convert(Decimal(0), "EUR", "USD", RATES)[0]) == "0.00"
    assert str(convert(Decimal("-0.001"), "EUR", "USD", RATES)[0]) == "0.00"


@pytest.mark.parametrize(
    ("from_currency", "to_currency"),
    [("EUR", "CHF"), ("SEK", "NOK"), ("USD", "CHF"), ("XXX", "USD"), ("EUR", "usd"), ("XXX", "XXX")],
)
def test_an_unknown_pair_is_refused(from_currency: str, to_currency: str) -> None:
    with pytest.raises(UnsupportedCurrency) as error:
        RATES.rate(from_currency, to_currency)
    assert error.value.code is ErrorCode.UNSUPPORTED_CURRENCY
    with pytest.raises(UnsupportedCurrency):
        convert(Decimal(1), from_currency, to_currency, RATES)


def test_convert_refuses_non_decimal_amounts() -> None:
    for amount in (1.5, Decimal("NaN"), Decimal("Infinity")):
        with pytest.raises(InvalidInput):
            convert(amount, "EUR", "USD", RATES)  # type: ignore[arg-type]


def test_convert_uses_any_provider() -> None:
    class Fixed:
        def rate(self, from_currency: str, to_currency: str) -> Decimal:
            return Decimal("2")

    provider: ExchangeRateProvider = Fixed()
    assert convert(Decimal("1.005"), "EUR", "USD", provider) == (Decimal("2.01"), Decimal(2))


@pytest.mark.parametrize(
    ("table", "error"),
    [
        ({"EURUSD": Decimal(1)}, InvalidInput),
        ({"EUR/USD/GBP": Decimal(1)}, InvalidInput),
        ({"EUR/EUR": Decimal(1)}, InvalidInput),
        ({"EUR/XYZ": Decimal(1)}, UnsupportedCurrency),
        ({"EUR/USD": Decimal(0)}, InvalidInput),
        ({"EUR/USD": Decimal(-1)}, InvalidInput),
        ({"EUR/USD": Decimal("NaN")}, InvalidInput),
        ({"EUR/USD": Decimal("1.0802351")}, InvalidInput),
        ({"EUR/USD": 1.08}, InvalidInput),
    ],
)
def test_a_bad_table_is_refused(table: dict[str, Decimal], error: type[Exception]) -> None:
    with pytest.raises(error):
        TableRates(table)


def test_from_setting_parses_entries() -> None:
    rates = TableRates.from_setting("EUR/USD=1.0802,GBP/USD=1.2710")
    assert rates.pairs() == {"EUR/USD": Decimal("1.0802"), "GBP/USD": Decimal("1.2710")}
    assert rates.rate("EUR", "GBP") == Decimal("0.849882")  # 1.0802 / 1.2710
    spaced = TableRates.from_setting(" EUR/USD = 1.0802 , USD/JPY=151.2 ,")
    assert spaced.rate("USD", "JPY") == Decimal("151.2")
    assert TableRates.from_setting("EUR/CHF=0.95", base="EUR").base == "EUR"


@pytest.mark.parametrize(
    "text",
    [
        "",
        " , ",
        "EUR/USD",
        "EUR/USD=",
        "=1.08",
        "EUR/USD:1.08",
        "EUR-USD=1.08",
        "EUR/USD=abc",
        "EUR/USD=1.08=2",
        "EUR/USD=-1",
        "EUR/USD=0",
        "EUR/USD=inf",
        "EUR/USD=1_000",
        "eur/usd=1.08",
        "EUR/ABC=1.08",
        "EUR/USD=1.08,EUR/USD=1.09",
        "EUR/USD=1.08;GBP/USD=1.27",
    ],
)
def test_from_setting_refuses_malformed_entries(text: str) -> None:
    with pytest.raises(InvalidInput):
        TableRates.from_setting(text)


def test_default_rates_cover_the_major_currencies() -> None:
    majors = ["USD", "EUR", "GBP", "JPY", "CHF", "CAD", "AUD", "SEK", "NOK", "DKK", "PLN"]
    assert len(DEFAULT_RATE_TABLE) == 10
    for source in majors:
        for target in majors:
            rate = DEFAULT_RATES.rate(source, target)
            assert rate > 0
    assert DEFAULT_RATES.rate("EUR", "USD") == Decimal("1.080235")
    # Sanity of the levels: a euro buys between 7 and 8 Danish kroner (the ERM II peg).
    assert Decimal(7) < DEFAULT_RATES.rate("EUR", "DKK") < Decimal(8)
    assert Decimal(150) < DEFAULT_RATES.rate("EUR", "JPY") < Decimal(180)
    with pytest.raises(TypeError):
        DEFAULT_RATE_TABLE["EUR/USD"] = Decimal(2)  # type: ignore[index]


major = st.sampled_from(["USD", "EUR", "GBP", "JPY", "CHF", "CAD", "AUD", "SEK", "NOK", "DKK", "PLN"])


@given(
    st.decimals(min_value=0, max_value=10**9, places=2, allow_nan=False, allow_infinity=False),
    major,
    major,
)
def test_conversion_rounds_to_minor_units_and_round_trips(amount: Decimal, source: str, target: str) -> None:
    converted, rate = convert(amount, source, target, DEFAULT_RATES)
    unit = Decimal(1) if target == "JPY" else Decimal("0.01")
    assert converted == converted.quantize(unit)
    assert converted.as_tuple().exponent == unit.as_tuple().exponent
    assert abs(converted - amount * rate) <= unit / 2
    back = amount * rate * DEFAULT_RATES.rate(target, source)
    assert abs(back - amount) <= amount * Decimal("0.0002")
