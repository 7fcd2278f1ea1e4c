"""The authorization hot path on PostgreSQL, on raw asyncpg.

Profiling the SQLAlchemy Core version of the decision showed most of its time
in building and compiling statements (coercions, cache keys) rather than in
PostgreSQL. Here every statement is a fixed SQL string that asyncpg prepares
once per connection, and the ledger hold is two conditional UPDATEs (the
non-negative rule checked by PostgreSQL on the locked row) plus one INSERT for
the entry and its postings. Same port as the Core store
(veix.persistence.repositories.authorizations), same tables, same results:
the test suite runs the network tests against both.

On this path the cost is mostly per round trip (a write and a wake-up on both
sides of the socket). A decision is first tried **optimistically**, in two:

1. the card with every feature the decision reads (spend counters, balances,
   risk history: bounded reads, see _HISTORY_SQL), in one statement (one
   snapshot), no transaction, no lock;
2. every write in one statement (data-modifying CTEs), in autocommit (one
   statement is atomic). An approval's statement first locks the card row, if
   it is still the version read (xmin), then raises each spend counter only
   from the amount read, then makes the balance-checking debit: if any of
   these fails, the statement fails (nothing written) and the decision runs
   again under the lock (NeedLock). Decisions that need more than this (an
   incremental authorization, a prepaid or single-use card, one that needs an
   approval, a retried network id) stop at their first other read or write
   (NeedLock "unsupported") and run under the lock.

Under the card's lock, four:

1. ``BEGIN; EXECUTE lock(key)``: the card row's lock (simple query protocol,
   several statements in one message; the lock statement is PREPAREd once per
   server connection and gets its key as a quoted literal);
2. the same read as above, in a new statement, so after the lock: a fresh
   snapshot that sees every decision on this card committed before ours;
3. every write in one statement, the balance-checking debit first: a refused
   debit fails the statement (DebitRefused);
4. COMMIT.

Both lock the card row before they write, so decisions on one card are
serialised either way; the optimistic one holds the lock only while its
writes statement runs. Measured (README, Performance): the optimistic path
saves a worker 5-10 % of its CPU per decision, PostgreSQL a few; a conflict
(two decisions on one card at once) costs the loser one more attempt.

Sending the writes the same way as the lock (``EXECUTE writes(literals);
COMMIT``, one round trip less) was measured slower: PostgreSQL's parsing of
some hundred literals and Python's quoting cost more than the round trip.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import inspect
import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from types import TracebackType
from typing import Any

import asyncpg
import orjson
from prometheus_client import Counter
from sqlalchemy.engine import URL, make_url

from veix.domain.authorization import AuthorizationStatus, StoredAuth
from veix.domain.card_controls import CardControls
from veix.domain.cards import Card, CardNetwork, CardStatus, CardType
from veix.domain.errors import InsufficientFunds
from veix.domain.events import DomainEvent
from veix.domain.ids import new_id
from veix.domain.ledger import JournalEntry
from veix.domain.risk import RiskAssessment
from veix.domain.services.authorize import AuthCard, CardHistory, history_window, periods, velocity_window
from veix.domain.transactions import Transaction, TransactionStatus

AUTHORIZATION_ATTEMPTS = Counter(
    "veix_authorization_attempts_total",
    "Attempts of the authorization decision on the PostgreSQL hot path, by path (optimistic, locked) and "
    "outcome (decided; unsupported or conflict: again under the card's lock; debit_refused, duplicate, "
    "run_again: again)",
    ["path", "outcome"])


def asyncpg_connect_args(sqlalchemy_url: str | URL) -> dict[str, Any]:
    """asyncpg.connect's arguments for the SQLAlchemy URL, read as the
    engine's own dialect reads it (a Unix socket as ``?host=/run/...``,
    percent-encoded or not, several hosts, a password with ``@``)."""
    from sqlalchemy.dialects.postgresql.asyncpg import dialect

    _, params = dialect().create_connect_args(make_url(sqlalchemy_url))
    accepted = inspect.signature(asyncpg.connect).parameters
    return {k: v for k, v in params.items() if k in accepted}


def _json_text(value: Any) -> str:
    """A json/jsonb parameter's text: orjson (several times json.dumps' speed: the
    decision's writes carry four JSON documents); json.dumps for what orjson refuses
    (integers beyond 64 bits), so anything json.dumps took still goes."""
    try:
        return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()
    except TypeError:  # orjson.JSONEncodeError is a TypeError
        return json.dumps(value)


async def _init(conn: asyncpg.Connection) -> None:
    for name in ("json", "jsonb"):
        await conn.set_type_codec(name, encoder=_json_text, decoder=orjson.loads, schema="pg_catalog")
    # numeric in text format: asyncpg's binary codec (Decimal.as_tuple and digit arithmetic)
    # costs about 3 µs per parameter and 1.2-1.7 µs per column read, str(Decimal) and
    # Decimal(str) a tenth of that (tests/performance/codecs.py). A decision sends some 25
    # amounts. (timestamptz stays binary: isoformat of an aware datetime costs more than
    # asyncpg's encoder.)
    await conn.set_type_codec("numeric", encoder=str, decoder=Decimal, schema="pg_catalog", format="text")


async def create_pool(sqlalchemy_url: str, *, size: int, lifo_after: float = 0.05,
                      server_settings: dict[str, str] | None = None) -> HotPool:
    args = asyncpg_connect_args(sqlalchemy_url)
    settings = {**(args.pop("server_settings", None) or {}), "timezone": "UTC", "jit": "off",
                "plan_cache_mode": "force_generic_plan", "standard_conforming_strings": "on",
                **(server_settings or {})}
    pool = HotPool({**args, "server_settings": settings}, size=size, lifo_after=lifo_after)
    pool.release(await pool.acquire())  # fail at start-up, not on the first authorization
    return pool


class QueueTimeout(Exception):
    """No connection came free before the waiter's ``start_by``."""


