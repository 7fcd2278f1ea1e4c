"""Users, memberships, API keys and refresh tokens."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from veix.domain.api_keys import ApiKey, RefreshToken
from veix.domain.events import utcnow
from veix.domain.team import Membership, Role
from veix.domain.users import User
from veix.persistence import mappers as m
from veix.persistence.engine import WRITE
from veix.persistence.tables import api_keys, memberships, refresh_tokens, users


class _Repo:
    def __init__(self, conn: AsyncConnection, for_update_ok: bool) -> None:
        self.conn = conn
        # SQLite has no SELECT ... FOR UPDATE; its write transactions are already exclusive.
        self.for_update_ok = for_update_ok


class SqlUserRepository(_Repo):
    async def get(self, user_id: uuid.UUID) -> User | None:
        row = (await self.conn.execute(select(users).where(users.c.id == user_id))).first()
        return m.user_from_row(row) if row else None

    async def get_by_email(self, email: str, *, for_update: bool = False) -> User | None:
        stmt = select(users).where(users.c.email == email)
        if for_update and self.for_update_ok:
            stmt = stmt.with_for_update()
        row = (await self.conn.execute(stmt)).first()
        return m.user_from_row(row) if row else None

    async def add(self, user: User) -> None:
        await self.conn.execute(users.insert().values(m.user_values(user, user.created_at)))

    async def save(self, user: User) -> None:
        values = m.user_values(user, utcnow())
        del values["id"], values["created_at"]
        await self.conn.execute(update(users).where(users.c.id == user.id).values(values))


class SqlMembershipRepository(_Repo):
    async def get(self, membership_id: uuid.UUID) -> Membership | None:
        stmt = select(memberships).where(memberships.c.id == membership_id)
        row = (await self.conn.execute(stmt)).first()
        return m.membership_from_row(row) if row else None

    async def get_for(self, business_id: uuid.UUID, user_id: uuid.UUID) -> Membership | None:
        stmt = select(memberships).where(
            memberships.c.business_id == business_id, memberships.c.user_id == user_id
        )
        row = (await self.conn.execute(stmt)).first()
        return m.membership_from_row(row) if row else None

    async def add(self, membership: Membership) -> None:
        await self.conn.execute(memberships.insert().values(m.membership_values(membership)))

    async def save(self, membership: Membership) -> None:
        values = m.membership_values(membership)
        await self.conn.execute(
            update(memberships).where(memberships.c.id == membership.id).values(values)
        )

    async def delete(self, membership: Membership) -> None:
        await self.conn.execute(delete(memberships).where(memberships.c.id == membership.id))

    async def count_owners(self, business_id: uuid.UUID) -> int:
        # Only owners who joined: a pending invitation cannot run the business.
        stmt = select(func.count()).where(
            memberships.c.business_id == business_id, memberships.c.role == Role.OWNER.value,
            memberships.c.joined_at.is_not(None),
        )
        return int((await self.conn.execute(stmt)).scalar_one())

    async def claim_invitations(self, user_id: uuid.UUID, now: datetime) -> int:
        result = await self.conn.execute(
            update(memberships)
            .where(memberships.c.user_id == user_id, memberships.c.joined_at.is_(None))
            .values(joined_at=now)
        )
        return int(result.rowcount)


class SqlApiKeyRepository(_Repo):
    async def get(self, key_id: uuid.UUID) -> ApiKey | None:
        row = (await self.conn.execute(select(api_keys).where(api_keys.c.id == key_id))).first()
        return m.api_key_from_row(row) if row else None

    async def add(self, key: ApiKey) -> None:
        await self.conn.execute(api_keys.insert().values(m.api_key_values(key)))

    async def save(self, key: ApiKey) -> None:
        values = m.api_key_values(key)
        await self.conn.execute(update(api_keys).where(api_keys.c.id == key.id).values(values))


class SqlRefreshTokenRepository(_Repo):
    async def get_by_hash(self, token_hash: str) -> RefreshToken | None:
        stmt = select(refresh_tokens).where(refresh_tokens.c.token_hash == token_hash)
        if self.for_update_ok:
            stmt = stmt.with_for_update()
        row = (await self.conn.execute(stmt)).first()
        return m.refresh_from_row(row) if row else None

    async def add(self, token: RefreshToken) -> None:
        await self.conn.execute(
            refresh_tokens.insert().values(
                id=token.id, user_id=token.user_id, family_id=token.family_id,
                token_hash=token.token_hash, issued_at=token.issued_at,
                expires_at=token.expires_at, rotated_at=token.rotated_at,
                revoked_at=token.revoked_at,
            )
        )

    async def mark_rotated(self, token_id: uuid.UUID, now: datetime) -> bool:
        """Atomically rotate: False if another request rotated it first."""
        result = await self.conn.execute(
            update(refresh_tokens)
            .where(refresh_tokens.c.id == token_id, refresh_tokens.c.rotated_at.is_(None))
            .values(rotated_at=now)
        )
        return bool(result.rowcount == 1)

    async def revoke_family(self, family_id: uuid.UUID, now: datetime) -> None:
        await self.conn.execute(
            update(refresh_tokens)
            .where(refresh_tokens.c.family_id == family_id, refresh_tokens.c.revoked_at.is_(None))
            .values(revoked_at=now)
        )


async def touch_api_key(engine: AsyncEngine, key_id: uuid.UUID, now: datetime) -> None:
    """Record a key's last use in a write transaction of its own: on SQLite, a write on a
    connection that already read cannot upgrade its snapshot and fails at once with
    "database is locked" when another writer committed meanwhile."""
    async with engine.connect() as conn:
        conn = await conn.execution_options(**WRITE)
        async with conn.begin():
            await conn.execute(update(api_keys).where(api_keys.c.id == key_id).values(last_used_at=now))
