"""Specification of the card-data vault (veix.security.vault)."""

from __future__ import annotations

import base64
import os

import pytest

from veix.security.vault import Vault, VaultError, last4, mask_pan

PAN = "4111111111111234"
CARD_A = b"card:3f1c2a9e-8d4b-4f6a-9c1e-2b7d5e8a0f13"
CARD_B = b"card:7a2d0c11-0b7e-4c55-8e0a-6d3f9b1c2e44"


def _key() -> bytes:
    return os.urandom(32)


def _entry(key_id: str, key: bytes) -> str:
    return f"{key_id}:{base64.b64encode(key).decode()}"


@pytest.fixture
def k1() -> bytes:
    return _key()


@pytest.fixture
def vault(k1: bytes) -> Vault:
    return Vault.from_setting(_entry("v1", k1))


def test_round_trip(vault: Vault) -> None:
    key_id, blob = vault.encrypt(PAN, aad=CARD_A)
    assert key_id == "v1" == vault.current_key_id
    assert PAN.encode() not in blob
    assert vault.decrypt(key_id, blob, aad=CARD_A) == PAN


def test_round_trip_non_ascii(vault: Vault) -> None:
    key_id, blob = vault.encrypt("Grüße €", aad=CARD_A)
    assert vault.decrypt(key_id, blob, aad=CARD_A) == "Grüße €"


def test_nonce_is_fresh_each_time(vault: Vault) -> None:
    _, one = vault.encrypt(PAN, aad=CARD_A)
    _, two = vault.encrypt(PAN, aad=CARD_A)
    assert one != two
    assert len(one) == 12 + len(PAN) + 16


def test_ciphertext_moved_to_another_card_fails(vault: Vault) -> None:
    key_id, blob = vault.encrypt(PAN, aad=CARD_A)
    with pytest.raises(VaultError) as err:
        vault.decrypt(key_id, blob, aad=CARD_B)
    assert PAN not in str(err.value)


def test_empty_aad_is_refused(vault: Vault) -> None:
    with pytest.raises(ValueError):
        vault.encrypt(PAN, aad=b"")


@pytest.mark.parametrize("position", [0, 5, 12, 20, -1])
def test_tampered_blob_fails(vault: Vault, position: int) -> None:
    key_id, blob = vault.encrypt(PAN, aad=CARD_A)
    tampered = bytearray(blob)
    tampered[position] ^= 0x01
    with pytest.raises(VaultError) as err:
        vault.decrypt(key_id, bytes(tampered), aad=CARD_A)
    assert PAN not in str(err.value)


@pytest.mark.parametrize("blob", [b"", b"x" * 27])
def test_truncated_blob_fails(vault: Vault, blob: bytes) -> None:
    with pytest.raises(VaultError):
        vault.decrypt("v1", blob, aad=CARD_A)


def test_unknown_key_id_fails(vault: Vault) -> None:
    _, blob = vault.encrypt(PAN, aad=CARD_A)
    with pytest.raises(VaultError, match="v9"):
        vault.decrypt("v9", blob, aad=CARD_A)


def test_vault_error_is_a_runtime_error() -> None:
    assert issubclass(VaultError, RuntimeError)


def test_wrong_key_with_same_id_fails(vault: Vault) -> None:
    key_id, blob = vault.encrypt(PAN, aad=CARD_A)
    other = Vault.from_setting(_entry("v1", _key()))
    with pytest.raises(VaultError):
        other.decrypt(key_id, blob, aad=CARD_A)


def test_rotation(k1: bytes, vault: Vault) -> None:
    old_id, old_blob = vault.encrypt(PAN, aad=CARD_A)
    rotated = Vault.from_setting(f"{_entry('v2', _key())},{_entry('v1', k1)}")

    assert rotated.current_key_id == "v2"
    assert rotated.key_ids == ("v2", "v1")
    assert rotated.decrypt(old_id, old_blob, aad=CARD_A) == PAN
    new_id, new_blob = rotated.encrypt("4000001234567899", aad=CARD_B)
    assert new_id == "v2"
    assert rotated.decrypt(new_id, new_blob, aad=CARD_B) == "4000001234567899"
    assert rotated.needs_rotation("v1") is True
    assert rotated.needs_rotation("v2") is False
    assert vault.needs_rotation("v1") is False
    # The old vault cannot read data under the new key.
    with pytest.raises(VaultError):
        vault.decrypt(new_id, new_blob, aad=CARD_B)


def test_rotate_reencrypts_under_current_key(k1: bytes, vault: Vault) -> None:
    old_id, old_blob = vault.encrypt(PAN, aad=CARD_A)
    rotated = Vault.from_setting(f"{_entry('v2', _key())},{_entry('v1', k1)}")
    new_id, new_blob = rotated.rotate(old_id, old_blob, aad=CARD_A)
    assert new_id == "v2"
    assert rotated.decrypt(new_id, new_blob, aad=CARD_A) == PAN


def test_setting_tolerates_spaces(k1: bytes) -> None:
    vault = Vault.from_setting(f" {_entry('v2', _key())} , {_entry('v1', k1)} ")
    assert vault.key_ids == ("v2", "v1")


