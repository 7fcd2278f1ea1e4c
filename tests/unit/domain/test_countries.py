"""ISO 3166-1 alpha-2 country codes."""

from __future__ import annotations

import pytest

from veix.domain.countries import COUNTRY_CODES, EU_COUNTRIES, is_country_code, parse_country
from veix.domain.errors import ErrorCode, InvalidInput

FIELD = ["input", "legalAddress", "country"]


def test_lists_all_249_officially_assigned_codes() -> None:
    assert len(COUNTRY_CODES) == 249
    assert all(len(code) == 2 and code.isascii() and code.isupper() for code in COUNTRY_CODES)


@pytest.mark.parametrize(
    "code",
    ["DE", "US", "GB", "FR", "NL", "JP", "AX", "AQ", "BQ", "CW", "SX", "SS", "BV", "UM", "PS"],
)
def test_includes_assigned_codes_including_recent_and_uninhabited_territories(code: str) -> None:
    assert code in COUNTRY_CODES


@pytest.mark.parametrize("code", ["UK", "EU", "EL", "XK", "AN", "YU", "CS", "ZZ", "AA"])
def test_excludes_reserved_deleted_and_user_assigned_codes(code: str) -> None:
    assert code not in COUNTRY_CODES


def test_eu_has_the_27_member_states_all_of_them_assigned_codes() -> None:
    assert len(EU_COUNTRIES) == 27
    assert EU_COUNTRIES <= COUNTRY_CODES
    assert {"DE", "FR", "GR", "HR", "IE"} <= EU_COUNTRIES
    assert "GB" not in EU_COUNTRIES
    assert "CH" not in EU_COUNTRIES


def test_parse_country_returns_an_assigned_upper_case_code() -> None:
    assert parse_country("DE", field=FIELD) == "DE"


@pytest.mark.parametrize("raw", ["de", " DE", "DEU", "D", "", "XK", "12", None, 49, ["DE"]])
def test_parse_country_rejects_anything_but_an_assigned_upper_case_code(raw: object) -> None:
    with pytest.raises(InvalidInput) as err:
        parse_country(raw, field=FIELD)
    assert err.value.field == FIELD
    assert err.value.code is ErrorCode.INVALID_INPUT


def test_parse_country_hints_at_the_upper_case_spelling() -> None:
    with pytest.raises(InvalidInput, match="'DE'"):
        parse_country("de", field=FIELD)


def test_parse_country_treats_a_bare_string_field_as_one_path_element() -> None:
    with pytest.raises(InvalidInput) as err:
        parse_country("??", field="country")
    assert err.value.field == ["country"]


def test_is_country_code_is_false_for_non_strings() -> None:
    assert is_country_code("US")
    assert not is_country_code(1)
    assert not is_country_code(None)
