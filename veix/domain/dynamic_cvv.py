"""Dynamic CVV: a 3-digit card security code that changes every time window.

Why: a static CVV, once phished or skimmed, works until the card is replaced. A dynamic CVV is
derived from a per-issuer secret, the PAN, the expiry and the current time window, so a stolen
code stops working when its window ends (DESIGN.md section 5). The derivation is HOTP-like
(RFC 4226 dynamic truncation) over HMAC-SHA256:

    window = floor(unix_time / window_seconds)
    mac    = HMAC-SHA256(secret, f"{pan}|{expiry YYYY-MM}|{window}")
    code   = (31-bit big-endian integer at offset mac[-1] & 0x0F) mod 1000, zero-padded to 3 digits

Pure standard library: it lives in the domain, which imports no framework. The secret comes from
the caller (the vault or settings); this module never stores it.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re
from datetime import datetime

DEFAULT_WINDOW_SECONDS = 300
CVV_DIGITS = 3
MIN_SECRET_BYTES = 16

_PAN_RE = re.compile(r"[0-9]{12,19}")
_EXPIRY_RE = re.compile(r"[0-9]{4}-(0[1-9]|1[0-2])")
_CVV_RE = re.compile(r"[0-9]{3,4}")


def _check(secret: bytes, pan: str, expiry: str, window_seconds: int) -> None:
    if len(secret) < MIN_SECRET_BYTES:
        raise ValueError(f"the dynamic CVV secret must be at least {MIN_SECRET_BYTES} bytes")
    if not _PAN_RE.fullmatch(pan):
        raise ValueError("a PAN must be 12 to 19 digits")  # never echo the PAN
    if not _EXPIRY_RE.fullmatch(expiry):
        raise ValueError("expiry must be YYYY-MM")
    if window_seconds <= 0:
        raise ValueError("window_seconds must be positive")


def window_of(at: datetime, window_seconds: int = DEFAULT_WINDOW_SECONDS) -> int:
    """The time window number of ``at``: ``floor(unix_time / window_seconds)``."""
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError("at must be timezone-aware")
    if window_seconds <= 0:
        raise ValueError("window_seconds must be positive")
    return math.floor(at.timestamp()) // window_seconds


def _code(secret: bytes, pan: str, expiry: str, window: int) -> str:
    mac = hmac.new(secret, f"{pan}|{expiry}|{window}".encode("ascii"), hashlib.sha256).digest()
    offset = mac[-1] & 0x0F
    number = int.from_bytes(mac[offset : offset + 4], "big") & 0x7FFFFFFF
    return f"{number % 10**CVV_DIGITS:0{CVV_DIGITS}d}"


def dynamic_cvv(
    secret: bytes, pan: str, expiry: str, at: datetime, *, window_seconds: int = DEFAULT_WINDOW_SECONDS
) -> str:
    """The 3-digit dynamic CVV of the card (``expiry`` as ``YYYY-MM``) for the window containing ``at``."""
    _check(secret, pan, expiry, window_seconds)
    return _code(secret, pan, expiry, window_of(at, window_seconds))


def cvv_matches(
    secret: bytes,
    pan: str,
    expiry: str,
    cvv: str,
    at: datetime,
    *,
    window_seconds: int = DEFAULT_WINDOW_SECONDS,
    static_cvv: str | None = None,
    grace_windows: int = 0,
) -> bool:
    """True if ``cvv`` is the static CVV (when given) or the dynamic CVV of the window of ``at``
    or of one of the ``grace_windows`` windows before it.

    Every candidate is compared in constant time and all are compared, so the time taken does not
    say which (if any) matched. Each grace window adds one more accepted 3-digit value, so keep it
    small; guessing is bounded by rate limits and fraud scoring, not here.
    """
    _check(secret, pan, expiry, window_seconds)
    if grace_windows < 0:
        raise ValueError("grace_windows must not be negative")
    current = window_of(at, window_seconds)
    if not _CVV_RE.fullmatch(cvv):
        return False
    given = cvv.encode("ascii")
    matched = False
    if static_cvv is not None:
        matched |= hmac.compare_digest(static_cvv.encode("utf-8"), given)
    for window in range(current - grace_windows, current + 1):
        matched |= hmac.compare_digest(_code(secret, pan, expiry, window).encode("ascii"), given)
    return matched
