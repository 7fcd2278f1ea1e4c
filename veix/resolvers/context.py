"""Per-request context: who is calling, what they may do, batched loaders and
the one read connection every loader of the request shares."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncConnection
from strawberry.dataloader import DataLoader

from veix.domain.errors import Forbidden, NotFound, Unauthenticated
from veix.domain.events import utcnow
from veix.domain.team import Membership, Role
from veix.persistence import queries as q
from veix.persistence.repositories.access import touch_api_key
from veix.persistence.uow import Actor, SqlUnitOfWork
from veix.resolvers.services import Services
from veix.security.api_keys import hash_api_key, parse_api_key
from veix.security.tokens import AccessClaims

T = TypeVar("T")
K = TypeVar("K")


@dataclass(frozen=True, slots=True)
class Principal:
    kind: str  # "user" | "api_key"
    id: uuid.UUID
    # For API keys: the one business and role the key is scoped to.
    business_id: uuid.UUID | None = None
    role: Role | None = None
    claims: AccessClaims | None = None


@dataclass
class Context:
    services: Services
    request_id: str
    principal: Principal | None = None
    auth_error: str | None = None
    _conn: AsyncConnection | None = None
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _roles: dict[uuid.UUID, Role] | None = None
    loaders: dict[str, DataLoader[Any, Any]] = field(default_factory=dict)

    # ------------------------------------------------------------ database
    async def read(self, fn: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        """Run a read on the request's connection (serialised: one driver connection).

        Every read of a request runs in one transaction, so a response answers from one
        snapshot: a write that commits while the request is resolved shows in all of its
        fields or in none (never a transaction ``SUCCEEDED`` next to the dispute that made
        it ``DISPUTED``). On PostgreSQL that is a ``REPEATABLE READ READ ONLY`` transaction
        (its snapshot is taken at the first statement); on SQLite the read transaction
        that the engine begins (``BEGIN`` in WAL mode) already is one. A write
        (:meth:`uow`) gives the connection back first, so what is read after it is read
        afresh. Websockets give it back between two events (``subscriptions.release``)."""
        async with self._lock:
            if self._conn is None:
                conn = await self.services.engine.connect()
                if conn.dialect.name == "postgresql":
                    conn = await conn.execution_options(isolation_level="REPEATABLE READ",
                                                        postgresql_readonly=True)
                self._conn = conn
            return await fn(self._conn)

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()
            self._conn = None

    @contextlib.asynccontextmanager
    async def uow(self) -> AsyncIterator[SqlUnitOfWork]:
        """A write transaction. The read connection is given back first, so a
        request never holds two connections (the pool cannot be exhausted by
        requests that each wait for a second one)."""
        async with self._lock:
            await self.close()
        actor = Actor(self.principal.kind, str(self.principal.id)) if self.principal else Actor(
            "anonymous", None)
        async with SqlUnitOfWork(self.services.engine, actor=actor,
                                 request_id=self.request_id) as uow:
            yield uow

    def loader(self, name: str, batch: Callable[[list[K]], Awaitable[Sequence[T]]]) -> DataLoader[K, T]:
        existing = self.loaders.get(name)
        if existing is None:
            existing = DataLoader(load_fn=batch)  # type: ignore[arg-type]
            self.loaders[name] = existing
        return existing

    # ------------------------------------------------------------ identity
    def require_user(self) -> Principal:
        if self.principal is None:
            raise Unauthenticated(self.auth_error or "Authentication required")
        if self.principal.kind != "user":
            raise Forbidden("This operation needs a person's access token, not an API key")
        return self.principal

    def require_principal(self) -> Principal:
        if self.principal is None:
            raise Unauthenticated(self.auth_error or "Authentication required")
        return self.principal

    async def roles(self) -> dict[uuid.UUID, Role]:
        """Business id -> role of the caller; loaded once per request."""
        if self._roles is None:
            p = self.require_principal()
            if p.kind == "api_key":
                assert p.business_id is not None and p.role is not None
                self._roles = {p.business_id: p.role}
            else:
                mine = await self.read(lambda c: q.memberships_of_users(c, [p.id]))
                self._roles = {ms.business_id: ms.role for ms in mine.get(p.id, [])}
        return self._roles

    async def role_in(self, business_id: uuid.UUID) -> Role | None:
        return (await self.roles()).get(business_id)

    async def require(self, business_id: uuid.UUID, permission: str, *, field: list[str]) -> Role:
        """The caller's role in the business, if it grants ``permission``.

        Not a member: NOT_FOUND, exactly like a business that does not exist,
        so IDs of other tenants cannot be probed. A member without the
        permission: FORBIDDEN.
        """
        role = await self.role_in(business_id)
        if role is None:
            raise NotFound("Not found", field=field)
        if not self.services.authorizer.allowed(role.value, permission):
            raise Forbidden(f"Your role ({role.name}) does not allow {permission}", field=field)
        return role

    async def can(self, business_id: uuid.UUID, permission: str) -> bool:
        role = await self.role_in(business_id)
        return role is not None and self.services.authorizer.allowed(role.value, permission)

    def forget_roles(self) -> None:
        self._roles = None


async def authenticate(ctx: Context, authorization: str | None) -> None:
    """Resolve ``Authorization: Bearer <access token | API key>`` into a principal."""
    if not authorization:
        return
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        ctx.auth_error = "Authorization header must be 'Bearer <token>'"
        return
    prefix = parse_api_key(token)
    if prefix is not None:
        key = await ctx.read(lambda c: q.api_key_by_prefix(c, prefix))
        if key is None or not hmac.compare_digest(key.key_hash, hash_api_key(token)):
            ctx.auth_error = "Invalid API key"
            return
        if key.revoked_at is not None:
            ctx.auth_error = "This API key has been revoked"
            return
        ctx.principal = Principal("api_key", key.id, key.business_id, key.role)
        now = utcnow()
        if key.last_used_at is None or now - key.last_used_at > timedelta(minutes=1):
            await touch_api_key(ctx.services.engine, key.id, now)
        return
    claims = _verified_tokens.get(token)
    if claims is None or claims.expires_at <= utcnow():
        try:
            claims = ctx.services.tokens.decode_access(token)
        except Unauthenticated as exc:
            _verified_tokens.pop(token, None)
            ctx.auth_error = exc.message
            return
        if len(_verified_tokens) >= _TOKEN_CACHE_SIZE:
            _verified_tokens.pop(next(iter(_verified_tokens)))
        _verified_tokens[token] = claims
    ctx.principal = Principal("user", claims.user_id, claims=claims)


# Verifying a JWT costs more than the rest of a small query. A token that
# verified once stays valid until its expiry (checked on every use), so the
# claims are kept per token string, oldest evicted first.
_TOKEN_CACHE_SIZE = 10_000
_verified_tokens: dict[str, AccessClaims] = {}


def membership_visible(ctx_roles: dict[uuid.UUID, Role], member: Membership) -> bool:
    return member.business_id in ctx_roles
