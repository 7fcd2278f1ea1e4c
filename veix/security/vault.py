"""The card-data vault: PANs and CVVs encrypted at rest, plus a keyed hash to find a card by PAN.

Why it looks like this:

- AES-256-GCM (authenticated encryption) so a modified ciphertext is refused rather than
  decrypted to garbage. Every encryption takes a fresh random 96-bit nonce; the stored blob is
  ``nonce || ciphertext || tag``.
- The associated data (``aad``, the card's id) binds a ciphertext to its card: copying one card's
  encrypted PAN onto another card's row makes decryption fail instead of revealing the wrong PAN.
- The key id travels beside the ciphertext (``encrypt`` returns it, the caller stores it) so keys
  can rotate: the ``VEIX_VAULT_KEY`` setting is ``"v2:<b64>,v1:<b64>"``; the first key encrypts
  everything new, every listed key still decrypts, and ``needs_rotation`` tells a re-encryption job
  which rows to rewrite before an old key is dropped.
- Lookup by PAN (the network sends a PAN, we must find the card) cannot use the ciphertext, whose
  nonce is random, so an HMAC-SHA256 of the PAN is stored too. Its key must NOT change on rotation
  or every stored hash would stop matching. It is derived with HKDF-SHA256 (info
  ``b"veix-pan-lookup"``) from the OLDEST configured key (the last in the list) or given
  explicitly as ``lookup_secret``. Consequence: the oldest key must stay in the setting (it may be
  retired from encryption by no longer being first, but not removed) for as long as any card
  hashed under it exists, unless the lookup hashes are recomputed first.
- Errors and ``repr`` never contain key material or plaintext; ``VaultError`` is a server fault
  (a 500, not a user error), hence a ``RuntimeError`` and not a ``VeixError``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
from collections.abc import Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16
LOOKUP_INFO = b"veix-pan-lookup"
MIN_LOOKUP_SECRET_BYTES = 32

_KEY_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,32}")
_PAN_RE = re.compile(r"[0-9]{12,19}")
_PAN_SEPARATORS = str.maketrans("", "", " -")
_MASK = "•"


class VaultError(RuntimeError):
    """Decryption failed (unknown key id, tampered or misplaced ciphertext). Never holds plaintext."""


class Vault:
    """Encrypts and decrypts card data under a rotating list of AES-256 keys."""

    __slots__ = ("_ciphers", "_current", "_lookup_key")

    def __init__(self, keys: Sequence[tuple[str, bytes]], *, lookup_secret: bytes | None = None) -> None:
        """``keys`` is ordered newest first: ``keys[0]`` encrypts, all of them decrypt."""
        if not keys:
            raise ValueError("the vault needs at least one key")
        ciphers: dict[str, AESGCM] = {}
        for key_id, key in keys:
            if not _KEY_ID_RE.fullmatch(key_id):
                raise ValueError("vault key ids must be 1-32 characters of letters, digits, '_' or '-'")
            if key_id in ciphers:
                raise ValueError(f"vault key id {key_id} is listed twice")
            if len(key) != KEY_BYTES:
                raise ValueError(f"vault key {key_id} must be exactly {KEY_BYTES} bytes")
            ciphers[key_id] = AESGCM(key)
        if lookup_secret is not None:
            if len(lookup_secret) < MIN_LOOKUP_SECRET_BYTES:
                raise ValueError(f"lookup_secret must be at least {MIN_LOOKUP_SECRET_BYTES} bytes")
            lookup_key = lookup_secret
        else:
            hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=LOOKUP_INFO)
            lookup_key = hkdf.derive(keys[-1][1])  # the oldest key: stable across rotation
        self._ciphers = ciphers
        self._current = keys[0][0]
        self._lookup_key = lookup_key

    @classmethod
    def from_setting(cls, setting: str, *, lookup_secret: bytes | None = None) -> Vault:
        """Build a vault from ``"v2:<base64 32 bytes>,v1:<base64 32 bytes>"`` (current key first)."""
        entries = [part.strip() for part in setting.split(",")]
        if not setting.strip() or any(not part for part in entries):
            raise ValueError("vault_key must be a comma-separated list of id:base64key entries")
        keys: list[tuple[str, bytes]] = []
        for index, entry in enumerate(entries, start=1):
            key_id, sep, encoded = entry.partition(":")
            key_id = key_id.strip()
            if not sep or not key_id:
                # Name the position only: without a separator the entry may be the bare key.
                raise ValueError(f"vault_key entry {index} is not of the form id:base64key")
            try:
                key = base64.b64decode(encoded.strip(), validate=True)
            except (binascii.Error, ValueError):
                raise ValueError(f"vault key {key_id} is not valid base64") from None
            keys.append((key_id, key))
        return cls(keys, lookup_secret=lookup_secret)

    @property
    def current_key_id(self) -> str:
        """The id of the key that encrypts new data."""
        return self._current

    @property
    def key_ids(self) -> tuple[str, ...]:
        """Every configured key id, newest first."""
        return tuple(self._ciphers)

    def needs_rotation(self, key_id: str) -> bool:
        """True when data stored under ``key_id`` should be re-encrypted with the current key."""
        return key_id != self._current

    def encrypt(self, plaintext: str, *, aad: bytes) -> tuple[str, bytes]:
        """Encrypt under the current key; return ``(key id, nonce || ciphertext || tag)``.

        ``aad`` (the card id) must be given again, identical, to decrypt.
        """
        if not aad:
            raise ValueError("aad must bind the ciphertext to its owner (e.g. the card id)")
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._ciphers[self._current].encrypt(nonce, plaintext.encode("utf-8"), aad)
        return self._current, nonce + sealed

    def decrypt(self, key_id: str, blob: bytes, *, aad: bytes) -> str:
        """Decrypt a blob made by :meth:`encrypt`; raise :class:`VaultError` if it is not authentic."""
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            raise VaultError(f"unknown vault key id {key_id!r}")
        if len(blob) < NONCE_BYTES + TAG_BYTES:
            raise VaultError("vault ciphertext is too short")
        try:
            plaintext = cipher.decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], aad)
        except InvalidTag:
            raise VaultError("vault ciphertext failed authentication (tampered, wrong key or aad)") from None
        return plaintext.decode("utf-8")

    def rotate(self, key_id: str, blob: bytes, *, aad: bytes) -> tuple[str, bytes]:
        """Re-encrypt a blob under the current key (for the rotation job)."""
        return self.encrypt(self.decrypt(key_id, blob, aad=aad), aad=aad)

    def lookup_hash(self, pan: str) -> str:
        """Hex HMAC-SHA256 of the PAN (spaces and dashes ignored), stable across key rotation."""
        digits = _pan_digits(pan)
        return hmac.new(self._lookup_key, digits.encode("ascii"), hashlib.sha256).hexdigest()

    def __repr__(self) -> str:
        return f"Vault(current={self._current!r}, key_ids={list(self._ciphers)!r})"


def _pan_digits(pan: str) -> str:
    digits = pan.translate(_PAN_SEPARATORS)
    if not _PAN_RE.fullmatch(digits):
        # Never echo the input: it may be a real PAN.
        raise ValueError("a PAN must be 12 to 19 digits")
    return digits


def mask_pan(pan: str) -> str:
    """``"4111111111111234"`` -> ``"4111 11•• •••• 1234"``: first 6 and last 4 visible, groups of 4."""
    digits = _pan_digits(pan)
    shown = digits[:6] + _MASK * (len(digits) - 10) + digits[-4:]
    return " ".join(shown[i : i + 4] for i in range(0, len(shown), 4))


def last4(pan: str) -> str:
    """The last four digits of a PAN."""
    return _pan_digits(pan)[-4:]
