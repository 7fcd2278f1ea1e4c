"""Offline integrity checks over the database: ``veix audit verify``, ``veix ledger verify``.

Both read one consistent snapshot (a single read transaction; REPEATABLE READ
on PostgreSQL) and stream the rows, so memory stays flat however long the
audit log or the ledger grows. Money is summed in Python with ``Decimal``:
SQLite stores it as TEXT, where SQL ``SUM`` would go through floats.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from veix.domain.audit import ChainBreak, verify_chain
from veix.persistence.tables import audit_log, journal_entries, ledger_accounts, postings

_BATCH = 1000


async def _snapshot(engine: AsyncEngine) -> AsyncConnection:
    conn = await engine.connect()
    if conn.dialect.name == "postgresql":
        conn = await conn.execution_options(isolation_level="REPEATABLE READ")
    return conn


# ------------------------------------------------------------------ audit log
def audit_record(row: Any) -> dict[str, Any]:
    """The dict ``SqlUnitOfWork._append_audit`` hashed, rebuilt from a stored row."""
    return {
        "id": str(row.id),
        "actor_type": row.actor_type,
        "actor_id": row.actor_id,
        "business_id": str(row.business_id) if row.business_id is not None else None,
        "action": row.action,
        "object_type": row.object_type,
        "object_id": row.object_id,
        "before": row.before,
        "after": row.after,
        "request_id": row.request_id,
        "created_at": row.created_at.isoformat(),
    }


def _verify_audit_sync(conn: Connection) -> tuple[int, ChainBreak | None]:
    result = conn.execute(
        select(audit_log).order_by(audit_log.c.seq), execution_options={"yield_per": _BATCH}
    )
    count = 0

    def rows() -> Iterator[tuple[int, str, str, Mapping[str, Any]]]:
        nonlocal count
        for row in result:
            count += 1
            yield row.seq, row.prev_hash, row.hash, audit_record(row)

    broken = verify_chain(rows())
    result.close()
    return count, broken


async def verify_audit(engine: AsyncEngine) -> tuple[int, ChainBreak | None]:
    """Walk the audit chain in ``seq`` order: (records read, first broken link or None).

    On a break the count is the number of records read up to and including it.
    """
    conn = await _snapshot(engine)
    try:
        return await conn.run_sync(_verify_audit_sync)
    finally:
        await conn.close()


# ------------------------------------------------------------------ ledger
@dataclass(slots=True)
class LedgerReport:
    entries: int = 0
    accounts: int = 0
    problems: list[str] = field(default_factory=list)


def _fmt(amounts: Mapping[str, Decimal]) -> str:
    return ", ".join(f"{amount} {currency}" for currency, amount in sorted(amounts.items()))


def _check_ledger_sync(conn: Connection) -> LedgerReport:
    report = LedgerReport()
    accounts = {
        row.id: row
        for row in conn.execute(
            select(
                ledger_accounts.c.id, ledger_accounts.c.code, ledger_accounts.c.currency,
                ledger_accounts.c.allow_negative, ledger_accounts.c.balance,
            )
        )
    }
    report.accounts = len(accounts)
    posted: dict[Any, Decimal] = defaultdict(Decimal)

    def close_entry(entry_id: Any, lines: int, totals: Mapping[str, Decimal]) -> None:
        report.entries += 1
        if lines < 2:
            report.problems.append(f"journal entry {entry_id}: has {lines} posting(s), needs at least 2")
        unbalanced = {cur: total for cur, total in totals.items() if total != 0}
        if unbalanced:
            report.problems.append(
                f"journal entry {entry_id}: postings do not sum to zero ({_fmt(unbalanced)})"
            )

    # Every entry with its postings, grouped by entry (an entry without postings
    # comes back once with NULLs from the outer join).
    result = conn.execute(
        select(journal_entries.c.id, postings.c.account_id, postings.c.amount, postings.c.currency)
        .select_from(journal_entries.outerjoin(postings, postings.c.entry_id == journal_entries.c.id))
        .order_by(journal_entries.c.id),
        execution_options={"yield_per": _BATCH},
    )
    current: Any = None
    lines = 0
    totals: dict[str, Decimal] = defaultdict(Decimal)
    for entry_id, account_id, amount, currency in result:
        if entry_id != current:
            if current is not None:
                close_entry(current, lines, totals)
            current, lines, totals = entry_id, 0, defaultdict(Decimal)
        if account_id is None:
            continue
        lines += 1
        totals[currency] += amount
        posted[account_id] += amount
        account = accounts.get(account_id)
        if account is not None and account.currency != currency:
            report.problems.append(
                f"journal entry {entry_id}: posting in {currency} to {account.currency} "
                f"account {account.code}"
            )
    if current is not None:
        close_entry(current, lines, totals)
    result.close()

    for account_id, account in sorted(accounts.items(), key=lambda item: item[1].code):
        total = posted.get(account_id, Decimal(0))
        if account.balance != total:
            report.problems.append(
                f"account {account.code}: cached balance {account.balance} {account.currency} "
                f"differs from the sum of its postings {total} {account.currency}"
            )
        if not account.allow_negative:
            lowest = min(account.balance, total)
            if lowest < 0:
                report.problems.append(
                    f"account {account.code}: balance {lowest} {account.currency} is below zero "
                    "but the account does not allow negative balances"
                )
    return report


async def ledger_report(engine: AsyncEngine) -> LedgerReport:
    """Counts of entries and accounts, and every broken ledger invariant found."""
    conn = await _snapshot(engine)
    try:
        return await conn.run_sync(_check_ledger_sync)
    finally:
        await conn.close()


async def verify_ledger(engine: AsyncEngine) -> list[str]:
    """Problems found: unbalanced entries, stale cached balances, forbidden negatives.

    Pending postings (authorization holds) count towards the balance like any
    other posting: a hold reduces what the business can spend.
    """
    return (await ledger_report(engine)).problems
