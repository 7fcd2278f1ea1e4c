"""Specification of access and refresh tokens (veix.security.tokens)."""

from __future__ import annotations

import hashlib
import re
import uuid
from datetime import UTC, datetime, timedelta, timezone

import jwt
import pytest

from veix.domain.errors import Unauthenticated
from veix.security.tokens import (
    EXPIRED_MESSAGE,
    INVALID_MESSAGE,
    AccessClaims,
    TokenService,
    hash_token,
    new_opaque_token,
)

SECRET = "test-secret-key-" + "k" * 48  # 64 bytes: enough even for the HS512 test
USER = uuid.UUID("3f1c2a9e-8d4b-4f6a-9c1e-2b7d5e8a0f13")


@pytest.fixture
def service() -> TokenService:
    return TokenService(SECRET)


def _raw(token: str) -> dict[str, object]:
    return jwt.decode(token, options={"verify_signature": False})


def _forge(claims: dict[str, object], secret: str = SECRET, alg: str = "HS256") -> str:
    return jwt.encode(claims, secret, algorithm=alg)


def _valid_claims(**overrides: object) -> dict[str, object]:
    now = int(datetime.now(UTC).timestamp())
    claims: dict[str, object] = {
        "sub": str(USER),
        "iat": now,
        "exp": now + 600,
        "iss": "veix",
        "typ": "access",
        "jti": "x",
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def test_fresh_access_token_round_trips_to_its_user(service: TokenService) -> None:
    token, expires_at = service.issue_access(USER)
    claims = service.decode_access(token)
    assert claims == AccessClaims(user_id=USER, expires_at=expires_at, step_up_at=None)


def test_access_token_expires_after_fifteen_minutes_by_default(service: TokenService) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    _, expires_at = service.issue_access(USER, now=now)
    assert expires_at == now + timedelta(minutes=15)
    assert expires_at.tzinfo is UTC


def test_access_ttl_is_configurable() -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    _, expires_at = TokenService(SECRET, access_ttl=timedelta(minutes=5)).issue_access(
        USER, now=now
    )
    assert expires_at == now + timedelta(minutes=5)


def test_access_token_carries_the_documented_claims(service: TokenService) -> None:
    now = datetime(2030, 1, 2, 3, 4, 5, 678_000, tzinfo=UTC)
    token, expires_at = service.issue_access(USER, now=now)
    raw = _raw(token)
    assert jwt.get_unverified_header(token)["alg"] == "HS256"
    assert raw["sub"] == str(USER)
    assert raw["iat"] == int(now.timestamp())
    assert raw["exp"] == int(expires_at.timestamp()) == int(now.timestamp()) + 900
    assert raw["iss"] == "veix"
    assert raw["typ"] == "access"
    assert isinstance(raw["jti"], str) and raw["jti"]
    assert "su" not in raw


def test_each_access_token_has_a_unique_id(service: TokenService) -> None:
    now = datetime.now(UTC)
    a, _ = service.issue_access(USER, now=now)
    b, _ = service.issue_access(USER, now=now)
    assert _raw(a)["jti"] != _raw(b)["jti"]


def test_step_up_time_travels_in_the_token(service: TokenService) -> None:
    stepped = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=2)
    token, _ = service.issue_access(USER, step_up_at=stepped)
    assert _raw(token)["su"] == int(stepped.timestamp())
    assert service.decode_access(token).step_up_at == stepped


def test_non_utc_times_are_normalised_to_utc(service: TokenService) -> None:
    paris = datetime(2030, 6, 1, 14, 0, tzinfo=timezone(timedelta(hours=2)))
    _, expires_at = service.issue_access(USER, now=paris)
    assert expires_at == datetime(2030, 6, 1, 12, 15, tzinfo=UTC)
    assert expires_at.tzinfo is UTC


def test_naive_datetimes_are_refused(service: TokenService) -> None:
    with pytest.raises(ValueError):
        service.issue_access(USER, now=datetime(2030, 1, 1))
    with pytest.raises(ValueError):
        service.issue_access(USER, step_up_at=datetime(2030, 1, 1))


def test_expired_access_token_is_rejected(service: TokenService) -> None:
    token, _ = service.issue_access(USER, now=datetime.now(UTC) - timedelta(minutes=16))
    with pytest.raises(Unauthenticated) as caught:
        service.decode_access(token)
    assert caught.value.message == EXPIRED_MESSAGE