def _give_up(future: asyncio.Future[asyncpg.Connection | None]) -> None:
    if not future.done():
        future.set_exception(QueueTimeout())


class _Waiter:
    __slots__ = ("future", "since", "start_by", "timer")

    def __init__(self, future: asyncio.Future[asyncpg.Connection | None], since: float,
                 start_by: float | None) -> None:
        self.future = future
        self.since = since
        self.start_by = start_by
        self.timer: asyncio.TimerHandle | None = None


class HotPool:
    """The authorization path's connections: up to ``size``, opened on demand and
    handed out most recently used first. What asyncpg's Pool adds around each
    acquire and release (a proxy object, timeouts, a shielded release task) was 4 %
    of a worker's CPU, for features this path does not use: its connections
    never leave session state behind (no SET, LISTEN or advisory locks;
    transactions always end), so a release only checks that the connection is
    still usable (open, not in a transaction) and otherwise closes it; a
    waiter then opens a new one.

    Waiters are served in turn while the queue moves. Once its oldest waiter
    has waited ``lifo_after`` seconds the queue is standing (more requests
    than the connections can serve): then the newest waiter is served first,
    as it is the likeliest to still meet its deadline, and a waiter that has
    not got a connection by its ``start_by`` (``time.monotonic()``) gives up
    with QueueTimeout. Under a sustained overload most requests are then
    served at once and the excess is refused at its deadline, instead of every
    request waiting out a queue that never drains (adaptive LIFO, as in
    Facebook's "Fail at Scale"). ``lifo_after`` must be well above the waits
    of a short slow spell: in turn, every waiter of such a spell is served in
    time; newest first, its oldest waiters starve and are refused (``veix
    serve`` uses half the network deadline). A waiter without ``start_by`` (not
    on a network's clock) is served before any other once it is the oldest."""

    def __init__(self, connect_args: dict[str, Any], *, size: int, lifo_after: float = 0.05) -> None:
        if size < 1:
            raise ValueError("size must be at least 1")
        self._args = connect_args
        self._size = size
        self.lifo_after = lifo_after
        self._free: list[asyncpg.Connection] = []
        self._waiters: collections.deque[_Waiter] = collections.deque()
        self._open = 0  # connections open or being opened
        self._closed = False

    @property
    def size(self) -> int:
        """The most connections it opens."""
        return self._size

    async def acquire(self, start_by: float | None = None) -> asyncpg.Connection:
        while True:
            if self._closed:
                raise asyncpg.InterfaceError("the pool is closed")
            while self._free:
                conn = self._free.pop()
                if not conn.is_closed():
                    return conn
                self._open -= 1
            if self._open < self._size:
                self._open += 1
                try:
                    conn = await asyncpg.connect(**self._args)
                    await _init(conn)
                except BaseException:
                    self._open -= 1
                    self._wake_one(None)  # a waiter may open one instead
                    raise
                return conn
            loop = asyncio.get_running_loop()
            now = time.monotonic()
            if start_by is not None and now >= start_by:
                raise QueueTimeout
            waiter = _Waiter(loop.create_future(), now, start_by)
            if start_by is not None:
                waiter.timer = loop.call_later(start_by - now, _give_up, waiter.future)
            self._waiters.append(waiter)
            try:
                handed = await waiter.future
            except asyncio.CancelledError:
                future = waiter.future
                if future.done() and not future.cancelled() and future.exception() is None \
                        and future.result() is not None:
                    self.release(future.result())  # handed over just as we were cancelled
                raise
            finally:
                if waiter.timer is not None:
                    waiter.timer.cancel()
            if handed is not None:
                return handed
            # None: a connection was dropped; loop to open a new one

    def release(self, conn: asyncpg.Connection) -> None:
        if self._closed or conn.is_closed() or conn.is_in_transaction():
            if not conn.is_closed():
                conn.terminate()  # e.g. cancelled mid-statement: never hand it out again
            self._open -= 1
            self._wake_one(None)
            return
        if not self._wake_one(conn):
            self._free.append(conn)

    def _wake_one(self, conn: asyncpg.Connection | None) -> bool:
        waiters = self._waiters
        while waiters:
            oldest = waiters[0]
            if oldest.future.done():  # gave up or cancelled
                waiters.popleft()
                continue
            if oldest.start_by is None or time.monotonic() - oldest.since < self.lifo_after:
                chosen = waiters.popleft()
            else:
                chosen = waiters.pop()  # a standing queue: the newest first
                if chosen.future.done():
                    continue
            chosen.future.set_result(conn)
            return True
        return False

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[asyncpg.Connection]:
        conn = await self.acquire()
        try:
            yield conn
        finally:
            self.release(conn)

    async def close(self) -> None:
        """Close the idle connections; those in use close when released."""
        self._closed = True
        free, self._free = self._free, []
        for conn in free:
            self._open -= 1
            with contextlib.suppress(Exception):
                await conn.close(timeout=5)
        while self._waiters:
            waiter = self._waiters.popleft().future
            if not waiter.done():
                waiter.set_exception(asyncpg.InterfaceError("the pool is closed"))


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


# Late requests' earlier answers (LateLookups): for each (webhook-id, network id)
# the answer kept under the webhook-id and the card transaction of the network id.
_ANSWERED_BEFORE_SQL = (
    "SELECT k.i, m.status_code AS message_status, m.response AS message_response, "
    + ", ".join(f"ct.{c.strip()}" for c in AUTH_COLUMNS.split(",")) + """
FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS k(message_id, network_id, i)
LEFT JOIN network_messages m ON m.id = k.message_id
LEFT JOIN card_transactions ct ON ct.network_id = k.network_id""")
Earlier = tuple[int, dict[str, Any]] | StoredAuth | None


