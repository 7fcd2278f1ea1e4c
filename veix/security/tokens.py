"""Access and refresh tokens for people who log in.

Why two kinds: the access token is a short-lived, self-contained HS256 JWT that every request can
check without a database round trip; it cannot be revoked, so it lives only minutes. The refresh
token is an opaque random string stored hashed in the database, so it can be rotated on each use
and revoked at logout. The step-up time ("su") rides in the access token so resolvers can demand a
recent TOTP check (Strong Customer Authentication) without another lookup.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt

from veix.domain.errors import Unauthenticated

_ALGORITHM = "HS256"
_ACCESS_TYPE = "access"
# HS256 keys shorter than the 256-bit hash output weaken the MAC (RFC 7518, section 3.2).
MIN_SECRET_KEY_LENGTH = 32

EXPIRED_MESSAGE = "Access token has expired."
INVALID_MESSAGE = "Access token is invalid."


@dataclass(frozen=True, slots=True)
class AccessClaims:
    """What a verified access token says about its bearer."""

    user_id: uuid.UUID
    expires_at: datetime
    step_up_at: datetime | None


def _utc(moment: datetime, name: str) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware")
    return moment.astimezone(UTC)


class TokenService:
    """Issues and verifies access tokens signed with one shared secret."""

    def __init__(
        self,
        secret_key: str,
        access_ttl: timedelta = timedelta(minutes=15),
        issuer: str = "veix",
    ) -> None:
        if len(secret_key.encode()) < MIN_SECRET_KEY_LENGTH:
            raise ValueError(f"secret_key must be at least {MIN_SECRET_KEY_LENGTH} bytes")
        if access_ttl <= timedelta(0):
            raise ValueError("access_ttl must be positive")
        self._secret_key = secret_key
        self._access_ttl = access_ttl
        self._issuer = issuer

    def issue_access(
        self,
        user_id: uuid.UUID,
        *,
        step_up_at: datetime | None = None,
        now: datetime | None = None,
    ) -> tuple[str, datetime]:
        """Return a signed access token for ``user_id`` and the UTC moment it expires.

        JWT times are whole seconds, so ``now`` is truncated and the returned expiry is exactly
        the ``exp`` claim.
        """
        issued = _utc(now, "now") if now is not None else datetime.now(UTC)
        iat = int(issued.timestamp())
        exp = int((issued + self._access_ttl).timestamp())
        claims: dict[str, Any] = {
            "sub": str(user_id),
            "iat": iat,
            "exp": exp,
            "iss": self._issuer,
            "typ": _ACCESS_TYPE,
            "jti": uuid.uuid4().hex,
        }
        if step_up_at is not None:
            claims["su"] = int(_utc(step_up_at, "step_up_at").timestamp())
        token = jwt.encode(claims, self._secret_key, algorithm=_ALGORITHM)
        return token, datetime.fromtimestamp(exp, UTC)

    def decode_access(self, token: str) -> AccessClaims:
        """Verify ``token`` and return its claims, or raise :class:`Unauthenticated`.

        An expired token gets its own message so clients know to refresh rather than log in.
        """
        try:
            claims = jwt.decode(
                token,
                self._secret_key,
                algorithms=[_ALGORITHM],  # pinned: never trust the token's own "alg"
                issuer=self._issuer,
                leeway=0,
                options={"require": ["exp", "iat", "sub", "iss"]},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthenticated(EXPIRED_MESSAGE) from None
        except jwt.InvalidTokenError:
            raise Unauthenticated(INVALID_MESSAGE) from None

        if claims.get("typ") != _ACCESS_TYPE:
            raise Unauthenticated(INVALID_MESSAGE)
        try:
            user_id = uuid.UUID(claims["sub"])
        except (TypeError, ValueError):
            raise Unauthenticated(INVALID_MESSAGE) from None
        exp = claims["exp"]
        step_up = claims.get("su")
        if step_up is not None and (isinstance(step_up, bool) or not isinstance(step_up, int)):
            raise Unauthenticated(INVALID_MESSAGE)
        return AccessClaims(
            user_id=user_id,
            expires_at=datetime.fromtimestamp(exp, UTC),
            step_up_at=datetime.fromtimestamp(step_up, UTC) if step_up is not None else None,
        )


def new_opaque_token(prefix: str = "vxr_") -> str:
    """Return a fresh refresh token: ``prefix`` + 256 random bits, URL-safe base64."""
    return prefix + secrets.token_urlsafe(32)


def hash_token(plain: str) -> str:
    """Return the hex SHA-256 of an opaque token, the form stored in the database.

    A fast hash is right here, unlike for passwords: the token carries 256 bits of entropy from
    ``secrets``, so brute-forcing the preimage is infeasible however fast each guess is, and a
    deterministic hash lets the database look the token up by an index.
    """
    return hashlib.sha256(plain.encode()).hexdigest()
