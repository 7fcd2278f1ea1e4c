"""Answers to signed network requests, kept by webhook-id: a repeat gets the original."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from veix.domain.authorization import StoredAuth
from veix.persistence.repositories.authorizations import auth_from_row
from veix.persistence.tables import card_transactions, network_messages


async def _answer(conn: AsyncConnection, message_id: str) -> tuple[int, dict[str, Any]] | None:
    row = (await conn.execute(select(network_messages.c.status_code, network_messages.c.response)
                              .where(network_messages.c.id == message_id))).first()
    return (row.status_code, row.response) if row else None


async def stored(engine: AsyncEngine, message_id: str) -> tuple[int, dict[str, Any]] | None:
    async with engine.connect() as conn:
        return await _answer(conn, message_id)


async def store(engine: AsyncEngine, message_id: str, endpoint: str, status: int, response: dict[str, Any],
                now: datetime) -> tuple[int, dict[str, Any]]:
    """Insert unless answered before; return the answer that is kept (the first wins)."""
    async with engine.begin() as conn:
        insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
        await conn.execute(insert(network_messages).values(
            id=message_id, endpoint=endpoint, status_code=status, response=response,
            created_at=now).on_conflict_do_nothing(index_elements=["id"]))
        kept = await _answer(conn, message_id)
    assert kept is not None  # inserted now or before, in this transaction's view
    return kept


async def answered_before(engine: AsyncEngine, message_id: str | None,
                          network_id: str) -> tuple[int, dict[str, Any]] | StoredAuth | None:
    """What a request was answered before, if it is a redelivery: the answer kept
    under its webhook-id, else the card transaction of its network id; one read
    connection, no lock, nothing written."""
    async with engine.connect() as conn:
        if message_id is not None and (answer := await _answer(conn, message_id)) is not None:
            return answer
        auth = (await conn.execute(select(card_transactions)
                                   .where(card_transactions.c.network_id == network_id))).first()
    return auth_from_row(auth) if auth is not None else None
