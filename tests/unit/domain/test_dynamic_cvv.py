"""Specification of the dynamic CVV (veix.domain.dynamic_cvv)."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from veix.domain.dynamic_cvv import cvv_matches, dynamic_cvv, window_of

SECRET = b"dcvv-secret-0123456789abcdef"
PAN = "4000001234567899"
EXPIRY = "2029-11"
# 2026-11-26 13:05:00 UTC is the start of a 300 s window.
AT = datetime(2026, 11, 26, 13, 5, 0, tzinfo=UTC)
W = timedelta(seconds=300)


def _reference(secret: bytes, pan: str, expiry: str, at: datetime, window_seconds: int = 300) -> str:
    window = int(at.timestamp()) // window_seconds
    mac = hmac.new(secret, f"{pan}|{expiry}|{window}".encode(), hashlib.sha256).digest()
    offset = mac[31] & 0xF
    value = ((mac[offset] & 0x7F) << 24) | (mac[offset + 1] << 16) | (mac[offset + 2] << 8) | mac[offset + 3]
    return str(value % 1000).rjust(3, "0")


def test_matches_the_documented_derivation() -> None:
    assert dynamic_cvv(SECRET, PAN, EXPIRY, AT) == _reference(SECRET, PAN, EXPIRY, AT)
    assert int(AT.timestamp()) % 300 == 0


def test_deterministic() -> None:
    assert dynamic_cvv(SECRET, PAN, EXPIRY, AT) == dynamic_cvv(SECRET, PAN, EXPIRY, AT)
    assert dynamic_cvv(SECRET, PAN, EXPIRY, AT) == dynamic_cvv(SECRET, PAN, EXPIRY, AT + W - timedelta(seconds=1))


def test_same_instant_in_any_zone() -> None:
    tokyo = AT.astimezone(timezone(timedelta(hours=9)))
    assert dynamic_cvv(SECRET, PAN, EXPIRY, tokyo) == dynamic_cvv(SECRET, PAN, EXPIRY, AT)


def test_changes_between_windows() -> None:
    codes = {dynamic_cvv(SECRET, PAN, EXPIRY, AT + i * W) for i in range(20)}
    # 20 windows of 1000 values: a few collisions are possible, all equal is not.
    assert len(codes) > 10
    assert window_of(AT + W) == window_of(AT) + 1


def test_depends_on_every_input() -> None:
    base = [dynamic_cvv(SECRET, PAN, EXPIRY, AT + i * W) for i in range(8)]
    assert base != [dynamic_cvv(b"another-secret-0123456789", PAN, EXPIRY, AT + i * W) for i in range(8)]
    assert base != [dynamic_cvv(SECRET, "4000001234567881", EXPIRY, AT + i * W) for i in range(8)]
    assert base != [dynamic_cvv(SECRET, PAN, "2029-12", AT + i * W) for i in range(8)]


def test_window_length_is_configurable() -> None:
    at = AT + timedelta(seconds=90)
    assert dynamic_cvv(SECRET, PAN, EXPIRY, at, window_seconds=60) == _reference(SECRET, PAN, EXPIRY, at, 60)
    assert window_of(at, 60) == int(at.timestamp()) // 60


def _distinct_windows() -> tuple[datetime, datetime]:
    """A window and the one before it with different codes (skips the 1-in-1000 coincidence)."""
    for i in range(100):
        at = AT + i * W
        if dynamic_cvv(SECRET, PAN, EXPIRY, at) not in {
            dynamic_cvv(SECRET, PAN, EXPIRY, at - W),
            dynamic_cvv(SECRET, PAN, EXPIRY, at - 2 * W),
        }:
            if dynamic_cvv(SECRET, PAN, EXPIRY, at - W) != dynamic_cvv(SECRET, PAN, EXPIRY, at - 2 * W):
                return at, at - W
    raise AssertionError("no distinct windows found")


def test_current_window_matches() -> None:
    cvv = dynamic_cvv(SECRET, PAN, EXPIRY, AT)
    assert cvv_matches(SECRET, PAN, EXPIRY, cvv, AT)
    assert cvv_matches(SECRET, PAN, EXPIRY, cvv, AT + W - timedelta(seconds=1))


def test_cvv_from_an_old_window_is_refused() -> None:
    now, before = _distinct_windows()
    old = dynamic_cvv(SECRET, PAN, EXPIRY, before)
    assert not cvv_matches(SECRET, PAN, EXPIRY, old, now)


def test_grace_window_accepts_exactly_one_previous() -> None:
    now, before = _distinct_windows()
    previous = dynamic_cvv(SECRET, PAN, EXPIRY, before)
    two_back = dynamic_cvv(SECRET, PAN, EXPIRY, before - W)
    assert cvv_matches(SECRET, PAN, EXPIRY, previous, now, grace_windows=1)
    assert cvv_matches(SECRET, PAN, EXPIRY, dynamic_cvv(SECRET, PAN, EXPIRY, now), now, grace_windows=1)
    assert not cvv_matches(SECRET, PAN, EXPIRY, two_back, now, grace_windows=1)
    assert cvv_matches(SECRET, PAN, EXPIRY, two_back, now, grace_windows=2)


def test_future_window_is_refused() -> None:
    now, before = _distinct_windows()
    current = dynamic_cvv(SECRET, PAN, EXPIRY, now)
    assert not cvv_matches(SECRET, PAN, EXPIRY, current, before, grace_windows=1)


def test_static_cvv_is_accepted_when_given() -> None:
    current = dynamic_cvv(SECRET, PAN, EXPIRY, AT)
    static = "000" if current != "000" else "001"
    assert cvv_matches(SECRET, PAN, EXPIRY, static, AT, static_cvv=static)
    assert not cvv_matches(SECRET, PAN, EXPIRY, static, AT)
    assert cvv_matches(SECRET, PAN, EXPIRY, current, AT, static_cvv=static)
    assert cvv_matches(SECRET, PAN, EXPIRY, "1234", AT, static_cvv="1234")


@pytest.mark.parametrize("bad", ["", "12", "12345", "1a3", " 123", "١٢٣", "12.3"])
def test_malformed_cvv_never_matches(bad: str) -> None:
    assert not cvv_matches(SECRET, PAN, EXPIRY, bad, AT, static_cvv=bad, grace_windows=3)


@pytest.mark.parametrize(
    ("secret", "pan", "expiry", "window"),
    [
        (b"short", PAN, EXPIRY, 300),
        (SECRET, "4000-0012-3456-7899", EXPIRY, 300),
        (SECRET, "1234", EXPIRY, 300),
        (SECRET, PAN, "2029-13", 300),
        (SECRET, PAN, "11/29", 300),
        (SECRET, PAN, EXPIRY, 0),
    ],
)
def test_bad_inputs_are_refused(secret: bytes, pan: str, expiry: str, window: int) -> None:
    with pytest.raises(ValueError) as err:
        dynamic_cvv(secret, pan, expiry, AT, window_seconds=window)
    assert pan not in str(err.value)
    with pytest.raises(ValueError):
        cvv_matches(secret, pan, expiry, "123", AT, window_seconds=window)


def test_naive_time_and_negative_grace_are_refused() -> None:
    with pytest.raises(ValueError):
        dynamic_cvv(SECRET, PAN, EXPIRY, AT.replace(tzinfo=None))
    with pytest.raises(ValueError):
        cvv_matches(SECRET, PAN, EXPIRY, "123", AT, grace_windows=-1)


@given(
    secret=st.binary(min_size=16, max_size=64),
    pan=st.from_regex(r"[0-9]{12,19}", fullmatch=True),
    year=st.integers(2000, 2099),
    month=st.integers(1, 12),
    at=st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)),
    window_seconds=st.integers(1, 86_400),
)
def test_always_three_digits(
    secret: bytes, pan: str, year: int, month: int, at: datetime, window_seconds: int
) -> None:
    expiry = f"{year:04d}-{month:02d}"
    cvv = dynamic_cvv(secret, pan, expiry, at, window_seconds=window_seconds)
    assert len(cvv) == 3 and cvv.isascii() and cvv.isdigit()
    assert cvv_matches(secret, pan, expiry, cvv, at, window_seconds=window_seconds)
