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


async def _no_reset(conn: asyncpg.Connection) -> None:
    """The hot path never leaves session state behind (no advisory locks,
    LISTEN, SET or cursors; transactions always end), so the default reset
    round trip on every release is saved."""


async def create_pool(sqlalchemy_url: str, *, size: int) -> asyncpg.Pool:
    return await asyncpg.create_pool(asyncpg_dsn(sqlalchemy_url), min_size=1, max_size=size, init=_init,
                                     reset=_no_reset, server_settings={"timezone": "UTC", "jit": "off",
                                                                      "plan_cache_mode": "force_generic_plan"})


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


class DebitRefused(Exception):
    """A deferred debit would have overdrawn its account: nothing was written;
    run the decision again without deferring (PgLedger.post raises
    InsufficientFunds there, which the decision turns into a decline)."""


class PgAuthorizationStore:
    def __init__(self, conn: asyncpg.Connection, uow: PgAuthorizationUnitOfWork, *, assume_new: bool) -> None:
        self.conn = conn
        self.uow = uow
        # First attempt: skip the lookup by network id; a duplicate fails on the
        # unique index at commit and the retry (assume_new=False) finds it.
        self.assume_new = assume_new

    async def find(self, network_id: str) -> StoredAuth | None:
        if self.assume_new:
            self.assume_new = False  # only the request's own id, looked up first
            return None
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
        for period, delta in deltas.items():
            key = (card_id, period)
            self.uow.deferred_spend[key] = self.uow.deferred_spend.get(key, Decimal(0)) + delta

    async def history(self, card_id: uuid.UUID, now: datetime, merchant_key: str) -> CardHistory:
        return (await self.features(card_id, [], now, merchant_key, ""))[1]

    async def features(self, card_id: uuid.UUID, periods: list[str], now: datetime, merchant_key: str,
                       account_code: str) -> tuple[dict[str, Decimal], CardHistory, Decimal]:
        """Spend counters, the risk history aggregates and the funding balance in one statement."""
        r = await self.conn.fetchrow(
            """SELECT (SELECT coalesce(jsonb_object_agg(period, amount::text), '{}'::jsonb) FROM card_spend
                       WHERE card_id = $1 AND period = ANY($6::text[])) AS spend,
                      (SELECT balance FROM ledger_accounts WHERE code = $7) AS balance,
                      h.*
               FROM (SELECT count(*) FILTER (WHERE created_at >= $3) AS c10,
                      coalesce(sum(billing_amount) FILTER (WHERE created_at >= $3), 0) AS a10,
                      count(*) FILTER (WHERE created_at >= $4) AS c1h,
                      coalesce(sum(billing_amount) FILTER (WHERE created_at >= $4), 0) AS a1h,
                      count(*) AS n, coalesce(avg(billing_amount), 0) AS mean,
                      coalesce(max(billing_amount), 0) AS mx,
                      coalesce(bool_or(lower(btrim(coalesce(merchant_id, merchant_name, ''))) = $5), false) AS seen
                     FROM card_transactions
                     WHERE card_id = $1 AND response_code = '00' AND kind IN ('purchase', 'incremental')
                       AND created_at >= $2) h""",
            card_id, now - timedelta(days=HISTORY_DAYS), now - timedelta(minutes=10),
            now - timedelta(hours=1), merchant_key, periods, account_code)
        assert r is not None
        spend = {k: Decimal(v) for k, v in (r["spend"] or {}).items()}
        history = CardHistory(
            count_10m=r["c10"], amount_10m=r["a10"], count_1h=r["c1h"], amount_1h=r["a1h"],
            history_count=r["n"], history_mean=Decimal(r["mean"]).quantize(Decimal("0.000001")),
            history_max=r["mx"], seen_merchant=r["seen"])
        return spend, history, r["balance"] if r["balance"] is not None else Decimal(0)

    async def balance(self, account_code: str) -> Decimal:
        v = await self.conn.fetchval("SELECT balance FROM ledger_accounts WHERE code = $1", account_code)
        return v if v is not None else Decimal(0)

    async def insert(self, auth: StoredAuth, txn: Transaction) -> None:
        self.uow.deferred_rows.append((auth, txn))  # written at commit, in one statement

    async def update(self, auth: StoredAuth, txn_status: TransactionStatus | None = None) -> None:
        cols = [c.strip() for c in AUTH_COLUMNS.split(",")][1:]
        sets = ", ".join(f"{c} = ${i + 2}" for i, c in enumerate(cols))
        await self.conn.execute(f"UPDATE card_transactions SET {sets} WHERE id = $1", *_auth_args(auth))
        if txn_status is not None:
            await self.conn.execute("UPDATE transactions SET status = $2, updated_at = $3 WHERE id = $1",
                                    auth.transaction_id, txn_status.value, auth.updated_at)

    async def add_alert(self, auth: StoredAuth, assessment: RiskAssessment, action: str) -> uuid.UUID:
        alert_id = uuid.uuid4()
        self.uow.deferred_alerts.append((alert_id, auth, assessment, action))
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
    """Debits of accounts that must not go negative are applied at once with a
    conditional UPDATE (PostgreSQL checks the rule on the locked row, so
    concurrent entries cannot overdraw: the rule of
    veix.domain.ledger.apply_posting). Credits, and accounts allowed to go
    negative, cannot break the rule: they are upserted at commit together with
    the entry and its postings, in the same statement as the other writes."""

    def __init__(self, uow: PgAuthorizationUnitOfWork) -> None:
        self.uow = uow
        self.conn = uow.conn

    async def post(self, entry: JournalEntry) -> None:
        by_code: dict[str, Decimal] = {}
        refs = {}
        for line in entry.lines:
            by_code[line.account.code] = by_code.get(line.account.code, Decimal(0)) + line.amount
            refs[line.account.code] = line.account
        applied: list[tuple[str, Decimal]] = []
        deferred = []
        # The first entry's checked debits can go with the other writes: that
        # statement then fails (DebitRefused) if one would overdraw, and the
        # caller runs the decision again with the debits applied at once.
        defer = self.uow.defer_debits and not self.uow.deferred_entries
        for code in sorted(by_code):  # fixed lock order, as the Core ledger: no deadlocks
            ref, amount = refs[code], by_code[code]
            if amount < 0 and not ref.allow_negative and defer:
                self.uow.deferred_debits.append((code, amount, entry.occurred_at))
            elif amount < 0 and not ref.allow_negative:
                ok = await self.conn.fetchval(
                    "UPDATE ledger_accounts SET balance = balance + $2, updated_at = $3 "
                    "WHERE code = $1 AND balance + $2 >= 0 RETURNING true", code, amount, entry.occurred_at)
                if not ok:
                    for done_code, done_amount in applied:  # a refused entry leaves no trace
                        await self.conn.execute("UPDATE ledger_accounts SET balance = balance - $2 WHERE code = $1",
                                                done_code, done_amount)
                    raise InsufficientFunds("Insufficient funds for this movement")
                applied.append((code, amount))
            else:
                deferred.append((ref, amount, entry.occurred_at))
        self.uow.deferred_accounts.extend(deferred)
        self.uow.deferred_entries.append(entry)