def test_lookup_hash_is_stable_across_rotation(k1: bytes, vault: Vault) -> None:
    before = vault.lookup_hash(PAN)
    rotated = Vault.from_setting(f"{_entry('v2', _key())},{_entry('v1', k1)}")
    twice = Vault.from_setting(f"{_entry('v3', _key())},{_entry('v2', _key())},{_entry('v1', k1)}")
    assert rotated.lookup_hash(PAN) == before == twice.lookup_hash(PAN)
    assert len(before) == 64 and int(before, 16) >= 0
    assert PAN not in before


def test_lookup_hash_is_keyed_and_distinguishes_pans(vault: Vault) -> None:
    other = Vault.from_setting(_entry("v1", _key()))
    assert vault.lookup_hash(PAN) != other.lookup_hash(PAN)
    assert vault.lookup_hash(PAN) != vault.lookup_hash("4111111111111235")


def test_lookup_hash_ignores_spaces_and_dashes(vault: Vault) -> None:
    assert vault.lookup_hash("4111 1111 1111 1234") == vault.lookup_hash(PAN)
    assert vault.lookup_hash("4111-1111-1111-1234") == vault.lookup_hash(PAN)


def test_lookup_hash_with_explicit_secret(k1: bytes) -> None:
    secret = b"s" * 32
    one = Vault.from_setting(_entry("v1", k1), lookup_secret=secret)
    two = Vault.from_setting(_entry("v9", _key()), lookup_secret=secret)
    assert one.lookup_hash(PAN) == two.lookup_hash(PAN)
    assert one.lookup_hash(PAN) != Vault.from_setting(_entry("v1", k1)).lookup_hash(PAN)
    with pytest.raises(ValueError):
        Vault.from_setting(_entry("v1", k1), lookup_secret=b"short")


@pytest.mark.parametrize("length", [0, 16, 31, 33, 64])
def test_bad_key_lengths_are_refused(length: int) -> None:
    key = os.urandom(length)
    with pytest.raises(ValueError) as err:
        Vault.from_setting(_entry("v7", key))
    message = str(err.value)
    assert "v7" in message
    if key:
        assert base64.b64encode(key).decode() not in message


def test_bad_key_among_several_names_its_id(k1: bytes) -> None:
    with pytest.raises(ValueError, match="v1"):
        Vault.from_setting(f"{_entry('v2', _key())},{_entry('v1', k1[:16])}")


def test_invalid_base64_names_the_id_not_the_key() -> None:
    with pytest.raises(ValueError) as err:
        Vault.from_setting("v3:not*base64*at*all")
    assert "v3" in str(err.value)
    assert "not*base64" not in str(err.value)


@pytest.mark.parametrize("setting", ["", "   ", ",", "v1", "v1:", ":" + base64.b64encode(b"k" * 32).decode()])
def test_malformed_settings_are_refused(setting: str) -> None:
    with pytest.raises(ValueError):
        Vault.from_setting(setting)


def test_entry_without_id_does_not_echo_the_key() -> None:
    bare = base64.b64encode(os.urandom(32)).decode()
    with pytest.raises(ValueError) as err:
        Vault.from_setting(bare)
    assert bare not in str(err.value)


def test_duplicate_key_ids_are_refused(k1: bytes) -> None:
    with pytest.raises(ValueError, match="v1"):
        Vault.from_setting(f"{_entry('v1', k1)},{_entry('v1', _key())}")


def test_repr_hides_keys(k1: bytes) -> None:
    k2 = _key()
    vault = Vault.from_setting(f"{_entry('v2', k2)},{_entry('v1', k1)}")
    shown = repr(vault) + str(vault)
    assert "v2" in shown and "v1" in shown
    for key in (k1, k2):
        assert base64.b64encode(key).decode() not in shown
        assert key.hex() not in shown
        assert repr(key) not in shown


@pytest.mark.parametrize(
    ("pan", "masked"),
    [
        ("4111111111111234", "4111 11•• •••• 1234"),
        ("4111 1111 1111 1234", "4111 11•• •••• 1234"),
        ("5500000000000004", "5500 00•• •••• 0004"),
        ("378282246310005", "3782 82•• •••0 005"),
        ("4000001234567899012", "4000 00•• •••• •••9 012"),
    ],
)
def test_mask_pan(pan: str, masked: str) -> None:
    assert mask_pan(pan) == masked


def test_mask_shows_only_first_six_and_last_four() -> None:
    masked = mask_pan(PAN).replace(" ", "")
    assert masked[:6] == PAN[:6] and masked[-4:] == PAN[-4:]
    assert set(masked[6:-4]) == {"•"}


def test_last4() -> None:
    assert last4(PAN) == "1234"
    assert last4("4111 1111 1111 1234") == "1234"


@pytest.mark.parametrize("bad", ["", "1234", "4111x11111111234", "4" * 20, "٤١١١١١١١١١١١١٢٣٤"])
def test_bad_pans_are_refused_without_echo(bad: str, vault: Vault) -> None:
    for fn in (mask_pan, last4, vault.lookup_hash):
        with pytest.raises(ValueError) as err:
            fn(bad)
        if bad:
            assert bad not in str(err.value)
