"""The authorization hot path on PostgreSQL, on raw asyncpg.

Profiling the SQLAlchemy Core version of the decision showed most of its time
in building and compiling statements (coercions, cache keys) rather than in
PostgreSQL. Here every statement is a fixed SQL string that asyncpg prepares
once per connection, and the ledger hold is two conditional UPDATEs (the
non-negative rule checked by PostgreSQL on the locked row) plus one INSERT for
the entry and its postings. Same port as the Core store
(veix.persistence.repositories.authorizations), same tables, same results:
the test suite runs the network tests against both.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta
from decimal import Decimal
from types import TracebackType
from typing import Any

import asyncpg

from veix.domain.authorization import AuthorizationStatus, StoredAuth
from veix.domain.card_controls import CardControls
from veix.domain.cards import Card, CardNetwork, CardStatus, CardType
from veix.domain.errors import InsufficientFunds
from veix.domain.events import DomainEvent
from veix.domain.ledger import JournalEntry
from veix.domain.risk import RiskAssessment
from veix.domain.services.authorize import AuthCard, CardHistory
from veix.domain.transactions import Transaction, TransactionStatus

HISTORY_DAYS = 90


def asyncpg_dsn(sqlalchemy_url: str) -> str:
    return sqlalchemy_url.replace("postgresql+asyncpg://", "postgresql://", 1)


async def _init(conn: asyncpg.Connection) -> None:
    for name in ("json", "jsonb"):
        await conn.set_type_codec(name, encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def create_pool(sqlalchemy_url: str, *, size: int) -> asyncpg.Pool:
    return await asyncpg.create_pool(asyncpg_dsn(sqlalchemy_url), min_size=1, max_size=size, init=_init,
                                     server_settings={"timezone": "UTC", "jit": "off"})


def _set(v: Any) -> frozenset[Any] | None:
    return frozenset(v) if v is not None else None


def _auth(r: asyncpg.Record) -> StoredAuth:
    return StoredAuth(
        id=r["id"], card_id=r["card_id"], business_id=r["business_id"], transaction_id=r["transaction_id"],
        network_id=r["network_id"], kind=r["kind"], status=AuthorizationStatus(r["status"]),
        response_code=r["response_code"], decline_reason=r["decline_reason"],
        merchant_name=r["merchant_name"], merchant_category_code=r["merchant_category_code"],
        merchant_country=r["merchant_country"], merchant_id=r["merchant_id"],
        original_amount=r["original_amount"], original_currency=r["original_currency"],
        billing_amount=r["billing_amount"], billing_currency=r["billing_currency"],
        exchange_rate=r["exchange_rate"], approved_amount=r["approved_amount"],
        held_amount=r["held_amount"], cleared_amount=r["cleared_amount"],
        released_amount=r["released_amount"], risk_score=r["risk_score"],
        risk_reasons=r["risk_reasons"] or [], created_at=r["created_at"], updated_at=r["updated_at"],
        parent_id=r["parent_id"], spend_day=r["spend_day"], spend_month=r["spend_month"],
        hold_expires_at=r["hold_expires_at"], approval_expires_at=r["approval_expires_at"],
        decided_by=r["decided_by"])


AUTH_COLUMNS = (
    "id, card_id, business_id, transaction_id, network_id, kind, status, response_code, decline_reason, "
    "merchant_name, merchant_category_code, merchant_country, merchant_id, original_amount, "
    "original_currency, billing_amount, billing_currency, exchange_rate, approved_amount, held_amount, "
    "cleared_amount, released_amount, risk_score, risk_reasons, created_at, updated_at, parent_id, "
    "spend_day, spend_month, hold_expires_at, approval_expires_at, decided_by")
_AUTH_N = len(AUTH_COLUMNS.split(","))


def _auth_args(a: StoredAuth) -> tuple[Any, ...]:
    return (a.id, a.card_id, a.business_id, a.transaction_id, a.network_id, a.kind, a.status.value,
            a.response_code, a.decline_reason, a.merchant_name, a.merchant_category_code,
            a.merchant_country, a.merchant_id, a.original_amount, a.original_currency, a.billing_amount,
            a.billing_currency, a.exchange_rate, a.approved_amount, a.held_amount, a.cleared_amount,
            a.released_amount, a.risk_score, a.risk_reasons, a.created_at, a.updated_at, a.parent_id,
            a.spend_day, a.spend_month, a.hold_expires_at, a.approval_expires_at, a.decided_by)


_CARD_SQL = """
SELECT c.id, c.business_id, c.cardholder_id, c.network, c.card_type, c.status, c.masked_number, c.last4,
       c.expiry_date, c.currency, c.spending_limit, c.current_balance, c.merchant_lock, c.metadata,
       c.public_token, c.created_at, c.updated_at, c.vault_key_id, c.card_number_encrypted, c.cvv_encrypted,
       cc.allowed_merchant_categories, cc.blocked_merchant_categories, cc.allowed_countries,
       cc.blocked_countries, cc.max_transaction_amount, cc.daily_limit, cc.monthly_limit, cc.allowed_days,
       cc.allowed_hours, cc.requires_approval, b.timezone AS business_timezone,
       b.legal_address->>'country' AS business_country