class LateLookups:
    """Finds out whether requests that came past the network's deadline were
    decided before (redeliveries), on a connection of its own (the hot path's
    may be the busy ones), in batches: one statement for every request waiting
    when it starts. Late requests come by the hundred per second in an overload,
    when the event loop is slow to resume each coroutine: one read per request
    on a few connections did not keep up (most missed their budget, measured).

    The connection's settings: ``statement_timeout`` bounds the statement
    (PostgreSQL cancels it, the connection stays usable, unlike a cancel from
    here), and no sequential scans or hash joins: the plan is generic and made
    once per connection, from whatever the statistics said then (a fresh
    database's empty tables made it hash whole tables for every batch, at 0.3 ms
    per lookup; by index it is 2-30 us)."""

    BATCH = 500

    def __init__(self, pool: HotPool) -> None:
        self._pool = pool
        self._waiting: list[tuple[str | None, str, asyncio.Future[Earlier]]] = []
        self._running: asyncio.Task[None] | None = None

    @classmethod
    async def open(cls, sqlalchemy_url: str, *, statement_timeout: float) -> LateLookups:
        return cls(await create_pool(sqlalchemy_url, size=1, server_settings={
            "statement_timeout": f"{max(1, round(statement_timeout * 1000))}ms",
            "enable_seqscan": "off", "enable_hashjoin": "off", "enable_mergejoin": "off"}))

    async def find(self, message_id: str | None, network_id: str, *, within: float) -> Earlier:
        """The answer kept under ``message_id``, else the card transaction of
        ``network_id``, else None; TimeoutError after ``within`` seconds; the
        statement's error (asyncpg's) if it failed."""
        future: asyncio.Future[Earlier] = asyncio.get_running_loop().create_future()
        self._waiting.append((message_id, network_id, future))
        if self._running is None or self._running.done():
            self._running = asyncio.create_task(self._run(), name="veix-late-lookups")
        async with asyncio.timeout(within):
            return await future  # (a timeout cancels the future: its batch skips it)

    async def _run(self) -> None:
        while self._waiting:
            batch = [w for w in self._waiting[:self.BATCH] if not w[2].done()]
            del self._waiting[:self.BATCH]
            if not batch:
                continue
            try:
                async with self._pool.connection() as conn:
                    rows = await conn.fetch(_ANSWERED_BEFORE_SQL, [m for m, _, _ in batch],
                                            [n for _, n, _ in batch])
            except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as exc:
                # each waiter gets the error (and answers 91)
                for _, _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for r in rows:
                future = batch[r["i"] - 1][2]
                if future.done():
                    continue
                if r["message_status"] is not None:
                    future.set_result((r["message_status"], r["message_response"]))
                else:
                    future.set_result(_auth(r) if r["id"] is not None else None)

    async def close(self) -> None:
        """Stop the batch in flight (its waiters time out: 91) and close the connection."""
        if self._running is not None and not self._running.done():
            self._running.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._running
        await self._pool.close()


_CARD_COLUMNS = """
SELECT c.id, c.business_id, c.cardholder_id, c.network, c.card_type, c.status, c.masked_number, c.last4,
       c.expiry_date, c.currency, c.spending_limit, c.current_balance, c.merchant_lock, c.metadata,
       c.public_token, c.created_at, c.updated_at, c.vault_key_id, c.card_number_encrypted, c.cvv_encrypted,
       cc.allowed_merchant_categories, cc.blocked_merchant_categories, cc.allowed_countries,
       cc.blocked_countries, cc.max_transaction_amount, cc.daily_limit, cc.monthly_limit, cc.allowed_days,
       cc.allowed_hours, cc.requires_approval, b.timezone AS business_timezone,
       b.legal_address->>'country' AS business_country, c.xmin::text AS card_xmin"""

_CARD_SQL = _CARD_COLUMNS + """
FROM virtual_cards c
LEFT JOIN card_controls cc ON cc.card_id = c.id
JOIN businesses b ON b.id = c.business_id
WHERE {where}
"""

# The risk history of features() (CardHistory): the velocity windows from the
# per-minute aggregates since the minutes $3 and $4 (velocity_window: at most
# 61 rows), the history from the per-UTC-day aggregates since the day of $2
# (at most 91 rows) and the merchant set: bounded reads whatever the card's
# past and traffic (tables.card_risk_minutes, card_risk_days).
_HISTORY_SQL = """SELECT v.c10, v.a10, v.c1h, v.a1h, d.n, d.total, d.mx,
                      EXISTS (SELECT 1 FROM card_merchants m WHERE m.card_id = {card} AND m.merchant_key = $5
                              AND m.last_seen_at >= $2) AS seen
                     FROM (SELECT coalesce(sum(count) FILTER (WHERE minute >= $3), 0)::int AS c10,
                                  coalesce(sum(amount) FILTER (WHERE minute >= $3), 0) AS a10,
                                  coalesce(sum(count), 0)::int AS c1h, coalesce(sum(amount), 0) AS a1h
                           FROM card_risk_minutes WHERE card_id = {card} AND minute >= $4) v,
                          (SELECT coalesce(sum(count), 0)::int AS n, coalesce(sum(amount), 0) AS total,
                                  coalesce(max(max_amount), 0) AS mx
                           FROM card_risk_days WHERE card_id = {card}
                             AND day >= ($2::timestamptz AT TIME ZONE 'UTC')::date) d"""

