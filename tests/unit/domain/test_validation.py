"""Pure input validators: clean values out, InvalidInput with a field path otherwise."""

from __future__ import annotations

import dataclasses

import pytest

from veix.domain.errors import InvalidInput
from veix.domain.validation import (
    Address,
    ContactInfo,
    optional_text,
    parse_address,
    parse_contact,
    parse_email,
    parse_phone,
    parse_timezone,
    parse_url,
    require_text,
)

F = ["input", "name"]


def _field_of(exc: pytest.ExceptionInfo[InvalidInput]) -> list[str] | None:
    return exc.value.field


# ---------------------------------------------------------------- text


def test_require_text_strips_surrounding_whitespace() -> None:
    assert require_text("  Acme Ltd \t", field=F, max_len=50) == "Acme Ltd"


def test_require_text_normalises_to_nfc() -> None:
    assert require_text("Cafe\u0301", field=F, max_len=50) == "Caf\u00e9"


@pytest.mark.parametrize("raw", ["", "   ", None, 42, b"bytes", ["a"]])
def test_require_text_rejects_missing_blank_and_non_text(raw: object) -> None:
    with pytest.raises(InvalidInput) as err:
        require_text(raw, field=F, max_len=50)
    assert _field_of(err) == F


def test_require_text_rejects_text_longer_than_max_len() -> None:
    assert require_text("abcde", field=F, max_len=5) == "abcde"
    with pytest.raises(InvalidInput, match="at most 5") as err:
        require_text("abcdef", field=F, max_len=5)
    assert _field_of(err) == F


def test_require_text_rejects_text_shorter_than_min_len() -> None:
    with pytest.raises(InvalidInput, match="at least 3"):
        require_text("ab", field=F, max_len=5, min_len=3)


@pytest.mark.parametrize(
    "raw",
    ["a\x00b", "a\nb", "a\tb", "a\x1bb", "a\x7fb", "a\x85b", "a\u202eb", "a\u2066b", "a\u2028b"],
)
def test_require_text_rejects_control_and_bidi_override_characters(raw: str) -> None:
    with pytest.raises(InvalidInput, match="control") as err:
        require_text(raw, field=F, max_len=50)
    assert _field_of(err) == F


def test_require_text_accepts_international_text() -> None:
    assert require_text("Müller & Søn 株式会社", field=F, max_len=50) == "Müller & Søn 株式会社"


@pytest.mark.parametrize("raw", [None, "", "   "])
def test_optional_text_maps_missing_or_blank_to_none(raw: object) -> None:
    assert optional_text(raw, field=F, max_len=10) is None


def test_optional_text_validates_present_text() -> None:
    assert optional_text(" x ", field=F, max_len=10) == "x"
    with pytest.raises(InvalidInput):
        optional_text("x" * 11, field=F, max_len=10)


# ---------------------------------------------------------------- e-mail


def test_parse_email_returns_the_normalised_lower_cased_address() -> None:
    assert parse_email("  Foo.Bar@Example.COM ", field=F) == "foo.bar@example.com"


@pytest.mark.parametrize(
    "raw",
    [
        "not-an-email",
        "a@b",
        "a@@example.com",
        "@example.com",
        "Name <a@example.com>",
        '"a b"@example.com',
        "a@[127.0.0.1]",
        "a@example.com.",
        None,
    ],
)
def test_parse_email_rejects_invalid_syntax(raw: object) -> None:
    with pytest.raises(InvalidInput) as err:
        parse_email(raw, field=["input", "email"])
    assert _field_of(err) == ["input", "email"]


def test_parse_email_rejects_addresses_longer_than_254_characters() -> None:
    long = "a" * 60 + "@" + ".".join(["b" * 60] * 4) + ".com"
    assert len(long) > 254
    with pytest.raises(InvalidInput):
        parse_email(long, field=F)


def test_parse_email_does_no_dns_lookup_so_unregistered_domains_pass() -> None:
    assert parse_email("x@no-such-domain-veix-test.com", field=F)


# ---------------------------------------------------------------- phone


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("+14155552671", "+14155552671"),
        ("+1 415-555-2671", "+14155552671"),
        ("+1 (415) 555.2671", "+14155552671"),
        ("+49 30 1234567", "+49301234567"),
        ("+12345678", "+12345678"),
        ("+123456789012345", "+123456789012345"),
    ],
)
def test_parse_phone_returns_e164_with_separators_removed(raw: str, expected: str) -> None:
    assert parse_phone(raw, field=F) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "4155552671",  # no + and country code
        "+0123456789",  # country codes do not start with 0
        "+1234567",  # 7 digits
        "+1234567890123456",  # 16 digits
        "+1 415 CALL NOW",
        "++14155552671",
        "+1٤١٥٥٥٥٢٦٧١",  # non-ASCII digits
        "",
    ],
)
def test_parse_phone_rejects_non_e164_numbers(raw: str) -> None:
    with pytest.raises(InvalidInput, match=r"E\.164|required") as err:
        parse_phone(raw, field=["input", "phone"])
    assert _field_of(err) == ["input", "phone"]


# ---------------------------------------------------------------- url


@pytest.mark.parametrize(
    "raw",
    [
        "https://example.com",
        "http://example.com/path?q=1#top",
        "HTTPS://Example.COM:8443/",
        "https://例え.jp",
        "https://sub.example.co.uk",
        "http://192.0.2.10/",
    ],
)
def test_parse_url_accepts_http_and_https_urls(raw: str) -> None:
    assert parse_url(raw, field=F) == raw


