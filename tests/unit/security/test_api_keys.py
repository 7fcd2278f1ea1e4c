"""Specification of partner API keys (veix.security.api_keys)."""

from __future__ import annotations

import hashlib
import re

import pytest

from veix.security.api_keys import (
    GeneratedKey,
    generate_api_key,
    hash_api_key,
    is_api_key,
    parse_api_key,
)

KEY_RE = re.compile(r"vx_(test|live)_[a-z0-9]{8}_[A-Za-z0-9_-]{32,}")


def test_test_key_has_the_documented_format() -> None:
    key = generate_api_key(live=False)
    assert KEY_RE.fullmatch(key.secret)
    assert key.secret.startswith("vx_test_")
    assert re.fullmatch(r"vx_test_[a-z0-9]{8}", key.prefix)


def test_live_key_has_the_live_prefix() -> None:
    key = generate_api_key(live=True)
    assert key.secret.startswith("vx_live_")
    assert re.fullmatch(r"vx_live_[a-z0-9]{8}", key.prefix)


def test_prefix_is_the_public_start_of_the_secret() -> None:
    key = generate_api_key(live=False)
    assert key.secret.startswith(key.prefix + "_")
    assert len(key.secret) - len(key.prefix) - 1 >= 32


def test_stored_hash_is_hex_sha256_of_the_full_key() -> None:
    key = generate_api_key(live=True)
    assert key.hash == hashlib.sha256(key.secret.encode()).hexdigest()
    assert key.hash == hash_api_key(key.secret)


def test_keys_are_unique() -> None:
    keys = [generate_api_key(live=False) for _ in range(50)]
    assert len({k.secret for k in keys}) == 50
    assert len({k.prefix for k in keys}) == 50


def test_repr_never_shows_the_secret() -> None:
    key = generate_api_key(live=True)
    assert key.secret not in repr(key)
    assert key.secret.split("_", 3)[3] not in repr(key)
    assert key.prefix in repr(key)


def test_generated_key_is_immutable() -> None:
    key = generate_api_key(live=False)
    with pytest.raises(AttributeError):
        key.hash = "x"  # type: ignore[misc]
    assert isinstance(key, GeneratedKey)


@pytest.mark.parametrize("live", [False, True])
def test_generated_key_parses_back_to_its_prefix(live: bool) -> None:
    key = generate_api_key(live=live)
    assert parse_api_key(key.secret) == key.prefix
    assert is_api_key(key.secret) is True


def test_secret_may_contain_underscores_and_dashes() -> None:
    token = "vx_test_ab12cd34_" + "_-" * 20
    assert parse_api_key(token) == "vx_test_ab12cd34"


@pytest.mark.parametrize(
    "token",
    [
        "",
        "vx_test_",
        "vx_test_ab12cd34",
        "vx_test_ab12cd34_",
        "vx_test_ab12cd34_" + "a" * 31,  # secret too short
        "vx_test_ab12cd34_" + "a" * 129,  # absurdly long
        "vx_prod_ab12cd34_" + "a" * 43,  # unknown mode
        "vx_test_AB12CD34_" + "a" * 43,  # lookup id must be lowercase
        "vx_test_ab12cd3_" + "a" * 43,  # lookup id too short
        "vx_test_ab12cd34x" + "a" * 43,  # missing separator
        "vx_test_ab12cd34_" + "a" * 42 + "!",  # not urlsafe
        "vx_test_ab12cd34_" + "a" * 43 + "\n",
        " vx_test_ab12cd34_" + "a" * 43,
        "Bearer vx_test_ab12cd34_" + "a" * 43,
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl",  # a JWT
        "vxr_" + "a" * 43,  # a refresh token
    ],
)
def test_anything_else_is_not_an_api_key(token: str) -> None:
    assert parse_api_key(token) is None
    assert is_api_key(token) is False
