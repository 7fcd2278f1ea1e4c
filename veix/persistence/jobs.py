"""Background jobs: hold expiry, card expiry, risk history and outbox pruning, vault key rotation.

Run by ``veix worker`` (every interval) and ``veix jobs run-once`` /
``veix vault rotate``. Each item is handled in its own short transaction
through the domain use cases, so a job never holds locks for long, a failure
affects one item, and the server keeps deciding authorizations meanwhile.

Candidates are read in keyset pages (``id > last``) without locks, then each is
locked and re-checked in its own unit of work. On PostgreSQL that lock is
``FOR UPDATE SKIP LOCKED``: a row another transaction holds (an authorization,
a clearing, a second worker) is skipped, not waited for, and found by a later
run. Lock order follows the authorization path (card first, then its
authorization) so the two cannot deadlock. On SQLite, write transactions are
serial (``BEGIN IMMEDIATE``), which gives the same guarantees.

All jobs are idempotent: what is done no longer matches their query.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Float, Select, cast, delete, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from veix.domain.authorization import AuthorizationStatus
from veix.domain.cards import CardStatus
from veix.domain.errors import VeixError
from veix.domain.events import utcnow
from veix.domain.services import cards as card_svc
from veix.domain.services import settlement
from veix.domain.services.authorize import history_window, velocity_window
from veix.persistence.engine import WRITE
from veix.persistence.repositories.authorizations import auth_from_row
from veix.persistence.repositories.cards import card_from_row
from veix.persistence.tables import (
    DISPATCHED_SEQ,
    card_merchants,
    card_risk_days,
    card_risk_minutes,
    card_transactions,
    outbox,
    users,
    virtual_cards,
)
from veix.persistence.uow import Actor, SqlUnitOfWork
from veix.security.card_vault import VaultCardStore
from veix.security.vault import VaultError

log = logging.getLogger("veix.jobs")

WORKER = Actor("system", "veix worker")
DEFAULT_BATCH = 500
CLOSED_STATES = (CardStatus.CLOSED.value, CardStatus.EXPIRED.value)


def _pg(conn: AsyncConnection) -> bool:
    return conn.dialect.name == "postgresql"


def _skip_locked(stmt: Select[Any], pg: bool, **kw: Any) -> Select[Any]:
    return stmt.with_for_update(skip_locked=True, **kw) if pg else stmt


async def _page(engine: AsyncEngine, stmt: Select[Any], id_col: Any, after: Any, batch: int) -> list[Any]:
    """The next page of candidate rows after ``after`` (by id), unlocked."""
    if after is not None:
        stmt = stmt.where(id_col > after)
    async with engine.connect() as conn:
        return list((await conn.execute(stmt.order_by(id_col).limit(batch))).all())


# ------------------------------------------------------------------ holds
def _held(pg: bool) -> Any:
    # Money is NUMERIC on PostgreSQL and canonical TEXT on SQLite.
    ct = card_transactions
    return ct.c.held_amount > Decimal(0) if pg else cast(ct.c.held_amount, Float) > 0


def _due_holds(now: datetime, pg: bool) -> Any:
    ct = card_transactions
    return (ct.c.status == AuthorizationStatus.APPROVED.value) & (ct.c.hold_expires_at < now) & _held(pg)


async def expire_holds(engine: AsyncEngine, now: datetime, batch: int = DEFAULT_BATCH) -> int:
    """Release the holds the network never cleared (``hold_expires_at`` < ``now``).

    Each goes through ``settlement.expire_hold`` in its own unit of work.
    Returns how many holds were released.
    """
    pg = engine.dialect.name == "postgresql"
    ct = card_transactions
    candidates = select(ct.c.id, ct.c.card_id).where(_due_holds(now, pg))
    done, after = 0, None
    while rows := await _page(engine, candidates, ct.c.id, after, batch):
        for row in rows:
            try:
                done += await _expire_hold(engine, row.id, row.card_id, now)
            except VeixError:
                # One inconsistent hold must not block the others; it is retried next run.
                log.exception("could not release the hold of card transaction %s", row.id)
        after = rows[-1].id
    return done


async def _expire_hold(engine: AsyncEngine, auth_id: uuid.UUID, card_id: uuid.UUID, now: datetime) -> bool:
    async with SqlUnitOfWork(engine, actor=WORKER) as uow:
        pg = _pg(uow.conn)
        await uow.cards.get(card_id, for_update=True)  # the authorization path's lock order
        ct = card_transactions
        stmt = _skip_locked(select(ct).where(ct.c.id == auth_id, _due_holds(now, pg)), pg)
        row = (await uow.conn.execute(stmt)).first()
        if row is None:  # released, cleared or reversed meanwhile, or busy (next run)
            return False
        await settlement.expire_hold(uow, auth_from_row(row), now)
        await uow.commit()
    return True


# ------------------------------------------------------------------ cards
def _due_cards(today: date) -> Any:
    vc = virtual_cards
    return (vc.c.expiry_date < today) & vc.c.status.not_in(CLOSED_STATES)


async def expire_cards(engine: AsyncEngine, today: date, *, now: datetime | None = None,
                       batch: int = DEFAULT_BATCH) -> int:
    """Mark cards past their expiry date (UTC ``today``) EXPIRED; a prepaid balance goes back.

    Returns how many cards expired.
    """
    now = now or utcnow()
    vc = virtual_cards
    candidates = select(vc.c.id).where(_due_cards(today))
    done, after = 0, None
    while rows := await _page(engine, candidates, vc.c.id, after, batch):
        for row in rows:
            try:
                done += await _expire_card(engine, row.id, today, now)
            except VeixError:
                log.exception("could not expire card %s", row.id)
        after = rows[-1].id
    return done


async def _expire_card(engine: AsyncEngine, card_id: uuid.UUID, today: date, now: datetime) -> bool:
    async with SqlUnitOfWork(engine, actor=WORKER) as uow:
        vc = virtual_cards
        stmt = _skip_locked(select(vc).where(vc.c.id == card_id, _due_cards(today)), _pg(uow.conn))
        row = (await uow.conn.execute(stmt)).first()
        if row is None:
            return False
        await card_svc.change_status(uow, card_from_row(row), CardStatus.EXPIRED, now=now,
                                     action="card.expire")
        await uow.commit()
    return True


# ------------------------------------------------------------------ risk history
async def prune_risk_history(engine: AsyncEngine, now: datetime, batch: int = DEFAULT_BATCH) -> int:
    """Delete what left the fraud score's windows: the minutes before the
    velocity windows (velocity_window: an hour ago), the day aggregates of days
    before the history's first day (history_window) and, when some were
    deleted (about once a UTC day: the day that just left), the merchants not
    seen since its start. Reads filter by the windows anyway, so this only
    bounds the tables' size; the merchant set is scanned at most once per day
    that left. The minutes go in one statement: a decision writes only the
    current minute, so nobody waits for the rows deleted.

    Returns how many rows were deleted.
    """
    first_day, since = history_window(now)
    rm, rd, cm = card_risk_minutes, card_risk_days, card_merchants
    async with engine.connect() as conn:
        conn = await conn.execution_options(**WRITE)
        async with conn.begin():
            minutes = int((await conn.execute(
                delete(rm).where(rm.c.minute < velocity_window(now)[1]))).rowcount or 0)
    days = await _delete_in_batches(engine, rd, (rd.c.card_id, rd.c.day), rd.c.day < first_day, batch)
    if not days:
        return minutes
    return minutes + days + await _delete_in_batches(engine, cm, (cm.c.card_id, cm.c.merchant_key),
                                                     cm.c.last_seen_at < since, batch)


async def _delete_in_batches(engine: AsyncEngine, table: Any, key: tuple[Any, ...], due: Any, batch: int) -> int:
    done = 0
    while True:
        async with engine.connect() as conn:
            conn = await conn.execution_options(**WRITE)
            async with conn.begin():
                chosen = select(*key).where(due).limit(batch)
                result = await conn.execute(delete(table).where(tuple_(*key).in_(chosen)))
        deleted = int(result.rowcount or 0)
        done += deleted
        if deleted < batch:
            return done


# ------------------------------------------------------------------ outbox
async def prune_outbox(engine: AsyncEngine, before: datetime, batch: int = DEFAULT_BATCH,
                       most: int = 100_000) -> int:
    """Delete the outbox's oldest events, those both dispatched (at or below the
    dispatcher's cursor) and created before ``before`` (the worker passes the
    replay window: a subscriber resumes at most that far back, and webhook
    deliveries keep their own copy). Events are taken in ``seq`` order, a page at a
    time, and only while they are old enough, so each page is a range of the primary
    key: no scan of the table, whatever its size. (``created_at`` follows ``seq``
    to within a transaction's length: an event held back by an older neighbour
    goes a page later.) At most ``most`` events a call (whole pages), so a first run over a
    large backlog does not hold up the worker's other jobs: the next run goes on.

    Returns how many events were deleted.
    """
    done = 0
    while done < most:
        async with engine.connect() as conn:
            conn = await conn.execution_options(**WRITE)
            async with conn.begin():
                page = (await conn.execute(
                    select(outbox.c.seq, outbox.c.created_at).where(outbox.c.seq <= DISPATCHED_SEQ)
                    .order_by(outbox.c.seq).limit(batch))).all()
                due = 0
                while due < len(page) and page[due].created_at < before:
                    due += 1
                if due:
                    await conn.execute(delete(outbox).where(outbox.c.seq.between(page[0].seq, page[due - 1].seq)))
        done += due
        if due < batch:
            return done
    return done


# ------------------------------------------------------------------ vault rotation
@dataclass(slots=True)
class RotationReport:
    cards: int = 0
    step_up_secrets: int = 0
    failed: list[str] = field(default_factory=list)  # ids whose data would not decrypt
    skipped_step_up: int = 0  # step-up secrets not in the "keyid:base64" format
    remaining: int = 0  # still under an old key (locked by others during every pass)


async def rotate_vault(engine: AsyncEngine, store: VaultCardStore, *, batch: int = DEFAULT_BATCH,
                       passes: int = 3, pause: float = 0.5) -> RotationReport:
    """Re-encrypt every card (and step-up secret) not under the vault's current key.

    Each batch is one short transaction; rows locked by others are skipped and
    retried in a later pass (up to ``passes``, ``pause`` seconds apart).
    Running it again rotates 0.
    """
    report = RotationReport()
    failed_cards: set[Any] = set()
    failed_users: set[Any] = set()
    for attempt in range(passes):
        if attempt:
            await asyncio.sleep(pause)
        report.cards += await _rotate_cards(engine, store, batch, failed_cards, report)
        report.step_up_secrets += await _rotate_step_up(engine, store, batch, failed_users, report)
        report.remaining = await _count_old(engine, store, failed_cards, failed_users)
        if report.remaining == 0:
            break
    return report


async def _count_old(engine: AsyncEngine, store: VaultCardStore, failed_cards: set[Any],
                     failed_users: set[Any]) -> int:
    """Rows still under an old key that a next pass could rotate (failures excluded)."""
    vault = store.vault
    current = vault.current_key_id
    async with engine.connect() as conn:
        cards = {r.id for r in await conn.execute(
            select(virtual_cards.c.id).where(virtual_cards.c.vault_key_id != current))}
        secrets = await conn.execute(select(users.c.id, users.c.step_up_secret).where(
            users.c.step_up_secret.is_not(None), ~users.c.step_up_secret.startswith(f"{current}:")))
        old_users = {r.id for r in secrets if _split_sealed(r.step_up_secret, vault.key_ids) is not None}
    return len(cards - failed_cards) + len(old_users - failed_users)


async def _rotate_cards(engine: AsyncEngine, store: VaultCardStore, batch: int, failed: set[Any],
                        report: RotationReport) -> int:
    vc = virtual_cards
    current = store.vault.current_key_id
    rotated, after = 0, None
    while True:
        async with engine.connect() as conn:
            conn = await conn.execution_options(**WRITE)
            async with conn.begin():
                stmt = select(vc.c.id, vc.c.vault_key_id, vc.c.card_number_encrypted, vc.c.cvv_encrypted) \
                    .where(vc.c.vault_key_id != current)
                if after is not None:
                    stmt = stmt.where(vc.c.id > after)
                stmt = _skip_locked(stmt.order_by(vc.c.id).limit(batch), _pg(conn))
                rows = (await conn.execute(stmt)).all()
                for row in rows:
                    try:
                        new = store.reseal(row.id, row.vault_key_id, row.card_number_encrypted,
                                           row.cvv_encrypted)
                    except VaultError as exc:
                        if row.id not in failed:
                            failed.add(row.id)
                            report.failed.append(f"card {row.id}: {exc}")
                        continue
                    if new is None:
                        continue
                    key_id, pan_blob, cvv_blob = new
                    await conn.execute(update(vc).where(vc.c.id == row.id,
                                                        vc.c.vault_key_id == row.vault_key_id)
                                       .values(vault_key_id=key_id, card_number_encrypted=pan_blob,
                                               cvv_encrypted=cvv_blob))
                    rotated += 1
        if len(rows) < batch:
            return rotated
        after = rows[-1].id


def _split_sealed(value: str, key_ids: tuple[str, ...]) -> tuple[str, bytes] | None:
    """``"keyid:base64blob"`` -> (key id, blob); None when the value has another format."""
    key_id, sep, encoded = value.partition(":")
    if not sep or key_id not in key_ids:
        return None
    try:
        return key_id, base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        return None


async def _rotate_step_up(engine: AsyncEngine, store: VaultCardStore, batch: int, failed: set[Any],
                          report: RotationReport) -> int:
    """Step-up (TOTP) secrets stored as ``keyid:base64blob`` with aad ``b"totp:" + user id``."""
    vault = store.vault
    current = vault.current_key_id
    rotated, skipped, after = 0, 0, None
    while True:
        async with engine.connect() as conn:
            conn = await conn.execution_options(**WRITE)
            async with conn.begin():
                stmt = select(users.c.id, users.c.step_up_secret).where(
                    users.c.step_up_secret.is_not(None), ~users.c.step_up_secret.startswith(f"{current}:"))
                if after is not None:
                    stmt = stmt.where(users.c.id > after)
                stmt = _skip_locked(stmt.order_by(users.c.id).limit(batch), _pg(conn))
                rows = (await conn.execute(stmt)).all()
                for row in rows:
                    parts = _split_sealed(row.step_up_secret, vault.key_ids)
                    if parts is None:
                        skipped += 1
                        continue
                    aad = b"totp:" + row.id.bytes
                    try:
                        key_id, blob = vault.rotate(parts[0], parts[1], aad=aad)
                    except VaultError as exc:
                        if row.id not in failed:
                            failed.add(row.id)
                            report.failed.append(f"step-up secret of user {row.id}: {exc}")
                        continue
                    value = f"{key_id}:{base64.b64encode(blob).decode('ascii')}"
                    await conn.execute(update(users).where(
                        users.c.id == row.id, users.c.step_up_secret == row.step_up_secret)
                        .values(step_up_secret=value))
                    rotated += 1
        if len(rows) < batch:
            report.skipped_step_up = max(report.skipped_step_up, skipped)
            return rotated
        after = rows[-1].id
