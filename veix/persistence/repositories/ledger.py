"""The ledger: journal entries, postings and cached balances in one transaction.

Accounts are locked in a fixed order (by code) before their balance changes, so
concurrent entries touching the same accounts queue instead of deadlocking,
and the non-negative rule is checked by the domain on the locked balance.
"""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from veix.domain.ids import new_id
from veix.domain.ledger import AccountKind, AccountRef, JournalEntry, apply_posting
from veix.domain.money import Money
from veix.persistence.tables import journal_entries, ledger_accounts, postings


def _insert(dialect: str) -> Any:
    return postgresql.insert if dialect == "postgresql" else sqlite.insert


class SqlLedgerRepository:
    def __init__(self, conn: AsyncConnection, for_update_ok: bool) -> None:
        self.conn = conn
        self.for_update_ok = for_update_ok
        self.dialect = conn.dialect.name

    async def _lock_account(self, ref: AccountRef, now: Any) -> tuple[uuid.UUID, Decimal]:
        insert = _insert(self.dialect)
        await self.conn.execute(
            insert(ledger_accounts)
            .values(
                id=uuid.uuid4(), business_id=ref.business_id, code=ref.code, kind=ref.kind.value,
                currency=ref.currency, allow_negative=ref.allow_negative,
                balance=Decimal(0), created_at=now, updated_at=now,
            )
            .on_conflict_do_nothing(index_elements=["code"])
        )
        stmt = select(ledger_accounts.c.id, ledger_accounts.c.balance).where(
            ledger_accounts.c.code == ref.code
        )
        if self.for_update_ok:
            stmt = stmt.with_for_update()
        row = (await self.conn.execute(stmt)).one()
        return row.id, row.balance

    async def post(self, entry: JournalEntry) -> None:
        """Lock and check every account first, write only when all pass: a
        refused entry leaves no trace (its caller may go on and commit)."""
        now = entry.occurred_at
        by_code: dict[str, Decimal] = {}
        refs: dict[str, AccountRef] = {}
        for line in entry.lines:
            by_code[line.account.code] = by_code.get(line.account.code, Decimal(0)) + line.amount
            refs[line.account.code] = line.account
        account_ids: dict[str, uuid.UUID] = {}
        new_balances: dict[uuid.UUID, Decimal] = {}
        for code in sorted(by_code):
            ref = refs[code]
            account_id, balance = await self._lock_account(ref, now)
            account_ids[code] = account_id
            new_balances[account_id] = apply_posting(balance, by_code[code], allow_negative=ref.allow_negative)
        for account_id, new_balance in new_balances.items():
            await self.conn.execute(
                update(ledger_accounts)
                .where(ledger_accounts.c.id == account_id)
                .values(balance=new_balance, updated_at=now)
            )
        await self.conn.execute(
            journal_entries.insert().values(
                id=entry.id, business_id=entry.business_id, kind=entry.kind,
                description=entry.description, transaction_id=entry.transaction_id,
                created_at=now,
            )
        )
        await self.conn.execute(
            postings.insert(),
            [
                {
                    "id": new_id(), "entry_id": entry.id,
                    "account_id": account_ids[line.account.code], "amount": line.amount,
                    "currency": line.account.currency, "pending": False, "created_at": now,
                }
                for line in entry.lines
            ],
        )

    async def balances(self, business_id: uuid.UUID) -> list[Money]:
        stmt = (
            select(ledger_accounts.c.currency, ledger_accounts.c.balance)
            .where(
                ledger_accounts.c.business_id == business_id,
                ledger_accounts.c.kind == AccountKind.BUSINESS_AVAILABLE.value,
            )
            .order_by(ledger_accounts.c.currency)
        )
        return [Money(r.balance, r.currency) for r in await self.conn.execute(stmt)]