@pytest.mark.parametrize(
    "raw",
    [
        "ftp://example.com",
        "javascript:alert(1)",
        "example.com",
        "https://",
        "https:///path",
        "https://exa mple.com",
        "https://user:secret@example.com",
        "https://example.com:99999",
        "https://-bad-.example.com",
        "https://localhost",
        "mailto:a@example.com",
    ],
)
def test_parse_url_rejects_other_schemes_missing_hosts_and_credentials(raw: str) -> None:
    with pytest.raises(InvalidInput) as err:
        parse_url(raw, field=["input", "website"])
    assert _field_of(err) == ["input", "website"]


def test_parse_url_rejects_urls_longer_than_2048_characters() -> None:
    base = "https://example.com/"
    assert parse_url(base + "a" * (2048 - len(base)), field=F)
    with pytest.raises(InvalidInput, match="2048"):
        parse_url(base + "a" * (2049 - len(base)), field=F)


# ---------------------------------------------------------------- time zone


@pytest.mark.parametrize("raw", ["Europe/Berlin", "America/New_York", "UTC", "Asia/Kolkata"])
def test_parse_timezone_accepts_iana_names(raw: str) -> None:
    assert parse_timezone(raw, field=F) == raw


@pytest.mark.parametrize(
    "raw", ["Mars/Olympus_Mons", "europe/berlin", "CEST", "+02:00", "../etc/passwd", "", None]
)
def test_parse_timezone_rejects_unknown_names(raw: object) -> None:
    with pytest.raises(InvalidInput) as err:
        parse_timezone(raw, field=["input", "timezone"])
    assert _field_of(err) == ["input", "timezone"]


# ---------------------------------------------------------------- address

ADDR = ["input", "legalAddress"]


def _raw_address(**overrides: object) -> dict[str, object]:
    raw: dict[str, object] = {
        "line1": "Unter den Linden 1",
        "line2": None,
        "city": "Berlin",
        "region": "BE",
        "postal_code": "10117",
        "country": "DE",
    }
    raw.update(overrides)
    return raw


def test_parse_address_returns_a_clean_address() -> None:
    address = parse_address(_raw_address(line1="  Unter den Linden 1 ", line2="  "), field=ADDR)
    assert address == Address(
        line1="Unter den Linden 1",
        line2=None,
        city="Berlin",
        region="BE",
        postal_code="10117",
        country="DE",
    )


def test_parse_address_treats_optional_parts_as_optional() -> None:
    raw = _raw_address()
    del raw["line2"], raw["region"]
    address = parse_address(raw, field=ADDR)
    assert address.line2 is None
    assert address.region is None


@pytest.mark.parametrize(
    ("key", "value", "path_end"),
    [
        ("country", "de", "country"),
        ("country", "XX", "country"),
        ("country", None, "country"),
        ("line1", "", "line1"),
        ("line1", "x" * 201, "line1"),
        ("line2", "x" * 201, "line2"),
        ("city", "x" * 101, "city"),
        ("city", None, "city"),
        ("region", "x" * 101, "region"),
        ("postal_code", "1" * 21, "postalCode"),
        ("postal_code", "", "postalCode"),
        ("line1", "Main St\n1", "line1"),
    ],
)
def test_parse_address_reports_the_invalid_part_with_its_graphql_field_path(
    key: str, value: object, path_end: str
) -> None:
    with pytest.raises(InvalidInput) as err:
        parse_address(_raw_address(**{key: value}), field=ADDR)
    assert _field_of(err) == [*ADDR, path_end]


def test_parse_address_accepts_the_maximum_lengths() -> None:
    address = parse_address(
        _raw_address(line1="x" * 200, city="y" * 100, postal_code="1" * 20), field=ADDR
    )
    assert len(address.line1) == 200


def test_parse_address_rejects_unknown_keys_instead_of_ignoring_them() -> None:
    with pytest.raises(InvalidInput) as err:
        parse_address(_raw_address(postalCode="10117"), field=ADDR)
    assert _field_of(err) == [*ADDR, "postalCode"]


def test_address_is_an_immutable_value() -> None:
    address = parse_address(_raw_address(), field=ADDR)
    with pytest.raises(dataclasses.FrozenInstanceError):
        address.city = "Hamburg"  # type: ignore[misc]
    assert not hasattr(address, "__dict__")


# ---------------------------------------------------------------- contact

CONTACT = ["input", "contactInfo"]


def test_parse_contact_returns_clean_contact_info() -> None:
    contact = parse_contact(
        {"email": "Ops@Example.com", "phone": "+49 30 1234567", "website": "https://example.com"},
        field=CONTACT,
    )
    assert contact == ContactInfo(
        email="ops@example.com", phone="+49301234567", website="https://example.com"
    )


def test_parse_contact_has_optional_phone_and_website() -> None:
    contact = parse_contact(
        {"email": "ops@example.com", "phone": None, "website": ""}, field=CONTACT
    )
    assert contact == ContactInfo(email="ops@example.com", phone=None, website=None)


@pytest.mark.parametrize(
    ("raw", "path_end"),
    [
        ({"phone": "+14155552671"}, "email"),
        ({"email": "nope"}, "email"),
        ({"email": "ops@example.com", "phone": "030 1234567"}, "phone"),
        ({"email": "ops@example.com", "website": "ftp://example.com"}, "website"),
        ({"email": "ops@example.com", "fax": "+14155552671"}, "fax"),
    ],
)
def test_parse_contact_reports_the_invalid_part_with_its_field_path(
    raw: dict[str, object], path_end: str
) -> None:
    with pytest.raises(InvalidInput) as err:
        parse_contact(raw, field=CONTACT)
    assert _field_of(err) == [*CONTACT, path_end]


def test_contact_info_is_an_immutable_value() -> None:
    contact = ContactInfo(email="ops@example.com", phone=None, website=None)
    with pytest.raises(dataclasses.FrozenInstanceError):
        contact.email = "x@example.com"  # type: ignore[misc]
