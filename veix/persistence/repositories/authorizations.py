"""Card authorizations: the store behind the real-time decision.

Few round trips on purpose: the card, its controls and its business come in
one locked SELECT; spend counters for the day and month in one; the risk
history from the last hour's rows, the per-day aggregates and the merchant set
(bounded reads, whatever the card's past). Money columns are summed in Python
on SQLite (TEXT) and in SQL on PostgreSQL (NUMERIC).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Row, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from veix.domain.authorization import AuthorizationStatus, StoredAuth
from veix.domain.ids import new_id
from veix.domain.risk import RiskAssessment
from veix.domain.services.authorize import AuthCard, CardHistory, history_window, velocity_window
from veix.domain.transactions import Transaction, TransactionStatus
from veix.persistence import mappers as m
from veix.persistence.repositories.cards import card_from_row, controls_from_row
from veix.persistence.tables import (
    businesses,
    card_controls,
    card_merchants,
    card_risk_days,
    card_risk_minutes,
    card_spend,
    card_transactions,
    fraud_alerts,
    ledger_accounts,
    transactions,
    virtual_cards,
)


def auth_from_row(r: Row[Any]) -> StoredAuth:
    return StoredAuth(
        id=r.id, card_id=r.card_id, business_id=r.business_id, transaction_id=r.transaction_id,
        network_id=r.network_id, kind=r.kind, status=AuthorizationStatus(r.status),
        response_code=r.response_code, decline_reason=r.decline_reason, merchant_name=r.merchant_name,
        merchant_category_code=r.merchant_category_code, merchant_country=r.merchant_country,
        merchant_id=r.merchant_id, original_amount=r.original_amount,
        original_currency=r.original_currency, billing_amount=r.billing_amount,
        billing_currency=r.billing_currency, exchange_rate=r.exchange_rate,
        approved_amount=r.approved_amount, held_amount=r.held_amount, cleared_amount=r.cleared_amount,
        released_amount=r.released_amount, risk_score=r.risk_score, risk_reasons=r.risk_reasons or [],
        created_at=r.created_at, updated_at=r.updated_at, parent_id=r.parent_id,
        spend_day=r.spend_day, spend_month=r.spend_month, hold_expires_at=r.hold_expires_at,
        approval_expires_at=r.approval_expires_at, decided_by=r.decided_by,
    )


def auth_values(a: StoredAuth) -> dict[str, Any]:
    return {
        "id": a.id, "card_id": a.card_id, "business_id": a.business_id,
        "transaction_id": a.transaction_id, "network_id": a.network_id, "kind": a.kind,
        "status": a.status.value, "response_code": a.response_code, "decline_reason": a.decline_reason,
        "merchant_name": a.merchant_name, "merchant_category_code": a.merchant_category_code,
        "merchant_country": a.merchant_country, "merchant_id": a.merchant_id,
        "original_amount": a.original_amount, "original_currency": a.original_currency,
        "billing_amount": a.billing_amount, "billing_currency": a.billing_currency,
        "exchange_rate": a.exchange_rate, "approved_amount": a.approved_amount,
        "held_amount": a.held_amount, "cleared_amount": a.cleared_amount,
        "released_amount": a.released_amount, "risk_score": a.risk_score,
        "risk_reasons": a.risk_reasons, "created_at": a.created_at, "updated_at": a.updated_at,
        "parent_id": a.parent_id, "spend_day": a.spend_day, "spend_month": a.spend_month,
        "hold_expires_at": a.hold_expires_at, "approval_expires_at": a.approval_expires_at,
        "decided_by": a.decided_by,
    }


class SqlAuthorizationStore:
    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn
        self.pg = conn.dialect.name == "postgresql"

    async def find(self, network_id: str, *, for_update: bool = True) -> StoredAuth | None:
        stmt = select(card_transactions).where(card_transactions.c.network_id == network_id)
        if self.pg and for_update:
            stmt = stmt.with_for_update()
        row = (await self.conn.execute(stmt)).first()
        return auth_from_row(row) if row else None

    async def get(self, auth_id: uuid.UUID, *, for_update: bool = False) -> StoredAuth | None:
        stmt = select(card_transactions).where(card_transactions.c.id == auth_id)
        if for_update and self.pg:
            stmt = stmt.with_for_update()
        row = (await self.conn.execute(stmt)).first()
        return auth_from_row(row) if row else None

    async def card_for_auth(self, *, lookup_hash: str | None, token: str | None,
                            card_id: uuid.UUID | None) -> AuthCard | None:
        cc = card_controls
        stmt = (
            select(virtual_cards, cc.c.allowed_merchant_categories, cc.c.blocked_merchant_categories,
                   cc.c.allowed_countries, cc.c.blocked_countries, cc.c.max_transaction_amount,
                   cc.c.daily_limit, cc.c.monthly_limit, cc.c.allowed_days, cc.c.allowed_hours,
                   cc.c.requires_approval, businesses.c.timezone.label("business_timezone"),
                   businesses.c.legal_address["country"].as_string().label("business_country"))
            .join(cc, cc.c.card_id == virtual_cards.c.id, isouter=True)
            .join(businesses, businesses.c.id == virtual_cards.c.business_id)
        )
        if lookup_hash is not None:
            stmt = stmt.where(virtual_cards.c.card_number_hash == lookup_hash)
        elif token is not None:
            stmt = stmt.where(virtual_cards.c.public_token == token)
        elif card_id is not None:
            stmt = stmt.where(virtual_cards.c.id == card_id)
        else:
            return None
        if self.pg:
            stmt = stmt.with_for_update(of=virtual_cards)
        row = (await self.conn.execute(stmt)).first()
        if row is None:
            return None
        return AuthCard(card=card_from_row(row), controls=controls_from_row(row),
                        key_id=row.vault_key_id, pan_blob=row.card_number_encrypted,
                        cvv_blob=row.cvv_encrypted, timezone=row.business_timezone,
                        business_country=row.business_country or "")

    async def spend(self, card_id: uuid.UUID, periods: list[str]) -> dict[str, Decimal]:
        rows = await self.conn.execute(select(card_spend.c.period, card_spend.c.amount).where(
            card_spend.c.card_id == card_id, card_spend.c.period.in_(periods)))
        return {r.period: r.amount for r in rows}

    async def add_spend(self, card_id: uuid.UUID, deltas: dict[str, Decimal]) -> None:
        if self.pg:
            ins = postgresql.insert(card_spend).values(
                [{"card_id": card_id, "period": p, "amount": d} for p, d in deltas.items()])
            await self.conn.execute(ins.on_conflict_do_update(
                index_elements=["card_id", "period"],
                set_={"amount": card_spend.c.amount + ins.excluded.amount}))
            return
        # SQLite stores money as TEXT: add in Python (write transactions are serial).
        current = await self.spend(card_id, list(deltas))
        for period, delta in deltas.items():
            ins = sqlite.insert(card_spend).values(card_id=card_id, period=period,
                                                   amount=current.get(period, Decimal(0)) + delta)
            await self.conn.execute(ins.on_conflict_do_update(
                index_elements=["card_id", "period"], set_={"amount": ins.excluded.amount}))

    async def history(self, card_id: uuid.UUID, now: datetime, merchant_key: str) -> CardHistory:
        """The velocity windows from the per-minute aggregates (at most 61
        rows), the history from the per-day aggregates (at most 91) and the
        merchant set: a bounded read whatever the card's past and traffic
        (tables.card_risk_minutes, card_risk_days)."""
        rm, rd, cm = card_risk_minutes, card_risk_days, card_merchants
        first_day, since = history_window(now)
        ten, hour = velocity_window(now)
        minutes = (await self.conn.execute(select(rm.c.minute, rm.c.count, rm.c.amount).where(
            rm.c.card_id == card_id, rm.c.minute >= hour))).all()
        last_10m = [m for m in minutes if m.minute >= ten]
        days = (await self.conn.execute(select(rd.c.count, rd.c.amount, rd.c.max_amount).where(
            rd.c.card_id == card_id, rd.c.day >= first_day))).all()
        seen = (await self.conn.execute(select(cm.c.card_id).where(
            cm.c.card_id == card_id, cm.c.merchant_key == merchant_key, cm.c.last_seen_at >= since))).first()
        count = sum(d.count for d in days)
        return CardHistory(
            count_10m=sum(m.count for m in last_10m), amount_10m=sum((m.amount for m in last_10m), Decimal(0)),
            count_1h=sum(m.count for m in minutes), amount_1h=sum((m.amount for m in minutes), Decimal(0)),
            history_count=count, history_mean=CardHistory.mean(sum((d.amount for d in days), Decimal(0)), count),
            history_max=max((d.max_amount for d in days), default=Decimal(0)), seen_merchant=seen is not None)

    async def _add_to_history(self, auth: StoredAuth) -> None:
        """Count an approved purchase in the card's risk history (its minute's
        and its day's aggregates and its merchant), in the decision's transaction."""
        rm, rd, cm = card_risk_minutes, card_risk_days, card_merchants
        day, minute = auth.history_day, auth.history_minute
        amount = auth.billing_amount
        if self.pg:
            mn = postgresql.insert(rm).values(card_id=auth.card_id, minute=minute, count=1, amount=amount)
            await self.conn.execute(mn.on_conflict_do_update(
                index_elements=["card_id", "minute"],
                set_={"count": rm.c.count + 1, "amount": rm.c.amount + mn.excluded.amount}))
            ins = postgresql.insert(rd).values(card_id=auth.card_id, day=day, count=1, amount=amount,
                                               max_amount=amount)
            await self.conn.execute(ins.on_conflict_do_update(
                index_elements=["card_id", "day"],
                set_={"count": rd.c.count + 1, "amount": rd.c.amount + ins.excluded.amount,
                      "max_amount": func.greatest(rd.c.max_amount, ins.excluded.max_amount)}))
            mins = postgresql.insert(cm).values(card_id=auth.card_id, merchant_key=auth.merchant_key,
                                                first_seen_at=auth.created_at, last_seen_at=auth.created_at)
            await self.conn.execute(mins.on_conflict_do_update(
                index_elements=["card_id", "merchant_key"],
                set_={"last_seen_at": func.greatest(cm.c.last_seen_at, mins.excluded.last_seen_at)}))
            return
        # SQLite stores money as TEXT: add in Python (write transactions are serial).
        now_row = (await self.conn.execute(select(rm.c.count, rm.c.amount).where(
            rm.c.card_id == auth.card_id, rm.c.minute == minute))).first()
        n, total = (now_row.count, now_row.amount) if now_row else (0, Decimal(0))
        smn = sqlite.insert(rm).values(card_id=auth.card_id, minute=minute, count=n + 1, amount=total + amount)
        await self.conn.execute(smn.on_conflict_do_update(
            index_elements=["card_id", "minute"], set_={"count": smn.excluded.count, "amount": smn.excluded.amount}))
        row = (await self.conn.execute(select(rd.c.count, rd.c.amount, rd.c.max_amount).where(
            rd.c.card_id == auth.card_id, rd.c.day == day))).first()
        count, total, top = (row.count, row.amount, row.max_amount) if row else (0, Decimal(0), amount)
        sins = sqlite.insert(rd).values(card_id=auth.card_id, day=day, count=count + 1, amount=total + amount,
                                        max_amount=max(top, amount))
        await self.conn.execute(sins.on_conflict_do_update(
            index_elements=["card_id", "day"],
            set_={"count": sins.excluded.count, "amount": sins.excluded.amount,
                  "max_amount": sins.excluded.max_amount}))
        seen = (await self.conn.execute(select(cm.c.last_seen_at).where(
            cm.c.card_id == auth.card_id, cm.c.merchant_key == auth.merchant_key))).first()
        if seen is None:
            await self.conn.execute(cm.insert().values(
                card_id=auth.card_id, merchant_key=auth.merchant_key, first_seen_at=auth.created_at,
                last_seen_at=auth.created_at))
        elif seen.last_seen_at < auth.created_at:
            await self.conn.execute(update(cm).where(
                cm.c.card_id == auth.card_id, cm.c.merchant_key == auth.merchant_key).values(
                last_seen_at=auth.created_at))

    async def features(self, card_id: uuid.UUID, periods: list[str], now: datetime, merchant_key: str,
                       account_code: str) -> tuple[dict[str, Decimal], CardHistory, Decimal]:
        return (await self.spend(card_id, periods), await self.history(card_id, now, merchant_key),
                await self.balance(account_code))

    async def balance(self, account_code: str) -> Decimal:
        row = (await self.conn.execute(select(ledger_accounts.c.balance).where(
            ledger_accounts.c.code == account_code))).first()
        return row.balance if row else Decimal(0)

    async def insert(self, auth: StoredAuth, txn: Transaction) -> None:
        await self.conn.execute(transactions.insert().values(m.transaction_values(txn)))
        await self.conn.execute(card_transactions.insert().values(auth_values(auth)))
        if auth.in_risk_history:
            await self._add_to_history(auth)

    async def update(self, auth: StoredAuth, txn_status: TransactionStatus | None = None) -> None:
        values = auth_values(auth)
        del values["id"]
        await self.conn.execute(update(card_transactions).where(card_transactions.c.id == auth.id)
                                .values(values))
        if txn_status is not None:
            await self.conn.execute(update(transactions).where(transactions.c.id == auth.transaction_id)
                                    .values(status=txn_status.value, updated_at=auth.updated_at))

    async def add_alert(self, auth: StoredAuth, assessment: RiskAssessment, action: str) -> uuid.UUID:
        alert_id = new_id()
        await self.conn.execute(fraud_alerts.insert().values(
            id=alert_id, business_id=auth.business_id, card_id=auth.card_id,
            transaction_id=auth.transaction_id, card_transaction_id=auth.id,
            risk_score=assessment.score, reasons=list(assessment.reasons), action=action,
            created_at=auth.created_at))
        return alert_id

    async def approved_retry(self, card_id: uuid.UUID, merchant_key: str, amount: Decimal,
                             now: datetime) -> StoredAuth | None:
        ct = card_transactions
        stmt = select(ct).where(
            ct.c.card_id == card_id, ct.c.status == AuthorizationStatus.PENDING_APPROVAL.value,
            ct.c.decided_by.is_not(None), ct.c.approval_expires_at > now,
        ).order_by(ct.c.created_at)
        for row in await self.conn.execute(stmt):
            auth = auth_from_row(row)
            if auth.merchant_key == merchant_key and amount <= auth.billing_amount:
                return auth
        return None

    async def count_recent(self, card_id: uuid.UUID, since: datetime) -> int:
        stmt = select(func.count()).where(card_transactions.c.card_id == card_id,
                                          card_transactions.c.created_at >= since)
        return int((await self.conn.execute(stmt)).scalar_one())
