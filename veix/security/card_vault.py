"""The domain's CardVault port over the AES-256-GCM vault.

PAN and CVV are encrypted with the card id as associated data, so a ciphertext
copied onto another card's row does not decrypt.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from veix.security.vault import Vault, last4, mask_pan


@dataclass(frozen=True, slots=True)
class Sealed:
    key_id: str
    pan_blob: bytes
    cvv_blob: bytes
    lookup_hash: str
    masked_number: str
    last4: str

    def __repr__(self) -> str:  # never print ciphertexts or hashes into logs
        return f"Sealed(key_id={self.key_id!r}, masked_number={self.masked_number!r})"


class VaultCardStore:
    def __init__(self, vault: Vault) -> None:
        self.vault = vault

    def seal(self, card_id: uuid.UUID, pan: str, cvv: str) -> Sealed:
        key_id, pan_blob = self.vault.encrypt(pan, aad=b"pan:" + card_id.bytes)
        key_id_cvv, cvv_blob = self.vault.encrypt(cvv, aad=b"cvv:" + card_id.bytes)
        assert key_id == key_id_cvv
        return Sealed(key_id, pan_blob, cvv_blob, self.vault.lookup_hash(pan), mask_pan(pan), last4(pan))

    def open(self, card_id: uuid.UUID, key_id: str, pan_blob: bytes, cvv_blob: bytes) -> tuple[str, str]:
        pan = self.vault.decrypt(key_id, pan_blob, aad=b"pan:" + card_id.bytes)
        cvv = self.vault.decrypt(key_id, cvv_blob, aad=b"cvv:" + card_id.bytes)
        return pan, cvv

    def lookup_hash(self, pan: str) -> str:
        return self.vault.lookup_hash(pan)

    def reseal(self, card_id: uuid.UUID, key_id: str, pan_blob: bytes,
               cvv_blob: bytes) -> tuple[str, bytes, bytes] | None:
        """Re-encrypt under the current key (``veix vault rotate``); None if already current."""
        if not self.vault.needs_rotation(key_id):
            return None
        pan, cvv = self.open(card_id, key_id, pan_blob, cvv_blob)
        new = self.seal(card_id, pan, cvv)
        return new.key_id, new.pan_blob, new.cvv_blob
