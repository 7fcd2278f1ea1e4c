"""Payments, refunds, disputes, payment methods and inbound gateway events."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import and_, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from veix.domain import ledger
from veix.domain.disputes import Dispute, DisputeStatus, PaymentMethodRecord, PaymentSettings
from veix.domain.gateway import DisputeInfo, WebhookEvent, WebhookKind
from veix.domain.ids import new_id
from veix.domain.ports import PaymentActivity
from veix.domain.transactions import Gateway, Transaction, TransactionStatus, TransactionType
from veix.persistence import mappers as m
from veix.persistence.tables import (
    business_payment_settings,
    counters,
    disputes,
    gateway_events,
    ledger_accounts,
    payment_methods,
    transactions,
)

_CAPTURED = [s.value for s in (TransactionStatus.SUCCEEDED, TransactionStatus.PARTIALLY_REFUNDED,
                               TransactionStatus.REFUNDED, TransactionStatus.DISPUTED)]


def event_json(e: WebhookEvent) -> dict[str, Any]:
    """The normalised event, so an event that arrived before its payment can be applied later."""
    d = e.dispute
    return {
        "event_id": e.event_id, "kind": e.kind.value, "provider_type": e.provider_type,
        "occurred_at": e.occurred_at.isoformat(), "reference": e.reference,
        "amount": str(e.amount) if e.amount is not None else None, "currency": e.currency,
        "decline_code": e.decline_code, "decline_message": e.decline_message,
        "refund_reference": e.refund_reference,
        "dispute": None if d is None else {
            "reference": d.reference, "amount": str(d.amount), "currency": d.currency, "reason": d.reason,
            "evidence_due_by": d.evidence_due_by.isoformat() if d.evidence_due_by else None},
    }


def event_from_json(v: dict[str, Any], payload: dict[str, Any]) -> WebhookEvent:
    d = v.get("dispute")
    return WebhookEvent(
        event_id=v["event_id"], kind=WebhookKind(v["kind"]), provider_type=v["provider_type"],
        occurred_at=datetime.fromisoformat(v["occurred_at"]), reference=v.get("reference"),
        amount=Decimal(v["amount"]) if v.get("amount") is not None else None, currency=v.get("currency"),
        decline_code=v.get("decline_code"), decline_message=v.get("decline_message"),
        refund_reference=v.get("refund_reference"),
        dispute=None if not d else DisputeInfo(
            d["reference"], Decimal(d["amount"]), d["currency"], d["reason"],
            datetime.fromisoformat(d["evidence_due_by"]) if d.get("evidence_due_by") else None),
        payload=payload,
    )


def dispute_from_row(r: Any) -> Dispute:
    return Dispute(
        id=r.id, business_id=r.business_id, transaction_id=r.transaction_id, gateway=Gateway(r.gateway),
        gateway_reference=r.gateway_reference, amount=r.amount, currency=r.currency, reason=r.reason,
        status=DisputeStatus(r.status), evidence_due_by=r.evidence_due_by, evidence=r.evidence,
        withdrawn_available=r.withdrawn_available, withdrawn_receivable=r.withdrawn_receivable,
        status_before=TransactionStatus(r.status_before), created_at=r.created_at, updated_at=r.updated_at)


def _dispute_values(d: Dispute) -> dict[str, Any]:
    return {
        "id": d.id, "business_id": d.business_id, "transaction_id": d.transaction_id,
        "gateway": d.gateway.value, "gateway_reference": d.gateway_reference, "amount": d.amount,
        "currency": d.currency, "reason": d.reason, "status": d.status.value,
        "evidence_due_by": d.evidence_due_by, "evidence": d.evidence,
        "withdrawn_available": d.withdrawn_available, "withdrawn_receivable": d.withdrawn_receivable,
        "status_before": d.status_before.value, "created_at": d.created_at, "updated_at": d.updated_at,
    }


class SqlPaymentRepository:
    def __init__(self, conn: AsyncConnection, for_update_ok: bool) -> None:
        self.conn = conn
        self.fu = for_update_ok
        self.insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert

    async def get(self, transaction_id: uuid.UUID, *, for_update: bool = False) -> Transaction | None:
        stmt = select(transactions).where(transactions.c.id == transaction_id)
        if for_update and self.fu:
            stmt = stmt.with_for_update()
        row = (await self.conn.execute(stmt)).first()
        return m.transaction_from_row(row) if row else None

    async def by_reference(self, gateway: Gateway, reference: str) -> Transaction | None:
        stmt = select(transactions).where(
            transactions.c.gateway == gateway.value, transactions.c.gateway_reference == reference,
            transactions.c.parent_id.is_(None), transactions.c.type == TransactionType.PAYMENT.value)
        if self.fu:
            stmt = stmt.with_for_update()
        row = (await self.conn.execute(stmt)).first()
        return m.transaction_from_row(row) if row else None

    async def save(self, t: Transaction) -> None:
        values = m.transaction_values(t)
        del values["id"], values["created_at"]
        await self.conn.execute(update(transactions).where(transactions.c.id == t.id).values(values))

    async def refunds_of(self, payment_id: uuid.UUID) -> list[Transaction]:
        stmt = (select(transactions).where(transactions.c.parent_id == payment_id)
                .order_by(transactions.c.created_at, transactions.c.id))
        return [m.transaction_from_row(r) for r in await self.conn.execute(stmt)]

    async def add_payment_method(self, pm: PaymentMethodRecord) -> None:
        await self.conn.execute(payment_methods.insert().values(
            id=pm.id, business_id=pm.business_id, type=pm.type.value, display=pm.display,
            gateway=pm.gateway.value, created_at=pm.created_at))

    async def record_event(self, gateway: Gateway, event: WebhookEvent, now: datetime) -> bool:
        result = await self.conn.execute(
            self.insert(gateway_events).values(
                id=new_id(), gateway=gateway.value, event_id=event.event_id[:255], kind=event.kind.value,
                provider_type=event.provider_type[:100], reference=(event.reference or None),
                outcome="received", payload={"veix": event_json(event), "raw": dict(event.payload)},
                received_at=now,
            ).on_conflict_do_nothing(index_elements=["gateway", "event_id"]))
        return result.rowcount == 1

    async def set_event_outcome(self, gateway: Gateway, event_id: str, outcome: str,
                                transaction_id: uuid.UUID | None) -> None:
        await self.conn.execute(
            update(gateway_events)
            .where(gateway_events.c.gateway == gateway.value, gateway_events.c.event_id == event_id[:255])
            .values(outcome=outcome, transaction_id=transaction_id))

    async def unmatched_events(self, gateway: Gateway, reference: str) -> list[WebhookEvent]:
        stmt = (select(gateway_events.c.event_id, gateway_events.c.payload)
                .where(gateway_events.c.gateway == gateway.value, gateway_events.c.reference == reference,
                       gateway_events.c.outcome == "unmatched")
                .order_by(gateway_events.c.received_at))
        rows = list(await self.conn.execute(stmt))
        if rows:
            await self.conn.execute(
                update(gateway_events)
                .where(gateway_events.c.gateway == gateway.value, gateway_events.c.reference == reference,
                       gateway_events.c.outcome == "unmatched")
                .values(outcome="applied_late"))
        return [event_from_json(r.payload["veix"], r.payload.get("raw") or {}) for r in rows]

    async def dispute(self, dispute_id: uuid.UUID, *, for_update: bool = False) -> Dispute | None:
        stmt = select(disputes).where(disputes.c.id == dispute_id)
        if for_update and self.fu:
            stmt = stmt.with_for_update()
        row = (await self.conn.execute(stmt)).first()
        return dispute_from_row(row) if row else None

    async def dispute_by_reference(self, gateway: Gateway, reference: str) -> Dispute | None:
        stmt = select(disputes).where(disputes.c.gateway == gateway.value, disputes.c.gateway_reference == reference)
        if self.fu:
            stmt = stmt.with_for_update()
        row = (await self.conn.execute(stmt)).first()
        return dispute_from_row(row) if row else None

    async def add_dispute(self, d: Dispute) -> None:
        await self.conn.execute(disputes.insert().values(_dispute_values(d)))

    async def save_dispute(self, d: Dispute) -> None:
        values = _dispute_values(d)
        del values["id"], values["created_at"]
        await self.conn.execute(update(disputes).where(disputes.c.id == d.id).values(values))

    async def next_counter(self, name: str) -> int:
        await self.conn.execute(
            self.insert(counters).values(name=name, value=0).on_conflict_do_nothing(index_elements=["name"]))
        result = await self.conn.execute(
            update(counters).where(counters.c.name == name).values(value=counters.c.value + 1)
            .returning(counters.c.value))
        return int(result.scalar_one())

    async def settings(self, business_id: uuid.UUID) -> PaymentSettings | None:
        row = (await self.conn.execute(
            select(business_payment_settings).where(business_payment_settings.c.business_id == business_id))).first()
        if row is None:
            return None
        return PaymentSettings(row.business_id, row.routes, row.stripe_account)

    async def save_settings(self, s: PaymentSettings, now: datetime) -> None:
        values = {"routes": s.routes, "stripe_account": s.stripe_account, "updated_at": now}
        await self.conn.execute(
            self.insert(business_payment_settings).values(business_id=s.business_id, **values)
            .on_conflict_do_update(index_elements=["business_id"], set_=values))

    async def customer_activity(self, business_id: uuid.UUID, customer_id: str | None,
                                now: datetime) -> PaymentActivity:
        zero = Decimal(0)
        if not customer_id:
            return PaymentActivity(0, zero, 0, zero, 0, zero, zero)
        t = transactions.c
        base = and_(t.business_id == business_id, t.customer_id == customer_id,
                    t.type == TransactionType.PAYMENT.value, t.parent_id.is_(None))

        def window(since: datetime) -> Any:
            return func.coalesce(func.sum(t.amount).filter(t.created_at >= since), 0)

        stmt = select(
            func.count().filter(t.created_at >= now - timedelta(minutes=10)),
            window(now - timedelta(minutes=10)),
            func.count().filter(t.created_at >= now - timedelta(hours=1)),
            window(now - timedelta(hours=1)),
            func.count().filter(t.status.in_(_CAPTURED)),
            func.coalesce(func.avg(t.amount).filter(t.status.in_(_CAPTURED)), 0),
            func.coalesce(func.max(t.amount).filter(t.status.in_(_CAPTURED)), 0),
        ).where(base, t.created_at >= now - timedelta(days=90))
        row = (await self.conn.execute(stmt)).one()

        def dec(v: Any) -> Decimal:
            return Decimal(str(v)).quantize(Decimal("0.01")) if v else zero

        return PaymentActivity(int(row[0]), dec(row[1]), int(row[2]), dec(row[3]), int(row[4]),
                               dec(row[5]), dec(row[6]))

    async def available_balance(self, business_id: uuid.UUID, currency: str) -> Decimal:
        code = ledger.business_available(business_id, currency).code
        value = (await self.conn.execute(
            select(ledger_accounts.c.balance).where(ledger_accounts.c.code == code))).scalar()
        return value if value is not None else Decimal(0)



async def open_payments(conn: AsyncConnection, gateway: Gateway, limit: int = 1000) -> list[Transaction]:
    """Payments of ``gateway`` still waiting for the payer or the chain, oldest first."""
    t = transactions.c
    stmt = (select(transactions)
            .where(t.gateway == gateway.value, t.type == TransactionType.PAYMENT.value, t.parent_id.is_(None),
                   t.gateway_reference.is_not(None),
                   t.status.in_([TransactionStatus.REQUIRES_ACTION.value, TransactionStatus.PROCESSING.value]))
            .order_by(t.created_at).limit(limit))
    return [m.transaction_from_row(r) for r in await conn.execute(stmt)]


async def unmatched_references(conn: AsyncConnection, since: datetime) -> list[tuple[str, str]]:
    """(gateway, reference) of stored events whose payment was unknown when they arrived."""
    g = gateway_events.c
    stmt = (select(g.gateway, g.reference).where(g.outcome == "unmatched", g.reference.is_not(None),
                                                 g.received_at >= since).distinct().limit(500))
    return [(r.gateway, r.reference) for r in await conn.execute(stmt)]
