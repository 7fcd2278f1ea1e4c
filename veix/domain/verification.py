"""Know-your-business (KYB) checks behind business verification.

The verification state machine (``UNVERIFIED -> PENDING -> VERIFIED |
REJECTED``, in :mod:`veix.domain.business`) runs :func:`run_kyb_checks` and
moves to ``VERIFIED`` only when every check passed (:func:`kyb_outcome`).
Each check is a :class:`ComplianceCheck` (the ``ComplianceCheck`` type of the
GraphQL contract): a stable ``name``, ``"passed"`` or ``"failed"``, when it
ran, and a human ``detail``. Details never contain personal data and never
more than the last four characters of a tax id.

The checks:

``tax_id``
    A tax id is present and valid, by the ``python-stdnum`` algorithms
    (format and check digits, no registry lookup), for the country of the
    legal address. Each country has candidate modules: its VAT number, its
    business register number and, for some countries, further national
    business or tax ids (see ``_EXTRA_TAX_ID_MODULES``); the id is accepted if
    any candidate validates it. Personal ids (SSN, national id numbers) are
    deliberately not candidates.

    A country for which stdnum has no module cannot be checked automatically.
    The check then *fails* with detail ``"no tax id validator for XX"``: we do
    not verify what we cannot check. Such a business stays ``REJECTED`` until
    the automatic check is extended or a reviewer decides (a manual review
    step is outside this module).

``legal_address``
    line1, city, postal code and an assigned country are present; the postal
    code has the national format for a few major countries
    (``POSTAL_CODE_PATTERNS``) and is merely non-empty elsewhere.

``contact``
    A valid e-mail and an E.164 phone number are present (the phone is
    optional in the API but required for verification); a website, if given,
    is a valid http(s) URL.

``sanctions``
    The address country is not under comprehensive sanctions
    (``SANCTIONED_COUNTRIES``) and the business name is not listed by the
    :class:`SanctionsScreen` port.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Final, Protocol

from stdnum.util import get_cc_module

from veix.domain.countries import COUNTRY_CODES
from veix.domain.errors import InvalidInput
from veix.domain.validation import Address, ContactInfo, parse_email, parse_phone, parse_url

if TYPE_CHECKING:
    from stdnum.util import NumberValidationModule

PASSED: Final = "passed"
FAILED: Final = "failed"
CHECK_STATUSES: Final = frozenset({PASSED, FAILED})

CHECK_TAX_ID: Final = "tax_id"
CHECK_LEGAL_ADDRESS: Final = "legal_address"
CHECK_CONTACT: Final = "contact"
CHECK_SANCTIONS: Final = "sanctions"


@dataclass(frozen=True, slots=True)
class ComplianceCheck:
    """The result of one KYB check; ``status`` is ``"passed"`` or ``"failed"``."""

    name: str
    status: str
    checked_at: datetime
    detail: str | None = None

    def __post_init__(self) -> None:
        if self.status not in CHECK_STATUSES:
            raise ValueError(
                f"ComplianceCheck status must be 'passed' or 'failed': {self.status!r}"
            )

    @property
    def passed(self) -> bool:
        return self.status == PASSED


# ---------------------------------------------------------------- tax id

# Candidate modules beyond the country's ``vat`` and ``businessid`` aliases
# that stdnum defines itself. Only ids that identify a business, not a person.
_EXTRA_TAX_ID_MODULES: Final[dict[str, tuple[str, ...]]] = {
    "AT": ("tin",),  # Abgabenkontonummer
    "AU": ("acn",),
    "CH": ("uid",),
    "DE": ("stnr",),  # Steuernummer
    "ES": ("cif",),
    "FR": ("siren", "siret"),
    "GB": ("utr",),
    "IN": ("pan",),
    "MD": ("idno",),
    "NO": ("orgnr",),
    "PL": ("regon",),
    "RO": ("cui", "onrc"),
    "RU": ("ogrn",),
    "SE": ("orgnr",),
    "UA": ("edrpou",),
    "US": ("ein",),
    "ZA": ("tin",),
}

MAX_TAX_ID_LENGTH: Final = 64
_VAT_WORD = re.compile(r"\bVAT\b")
# Where the first line of the stdnum module's docstring makes a poor label.
_LABELS: Final = {
    "stdnum.be.vat": "VAT number",
    "stdnum.at.businessid": "Firmenbuchnummer",
}


@functools.cache
def tax_id_modules(country: str) -> tuple[NumberValidationModule, ...]:
    """The stdnum modules that can validate a business tax id of ``country``."""
    if country not in COUNTRY_CODES:
        return ()
    cc = country.lower()
    modules: list[NumberValidationModule] = []
    for name in ("vat", "businessid", *_EXTRA_TAX_ID_MODULES.get(country, ())):
        module = get_cc_module(cc, name)
        if module is not None and module not in modules:
            modules.append(module)
    return tuple(modules)


def tax_id_label(module: NumberValidationModule) -> str:
    """A short name for what ``module`` validates: "VAT number", "EIN", "SIREN"."""
    module_name = str(getattr(module, "__name__", "tax id"))
    if module_name in _LABELS:
        return _LABELS[module_name]
    doc = (getattr(module, "__doc__", None) or "").strip()
    first = doc.splitlines()[0] if doc else ""
    if _VAT_WORD.search(first):
        return "VAT number"
    short = first.split(" (", 1)[0] if " (" in first else first.rstrip(".")
    return short.split(",", 1)[0].strip() or module_name.rsplit(".", 1)[-1]


def _tail(tax_id: str) -> str:
    """``" ending 5976"``: at most the last four characters, and only of a long id."""
    compact = re.sub(r"[^0-9A-Za-z]", "", tax_id)
    return f" ending {compact[-4:]}" if len(compact) >= 8 else ""


def check_tax_id(tax_id: str | None, country: str, now: datetime) -> ComplianceCheck:
    if tax_id is None or not tax_id.strip():
        return ComplianceCheck(CHECK_TAX_ID, FAILED, now, "no tax id provided")
    modules = tax_id_modules(country)
    if not modules:
        return ComplianceCheck(CHECK_TAX_ID, FAILED, now, f"no tax id validator for {country}")
    text = tax_id.strip()
    if len(text) > MAX_TAX_ID_LENGTH or not text.isprintable() or not text.isascii():
        return ComplianceCheck(
            CHECK_TAX_ID, FAILED, now, f"tax id is not a valid {country} tax id (malformed)"
        )
    for module in modules:
        if module.is_valid(text):
            return ComplianceCheck(
                CHECK_TAX_ID, PASSED, now, f"valid {country} {tax_id_label(module)}"
            )
    tried = ", ".join(dict.fromkeys(tax_id_label(m) for m in modules))
    return ComplianceCheck(
        CHECK_TAX_ID,
        FAILED,
        now,
        f"tax id{_tail(text)} is not a valid {country} tax id (checked: {tried})",
    )


# ---------------------------------------------------------------- legal address

POSTAL_CODE_PATTERNS: Final[dict[str, re.Pattern[str]]] = {
    country: re.compile(pattern, re.ASCII)
    for country, pattern in {
        "US": r"[0-9]{5}(-[0-9]{4})?",
        "DE": r"[0-9]{5}",
        "FR": r"[0-9]{5}",
        "IT": r"[0-9]{5}",
        "ES": r"(0[1-9]|[1-4][0-9]|5[0-2])[0-9]{3}",
        "NL": r"[1-9][0-9]{3} ?[A-Z]{2}",
        "AT": r"[1-9][0-9]{3}",
        "BE": r"[1-9][0-9]{3}",
        "CH": r"[1-9][0-9]{3}",
        "AU": r"[0-9]{4}",
        "SE": r"[1-9][0-9]{2} ?[0-9]{2}",
        "JP": r"[0-9]{3}-?[0-9]{4}",
        "CA": r"[ABCEGHJ-NPRSTVXY][0-9][ABCEGHJ-NPRSTV-Z] ?[0-9][ABCEGHJ-NPRSTV-Z][0-9]",
        # The UK Government Data Standards postcode pattern, plus GIR 0AA.
        "GB": (
            r"GIR ?0AA|[A-PR-UWYZ]([0-9]{1,2}|[A-HK-Y][0-9][0-9ABEHMNPRV-Y]?|[0-9][A-HJKPS-UW])"
            r" ?[0-9][ABD-HJLNP-UW-Z]{2}"
        ),
    }.items()
}


def postal_code_is_valid(postal_code: str, country: str) -> bool:
    """National format for countries in ``POSTAL_CODE_PATTERNS``, else non-empty."""
    code = postal_code.strip().upper()
    pattern = POSTAL_CODE_PATTERNS.get(country)
    return bool(code) and (pattern is None or pattern.fullmatch(code) is not None)


def check_legal_address(address: Address, now: datetime) -> ComplianceCheck:
    parts = {
        "line1": address.line1,
        "city": address.city,
        "postal code": address.postal_code,
        "country": address.country,
    }
    missing = [label for label, value in parts.items() if not (value or "").strip()]
    if missing:
        return ComplianceCheck(CHECK_LEGAL_ADDRESS, FAILED, now, f"missing {', '.join(missing)}")
    if address.country not in COUNTRY_CODES:
        return ComplianceCheck(
            CHECK_LEGAL_ADDRESS, FAILED, now, "country is not an ISO 3166-1 alpha-2 code"
        )
    if not postal_code_is_valid(address.postal_code, address.country):
        return ComplianceCheck(
            CHECK_LEGAL_ADDRESS,
            FAILED,
            now,
            f"postal code is not in the {address.country} format",
        )
    return ComplianceCheck(CHECK_LEGAL_ADDRESS, PASSED, now, f"complete {address.country} address")


# ---------------------------------------------------------------- contact


def check_contact(contact: ContactInfo, now: datetime) -> ComplianceCheck:
    problems: list[str] = []
    try:
        parse_email(contact.email, field=["email"])
    except InvalidInput:
        problems.append("e-mail is missing or invalid")
    if contact.phone is None or not contact.phone.strip():
        problems.append("phone number is missing")
    else:
        try:
            parse_phone(contact.phone, field=["phone"])
        except InvalidInput:
            problems.append("phone number is not in E.164 form")
    if contact.website is not None and contact.website.strip():
        try:
            parse_url(contact.website, field=["website"])
        except InvalidInput:
            problems.append("website is not a valid http(s) URL")
    if problems:
        return ComplianceCheck(CHECK_CONTACT, FAILED, now, "; ".join(problems))
    return ComplianceCheck(CHECK_CONTACT, PASSED, now, "valid e-mail and phone number")


# ---------------------------------------------------------------- sanctions

# Countries under comprehensive (country-wide) sanctions. Sanctioned regions
# (Crimea, the so-called DNR and LNR) are out of scope: a country code cannot
# express them; a real screening provider handles them from the address.
SANCTIONED_COUNTRIES: Final = frozenset({"CU", "IR", "KP", "SY"})

# A demonstration list of fictitious entity names, for development and tests.
# It is NOT a sanctions list: production plugs in a real provider.
DEMO_SANCTIONED_NAMES: Final = (
    "Sanctioned Demo Trading",
    "Blocked Example Holdings",
    "Embargoed Test Shipping",
    "Veix Test Sanctioned Entity",
)

# Legal-form words removed from the end of a name before comparing.
LEGAL_SUFFIXES: Final = frozenset(
    """
    ab ag aps as asa bv co company corp corporation cv doo ev gbr gmbh inc
    incorporated jsc kft kg kk limited llc llp lp ltd mbh nv ohg oy oyj pjsc plc
    pte pty pvt sa sarl sas se spa sprl srl sro ug ooo
    """.split()
)

_SEPARATORS = re.compile(r"[\s\-/_]+")


def normalize_entity_name(name: str) -> str:
    """The comparable form of a business name.

    Accents removed, casefolded, punctuation dropped (``S.A.`` -> ``sa``),
    hyphens and slashes read as spaces, and trailing legal-form words removed:
    ``"Blocked Example Holdings GmbH & Co. KG"`` -> ``"blocked example holdings"``.
    """
    decomposed = unicodedata.normalize("NFKD", name)
    text = "".join(ch for ch in decomposed if not unicodedata.combining(ch)).casefold()
    text = _SEPARATORS.sub(" ", text)
    text = "".join(ch for ch in text if ch.isalnum() or ch == " ")
    tokens = text.split()
    while len(tokens) > 1 and tokens[-1] in LEGAL_SUFFIXES:
        tokens.pop()
    return " ".join(tokens)


class SanctionsScreen(Protocol):
    """Port: is this business on a sanctions list?

    Production plugs in a real screening provider (OFAC SDN, EU and UN
    consolidated lists, UK OFSI, with fuzzy matching and alias handling) by
    implementing this Protocol in an adapter and passing it to
    :func:`run_kyb_checks`. :class:`LocalSanctionsList` is the built-in
    default, for development and tests only.
    """

    def is_listed(self, name: str, country: str) -> bool: ...


class LocalSanctionsList:
    """Exact match, after :func:`normalize_entity_name`, against a fixed list of
    names; any business in a comprehensively sanctioned country is listed too."""

    def __init__(
        self,
        names: Iterable[str] = DEMO_SANCTIONED_NAMES,
        countries: Iterable[str] = SANCTIONED_COUNTRIES,
    ) -> None:
        self._names = frozenset(normalize_entity_name(n) for n in names)
        self._countries = frozenset(countries)

    def is_listed(self, name: str, country: str) -> bool:
        return country in self._countries or normalize_entity_name(name) in self._names


def check_sanctions(
    name: str, country: str, now: datetime, screen: SanctionsScreen
) -> ComplianceCheck:
    if country in SANCTIONED_COUNTRIES:
        return ComplianceCheck(
            CHECK_SANCTIONS, FAILED, now, f"country {country} is under comprehensive sanctions"
        )
    if screen.is_listed(name, country):
        return ComplianceCheck(
            CHECK_SANCTIONS, FAILED, now, "business name matches a sanctions list entry"
        )
    return ComplianceCheck(CHECK_SANCTIONS, PASSED, now, "no sanctions list match")


# ---------------------------------------------------------------- all checks


def run_kyb_checks(
    *,
    name: str,
    tax_id: str | None,
    address: Address,
    contact: ContactInfo,
    now: datetime,
    screen: SanctionsScreen | None = None,
) -> list[ComplianceCheck]:
    """Run every KYB check, in a stable order: tax_id, legal_address, contact,
    sanctions. ``now`` must be timezone-aware; checks are stamped in UTC.
    ``screen`` defaults to :class:`LocalSanctionsList`."""
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("run_kyb_checks needs a timezone-aware 'now'")
    at = now.astimezone(UTC)
    return [
        check_tax_id(tax_id, address.country, at),
        check_legal_address(address, at),
        check_contact(contact, at),
        check_sanctions(name, address.country, at, screen or LocalSanctionsList()),
    ]


def kyb_outcome(checks: Sequence[ComplianceCheck]) -> bool:
    """Verified only if there were checks and every one passed."""
    return bool(checks) and all(check.passed for check in checks)


def compliance_summary(checks: Sequence[ComplianceCheck]) -> tuple[bool, bool]:
    """``(kyb_verified, sanctions_clear)`` for ``ComplianceStatus``.

    ``sanctions_clear`` is true only if a sanctions check ran and passed.
    """
    sanctions = [check for check in checks if check.name == CHECK_SANCTIONS]
    sanctions_clear = bool(sanctions) and all(check.passed for check in sanctions)
    return kyb_outcome(checks), sanctions_clear