def test_token_expired_one_second_ago_is_rejected_without_leeway(service: TokenService) -> None:
    token, _ = service.issue_access(USER, now=datetime.now(UTC) - timedelta(minutes=15, seconds=1))
    with pytest.raises(Unauthenticated, match="expired"):
        service.decode_access(token)


def test_expired_and_invalid_tokens_have_distinct_messages() -> None:
    assert EXPIRED_MESSAGE != INVALID_MESSAGE
    assert "expired" in EXPIRED_MESSAGE.lower()
    assert "invalid" in INVALID_MESSAGE.lower()


def test_token_signed_with_another_secret_is_rejected_as_invalid(service: TokenService) -> None:
    token, _ = TokenService("another-secret-key-with-32-bytes-or-more").issue_access(USER)
    with pytest.raises(Unauthenticated) as caught:
        service.decode_access(token)
    assert caught.value.message == INVALID_MESSAGE


def test_tampered_payload_is_rejected(service: TokenService) -> None:
    token, _ = service.issue_access(USER)
    header, _payload, signature = token.split(".")
    other, _ = service.issue_access(uuid.uuid4())
    forged = ".".join([header, other.split(".")[1], signature])
    with pytest.raises(Unauthenticated, match="invalid"):
        service.decode_access(forged)


@pytest.mark.parametrize("garbage", ["", "abc", "a.b.c", "vx_test_ab12cd34_" + "x" * 43])
def test_garbage_is_rejected_as_invalid(service: TokenService, garbage: str) -> None:
    with pytest.raises(Unauthenticated) as caught:
        service.decode_access(garbage)
    assert caught.value.message == INVALID_MESSAGE


def test_unsigned_alg_none_token_is_rejected(service: TokenService) -> None:
    token = jwt.encode(_valid_claims(), "", algorithm="none")
    with pytest.raises(Unauthenticated, match="invalid"):
        service.decode_access(token)


def test_hs512_token_is_rejected_because_the_algorithm_is_pinned(service: TokenService) -> None:
    with pytest.raises(Unauthenticated, match="invalid"):
        service.decode_access(_forge(_valid_claims(), alg="HS512"))


def test_correctly_forged_claims_are_accepted(service: TokenService) -> None:
    # Guards the rejection tests below: only the one changed claim makes them fail.
    assert service.decode_access(_forge(_valid_claims())).user_id == USER


@pytest.mark.parametrize(
    "overrides",
    [
        {"iss": "someone-else"},
        {"iss": None},
        {"typ": "refresh"},
        {"typ": None},
        {"sub": None},
        {"sub": "not-a-uuid"},
        {"exp": None},
        {"iat": None},
        {"su": "yesterday"},
        {"su": True},
    ],
    ids=repr,
)
def test_token_with_wrong_or_missing_claims_is_rejected(
    service: TokenService, overrides: dict[str, object]
) -> None:
    with pytest.raises(Unauthenticated) as caught:
        service.decode_access(_forge(_valid_claims(**overrides)))
    assert caught.value.message == INVALID_MESSAGE


def test_token_issued_in_the_future_is_rejected(service: TokenService) -> None:
    token, _ = service.issue_access(USER, now=datetime.now(UTC) + timedelta(minutes=5))
    with pytest.raises(Unauthenticated, match="invalid"):
        service.decode_access(token)


def test_service_with_another_issuer_rejects_our_tokens(service: TokenService) -> None:
    token, _ = service.issue_access(USER)
    with pytest.raises(Unauthenticated, match="invalid"):
        TokenService(SECRET, issuer="veix-staging").decode_access(token)


def test_short_secret_key_is_refused() -> None:
    with pytest.raises(ValueError):
        TokenService("too-short")


def test_non_positive_ttl_is_refused() -> None:
    with pytest.raises(ValueError):
        TokenService(SECRET, access_ttl=timedelta(0))


def test_refresh_token_has_prefix_and_256_bits_of_randomness() -> None:
    token = new_opaque_token()
    assert re.fullmatch(r"vxr_[A-Za-z0-9_-]{43}", token)
    assert new_opaque_token() != token


def test_refresh_token_prefix_is_configurable() -> None:
    assert new_opaque_token(prefix="vxi_").startswith("vxi_")


def test_token_hash_is_hex_sha256_and_deterministic() -> None:
    token = new_opaque_token()
    assert hash_token(token) == hashlib.sha256(token.encode()).hexdigest()
    assert hash_token(token) == hash_token(token)
    assert re.fullmatch(r"[0-9a-f]{64}", hash_token(token))
    assert hash_token(token) != hash_token(new_opaque_token())