FROM virtual_cards c
LEFT JOIN card_controls cc ON cc.card_id = c.id
JOIN businesses b ON b.id = c.business_id
WHERE {where}
FOR UPDATE OF c
"""


class PgAuthorizationStore:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def find(self, network_id: str) -> StoredAuth | None:
        r = await self.conn.fetchrow(
            f"SELECT {AUTH_COLUMNS} FROM card_transactions WHERE network_id = $1 FOR UPDATE", network_id)
        return _auth(r) if r else None

    async def get(self, auth_id: uuid.UUID, *, for_update: bool = False) -> StoredAuth | None:
        lock = " FOR UPDATE" if for_update else ""
        r = await self.conn.fetchrow(f"SELECT {AUTH_COLUMNS} FROM card_transactions WHERE id = $1{lock}", auth_id)
        return _auth(r) if r else None

    async def card_for_auth(self, *, lookup_hash: str | None, token: str | None,
                            card_id: uuid.UUID | None) -> AuthCard | None:
        if lookup_hash is not None:
            r = await self.conn.fetchrow(_CARD_SQL.format(where="c.card_number_hash = $1"), lookup_hash)
        elif token is not None:
            r = await self.conn.fetchrow(_CARD_SQL.format(where="c.public_token = $1"), token)
        elif card_id is not None:
            r = await self.conn.fetchrow(_CARD_SQL.format(where="c.id = $1"), card_id)
        else:
            return None
        if r is None:
            return None
        card = Card(
            id=r["id"], business_id=r["business_id"], cardholder_id=r["cardholder_id"],
            network=CardNetwork(r["network"]), type=CardType(r["card_type"]), status=CardStatus(r["status"]),
            masked_number=r["masked_number"], last4=r["last4"], expiry_date=r["expiry_date"],
            currency=r["currency"], spending_limit=r["spending_limit"], current_balance=r["current_balance"],
            merchant_lock=r["merchant_lock"], metadata=r["metadata"] or {}, public_token=r["public_token"],
            created_at=r["created_at"], updated_at=r["updated_at"])
        controls = CardControls(
            allowed_mccs=_set(r["allowed_merchant_categories"]), blocked_mccs=_set(r["blocked_merchant_categories"]),
            allowed_countries=_set(r["allowed_countries"]), blocked_countries=_set(r["blocked_countries"]),
            max_transaction_amount=r["max_transaction_amount"], daily_limit=r["daily_limit"],
            monthly_limit=r["monthly_limit"], allowed_days=_set(r["allowed_days"]),
            allowed_hours=_set(r["allowed_hours"]), requires_approval=bool(r["requires_approval"]))
        return AuthCard(card=card, controls=controls, key_id=r["vault_key_id"],
                        pan_blob=bytes(r["card_number_encrypted"]), cvv_blob=bytes(r["cvv_encrypted"]),
                        timezone=r["business_timezone"], business_country=r["business_country"] or "")

    async def spend(self, card_id: uuid.UUID, periods: list[str]) -> dict[str, Decimal]:
        rows = await self.conn.fetch(
            "SELECT period, amount FROM card_spend WHERE card_id = $1 AND period = ANY($2::text[])",
            card_id, periods)
        return {r["period"]: r["amount"] for r in rows}

    async def add_spend(self, card_id: uuid.UUID, deltas: dict[str, Decimal]) -> None:
        periods, amounts = list(deltas), list(deltas.values())
        await self.conn.execute(
            "INSERT INTO card_spend (card_id, period, amount) "
            "SELECT $1, p, a FROM unnest($2::text[], $3::numeric[]) AS t(p, a) "
            "ON CONFLICT (card_id, period) DO UPDATE SET amount = card_spend.amount + EXCLUDED.amount",
            card_id, periods, amounts)

    async def history(self, card_id: uuid.UUID, now: datetime, merchant_key: str) -> CardHistory:
        r = await self.conn.fetchrow(
            """SELECT count(*) FILTER (WHERE created_at >= $3) AS c10,
                      coalesce(sum(billing_amount) FILTER (WHERE created_at >= $3), 0) AS a10,
                      count(*) FILTER (WHERE created_at >= $4) AS c1h,
                      coalesce(sum(billing_amount) FILTER (WHERE created_at >= $4), 0) AS a1h,
                      count(*) AS n, coalesce(avg(billing_amount), 0) AS mean,
                      coalesce(max(billing_amount), 0) AS mx,
                      coalesce(bool_or(lower(btrim(coalesce(merchant_id, merchant_name, ''))) = $5), false) AS seen
               FROM card_transactions
               WHERE card_id = $1 AND response_code = '00' AND kind IN ('purchase', 'incremental')
                 AND created_at >= $2""",
            card_id, now - timedelta(days=HISTORY_DAYS), now - timedelta(minutes=10),
            now - timedelta(hours=1), merchant_key)
        assert r is not None
        return CardHistory(count_10m=r["c10"], amount_10m=r["a10"], count_1h=r["c1h"], amount_1h=r["a1h"],
                           history_count=r["n"], history_mean=Decimal(r["mean"]).quantize(Decimal("0.000001")),
                           history_max=r["mx"], seen_merchant=r["seen"])

    async def balance(self, account_code: str) -> Decimal:
        v = await self.conn.fetchval("SELECT balance FROM ledger_accounts WHERE code = $1", account_code)
        return v if v is not None else Decimal(0)

    async def insert(self, auth: StoredAuth, txn: Transaction) -> None:
        placeholders = ", ".join(f"${i}" for i in range(1, _AUTH_N + 1))
        await self.conn.execute(
            "INSERT INTO transactions (id, business_id, type, status, amount, currency, payment_method, "
            "risk_score, processing_fee, refunded_amount, error_code, error_message, metadata, created_at, "
            "updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 0, 0, $9, $10, $11, $12, $13)",
            txn.id, txn.business_id, txn.type.value, txn.status.value, txn.amount, txn.currency,
            txn.payment_method, txn.risk_score, txn.error_code, txn.error_message, txn.metadata,
            txn.created_at, txn.updated_at)
        await self.conn.execute(f"INSERT INTO card_transactions ({AUTH_COLUMNS}) VALUES ({placeholders})",
                                *_auth_args(auth))

    async def update(self, auth: StoredAuth, txn_status: TransactionStatus | None = None) -> None:
        cols = [c.strip() for c in AUTH_COLUMNS.split(",")][1:]
        sets = ", ".join(f"{c} = ${i + 2}" for i, c in enumerate(cols))
        await self.conn.execute(f"UPDATE card_transactions SET {sets} WHERE id = $1", *_auth_args(auth))
        if txn_status is not None:
            await self.conn.execute("UPDATE transactions SET status = $2, updated_at = $3 WHERE id = $1",
                                    auth.transaction_id, txn_status.value, auth.updated_at)

    async def add_alert(self, auth: StoredAuth, assessment: RiskAssessment, action: str) -> uuid.UUID:
        alert_id = uuid.uuid4()
        await self.conn.execute(
            "INSERT INTO fraud_alerts (id, business_id, card_id, transaction_id, card_transaction_id, "
            "risk_score, reasons, action, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            alert_id, auth.business_id, auth.card_id, auth.transaction_id, auth.id, assessment.score,
            list(assessment.reasons), action, auth.created_at)
        return alert_id

    async def approved_retry(self, card_id: uuid.UUID, merchant_key: str, amount: Decimal,
                             now: datetime) -> StoredAuth | None:
        r = await self.conn.fetchrow(
            f"SELECT {AUTH_COLUMNS} FROM card_transactions WHERE card_id = $1 AND status = 'pending_approval' "
            "AND decided_by IS NOT NULL AND approval_expires_at > $2 "
            "AND lower(btrim(coalesce(merchant_id, merchant_name, ''))) = $3 AND billing_amount >= $4 "
            "ORDER BY created_at LIMIT 1 FOR UPDATE", card_id, now, merchant_key, amount)
        return _auth(r) if r else None


class PgLedger:
    """Posts an entry with one conditional UPDATE per account: PostgreSQL checks
    the non-negative rule on the locked row, so concurrent entries cannot
    overdraw (the same rule as veix.domain.ledger.apply_posting)."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def post(self, entry: JournalEntry) -> None:
        by_code: dict[str, Decimal] = {}
        refs = {}
        for line in entry.lines:
            by_code[line.account.code] = by_code.get(line.account.code, Decimal(0)) + line.amount
            refs[line.account.code] = line.account
        ids: dict[str, uuid.UUID] = {}
        for code in sorted(by_code):  # fixed lock order: no deadlocks between entries
            ref = refs[code]
            row = await self.conn.fetchrow(
                "UPDATE ledger_accounts SET balance = balance + $2, updated_at = $3 "
                "WHERE code = $1 RETURNING id, balance, allow_negative", code, by_code[code], entry.occurred_at)
            if row is None:
                await self.conn.execute(
                    "INSERT INTO ledger_accounts (id, business_id, code, kind, currency, allow_negative, balance, "
                    "created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, 0, $7, $7) ON CONFLICT (code) DO NOTHING",
                    uuid.uuid4(), ref.business_id, code, ref.kind.value, ref.currency, ref.allow_negative,
                    entry.occurred_at)
                row = await self.conn.fetchrow(
                    "UPDATE ledger_accounts SET balance = balance + $2, updated_at = $3 "
                    "WHERE code = $1 RETURNING id, balance, allow_negative", code, by_code[code],
                    entry.occurred_at)
            assert row is not None
            if not row["allow_negative"] and row["balance"] < 0:
                raise InsufficientFunds("Insufficient funds for this movement")
            ids[code] = row["id"]
        await self.conn.execute(
            "WITH e AS (INSERT INTO journal_entries (id, business_id, kind, description, transaction_id, created_at) "
            "VALUES ($1, $2, $3, $4, $5, $6)) "
            "INSERT INTO postings (id, entry_id, account_id, amount, currency, pending, created_at) "
            "SELECT pid, $1, aid, amt, cur, false, $6 FROM unnest($7::uuid[], $8::uuid[], $9::numeric[], $10::text[]) "
            "AS t(pid, aid, amt, cur)",
            entry.id, entry.business_id, entry.kind, entry.description, entry.transaction_id, entry.occurred_at,
            [uuid.uuid4() for _ in entry.lines], [ids[line.account.code] for line in entry.lines],
            [line.amount for line in entry.lines], [line.account.currency for line in entry.lines])


