"""Sign-up, log-in, token refresh and API keys."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from veix.domain.api_keys import ApiKey
from veix.domain.errors import NotFound
from veix.domain.events import utcnow
from veix.domain.services import access as svc
from veix.domain.services import api_keys as key_svc
from veix.domain.team import Role
from veix.domain.users import User
from veix.domain.validation import parse_email, require_text
from veix.resolvers.context import Context
from veix.resolvers.ids import from_global_id
from veix.security.api_keys import generate_api_key
from veix.security.passwords import validate_new_password
from veix.security.tokens import hash_token, new_opaque_token


@dataclass(frozen=True, slots=True)
class Session:
    user: User
    access_token: str
    expires_at: datetime
    refresh_token: str


def _ttl(ctx: Context) -> timedelta:
    return timedelta(days=ctx.services.refresh_ttl_days)


async def _issue(ctx: Context, uow: object, user: User, now: datetime,
                 family_refresh: str | None = None) -> Session:
    token, expires = ctx.services.tokens.issue_access(user.id, now=now)
    return Session(user, token, expires, family_refresh or "")


async def sign_up(ctx: Context, *, email: str, password: str, name: str) -> Session:
    email = parse_email(email, field=["input", "email"])
    name = require_text(name, field=["input", "name"], max_len=200)
    validate_new_password(password)
    now = utcnow()
    refresh = new_opaque_token()
    async with ctx.uow() as uow:
        user = await svc.sign_up(uow, ctx.services.hasher, email=email, password=password,
                                 name=name, now=now)
        await svc.start_refresh_family(uow, user_id=user.id, token_hash=hash_token(refresh),
                                       now=now, ttl=_ttl(ctx))
        await uow.commit()
    return await _issue(ctx, None, user, now, refresh)


async def log_in(ctx: Context, *, email: str, password: str) -> Session:
    email = parse_email(email, field=["input", "email"])
    now = utcnow()
    refresh = new_opaque_token()
    async with ctx.uow() as uow:
        user = await svc.log_in(uow, ctx.services.hasher, email=email, password=password, now=now)
        await svc.start_refresh_family(uow, user_id=user.id, token_hash=hash_token(refresh),
                                       now=now, ttl=_ttl(ctx))
        uow.audit("user.log_in", "User", user.id, business_id=None)
        await uow.commit()
    return await _issue(ctx, None, user, now, refresh)


async def refresh(ctx: Context, *, refresh_token: str) -> Session:
    now = utcnow()
    new = new_opaque_token()
    async with ctx.uow() as uow:
        token = await svc.rotate_refresh_token(
            uow, presented_hash=hash_token(refresh_token), new_hash=hash_token(new), now=now,
            ttl=_ttl(ctx))
        user = await uow.users.get(token.user_id)
        assert user is not None
        await uow.commit()
    return await _issue(ctx, None, user, now, new)


async def create_api_key(ctx: Context, *, business_gid: str, name: str,
                         role: Role) -> tuple[ApiKey, str]:
    p = ctx.require_principal()
    business_id = from_global_id(business_gid, "Business", field=["businessId"])
    caller_role = await ctx.require(business_id, "api_keys:manage", field=["businessId"])
    name = require_text(name, field=["name"], max_len=100)
    if role is Role.OWNER and caller_role is not Role.OWNER:
        from veix.domain.errors import Forbidden

        raise Forbidden("Only an owner can create an owner API key", field=["role"])
    authz = ctx.services.authorizer
    if not authz.permissions_of(role.value) <= authz.permissions_of(caller_role.value):
        from veix.domain.errors import Forbidden

        raise Forbidden(f"Your role ({caller_role.name}) cannot create a {role.name} API key: "
                        "a key may not do more than its creator", field=["role"])
    generated = generate_api_key(ctx.services.live_keys)
    async with ctx.uow() as uow:
        key = await key_svc.create_api_key(
            uow, business_id=business_id, name=name, role=role, prefix=generated.prefix,
            key_hash=generated.hash, created_by=p.id if p.kind == "user" else None,
            now=utcnow())
        await uow.commit()
    return key, generated.secret


async def revoke_api_key(ctx: Context, *, key_gid: str) -> ApiKey:
    ctx.require_principal()
    key_id = from_global_id(key_gid, "ApiKey", field=["id"])
    async with ctx.uow() as uow:
        key = await key_svc.get_api_key(uow, key_id)
        if await ctx.role_in(key.business_id) is None:
            raise NotFound("API key not found", field=["id"])
        caller_role = await ctx.require(key.business_id, "api_keys:manage", field=["id"])
        authz = ctx.services.authorizer
        if not authz.permissions_of(key.role.value) <= authz.permissions_of(caller_role.value):
            from veix.domain.errors import Forbidden

            raise Forbidden(f"Your role ({caller_role.name}) cannot revoke a {key.role.name} "
                            "API key", field=["id"])
        key = await key_svc.revoke_api_key(uow, key=key, now=utcnow())
        await uow.commit()
    return key


def user_id_of(ctx: Context) -> uuid.UUID:
    return ctx.require_user().id
