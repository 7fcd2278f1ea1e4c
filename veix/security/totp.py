"""Step-up authentication with TOTP (RFC 6238) codes from an authenticator app.

Why: sensitive actions (reveal a PAN, raise limits, add an owner, change payout details) need
Strong Customer Authentication, a second factor proven within the last five minutes (DESIGN.md
section 8). A TOTP code is that factor; the moment it was verified rides in the access token and
:func:`step_up_fresh` decides whether it is still recent enough.

Codes are 6 digits over 30-second steps; one step either side is accepted (``valid_window=1``) to
absorb clock drift between the phone and the server. ``verify_code`` alone does not stop a code
being replayed within its ~90 s of validity: callers that need that should remember the last
accepted time step per user.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta

import pyotp

STEP_UP_VALIDITY = timedelta(minutes=5)
CODE_DIGITS = 6
VALID_WINDOW = 1
# A step-up moment slightly in the future is tolerated: another instance's clock may be ahead.
CLOCK_SKEW = timedelta(seconds=30)

_CODE_RE = re.compile(r"[0-9]{6}")


def _require_aware(moment: datetime, name: str) -> None:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware")


def new_secret() -> str:
    """A fresh random base32 TOTP secret (160 bits), to store for the user and show once as a QR code."""
    return pyotp.random_base32()


def provisioning_uri(secret: str, email: str, issuer: str = "Veix") -> str:
    """The ``otpauth://totp/...`` URI an authenticator app scans (as a QR code) to enrol."""
    return pyotp.TOTP(secret).provisioning_uri(name=email, issuer_name=issuer)


def verify_code(secret: str, code: str, *, at: datetime | None = None) -> bool:
    """True if ``code`` (exactly 6 ASCII digits) is valid for ``secret`` at ``at`` (default: now).

    Surrounding whitespace is ignored; anything else that is not a digit is refused. The comparison
    is constant-time (pyotp compares with ``hmac.compare_digest``).
    """
    if not _CODE_RE.fullmatch(code.strip()):
        return False
    totp = pyotp.TOTP(secret, digits=CODE_DIGITS)
    if at is None:
        return totp.verify(code.strip(), valid_window=VALID_WINDOW)
    _require_aware(at, "at")
    return totp.verify(code.strip(), for_time=int(at.timestamp()), valid_window=VALID_WINDOW)


def step_up_fresh(step_up_at: datetime | None, now: datetime) -> bool:
    """True if a step-up happened at most :data:`STEP_UP_VALIDITY` before ``now``."""
    if step_up_at is None:
        return False
    _require_aware(step_up_at, "step_up_at")
    _require_aware(now, "now")
    age = now - step_up_at
    return -CLOCK_SKEW <= age <= STEP_UP_VALIDITY