# The card (locked before this statement runs, so it sees every decision
# committed before ours) with everything the decision reads: the spend
# counters of the candidate periods ($6: the business's time zone is not known
# yet), the ids and balances of both possible funding accounts and of the
# holds account (the codes of veix.domain.ledger.business_available,
# veix.domain.services.cards.prepaid_account and
# veix.domain.services.authorize.holds_account: used only where the caller's
# codes match) and the risk history. One round trip instead of two.
_CARD_FEATURES_SQL = _CARD_COLUMNS + """,
       (SELECT coalesce(jsonb_object_agg(period, amount::text), '{{}}'::jsonb) FROM card_spend s
        WHERE s.card_id = c.id AND s.period = ANY($6::text[])) AS spend,
       (SELECT jsonb_object_agg(k.code, (SELECT jsonb_build_array(a.id, a.balance::text) FROM ledger_accounts a
                                         WHERE a.code = k.code))
        FROM unnest(ARRAY['business:' || c.business_id || ':available:' || c.currency,
                          'card:' || c.id || ':prepaid:' || c.currency,
                          'business:' || c.business_id || ':holds:' || c.currency]) AS k(code)) AS accounts,
       h.*
FROM virtual_cards c
LEFT JOIN card_controls cc ON cc.card_id = c.id
JOIN businesses b ON b.id = c.business_id
CROSS JOIN LATERAL (""" + _HISTORY_SQL.format(card="c.id") + """) h
WHERE {where}
"""

_LOCK_SQL = "SELECT 1 FROM virtual_cards WHERE {where} FOR UPDATE"
# Local dates and months anywhere on Earth (UTC-12 to UTC+14) at a moment.
_ZONE_SPAN = (timedelta(hours=-12), timedelta(0), timedelta(hours=14))


def candidate_periods(at: datetime) -> list[str]:
    """Every spend period (veix.domain.services.authorize.periods) ``at`` can
    fall in, whatever the business's time zone."""
    found: list[str] = []
    for offset in _ZONE_SPAN:
        for period in periods(at + offset):
            if period not in found:
                found.append(period)
    return found


@dataclass(frozen=True, slots=True)
class _Prefetch:
    now: datetime
    merchant_key: str
    periods: list[str]


@dataclass(frozen=True, slots=True)
class _Features:
    card_id: uuid.UUID
    card_xmin: str  # the card row's version as read (the optimistic writes' guard)
    spend: dict[str, Decimal]
    balances: dict[str, Decimal | None]
    history: CardHistory
    prefetch: _Prefetch


def _history(r: asyncpg.Record) -> CardHistory:
    return CardHistory(
        count_10m=r["c10"], amount_10m=r["a10"], count_1h=r["c1h"], amount_1h=r["a1h"],
        history_count=r["n"], history_mean=CardHistory.mean(r["total"], r["n"]), history_max=r["mx"],
        seen_merchant=r["seen"])


# Statements PREPAREd (SQL level) per server connection, by server process id:
# EXECUTE takes its arguments as literals, so "BEGIN; EXECUTE ..." is one
# simple-protocol round trip (the extended protocol asyncpg uses for
# parameters carries one statement per round trip).
_PREPARED: dict[int, dict[str, tuple[str, list[int]]]] = {}


def _forget_prepared(conn: asyncpg.Connection) -> None:
    _PREPARED.pop(conn.get_server_pid(), None)


def _quote(text: str) -> str:
    if "\x00" in text:
        raise ValueError("NUL in a literal")
    return "'" + text.replace("'", "''") + "'"  # standard_conforming_strings is on (create_pool)


def _scalar_text(value: Any) -> str:
    cls = type(value)
    if cls is str:
        return value  # type: ignore[no-any-return]
    if cls is uuid.UUID or cls is Decimal or cls is int:
        return str(value)
    if cls is datetime:
        if value.tzinfo is None:
            raise ValueError("naive datetime")
        return value.isoformat()  # type: ignore[no-any-return]
    if cls is bool:
        return "true" if value else "false"
    if cls is float:
        return repr(value)
    # Subclasses (str enums, IntEnum...): as their base type.
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, int):
        return int.__repr__(value)
    if isinstance(value, float):
        return float.__repr__(value)
    if isinstance(value, datetime) and value.tzinfo is not None:
        return datetime.isoformat(value)
    if isinstance(value, uuid.UUID | Decimal):
        return str(value)
    raise ValueError(f"no literal for {cls.__name__}")


def _array_item(item: Any, json_items: bool) -> str:
    if item is None:
        return "NULL"
    text = json.dumps(item) if json_items else _scalar_text(item)
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _literal(value: Any, kind: int) -> str:
    """``value`` as an SQL literal for a parameter of kind 0 (scalar), 1 (json),
    2 (array) or 3 (array of json)."""
    if value is None:
        return "NULL"
    if kind == 0:
        text = _scalar_text(value)
    elif kind == 1:
        text = json.dumps(value)
    else:
        text = "{" + ",".join(_array_item(item, kind == 3) for item in value) + "}"
    if "'" in text or "\x00" in text:
        return _quote(text)
    return "'" + text + "'"


def _kind(pg_type: str) -> int:
    array = pg_type.endswith("[]")
    json_type = pg_type.removesuffix("[]") in ("json", "jsonb")
    return 2 * array + json_type


async def _execute_text(conn: asyncpg.Connection, sql: str, args: list[Any] | tuple[Any, ...]) -> str | None:
    """``EXECUTE name(literals)`` for ``sql`` with ``args`` (``sql`` is
    PREPAREd on this connection the first time), or None if an argument has
    no safe literal (then send ``sql`` with parameters instead)."""
    prepared = _PREPARED.setdefault(conn.get_server_pid(), {})
    found = prepared.get(sql)
    if found is None:
        name = f"veix_w{len(prepared)}"
        await conn.execute(f"PREPARE {name} AS {sql}")
        types = await conn.fetchval(
            "SELECT parameter_types::text[] FROM pg_prepared_statements WHERE name = $1", name)
        found = prepared[sql] = (name, [_kind(t) for t in types or []])
    name, kinds = found
    if len(kinds) != len(args):
        return None
    try:
        literals = ", ".join([_literal(v, k) for v, k in zip(args, kinds, strict=True)])
    except ValueError:
        return None
    return f"EXECUTE {name}({literals})"


