"""Specification of TOTP step-up (veix.security.totp)."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta, timezone
from urllib.parse import parse_qs, unquote, urlparse

import pyotp
import pytest

from veix.security.totp import (
    STEP_UP_VALIDITY,
    new_secret,
    provisioning_uri,
    step_up_fresh,
    verify_code,
)

SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
NOW = datetime(2026, 11, 26, 13, 5, 0, tzinfo=UTC)


def _code(at: datetime, secret: str = SECRET) -> str:
    return pyotp.TOTP(secret).at(at)


def test_new_secret_is_random_base32() -> None:
    one, two = new_secret(), new_secret()
    assert one != two
    assert len(base64.b32decode(one)) >= 20  # 160 bits
    assert verify_code(one, _code(NOW, one), at=NOW)


def test_provisioning_uri() -> None:
    uri = provisioning_uri(SECRET, "ada@example.com")
    parsed = urlparse(uri)
    assert parsed.scheme == "otpauth" and parsed.netloc == "totp"
    assert unquote(parsed.path) == "/Veix:ada@example.com"
    query = parse_qs(parsed.query)
    assert query["secret"] == [SECRET]
    assert query["issuer"] == ["Veix"]
    assert "Acme" in unquote(provisioning_uri(SECRET, "ada@example.com", issuer="Acme"))


def test_current_code_verifies() -> None:
    assert verify_code(SECRET, _code(NOW), at=NOW)


def test_code_now_without_at() -> None:
    assert verify_code(SECRET, pyotp.TOTP(SECRET).now())


@pytest.mark.parametrize("offset", [-30, 30])
def test_one_step_either_side_is_accepted(offset: int) -> None:
    assert verify_code(SECRET, _code(NOW + timedelta(seconds=offset)), at=NOW)


@pytest.mark.parametrize("offset", [-60, 60, -3600])
def test_codes_two_steps_away_are_refused(offset: int) -> None:
    code = _code(NOW + timedelta(seconds=offset))
    # Guard against the 1-in-a-million coincidence of equal codes.
    if code not in {_code(NOW + timedelta(seconds=s)) for s in (-30, 0, 30)}:
        assert not verify_code(SECRET, code, at=NOW)


def test_code_for_another_secret_is_refused() -> None:
    other = new_secret()
    code = _code(NOW, other)
    if code not in {_code(NOW + timedelta(seconds=s)) for s in (-30, 0, 30)}:
        assert not verify_code(SECRET, code, at=NOW)


def test_surrounding_whitespace_is_ignored() -> None:
    assert verify_code(SECRET, f" {_code(NOW)}\n", at=NOW)


def test_non_utc_aware_time_is_the_same_instant() -> None:
    local = NOW.astimezone(timezone(timedelta(hours=9)))
    assert verify_code(SECRET, _code(NOW), at=local)


@pytest.mark.parametrize("bad", ["", "12345", "1234567", "12a456", "12 456", "-12345", "+12345", "١٢٣٤٥٦", "12345６"])
def test_malformed_codes_are_refused(bad: str) -> None:
    assert not verify_code(SECRET, bad, at=NOW)


def test_malformed_code_looking_like_valid_number_is_refused() -> None:
    code = _code(NOW)
    assert not verify_code(SECRET, code + "0", at=NOW)
    assert not verify_code(SECRET, code[1:], at=NOW)


def test_naive_time_is_refused() -> None:
    with pytest.raises(ValueError):
        verify_code(SECRET, _code(NOW), at=NOW.replace(tzinfo=None))


def test_step_up_validity_is_five_minutes() -> None:
    assert timedelta(minutes=5) == STEP_UP_VALIDITY


def test_step_up_fresh() -> None:
    assert not step_up_fresh(None, NOW)
    assert step_up_fresh(NOW, NOW)
    assert step_up_fresh(NOW - timedelta(minutes=4, seconds=59), NOW)
    assert step_up_fresh(NOW - STEP_UP_VALIDITY, NOW)
    assert not step_up_fresh(NOW - STEP_UP_VALIDITY - timedelta(seconds=1), NOW)
    assert not step_up_fresh(NOW - timedelta(hours=1), NOW)


def test_step_up_slightly_in_the_future_tolerates_clock_skew() -> None:
    assert step_up_fresh(NOW + timedelta(seconds=5), NOW)
    assert not step_up_fresh(NOW + timedelta(minutes=10), NOW)


def test_step_up_fresh_compares_instants_across_zones() -> None:
    tokyo = timezone(timedelta(hours=9))
    assert step_up_fresh((NOW - timedelta(minutes=1)).astimezone(tokyo), NOW)


def test_step_up_fresh_refuses_naive_times() -> None:
    with pytest.raises(ValueError):
        step_up_fresh(NOW.replace(tzinfo=None), NOW)
    with pytest.raises(ValueError):
        step_up_fresh(NOW, NOW.replace(tzinfo=None))
