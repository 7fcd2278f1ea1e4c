"""Standard Webhooks signatures for the card network endpoints (see NETWORK.md).

Why: the network's calls move money, so each must prove it comes from the holder of the shared
secret (``VEIX_NETWORK_SECRET``, ``whsec_<base64>``) and is fresh. The Standard Webhooks scheme
(https://www.standardwebhooks.com) is what issuer processors and webhook libraries already speak:

- headers ``webhook-id``, ``webhook-timestamp`` (Unix seconds), ``webhook-signature``;
- the signature is ``v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{raw body}")>``, where the key
  is the base64-decoded secret; several space-separated signatures are allowed so a secret can
  rotate (the sender signs with old and new, the receiver accepts either);
- a timestamp more than the tolerance (300 s) away, in either direction, is refused, which bounds
  replay; the ``webhook-id`` makes repeats idempotent (handled by the endpoint, not here).

:func:`verify` raises :class:`SignatureError` (an ``Unauthenticated``, hence a 401) with a stable
``reason``; the caller must treat every reason alike and change nothing.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import time
from collections.abc import Mapping

from veix.domain.errors import Unauthenticated

SECRET_PREFIX = "whsec_"
SIGNATURE_VERSION = "v1"
DEFAULT_TOLERANCE = 300
ID_HEADER = "webhook-id"
TIMESTAMP_HEADER = "webhook-timestamp"
SIGNATURE_HEADER = "webhook-signature"

MISSING_HEADER = "missing_header"
DUPLICATE_HEADER = "duplicate_header"
INVALID_TIMESTAMP = "invalid_timestamp"
TIMESTAMP_OUT_OF_TOLERANCE = "timestamp_out_of_tolerance"
NO_MATCHING_SIGNATURE = "no_matching_signature"

_MESSAGES = {
    MISSING_HEADER: "A webhook-id, webhook-timestamp or webhook-signature header is missing.",
    DUPLICATE_HEADER: "A webhook header is repeated.",
    INVALID_TIMESTAMP: "The webhook-timestamp header is not an integer number of seconds.",
    TIMESTAMP_OUT_OF_TOLERANCE: "The webhook-timestamp is too far from the current time.",
    NO_MATCHING_SIGNATURE: "No webhook-signature matches the request.",
}
_TIMESTAMP_RE = re.compile(r"[0-9]{1,15}")
_HEADERS = (ID_HEADER, TIMESTAMP_HEADER, SIGNATURE_HEADER)


class SignatureError(Unauthenticated):
    """The request is not authentically from the network; ``reason`` is a stable machine word."""

    def __init__(self, reason: str) -> None:
        super().__init__(_MESSAGES.get(reason, "The webhook signature is invalid."))
        self.reason = reason


def _key(secret: str) -> bytes:
    """The HMAC key: the base64-decoded secret, with or without the ``whsec_`` prefix."""
    encoded = secret.removeprefix(SECRET_PREFIX).strip()
    try:
        # Padding is optional, as in the reference implementation.
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("the webhook secret must be whsec_<base64>") from None
    if not key:
        raise ValueError("the webhook secret is empty")
    return key


def _signature(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    signed = b"%s.%d.%s" % (msg_id.encode("utf-8"), timestamp, body)
    return base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode("ascii")


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """Return ``v1,<base64 signature>`` of ``body`` with id ``msg_id`` at Unix time ``timestamp``."""
    return f"{SIGNATURE_VERSION},{_signature(_key(secret), msg_id, timestamp, body)}"


def signed_headers(secret: str, msg_id: str, body: bytes, *, timestamp: int | None = None) -> dict[str, str]:
    """The three headers a sender (our simulator, tests) attaches to ``body``."""
    ts = int(time.time()) if timestamp is None else timestamp
    return {
        ID_HEADER: msg_id,
        TIMESTAMP_HEADER: str(ts),
        SIGNATURE_HEADER: sign(secret, msg_id, ts, body),
    }


def _lowered(headers: Mapping[str, str]) -> dict[str, str]:
    found: dict[str, str] = {}
    for name, value in headers.items():
        lower = name.lower()
        if lower not in _HEADERS:
            continue
        if lower in found:
            # Two values (e.g. "Webhook-Id" and "webhook-id"): ambiguous, so refuse.
            raise SignatureError(DUPLICATE_HEADER)
        found[lower] = value
    return found


def verify(
    secret: str | list[str],
    headers: Mapping[str, str],
    body: bytes,
    *,
    now: int | None = None,
    tolerance: int = DEFAULT_TOLERANCE,
) -> str:
    """Check a signed request; return its ``webhook-id`` or raise :class:`SignatureError`.

    ``secret`` may be a list during rotation: a signature under any of them is accepted. ``body``
    must be the raw bytes as received, before any JSON parsing.
    """
    secrets = [secret] if isinstance(secret, str) else list(secret)
    if not secrets:
        raise ValueError("at least one webhook secret is needed")
    keys = [_key(s) for s in secrets]

    found = _lowered(headers)
    msg_id = found.get(ID_HEADER, "")
    timestamp_text = found.get(TIMESTAMP_HEADER, "").strip()
    signatures = found.get(SIGNATURE_HEADER, "")
    if not (msg_id and timestamp_text and signatures.strip()):
        raise SignatureError(MISSING_HEADER)
    if not _TIMESTAMP_RE.fullmatch(timestamp_text):
        raise SignatureError(INVALID_TIMESTAMP)
    timestamp = int(timestamp_text)
    current = int(time.time()) if now is None else now
    if abs(current - timestamp) > tolerance:
        raise SignatureError(TIMESTAMP_OUT_OF_TOLERANCE)

    expected = [_signature(key, msg_id, timestamp, body).encode("ascii") for key in keys]
    matched = False
    for candidate in signatures.split():
        version, sep, value = candidate.partition(",")
        if version != SIGNATURE_VERSION or not sep:
            continue
        given = value.encode("utf-8")
        for wanted in expected:
            matched |= hmac.compare_digest(wanted, given)
    if not matched:
        raise SignatureError(NO_MATCHING_SIGNATURE)
    return msg_id
