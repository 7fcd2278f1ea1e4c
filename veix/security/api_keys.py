"""API keys for partners' servers.

Why this format (``vx_live_ab12cd34_<secret>``): the mode is readable at a glance (and by secret
scanners), the 8-character lookup id makes the public ``prefix`` that the database indexes and the
API shows, and the secret part carries 256 random bits. Only the SHA-256 of the whole key is
stored; a fast hash is enough because the key is random, not chosen by a person.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import string
from dataclasses import dataclass, field

_TEST_MODE = "vx_test_"
_LIVE_MODE = "vx_live_"
_LOOKUP_ALPHABET = string.ascii_lowercase + string.digits
_LOOKUP_LENGTH = 8
_SECRET_BYTES = 32  # token_urlsafe(32) gives 43 characters

# The secret may itself contain "_" or "-", so the prefix is anchored by its fixed length.
# The upper bound keeps a hostile header from being worth hashing.
_API_KEY_RE = re.compile(r"(vx_(?:test|live)_[a-z0-9]{8})_([A-Za-z0-9_-]{32,128})")


@dataclass(frozen=True, slots=True)
class GeneratedKey:
    """A new key: ``secret`` is shown to the partner once, ``prefix`` and ``hash`` are stored."""

    secret: str = field(repr=False)
    prefix: str
    hash: str


def hash_api_key(secret: str) -> str:
    """Return the hex SHA-256 of a full API key, the form stored in the database."""
    return hashlib.sha256(secret.encode()).hexdigest()


def generate_api_key(live: bool) -> GeneratedKey:
    """Create a fresh test or live key.

    The lookup id has 36^8 values; the database's unique index on ``prefix`` is the final guard
    against the improbable collision.
    """
    lookup = "".join(secrets.choice(_LOOKUP_ALPHABET) for _ in range(_LOOKUP_LENGTH))
    prefix = (_LIVE_MODE if live else _TEST_MODE) + lookup
    secret = f"{prefix}_{secrets.token_urlsafe(_SECRET_BYTES)}"
    return GeneratedKey(secret=secret, prefix=prefix, hash=hash_api_key(secret))


def parse_api_key(token: str) -> str | None:
    """Return the public prefix of ``token`` if it looks like a Veix API key, else ``None``.

    Looking like a key says nothing about validity: the caller still compares hashes.
    """
    match = _API_KEY_RE.fullmatch(token)
    return match.group(1) if match else None


def is_api_key(token: str) -> bool:
    """Tell whether ``token`` has the shape of a Veix API key (as opposed to a JWT)."""
    return parse_api_key(token) is not None
