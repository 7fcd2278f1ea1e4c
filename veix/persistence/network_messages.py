"""Answers to signed network requests, kept by webhook-id: a repeat gets the original."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

from veix.persistence.tables import network_messages


async def stored(engine: AsyncEngine, message_id: str) -> tuple[int, dict[str, Any]] | None:
    async with engine.connect() as conn:
        row = (await conn.execute(select(network_messages.c.status_code, network_messages.c.response)
                                  .where(network_messages.c.id == message_id))).first()
    return (row.status_code, row.response) if row else None


async def store(engine: AsyncEngine, message_id: str, endpoint: str, status: int, response: dict[str, Any],
                now: datetime) -> tuple[int, dict[str, Any]]:
    """Insert unless answered before; return the answer that is kept (the first wins)."""
    async with engine.begin() as conn:
        insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
        await conn.execute(insert(network_messages).values(
            id=message_id, endpoint=endpoint, status_code=status, response=response,
            created_at=now).on_conflict_do_nothing(index_elements=["id"]))
        row = (await conn.execute(select(network_messages.c.status_code, network_messages.c.response)
                                  .where(network_messages.c.id == message_id))).one()
    return row.status_code, row.response
