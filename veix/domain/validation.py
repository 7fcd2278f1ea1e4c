"""Pure validators for untrusted input.

Every validator takes the raw value (``object``: whatever the API layer
received) and the ``field`` path of that value in the request, e.g.
``["input", "legalAddress", "city"]``, and either returns the clean value or
raises :class:`~veix.domain.errors.InvalidInput` carrying that path, so the
GraphQL layer can report a precise ``userErrors`` entry.

Text is stripped and NFC-normalised; control characters (including tabs and
new lines), unpaired surrogates and the bidirectional override / isolate
characters used to disguise text are rejected rather than removed.

Raw mappings given to :func:`parse_address` and :func:`parse_contact` use
snake_case keys (``postal_code``); field paths in errors use the GraphQL
camelCase names (``postalCode``).
"""

from __future__ import annotations

import functools
import ipaddress
import re
import unicodedata
import zoneinfo
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from email_validator import EmailNotValidError, validate_email

from veix.domain.countries import parse_country
from veix.domain.errors import InvalidInput

FieldPath = Sequence[str]

MAX_EMAIL_LENGTH = 254
MAX_URL_LENGTH = 2048
MAX_TIMEZONE_LENGTH = 64

# Bidirectional embeddings, overrides and isolates (Trojan Source), plus the
# line and paragraph separators, which are not category Cc.
_FORBIDDEN_CHARS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u2028\u2029")
_FORBIDDEN_CATEGORIES = frozenset({"Cc", "Cs"})

_PHONE_SEPARATORS = re.compile(r"[ \-.()]")
# E.164: "+", a country code not starting with 0, 8 to 15 digits in all.
_E164 = re.compile(r"\+[1-9][0-9]{7,14}", re.ASCII)
_HOST_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)", re.ASCII)


def _path(field: FieldPath, *more: str) -> list[str]:
    base = [field] if isinstance(field, str) else list(field)
    return [*base, *more]


def _has_forbidden_char(text: str) -> bool:
    return any(
        ch in _FORBIDDEN_CHARS or unicodedata.category(ch) in _FORBIDDEN_CATEGORIES for ch in text
    )


def require_text(value: object, *, field: FieldPath, max_len: int, min_len: int = 1) -> str:
    """Stripped, NFC-normalised text of ``min_len`` to ``max_len`` characters."""
    if not isinstance(value, str):
        raise InvalidInput("Must be text", field=_path(field))
    text = unicodedata.normalize("NFC", value.strip())
    if _has_forbidden_char(text):
        raise InvalidInput("Must not contain control characters", field=_path(field))
    if not text:
        raise InvalidInput("Is required", field=_path(field))
    if len(text) < min_len:
        raise InvalidInput(f"Must be at least {min_len} characters", field=_path(field))
    if len(text) > max_len:
        raise InvalidInput(f"Must be at most {max_len} characters", field=_path(field))
    return text


def _blank(value: object) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def optional_text(value: object, *, field: FieldPath, max_len: int, min_len: int = 1) -> str | None:
    """Like :func:`require_text`, but ``None`` or blank text gives ``None``."""
    if _blank(value):
        return None
    return require_text(value, field=field, max_len=max_len, min_len=min_len)


def parse_email(value: object, *, field: FieldPath) -> str:
    """A syntactically valid e-mail address, normalised and lower-cased.

    Syntax only: no DNS lookup (``check_deliverability=False``), so this stays
    pure and fast. Quoted local parts, domain literals and display names are
    refused.
    """
    text = require_text(value, field=field, max_len=MAX_EMAIL_LENGTH)
    try:
        result = validate_email(text, check_deliverability=False)
    except EmailNotValidError as exc:
        raise InvalidInput(f"Not a valid e-mail address: {exc}", field=_path(field)) from None
    email = result.normalized.lower()
    if len(email) > MAX_EMAIL_LENGTH:
        raise InvalidInput(f"Must be at most {MAX_EMAIL_LENGTH} characters", field=_path(field))
    return email


def parse_phone(value: object, *, field: FieldPath) -> str:
    """An E.164 phone number such as ``+14155552671``.

    Spaces, dashes, dots and parentheses are removed first, so
    ``"+1 (415) 555-2671"`` is accepted; a number without its ``+`` and
    country code is not.
    """
    text = require_text(value, field=field, max_len=32)
    compact = _PHONE_SEPARATORS.sub("", text)
    if not _E164.fullmatch(compact):
        raise InvalidInput(
            "Must be an international phone number in E.164 form, e.g. +14155552671",
            field=_path(field),
        )
    return compact


