"""KYB checks behind business verification."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from veix.domain.validation import Address, ContactInfo
from veix.domain.verification import (
    DEMO_SANCTIONED_NAMES,
    SANCTIONED_COUNTRIES,
    ComplianceCheck,
    LocalSanctionsList,
    SanctionsScreen,
    check_tax_id,
    compliance_summary,
    kyb_outcome,
    normalize_entity_name,
    postal_code_is_valid,
    run_kyb_checks,
    tax_id_modules,
)

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)

ADDRESSES = {
    "DE": Address("Unter den Linden 1", None, "Berlin", None, "10117", "DE"),
    "US": Address("1 Main St", "Suite 100", "Cambridge", "MA", "02139", "US"),
    "GB": Address("10 Downing St", None, "London", None, "SW1A 2AA", "GB"),
    "FR": Address("1 Rue de Rivoli", None, "Paris", None, "75001", "FR"),
    "NL": Address("Damrak 1", None, "Amsterdam", None, "1012 LG", "NL"),
    "AE": Address("Sheikh Zayed Rd 1", None, "Dubai", None, "00000", "AE"),
    "IR": Address("Valiasr St 1", None, "Tehran", None, "1234567890", "IR"),
}
CONTACT = ContactInfo(email="ops@example.com", phone="+49301234567", website="https://example.com")


def _checks(
    *,
    name: str = "Acme Widgets GmbH",
    tax_id: str | None = "DE136695976",
    country: str = "DE",
    address: Address | None = None,
    contact: ContactInfo = CONTACT,
    screen: SanctionsScreen | None = None,
) -> dict[str, ComplianceCheck]:
    checks = run_kyb_checks(
        name=name,
        tax_id=tax_id,
        address=address or ADDRESSES[country],
        contact=contact,
        now=NOW,
        screen=screen,
    )
    return {check.name: check for check in checks}


# ---------------------------------------------------------------- whole run


def test_a_complete_german_business_passes_every_check() -> None:
    checks = run_kyb_checks(
        name="Acme Widgets GmbH",
        tax_id="DE136695976",
        address=ADDRESSES["DE"],
        contact=CONTACT,
        now=NOW,
    )
    assert [c.name for c in checks] == ["tax_id", "legal_address", "contact", "sanctions"]
    assert all(c.status == "passed" for c in checks), checks
    assert all(c.checked_at == NOW for c in checks)
    assert kyb_outcome(checks)
    assert compliance_summary(checks) == (True, True)


def test_checks_are_stamped_in_utc() -> None:
    berlin = timezone(timedelta(hours=1))
    checks = run_kyb_checks(
        name="Acme",
        tax_id="DE136695976",
        address=ADDRESSES["DE"],
        contact=CONTACT,
        now=datetime(2025, 3, 1, 13, 0, tzinfo=berlin),
    )
    assert all(c.checked_at == NOW and c.checked_at.tzinfo is UTC for c in checks)


def test_refuses_a_naive_now() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        run_kyb_checks(
            name="Acme",
            tax_id="DE136695976",
            address=ADDRESSES["DE"],
            contact=CONTACT,
            now=datetime(2025, 3, 1, 12, 0),
        )


# ---------------------------------------------------------------- tax id


@pytest.mark.parametrize(
    ("country", "tax_id", "detail"),
    [
        ("DE", "DE136695976", "valid DE VAT number"),
        ("DE", "136 695 976", "valid DE VAT number"),
        ("DE", "18181508155", "valid DE St.-Nr."),
        ("US", "04-2103594", "valid US EIN"),
        ("GB", "GB980780684", "valid GB VAT number"),
        ("GB", "1955839661", "valid GB UTR"),
        ("FR", "FR40303265045", "valid FR VAT number"),
        ("FR", "303 265 045", "valid FR SIREN"),
        ("NL", "NL004495445B01", "valid NL VAT number"),
    ],
)
def test_accepts_a_tax_id_valid_for_the_legal_address_country(
    country: str, tax_id: str, detail: str
) -> None:
    check = _checks(tax_id=tax_id, country=country)["tax_id"]
    assert check.status == "passed"
    assert check.detail == detail


@pytest.mark.parametrize(
    ("country", "tax_id"),
    [
        ("US", "DE136695976"),  # a German VAT number for a US address
        ("DE", "04-2103594"),
        ("GB", "FR40303265045"),
        ("NL", "GB980780684"),
    ],
)
def test_rejects_tax_id_invalid_for_the_legal_address_country(country: str, tax_id: str) -> None:
    check = _checks(tax_id=tax_id, country=country)["tax_id"]
    assert check.status == "failed"
    assert f"not a valid {country} tax id" in (check.detail or "")


@pytest.mark.parametrize(
    ("country", "tax_id"),
    [
        ("DE", "DE136695977"),  # check digit off by one
        ("US", "00-0000000"),  # unassigned EIN prefix
        ("GB", "GB980780685"),
        ("FR", "FR41303265045"),
        ("NL", "NL004495446B01"),
    ],
)
def test_rejects_tax_id_with_a_wrong_check_digit_or_format(country: str, tax_id: str) -> None:
    check = _checks(tax_id=tax_id, country=country)["tax_id"]
    assert check.status == "failed"


def test_failed_tax_id_detail_shows_only_the_last_four_characters() -> None:
    check = _checks(tax_id="DE136695977")["tax_id"]
    assert check.detail is not None
    assert "ending 5977" in check.detail
    assert "6695977" not in check.detail
    assert "VAT number" in check.detail  # says what was tried


@given(st.from_regex(r"[A-Z]{0,2}[0-9]{5,20}", fullmatch=True))
def test_tax_id_detail_never_echoes_more_than_four_characters(tax_id: str) -> None:
    detail = check_tax_id(tax_id, "DE", NOW).detail or ""
    compact = re.sub(r"[^0-9A-Za-z]", "", tax_id)
    for start in range(len(compact) - 4):
        assert compact[start : start + 5] not in detail


@pytest.mark.parametrize("tax_id", [None, "", "   "])
def test_fails_when_the_tax_id_is_missing(tax_id: str | None) -> None:
    check = _checks(tax_id=tax_id)["tax_id"]
    assert (check.status, check.detail) == ("failed", "no tax id provided")


def test_fails_for_a_country_without_a_stdnum_validator() -> None:
    assert tax_id_modules("AE") == ()
    check = _checks(tax_id="100123456700003", country="AE")["tax_id"]
    assert (check.status, check.detail) == ("failed", "no tax id validator for AE")


@pytest.mark.parametrize("tax_id", ["DE136695976\x00", "DE" + "1" * 100, "DE１３６６９５９７６"])
def test_fails_for_a_malformed_tax_id_without_calling_stdnum(tax_id: str) -> None:
    assert _checks(tax_id=tax_id)["tax_id"].status == "failed"


@pytest.mark.parametrize("country", ["DE", "US", "GB", "FR", "NL", "CA", "AU", "JP", "IN", "CH"])
def test_major_countries_have_tax_id_validators(country: str) -> None:
    assert tax_id_modules(country)


# ---------------------------------------------------------------- legal address


@pytest.mark.parametrize(
    ("country", "postal_code"),
    [
        ("US", "02139"),
        ("US", "02139-4307"),
        ("DE", "10117"),
        ("GB", "SW1A 2AA"),
        ("GB", "sw1a2aa"),
        ("GB", "M1 1AE"),
        ("GB", "EC1A 1BB"),
        ("FR", "75001"),
        ("NL", "1012 LG"),
        ("NL", "1012LG"),
        ("CA", "K1A 0B1"),
        ("CA", "m5v3l9"),
        ("AE", "anything"),
    ],
)
def test_accepts_postal_codes_in_the_national_format(country: str, postal_code: str) -> None:
    assert postal_code_is_valid(postal_code, country)


@pytest.mark.parametrize(
    ("country", "postal_code"),
    [
        ("US", "2139"),
        ("US", "02139-43"),
        ("US", "０２１３９"),  # full-width digits
        ("DE", "1011"),
        ("DE", "D-10117"),
        ("GB", "SW1A"),
        ("GB", "QX1 1AA"),
        ("FR", "750001"),
        ("NL", "0123 AB"),
        ("NL", "1012"),
        ("CA", "D1A 0B1"),
        ("CA", "K1A0B"),
        ("AE", "  "),
    ],
)
def test_rejects_postal_codes_not_in_the_national_format(country: str, postal_code: str) -> None:
    assert not postal_code_is_valid(postal_code, country)


def test_legal_address_fails_on_a_postal_code_in_the_wrong_format() -> None:
    address = Address("Unter den Linden 1", None, "Berlin", None, "1011", "DE")
    check = _checks(address=address)["legal_address"]
    assert (check.status, check.detail) == ("failed", "postal code is not in the DE format")


def test_legal_address_fails_when_required_parts_are_missing() -> None:
    address = Address(" ", None, "", None, "10117", "DE")
    check = _checks(address=address)["legal_address"]
    assert (check.status, check.detail) == ("failed", "missing line1, city")


def test_legal_address_fails_on_an_unassigned_country() -> None:
    address = Address("1 Main St", None, "Pristina", None, "10000", "XK")
    assert _checks(address=address)["legal_address"].status == "failed"


# ---------------------------------------------------------------- contact


def test_contact_passes_without_a_website() -> None:
    contact = ContactInfo(email="ops@example.com", phone="+14155552671", website=None)
    assert _checks(contact=contact)["contact"].status == "passed"


def test_contact_fails_without_a_phone_number() -> None:
    contact = ContactInfo(email="ops@example.com", phone=None, website=None)
    check = _checks(contact=contact)["contact"]
    assert (check.status, check.detail) == ("failed", "phone number is missing")


@pytest.mark.parametrize(
    ("contact", "problem"),
    [
        (ContactInfo("not-an-email", "+14155552671", None), "e-mail"),
        (ContactInfo("ops@example.com", "4155552671", None), "E.164"),
        (ContactInfo("ops@example.com", "+14155552671", "ftp://example.com"), "website"),
    ],
)
def test_contact_fails_on_invalid_parts(contact: ContactInfo, problem: str) -> None:
    check = _checks(contact=contact)["contact"]
    assert check.status == "failed"
    assert problem in (check.detail or "")


def test_contact_detail_does_not_echo_personal_data() -> None:
    detail = _checks()["contact"].detail or ""
    assert "example.com" not in detail
    assert "+49" not in detail


# ---------------------------------------------------------------- sanctions


@pytest.mark.parametrize(
    "name",
    [
        "Sanctioned Demo Trading",
        "SANCTIONED DEMO TRADING GmbH",
        "Sanctioned-Demo Trading, Ltd.",
        "Sanctioned Demo Trading GmbH & Co. KG",
        "Sànctioned Demo Tradíng LLC",
        "  blocked example holdings inc ",
    ],
)
def test_sanctions_fails_for_a_listed_name_whatever_its_spelling(name: str) -> None:
    checks = _checks(name=name)
    assert checks["sanctions"].status == "failed"
    assert compliance_summary(list(checks.values())) == (False, False)


@pytest.mark.parametrize("country", sorted(SANCTIONED_COUNTRIES))
def test_sanctions_fails_for_a_comprehensively_sanctioned_country(country: str) -> None:
    address = Address("Street 1", None, "City", None, "12345", country)
    check = _checks(address=address, tax_id=None)["sanctions"]
    assert check.status == "failed"
    assert check.detail == f"country {country} is under comprehensive sanctions"


def test_sanctions_passes_for_an_unlisted_name_in_an_unsanctioned_country() -> None:
    check = _checks(name="Sanctioned Demo Trading Partners")["sanctions"]
    assert check.status == "passed"


@pytest.mark.parametrize(
    ("name", "normalized"),
    [
        ("Acme Widgets GmbH", "acme widgets"),
        ("ACME-Widgets, Inc.", "acme widgets"),
        ("Société Générale S.A.", "societe generale"),
        ("Foo & Bar Holdings GmbH & Co. KG", "foo bar holdings"),
        ("Ltd", "ltd"),
    ],
)
def test_normalizes_entity_names_for_screening(name: str, normalized: str) -> None:
    assert normalize_entity_name(name) == normalized


def test_local_list_also_lists_sanctioned_countries() -> None:
    local = LocalSanctionsList()
    assert local.is_listed("Anything", "KP")
    assert local.is_listed(DEMO_SANCTIONED_NAMES[0], "DE")
    assert not local.is_listed("Acme Widgets", "DE")


def test_uses_the_screening_provider_it_is_given() -> None:
    class RecordingScreen:
        def __init__(self, listed: bool) -> None:
            self.listed = listed
            self.calls: list[tuple[str, str]] = []

        def is_listed(self, name: str, country: str) -> bool:
            self.calls.append((name, country))
            return self.listed

    provider = RecordingScreen(listed=True)
    assert _checks(screen=provider)["sanctions"].status == "failed"
    assert provider.calls == [("Acme Widgets GmbH", "DE")]

    clear = RecordingScreen(listed=False)
    assert _checks(name=DEMO_SANCTIONED_NAMES[0], screen=clear)["sanctions"].status == "passed"


# ---------------------------------------------------------------- outcome


def _check(name: str, status: str) -> ComplianceCheck:
    return ComplianceCheck(name, status, NOW, None)


def test_kyb_outcome_is_true_only_when_every_check_passed() -> None:
    assert kyb_outcome([_check("tax_id", "passed"), _check("sanctions", "passed")])
    assert not kyb_outcome([_check("tax_id", "failed"), _check("sanctions", "passed")])
    assert not kyb_outcome([])


def test_compliance_summary_reports_kyb_and_sanctions_separately() -> None:
    tax_failed = [_check("tax_id", "failed"), _check("sanctions", "passed")]
    assert compliance_summary(tax_failed) == (False, True)
    assert compliance_summary([_check("tax_id", "passed")]) == (True, False)
    assert compliance_summary([]) == (False, False)


def test_a_failed_tax_id_rejects_the_business_but_sanctions_stay_clear() -> None:
    checks = run_kyb_checks(
        name="Acme", tax_id="DE136695977", address=ADDRESSES["DE"], contact=CONTACT, now=NOW
    )
    assert compliance_summary(checks) == (False, True)


def test_compliance_check_status_is_passed_or_failed() -> None:
    with pytest.raises(ValueError, match="passed"):
        ComplianceCheck("tax_id", "ok", NOW, None)
    assert _check("tax_id", "passed").passed
    assert not _check("tax_id", "failed").passed
