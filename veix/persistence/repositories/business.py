"""Businesses."""

from __future__ import annotations

import uuid

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from veix.domain.business import Business
from veix.persistence import mappers as m
from veix.persistence.tables import businesses


class SqlBusinessRepository:
    def __init__(self, conn: AsyncConnection, for_update_ok: bool, collect: list[Business]) -> None:
        self.conn = conn
        self.for_update_ok = for_update_ok
        self._seen = collect

    async def get(self, business_id: uuid.UUID, *, for_update: bool = False) -> Business | None:
        stmt = select(businesses).where(businesses.c.id == business_id)
        if for_update and self.for_update_ok:
            stmt = stmt.with_for_update()
        row = (await self.conn.execute(stmt)).first()
        if row is None:
            return None
        business = m.business_from_row(row)
        self._seen.append(business)
        return business

    async def add(self, business: Business) -> None:
        await self.conn.execute(businesses.insert().values(m.business_values(business)))
        self._seen.append(business)

    async def save(self, business: Business) -> None:
        values = m.business_values(business)
        del values["id"]
        await self.conn.execute(
            update(businesses).where(businesses.c.id == business.id).values(values)
        )
        self._seen.append(business)