class PgCards:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def save(self, card: Card) -> None:
        await self.conn.execute(
            "UPDATE virtual_cards SET status = $2, current_balance = $3, updated_at = $4 WHERE id = $1",
            card.id, card.status.value, card.current_balance, card.updated_at)


class PgAuthorizationUnitOfWork:
    """The slice of the unit of work the authorization decision uses."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self._events: list[DomainEvent] = []

    async def __aenter__(self) -> PgAuthorizationUnitOfWork:
        self._conn = await self.pool.acquire()
        self._tx = self._conn.transaction()
        await self._tx.start()
        self.authorizations = PgAuthorizationStore(self._conn)
        self.ledger = PgLedger(self._conn)
        self.cards = PgCards(self._conn)
        self._done = False
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        try:
            if not self._done:
                await self._tx.rollback()
        finally:
            await self.pool.release(self._conn)

    def emit(self, event: DomainEvent) -> None:
        self._events.append(event)

    def audit(self, *args: Any, **kwargs: Any) -> None:  # network messages are not user mutations
        return None

    async def commit(self) -> None:
        if self._events:
            await self._conn.executemany(
                "INSERT INTO outbox (id, business_id, event_type, payload, created_at) VALUES ($1, $2, $3, $4, $5)",
                [(e.id, e.business_id, e.type, e.payload, e.occurred_at) for e in self._events])
            self._events.clear()
        await self._tx.commit()
        self._done = True

    async def store_answer(self, message_id: str, endpoint: str, response: dict[str, Any], now: datetime) -> bool:
        """Record the answer to a webhook-id in this transaction; False if one exists."""
        v = await self._conn.fetchval(
            "INSERT INTO network_messages (id, endpoint, status_code, response, created_at) "
            "VALUES ($1, $2, 200, $3, $4) ON CONFLICT (id) DO NOTHING RETURNING id",
            message_id, endpoint, response, now)
        return v is not None