# The writes statement's guards fail it with these SQLSTATEs (veix_writes_guard, migration 0008).
STALE_READ = "VXS01"
DEBIT_REFUSED = "VXD01"


class RunAgain(Exception):
    """Nothing was written: run the decision again (in a new unit of work)."""


class DebitRefused(RunAgain):
    """A deferred debit would have overdrawn its account: nothing was written;
    run the decision again without deferring (PgLedger.post raises
    InsufficientFunds there, which the decision turns into a decline)."""


class NeedLock(RunAgain):
    """The optimistic attempt cannot finish: the decision needs a read or a
    write it does not make (``reason`` "unsupported"), or its writes statement
    found that something it read changed, or a debit refused ("conflict").
    Nothing was written: run the decision again under the card's lock."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class PgAuthorizationStore:
    def __init__(self, conn: asyncpg.Connection, uow: PgAuthorizationUnitOfWork, *, assume_new: bool) -> None:
        self.conn = conn
        self.uow = uow
        # First attempt: skip the lookup by network id; a duplicate fails on the
        # unique index at commit and the retry (assume_new=False) finds it.
        self.assume_new = assume_new

        self.prefetched: _Prefetch | None = None
        self.features_read: _Features | None = None

    def prefetch(self, now: datetime, merchant_key: str, at: datetime) -> None:
        """Read the decision's features with the card (see _CARD_FEATURES_SQL):
        ``features`` with these ``now`` and ``merchant_key`` then costs no
        round trip."""
        self.prefetched = _Prefetch(now, merchant_key, candidate_periods(at))

    async def find(self, network_id: str, *, for_update: bool = True) -> StoredAuth | None:
        if self.assume_new:
            self.assume_new = False  # only the request's own id, looked up first
            return None
        await self.uow.begin()
        lock = " FOR UPDATE" if for_update else ""
        r = await self.conn.fetchrow(
            f"SELECT {AUTH_COLUMNS} FROM card_transactions WHERE network_id = $1{lock}", network_id)
        return _auth(r) if r else None

    async def get(self, auth_id: uuid.UUID, *, for_update: bool = False) -> StoredAuth | None:
        await self.uow.begin()
        lock = " FOR UPDATE" if for_update else ""
        r = await self.conn.fetchrow(f"SELECT {AUTH_COLUMNS} FROM card_transactions WHERE id = $1{lock}", auth_id)
        return _auth(r) if r else None

    async def card_for_auth(self, *, lookup_hash: str | None, token: str | None,
                            card_id: uuid.UUID | None) -> AuthCard | None:
        key: Any
        if lookup_hash is not None:
            where, key = "c.card_number_hash = $1", lookup_hash
        elif token is not None:
            where, key = "c.public_token = $1", token
        elif card_id is not None:
            where, key = "c.id = $1", card_id
        else:
            return None
        if self.uow.optimistic:
            if self.prefetched is None:
                raise NeedLock("unsupported")
            # No lock: the writes statement checks that nothing read here changed (see commit).
        else:
            # The card's lock first: every decision on this card committed before
            # it is then visible to the reads below (a new statement, a new snapshot).
            lock_sql = _LOCK_SQL.format(where=where.replace("c.", ""))
            lock = None if self.uow.begun else await _execute_text(self.conn, lock_sql, (key,))
            if lock is not None:
                try:
                    await self.uow.begin(lock)  # BEGIN and the lock in one round trip
                except asyncpg.exceptions.InvalidSQLStatementNameError:
                    _forget_prepared(self.conn)  # a new server process behind a known pid
                    raise RunAgain from None
            else:
                await self.uow.begin()
                await self.conn.execute(lock_sql, key)
        pre = self.prefetched
        if pre is None:
            r = await self.conn.fetchrow(_CARD_SQL.format(where=where), key)
        else:
            r = await self.conn.fetchrow(_CARD_FEATURES_SQL.format(where=where), key, history_window(pre.now)[1],
                                         *velocity_window(pre.now),
                                         pre.merchant_key, pre.periods)
        if r is None:
            return None
        card = Card(
            id=r["id"], business_id=r["business_id"], cardholder_id=r["cardholder_id"],
            network=CardNetwork(r["network"]), type=CardType(r["card_type"]), status=CardStatus(r["status"]),
            masked_number=r["masked_number"], last4=r["last4"], expiry_date=r["expiry_date"],
            currency=r["currency"], spending_limit=r["spending_limit"], current_balance=r["current_balance"],
            merchant_lock=r["merchant_lock"], metadata=r["metadata"] or {}, public_token=r["public_token"],
            created_at=r["created_at"], updated_at=r["updated_at"])
        if pre is not None:
            balances: dict[str, Decimal | None] = {}
            for code, found in (r["accounts"] or {}).items():
                balances[code] = Decimal(found[1]) if found else None
                if found:
                    self.uow.account_ids[code] = uuid.UUID(found[0])
            spend = {k: Decimal(v) for k, v in (r["spend"] or {}).items()}
            self.features_read = _Features(card.id, r["card_xmin"], spend, balances, _history(r), pre)
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
        await self.uow.begin()
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
        """Spend counters, the risk history aggregates and the funding balance:
        read with the card when prefetched for these arguments, else in one statement."""
        f = self.features_read
        if (f is not None and f.card_id == card_id and f.prefetch.now == now
                and f.prefetch.merchant_key == merchant_key and all(p in f.prefetch.periods for p in periods)
                and account_code in f.balances):
            balance = f.balances[account_code]
            return ({p: f.spend[p] for p in periods if p in f.spend}, f.history,
                    balance if balance is not None else Decimal(0))
        await self.uow.begin()
        r = await self.conn.fetchrow(
            """SELECT (SELECT coalesce(jsonb_object_agg(period, amount::text), '{}'::jsonb) FROM card_spend
                       WHERE card_id = $1 AND period = ANY($6::text[])) AS spend,
                      (SELECT balance FROM ledger_accounts WHERE code = $7) AS balance,
                      h.*
               FROM (""" + _HISTORY_SQL.format(card="$1") + ") h",
            card_id, history_window(now)[1], *velocity_window(now), merchant_key, periods, account_code)
        assert r is not None
        spend = {k: Decimal(v) for k, v in (r["spend"] or {}).items()}
        return spend, _history(r), r["balance"] if r["balance"] is not None else Decimal(0)

    async def balance(self, account_code: str) -> Decimal:
        await self.uow.begin()
        v = await self.conn.fetchval("SELECT balance FROM ledger_accounts WHERE code = $1", account_code)
        return v if v is not None else Decimal(0)

    async def insert(self, auth: StoredAuth, txn: Transaction) -> None:
        self.uow.deferred_rows.append((auth, txn))  # written at commit, in one statement

    async def update(self, auth: StoredAuth, txn_status: TransactionStatus | None = None) -> None:
        await self.uow.begin()
        cols = [c.strip() for c in AUTH_COLUMNS.split(",")][1:]
        sets = ", ".join(f"{c} = ${i + 2}" for i, c in enumerate(cols))
        await self.conn.execute(f"UPDATE card_transactions SET {sets} WHERE id = $1", *_auth_args(auth))
        if txn_status is not None:
            await self.conn.execute("UPDATE transactions SET status = $2, updated_at = $3 WHERE id = $1",
                                    auth.transaction_id, txn_status.value, auth.updated_at)

    async def add_alert(self, auth: StoredAuth, assessment: RiskAssessment, action: str) -> uuid.UUID:
        alert_id = new_id()
        self.uow.deferred_alerts.append((alert_id, auth, assessment, action))
        return alert_id

    async def approved_retry(self, card_id: uuid.UUID, merchant_key: str, amount: Decimal,
                             now: datetime) -> StoredAuth | None:
        await self.uow.begin()
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
                await self.uow.begin()
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
    def __init__(self, uow: PgAuthorizationUnitOfWork) -> None:
        self.uow = uow
        self.conn = uow.conn

    async def save(self, card: Card) -> None:
        await self.uow.begin()
        await self.conn.execute(
            "UPDATE virtual_cards SET status = $2, current_balance = $3, updated_at = $4 WHERE id = $1",
            card.id, card.status.value, card.current_balance, card.updated_at)


class PgAuthorizationUnitOfWork:
    """The slice of the unit of work the authorization decision uses (see the
    module's docstring). ``optimistic``: no transaction; the features are read
    in one statement and every write goes in one guarded statement (two round
    trips); anything else raises NeedLock. Otherwise BEGIN goes with the first
    statement (the card's lock); reads run at once; every write, the
    balance-checking debit included (``defer_debits``), is kept and sent as ONE
    statement before COMMIT."""

    def __init__(self, pool: HotPool, *, assume_new: bool = False, defer_debits: bool = False,
                 optimistic: bool = False, start_by: float | None = None) -> None:
        self.pool = pool
        self.start_by = start_by  # QueueTimeout if no connection came free by then (HotPool.acquire)
        self.optimistic = optimistic
        self.assume_new = assume_new
        self.defer_debits = defer_debits
        self.deferred_debits: list[tuple[str, Decimal, datetime]] = []
        self._events: list[DomainEvent] = []
        self.deferred_rows: list[tuple[StoredAuth, Transaction]] = []
        self.deferred_spend: dict[tuple[uuid.UUID, str], Decimal] = {}
        self.deferred_alerts: list[tuple[uuid.UUID, StoredAuth, RiskAssessment, str]] = []
        self.deferred_accounts: list[tuple[Any, Decimal, datetime]] = []
        self.account_ids: dict[str, uuid.UUID] = {}  # ledger account ids by code, as read with the card
        self.deferred_entries: list[JournalEntry] = []
        self.answer: tuple[str, str, dict[str, Any], datetime] | None = None

    async def __aenter__(self) -> PgAuthorizationUnitOfWork:
        self.conn = await self.pool.acquire(self.start_by)
        self.begun = False  # BEGIN goes with the first statement (see begin)
        self.authorizations = PgAuthorizationStore(self.conn, self, assume_new=self.assume_new)
        self.ledger = PgLedger(self)
        self.cards = PgCards(self)
        self._done = False
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        try:
            if self.begun and not self._done:
                await self.conn.execute("ROLLBACK")
        finally:
            self.pool.release(self.conn)  # terminated there if still in a transaction

    async def begin(self, then: str = "") -> None:
        """Open the transaction, once; ``then``, a statement without
        parameters, goes in the same round trip (simple query protocol)."""
        if self.optimistic:
            raise NeedLock("unsupported")  # every read and write it makes needs no transaction
        if not self.begun:
            self.begun = True  # (if ``then`` fails, the transaction is open: rolled back on exit)
            await self.conn.execute(f"BEGIN; {then}" if then else "BEGIN")

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
        if not sql:
            if self.begun:
                await self.conn.execute("COMMIT")
            self._done = True
            return True
        if not self.optimistic:
            await self.begin()
        try:
            answered = (await self.conn.fetchrow(sql, *args))["answered"]
        except asyncpg.PostgresError as failed:  # a guard of the statement: see _writes_statement
            if failed.sqlstate == STALE_READ or (failed.sqlstate == DEBIT_REFUSED and self.optimistic):
                raise NeedLock("conflict") from None
            if failed.sqlstate == DEBIT_REFUSED:
                raise DebitRefused from None
            raise
        if self.answer is not None and not answered:
            return False
        if not self.optimistic:
            await self.conn.execute("COMMIT")
        self._done = True
        return True

    def _writes_statement(self) -> tuple[str, list[Any]]:
        parts: list[str] = []
        args: list[Any] = []

        def arg(value: Any) -> str:
            args.append(value)
            return f"${len(args)}"

        guards: list[str] = []
        # Optimistic (no transaction, nothing locked while deciding): an approval's writes
        # (or any that move money) happen only if what the decision read is unchanged. The card row, locked here as the
        # locked path locks it before reading, has the version read (xmin: every change of the
        # card, its status, limits or controls, updates the row); each spend counter is raised
        # only from the amount read (a compare-and-set; every approval on the card raises them,
        # so it also guards the velocity and history read). The debits guard the balances.
        cas = self.optimistic and bool(self.deferred_spend or self.deferred_debits or any(
            a.status is AuthorizationStatus.APPROVED for a, _ in self.deferred_rows))
        if cas:
            read = self.authorizations.features_read
            assert read is not None  # the optimistic attempt reads the features with the card
            parts.append(f"g AS (SELECT 1 FROM virtual_cards WHERE id = {arg(read.card_id)} "
                         f"AND xmin::text = {arg(read.card_xmin)} FOR UPDATE)")
            guards.append("EXISTS (SELECT FROM g)")
            for i, ((spend_card, period), raised) in enumerate(self.deferred_spend.items()):
                was = read.spend.get(period)  # (the decision raises only its own card's counters)
                if was is None:  # none read: there must be none yet
                    parts.append(f"s{i} AS (INSERT INTO card_spend (card_id, period, amount) VALUES "
                                 f"({arg(spend_card)}, {arg(period)}, {arg(raised)}) ON CONFLICT DO NOTHING "
                                 "RETURNING 1)")
                else:
                    parts.append(f"s{i} AS (UPDATE card_spend SET amount = amount + {arg(raised)} "
                                 f"WHERE card_id = {arg(spend_card)} AND period = {arg(period)} "
                                 f"AND amount = {arg(was)} RETURNING 1)")
                guards.append(f"EXISTS (SELECT FROM s{i})")
        debits = []
        for i, (code, amount, at) in enumerate(self.deferred_debits):
            # Debits first, in lock order (the same order as PgLedger.post's own).
            delta = arg(amount)
            parts.append(
                f"d{i} AS (UPDATE ledger_accounts SET balance = balance + {delta}, updated_at = {arg(at)} "
                f"WHERE code = {arg(code)} AND balance + {delta} >= 0 RETURNING true AS ok)")
            debits.append(f"EXISTS (SELECT FROM d{i})")
        if self.deferred_rows:
            rows = ", ".join(
                "(" + ", ".join(arg(v) for v in (
                    t.id, t.business_id, t.type.value, t.status.value, t.amount, t.currency, t.payment_method,
                    t.risk_score, t.processing_fee, t.refunded_amount, t.error_code, t.error_message, t.metadata,
                    t.created_at, t.updated_at)) + ")"
                for _, t in self.deferred_rows)
            parts.append(
                "t AS (INSERT INTO transactions (id, business_id, type, status, amount, currency, payment_method, "
                "risk_score, processing_fee, refunded_amount, error_code, error_message, metadata, created_at, "
                f"updated_at) VALUES {rows})")
            for i, (auth, _) in enumerate(self.deferred_rows):
                values = ", ".join(arg(v) for v in _auth_args(auth))
                parts.append(f"ct{i} AS (INSERT INTO card_transactions ({AUTH_COLUMNS}) VALUES ({values}))")
        ids = self.account_ids
        upserted = []
        for i, (ref, amount, at) in enumerate(self.deferred_accounts):
            if ref.code in ids:  # known to exist: a plain update
                parts.append(f"la{i} AS (UPDATE ledger_accounts SET balance = balance + {arg(amount)}, "
                             f"updated_at = {arg(at)} WHERE id = {arg(ids[ref.code])})")
                continue
            upserted.append(i)
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
            if all(ln.account.code in ids for ln in e.lines):
                rows = ", ".join(
                    f"({arg(new_id())}, {arg(e.id)}, {arg(ids[ln.account.code])}, {arg(ln.amount)}, "
                    f"{arg(ln.account.currency)}, false, {arg(e.occurred_at)})" for ln in e.lines)
                parts.append(f"po{i} AS (INSERT INTO postings (id, entry_id, account_id, amount, currency, pending, "
                             f"created_at) VALUES {rows})")
                continue
            accounts = " UNION ALL ".join(f"SELECT id, code FROM la{j}" for j in upserted)
            lookup = f"coalesce((SELECT id FROM ({accounts}) x WHERE x.code = p.code LIMIT 1), " \
                "(SELECT id FROM ledger_accounts a WHERE a.code = p.code))" if accounts else \
                "(SELECT id FROM ledger_accounts a WHERE a.code = p.code)"
            lines = ", ".join(
                f"({arg(new_id())}::uuid, {arg(ln.account.code)}::text, {arg(ln.amount)}::numeric, "
                f"{arg(ln.account.currency)}::text)" for ln in e.lines)
            parts.append(
                f"po{i} AS (INSERT INTO postings (id, entry_id, account_id, amount, currency, pending, created_at) "
                f"SELECT p.id, {arg(e.id)}, {lookup}, p.amount, p.currency, false, {arg(e.occurred_at)} "
                f"FROM (VALUES {lines}) AS p(id, code, amount, currency))")
        history = [a for a, _ in self.deferred_rows if a.in_risk_history]
        if history:
            minutes: dict[tuple[uuid.UUID, datetime], tuple[int, Decimal]] = {}
            days: dict[tuple[uuid.UUID, date], tuple[int, Decimal, Decimal]] = {}
            merchants: dict[tuple[uuid.UUID, str], tuple[datetime, datetime]] = {}
            for a in history:
                mn, mtotal = minutes.get((a.card_id, a.history_minute), (0, Decimal(0)))
                minutes[(a.card_id, a.history_minute)] = (mn + 1, mtotal + a.billing_amount)
                key = (a.card_id, a.history_day)
                n, total, top = days.get(key, (0, Decimal(0), a.billing_amount))
                days[key] = (n + 1, total + a.billing_amount, max(top, a.billing_amount))
                mkey = (a.card_id, a.merchant_key)
                first, last = merchants.get(mkey, (a.created_at, a.created_at))
                merchants[mkey] = (min(first, a.created_at), max(last, a.created_at))
            rows = ", ".join(f"({arg(card_id)}, {arg(minute)}, {arg(n)}, {arg(total)})"
                             for (card_id, minute), (n, total) in minutes.items())
            parts.append(
                f"rv AS (INSERT INTO card_risk_minutes (card_id, minute, count, amount) VALUES {rows} "
                "ON CONFLICT (card_id, minute) DO UPDATE SET count = card_risk_minutes.count + EXCLUDED.count, "
                "amount = card_risk_minutes.amount + EXCLUDED.amount)")
            rows = ", ".join(f"({arg(card_id)}, {arg(day)}, {arg(n)}, {arg(total)}, {arg(top)})"
                             for (card_id, day), (n, total, top) in days.items())
            parts.append(
                f"rd AS (INSERT INTO card_risk_days (card_id, day, count, amount, max_amount) VALUES {rows} "
                "ON CONFLICT (card_id, day) DO UPDATE SET count = card_risk_days.count + EXCLUDED.count, "
                "amount = card_risk_days.amount + EXCLUDED.amount, "
                "max_amount = greatest(card_risk_days.max_amount, EXCLUDED.max_amount))")
            rows = ", ".join(f"({arg(card_id)}, {arg(mkey)}, {arg(first)}, {arg(last)})"
                             for (card_id, mkey), (first, last) in merchants.items())
            parts.append(
                "rm AS (INSERT INTO card_merchants (card_id, merchant_key, first_seen_at, last_seen_at) "
                f"VALUES {rows} ON CONFLICT (card_id, merchant_key) DO UPDATE SET "
                "last_seen_at = greatest(card_merchants.last_seen_at, EXCLUDED.last_seen_at))")
        if self.deferred_spend and not cas:
            rows = ", ".join(f"({arg(card_id)}, {arg(period)}, {arg(delta)})"
                             for (card_id, period), delta in self.deferred_spend.items())
            parts.append(
                f"sp AS (INSERT INTO card_spend (card_id, period, amount) VALUES {rows} "
                "ON CONFLICT (card_id, period) DO UPDATE SET amount = card_spend.amount + EXCLUDED.amount)")
        for i, (alert_id, auth, assessment, action) in enumerate(self.deferred_alerts):
            parts.append(
                f"fa{i} AS (INSERT INTO fraud_alerts (id, business_id, card_id, transaction_id, card_transaction_id, "
                f"risk_score, reasons, action, created_at) VALUES ({arg(alert_id)}, {arg(auth.business_id)}, "
                f"{arg(auth.card_id)}, {arg(auth.transaction_id)}, {arg(auth.id)}, {arg(assessment.score)}, "
                f"{arg(list(assessment.reasons))}, {arg(action)}, {arg(auth.created_at)}))")
        if self._events:
            rows = ", ".join(
                f"({arg(e.id)}, {arg(e.business_id)}, {arg(e.type)}, {arg(e.payload)}, {arg(e.occurred_at)})"
                for e in self._events)
            parts.append(f"ob AS (INSERT INTO outbox (id, business_id, event_type, payload, created_at) VALUES {rows})")
        answered = "true"
        if self.answer is not None:
            message_id, endpoint, response, at = self.answer
            parts.append(
                "nm AS (INSERT INTO network_messages (id, endpoint, status_code, response, created_at) VALUES "
                f"({arg(message_id)}, {arg(endpoint)}, 200, {arg(response)}, {arg(at)}) "
                "ON CONFLICT (id) DO NOTHING RETURNING true AS inserted)")
            if self.optimistic:  # no transaction to roll back: an answered webhook-id fails the statement
                guards.append("EXISTS (SELECT FROM nm)")
            else:
                answered = "coalesce((SELECT inserted FROM nm), false)"
        # A failed guard (the card's lock first) or a refused debit fails the statement
        # (veix_writes_guard, migration 0008: an error with its own code, VXS01 or VXD01, and a
        # message that says what happened in the server's log), so none of its writes happen;
        # commit() turns that into NeedLock or DebitRefused.
        columns = [f"{answered} AS answered"]
        if guards or debits:  # one call: the guards are tested first
            columns.append(f"veix_writes_guard({' AND '.join(guards) or 'true'}, {' AND '.join(debits) or 'true'}) "
                           "AS guarded")
        final = "SELECT " + ", ".join(columns)
        if not parts:
            return "", []
        return "WITH " + ", ".join(parts) + " " + final, args