class PgCards:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def save(self, card: Card) -> None:
        await self.conn.execute(
            "UPDATE virtual_cards SET status = $2, current_balance = $3, updated_at = $4 WHERE id = $1",
            card.id, card.status.value, card.current_balance, card.updated_at)


class PgAuthorizationUnitOfWork:
    """The slice of the unit of work the authorization decision uses. Reads
    and the balance-checking debit run at once; every other write is kept and
    sent at commit as ONE statement (data-modifying CTEs), so an approval costs
    BEGIN, card, features, debit, writes, COMMIT: six round trips."""

    def __init__(self, pool: asyncpg.Pool, *, assume_new: bool = False, defer_debits: bool = False) -> None:
        self.pool = pool
        self.assume_new = assume_new
        self.defer_debits = defer_debits
        self.deferred_debits: list[tuple[str, Decimal, datetime]] = []
        self._events: list[DomainEvent] = []
        self.deferred_rows: list[tuple[StoredAuth, Transaction]] = []
        self.deferred_spend: dict[tuple[uuid.UUID, str], Decimal] = {}
        self.deferred_alerts: list[tuple[uuid.UUID, StoredAuth, RiskAssessment, str]] = []
        self.deferred_accounts: list[tuple[Any, Decimal, datetime]] = []
        self.deferred_entries: list[JournalEntry] = []
        self.answer: tuple[str, str, dict[str, Any], datetime] | None = None

    async def __aenter__(self) -> PgAuthorizationUnitOfWork:
        self.conn = await self.pool.acquire()
        self._tx = self.conn.transaction()
        await self._tx.start()
        self.authorizations = PgAuthorizationStore(self.conn, self, assume_new=self.assume_new)
        self.ledger = PgLedger(self)
        self.cards = PgCards(self.conn)
        self._done = False
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        try:
            if not self._done:
                await self._tx.rollback()
        finally:
            await self.pool.release(self.conn)

    def emit(self, event: DomainEvent) -> None:
        self._events.append(event)

    def audit(self, *args: Any, **kwargs: Any) -> None:  # network messages are not user mutations
        return None

    def store_answer(self, message_id: str, endpoint: str, response: dict[str, Any], now: datetime) -> None:
        """Keep the answer to a webhook-id with the writes; see ``commit``."""
        self.answer = (message_id, endpoint, response, now)

    async def commit(self) -> bool:
        """Write everything and commit. False (and nothing written) when the
        webhook-id given to ``store_answer`` was answered before."""
        sql, args = self._writes_statement()
        if sql:
            try:
                answered = await self.conn.fetchval(sql, *args)
            except asyncpg.exceptions.DivisionByZeroError:  # the guard of the deferred debits: see _writes_statement
                raise DebitRefused from None
            if self.answer is not None and not answered:
                return False
        await self._tx.commit()
        self._done = True
        return True

    def _writes_statement(self) -> tuple[str, list[Any]]:
        parts: list[str] = []
        args: list[Any] = []

        def arg(value: Any) -> str:
            args.append(value)
            return f"${len(args)}"

        debits = []
        for i, (code, amount, at) in enumerate(self.deferred_debits):
            # Debits first, in lock order (the same order as PgLedger.post's own).
            delta = arg(amount)
            parts.append(
                f"d{i} AS (UPDATE ledger_accounts SET balance = balance + {delta}, updated_at = {arg(at)} "
                f"WHERE code = {arg(code)} AND balance + {delta} >= 0 RETURNING true AS ok)")
            debits.append(f"SELECT ok FROM d{i}")
        if self.deferred_rows:
            txns = [t for _, t in self.deferred_rows]
            parts.append(
                "t AS (INSERT INTO transactions (id, business_id, type, status, amount, currency, payment_method, "
                "risk_score, processing_fee, refunded_amount, error_code, error_message, metadata, created_at, "
                "updated_at) SELECT * FROM unnest("
                f"{arg([t.id for t in txns])}::uuid[], {arg([t.business_id for t in txns])}::uuid[], "
                f"{arg([t.type.value for t in txns])}::text[], {arg([t.status.value for t in txns])}::text[], "
                f"{arg([t.amount for t in txns])}::numeric[], {arg([t.currency for t in txns])}::text[], "
                f"{arg([t.payment_method for t in txns])}::text[], {arg([t.risk_score for t in txns])}::float8[], "
                f"{arg([t.processing_fee for t in txns])}::numeric[], "
                f"{arg([t.refunded_amount for t in txns])}::numeric[], "
                f"{arg([t.error_code for t in txns])}::text[], {arg([t.error_message for t in txns])}::text[], "
                f"{arg([t.metadata for t in txns])}::jsonb[], {arg([t.created_at for t in txns])}::timestamptz[], "
                f"{arg([t.updated_at for t in txns])}::timestamptz[]))")
            for i, (auth, _) in enumerate(self.deferred_rows):
                values = ", ".join(arg(v) for v in _auth_args(auth))
                parts.append(f"ct{i} AS (INSERT INTO card_transactions ({AUTH_COLUMNS}) VALUES ({values}))")
        for i, (ref, amount, at) in enumerate(self.deferred_accounts):
            parts.append(
                f"la{i} AS (INSERT INTO ledger_accounts (id, business_id, code, kind, currency, allow_negative, "
                f"balance, created_at, updated_at) VALUES ({arg(uuid.uuid4())}, {arg(ref.business_id)}, "
                f"{arg(ref.code)}, {arg(ref.kind.value)}, {arg(ref.currency)}, {arg(ref.allow_negative)}, "
                f"{arg(amount)}, {arg(at)}, {arg(at)}) ON CONFLICT (code) DO UPDATE SET "
                "balance = ledger_accounts.balance + EXCLUDED.balance, updated_at = EXCLUDED.updated_at "
                "RETURNING id, code)")
        for i, e in enumerate(self.deferred_entries):
            parts.append(
                f"je{i} AS (INSERT INTO journal_entries (id, business_id, kind, description, transaction_id, "
                f"created_at) VALUES ({arg(e.id)}, {arg(e.business_id)}, {arg(e.kind)}, {arg(e.description)}, "
                f"{arg(e.transaction_id)}, {arg(e.occurred_at)}))")
            accounts = " UNION ALL ".join(f"SELECT id, code FROM la{j}" for j in range(len(self.deferred_accounts)))
            lookup = f"coalesce((SELECT id FROM ({accounts}) x WHERE x.code = p.code LIMIT 1), " \
                "(SELECT id FROM ledger_accounts a WHERE a.code = p.code))" if accounts else \
                "(SELECT id FROM ledger_accounts a WHERE a.code = p.code)"
            parts.append(
                f"po{i} AS (INSERT INTO postings (id, entry_id, account_id, amount, currency, pending, created_at) "
                f"SELECT gen_random_uuid(), {arg(e.id)}, {lookup}, p.amount, p.currency, false, {arg(e.occurred_at)} "
                f"FROM unnest({arg([ln.account.code for ln in e.lines])}::text[], "
                f"{arg([ln.amount for ln in e.lines])}::numeric[], "
                f"{arg([ln.account.currency for ln in e.lines])}::text[]) AS p(code, amount, currency))")
        if self.deferred_spend:
            keys = list(self.deferred_spend)
            parts.append(
                "sp AS (INSERT INTO card_spend (card_id, period, amount) SELECT * FROM unnest("
                f"{arg([k[0] for k in keys])}::uuid[], {arg([k[1] for k in keys])}::text[], "
                f"{arg([self.deferred_spend[k] for k in keys])}::numeric[]) "
                "ON CONFLICT (card_id, period) DO UPDATE SET amount = card_spend.amount + EXCLUDED.amount)")
        for i, (alert_id, auth, assessment, action) in enumerate(self.deferred_alerts):
            parts.append(
                f"fa{i} AS (INSERT INTO fraud_alerts (id, business_id, card_id, transaction_id, card_transaction_id, "
                f"risk_score, reasons, action, created_at) VALUES ({arg(alert_id)}, {arg(auth.business_id)}, "
                f"{arg(auth.card_id)}, {arg(auth.transaction_id)}, {arg(auth.id)}, {arg(assessment.score)}, "
                f"{arg(list(assessment.reasons))}, {arg(action)}, {arg(auth.created_at)}))")
        if self._events:
            ev = self._events
            parts.append(
                "ob AS (INSERT INTO outbox (id, business_id, event_type, payload, created_at) SELECT * FROM unnest("
                f"{arg([e.id for e in ev])}::uuid[], {arg([e.business_id for e in ev])}::uuid[], "
                f"{arg([e.type for e in ev])}::text[], {arg([e.payload for e in ev])}::jsonb[], "
                f"{arg([e.occurred_at for e in ev])}::timestamptz[]))")
        final = "SELECT true"
        if self.answer is not None:
            message_id, endpoint, response, at = self.answer
            parts.append(
                "nm AS (INSERT INTO network_messages (id, endpoint, status_code, response, created_at) VALUES "
                f"({arg(message_id)}, {arg(endpoint)}, 200, {arg(response)}, {arg(at)}) "
                "ON CONFLICT (id) DO NOTHING RETURNING true AS inserted)")
            final = "SELECT coalesce((SELECT inserted FROM nm), false)"
        if debits:
            # A refused debit makes the statement fail (division by zero), so
            # none of its writes happen; commit() turns that into DebitRefused.
            final += f", (SELECT 1 / (count(*) = {len(debits)})::int FROM ({' UNION ALL '.join(debits)}) x)"
        if not parts:
            return "", []
        return "WITH " + ", ".join(parts) + " " + final, args
