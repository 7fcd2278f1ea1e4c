"""ISO 3166-1 alpha-2 country codes.

``COUNTRY_CODES`` holds the 249 officially assigned codes (ISO 3166-1, as
published by the ISO 3166 Maintenance Agency). Exceptionally or
transitionally reserved codes (``EU``, ``UK``, ``XK``, ...) and user-assigned
codes are *not* country codes here: an address or a card control names a
country with an officially assigned code, in upper case.
"""

from __future__ import annotations

from collections.abc import Sequence

from veix.domain.errors import InvalidInput

COUNTRY_CODES: frozenset[str] = frozenset(
    """
    AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ
    BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR BS BT BV BW BY BZ
    CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ
    DE DJ DK DM DO DZ
    EC EE EG EH ER ES ET
    FI FJ FK FM FO FR
    GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY
    HK HM HN HR HT HU
    ID IE IL IM IN IO IQ IR IS IT
    JE JM JO JP
    KE KG KH KI KM KN KP KR KW KY KZ
    LA LB LC LI LK LR LS LT LU LV LY
    MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV MW MX MY MZ
    NA NC NE NF NG NI NL NO NP NR NU NZ
    OM
    PA PE PF PG PH PK PL PM PN PR PS PT PW PY
    QA
    RE RO RS RU RW
    SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ
    TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ
    UA UG UM US UY UZ
    VA VC VE VG VI VN VU
    WF WS
    YE YT
    ZA ZM ZW
    """.split()
)

# The 27 member states of the European Union (since 2020-02-01). Greece is
# ``GR`` here even though EU VAT numbers use the prefix ``EL``.
EU_COUNTRIES: frozenset[str] = frozenset(
    "AT BE BG CY CZ DE DK EE ES FI FR GR HR HU IE IT LT LU LV MT NL PL PT RO SE SI SK".split()
)


def is_country_code(code: object) -> bool:
    """True for an officially assigned ISO 3166-1 alpha-2 code in upper case."""
    return isinstance(code, str) and code in COUNTRY_CODES


def parse_country(code: object, *, field: Sequence[str]) -> str:
    """Return ``code`` if it is an assigned upper-case alpha-2 code, else raise.

    No normalisation is done: ``"de"`` and ``" DE"`` are rejected, so that what
    is stored is exactly what was validated.
    """
    if is_country_code(code):
        assert isinstance(code, str)
        return code
    path = [field] if isinstance(field, str) else list(field)
    if isinstance(code, str) and code.strip().upper() in COUNTRY_CODES:
        hint = f"use {code.strip().upper()!r}"
    else:
        hint = "use an ISO 3166-1 alpha-2 code such as 'DE' or 'US'"
    shown = code if isinstance(code, str) and len(code) <= 16 else type(code).__name__
    raise InvalidInput(f"Unknown country code {shown!r}: {hint}", field=path)