def _valid_host(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        return True
    try:
        ascii_host = host.encode("idna").decode("ascii")
    except UnicodeError:
        return False
    labels = ascii_host.lower().rstrip(".").split(".")
    return (
        len(ascii_host) <= 253
        and len(labels) >= 2
        and all(_HOST_LABEL.fullmatch(label) for label in labels)
        and not labels[-1].isdigit()
    )


def parse_url(value: object, *, field: FieldPath) -> str:
    """An absolute ``http`` or ``https`` URL with a host, at most 2048 characters.

    URLs carrying credentials (``https://user:pass@host``) and URLs with
    spaces are refused. The URL is returned as given (stripped).
    """
    text = require_text(value, field=field, max_len=MAX_URL_LENGTH)
    invalid = InvalidInput(
        "Must be an http or https URL, e.g. https://example.com", field=_path(field)
    )
    if any(ch.isspace() for ch in text):
        raise invalid
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        raise invalid from None
    del port  # parsed only to reject an invalid port
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise invalid
    if parts.username is not None or parts.password is not None:
        raise InvalidInput("URL must not contain credentials", field=_path(field))
    if not _valid_host(parts.hostname):
        raise invalid
    return text


@functools.cache
def _known_timezones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def parse_timezone(value: object, *, field: FieldPath) -> str:
    """An IANA time zone name known to :mod:`zoneinfo`, e.g. ``Europe/Berlin``."""
    text = require_text(value, field=field, max_len=MAX_TIMEZONE_LENGTH)
    if text not in _known_timezones():
        raise InvalidInput(
            "Unknown time zone: use an IANA name such as 'Europe/Berlin'", field=_path(field)
        )
    return text


@dataclass(frozen=True, slots=True)
class Address:
    """A postal address; ``country`` is an ISO 3166-1 alpha-2 code."""

    line1: str
    line2: str | None
    city: str
    region: str | None
    postal_code: str
    country: str


@dataclass(frozen=True, slots=True)
class ContactInfo:
    """How to reach a business: e-mail (required), E.164 phone and website."""

    email: str
    phone: str | None
    website: str | None


# snake_case key of the raw mapping -> camelCase name in the GraphQL field path.
_ADDRESS_KEYS = {
    "line1": "line1",
    "line2": "line2",
    "city": "city",
    "region": "region",
    "postal_code": "postalCode",
    "country": "country",
}
_CONTACT_KEYS = {"email": "email", "phone": "phone", "website": "website"}

MAX_LINE_LENGTH = 200
MAX_CITY_LENGTH = 100
MAX_REGION_LENGTH = 100
MAX_POSTAL_CODE_LENGTH = 20


def _reject_unknown_keys(
    raw: Mapping[str, object], known: Mapping[str, str], field: FieldPath
) -> None:
    if not isinstance(raw, Mapping):
        raise InvalidInput("Must be an object", field=_path(field))
    for key in raw:
        if key not in known:
            name = str(key)[:40]
            raise InvalidInput(f"Unknown field {name!r}", field=_path(field, name))


def parse_address(raw: Mapping[str, object], *, field: FieldPath) -> Address:
    """Validate every part of an address; errors name the part, e.g.
    ``[*field, "postalCode"]``. Unknown keys are refused, not ignored."""
    _reject_unknown_keys(raw, _ADDRESS_KEYS, field)

    def sub(key: str) -> list[str]:
        return _path(field, _ADDRESS_KEYS[key])

    line1 = require_text(raw.get("line1"), field=sub("line1"), max_len=MAX_LINE_LENGTH)
    line2 = optional_text(raw.get("line2"), field=sub("line2"), max_len=MAX_LINE_LENGTH)
    city = require_text(raw.get("city"), field=sub("city"), max_len=MAX_CITY_LENGTH)
    region = optional_text(raw.get("region"), field=sub("region"), max_len=MAX_REGION_LENGTH)
    postal_code = require_text(
        raw.get("postal_code"), field=sub("postal_code"), max_len=MAX_POSTAL_CODE_LENGTH
    )
    country = parse_country(raw.get("country"), field=sub("country"))
    return Address(
        line1=line1,
        line2=line2,
        city=city,
        region=region,
        postal_code=postal_code,
        country=country,
    )


def parse_contact(raw: Mapping[str, object], *, field: FieldPath) -> ContactInfo:
    """E-mail is required; phone (E.164) and website (http/https) are optional,
    as in ``ContactInfoInput``. Errors name the part, e.g. ``[*field, "email"]``."""
    _reject_unknown_keys(raw, _CONTACT_KEYS, field)
    email = parse_email(raw.get("email"), field=_path(field, "email"))
    phone_raw, website_raw = raw.get("phone"), raw.get("website")
    phone = None if _blank(phone_raw) else parse_phone(phone_raw, field=_path(field, "phone"))
    website = None if _blank(website_raw) else parse_url(website_raw, field=_path(field, "website"))
    return ContactInfo(email=email, phone=phone, website=website)
