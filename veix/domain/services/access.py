"""Sign-up, log-in (with throttling) and refresh-token rotation."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from veix.domain.api_keys import RefreshToken
from veix.domain.errors import Conflict, RateLimited, Unauthenticated
from veix.domain.events import DomainEvent
from veix.domain.ports import PasswordHasher, UnitOfWork
from veix.domain.users import (
    User,
    ensure_not_locked,
    record_failed_login,
    record_successful_login,
)

WRONG_CREDENTIALS = "Email or password is wrong"


async def sign_up(
    uow: UnitOfWork, hasher: PasswordHasher, *, email: str, password: str, name: str,
    now: datetime,
) -> User:
    """Create a user, or claim the invited placeholder of that email and join its teams."""
    existing = await uow.users.get_by_email(email, for_update=True)
    if existing is not None and existing.has_signed_up:
        raise Conflict("An account with this email exists: log in instead", field=["input", "email"])
    if existing is None:
        user = User(uuid.uuid4(), email, name, hasher.hash(password), now)
        await uow.users.add(user)
    else:
        user = existing
        user.name = name
        user.password_hash = hasher.hash(password)
        await uow.users.save(user)
        joined = await uow.memberships.claim_invitations(user.id, now)
        if joined:
            uow.emit(DomainEvent("user.joined_teams", None, {"user_id": str(user.id)}))
    uow.audit("user.sign_up", "User", user.id, business_id=None, after={"email": email})
    return user


async def log_in(
    uow: UnitOfWork, hasher: PasswordHasher, *, email: str, password: str, now: datetime
) -> User:
    user = await uow.users.get_by_email(email, for_update=True)
    if user is None or user.password_hash is None:
        hasher.dummy_verify(password)
        raise Unauthenticated(WRONG_CREDENTIALS)
    ensure_not_locked(user, now)
    if not hasher.verify(user.password_hash, password):
        record_failed_login(user, now)
        await uow.users.save(user)
        uow.audit("user.log_in_failed", "User", user.id, business_id=None)
        await uow.commit()
        if user.locked_until is not None and user.locked_until > now:
            raise RateLimited("Too many failed log-ins: the account is locked for 15 minutes")
        raise Unauthenticated(WRONG_CREDENTIALS)
    if user.failed_logins or user.locked_until:
        record_successful_login(user)
        await uow.users.save(user)
    return user


async def start_refresh_family(
    uow: UnitOfWork, *, user_id: uuid.UUID, token_hash: str, now: datetime, ttl: timedelta
) -> RefreshToken:
    token = RefreshToken(uuid.uuid4(), user_id, uuid.uuid4(), token_hash, now, now + ttl)
    await uow.refresh_tokens.add(token)
    return token


async def rotate_refresh_token(
    uow: UnitOfWork, *, presented_hash: str, new_hash: str, now: datetime, ttl: timedelta
) -> RefreshToken:
    """Exchange a refresh token for a new one of the same family.

    Presenting a token that was already rotated means it leaked (or a client
    replayed it): the whole family is revoked, so the thief's copy dies too.
    """
    token = await uow.refresh_tokens.get_by_hash(presented_hash)
    if token is None or token.revoked_at is not None or token.expires_at <= now:
        raise Unauthenticated("Refresh token is invalid, expired or revoked")
    if token.rotated_at is not None or not await uow.refresh_tokens.mark_rotated(token.id, now):
        await uow.refresh_tokens.revoke_family(token.family_id, now)
        uow.audit("user.refresh_token_reused", "User", token.user_id, business_id=None,
                  after={"family_id": str(token.family_id)})
        await uow.commit()
        raise Unauthenticated("Refresh token was already used: every session of it is revoked")
    new = RefreshToken(uuid.uuid4(), token.user_id, token.family_id, new_hash, now, now + ttl)
    await uow.refresh_tokens.add(new)
    return new
