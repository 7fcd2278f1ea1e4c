"""The real-time authorization decision, in one database transaction.

Order (NETWORK.md): card and expiry (and CVV) -> card state -> controls ->
funds -> fraud score -> approval requirement; then the ledger hold, spend
counters, card transaction, transaction row and outbox events. The card row is
locked first, so authorizations of one card (and its spend counters) are
serialised; the funding account is locked by the ledger when the hold is
posted, which re-checks the balance, so concurrent authorizations can never
overspend a business.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Protocol
from zoneinfo import ZoneInfo

from veix.domain import ledger
from veix.domain.authorization import (
    AuthorizationStatus,
    AuthRequest,
    AuthResult,
    StoredAuth,
    decline,
    velocity_minute,
)
from veix.domain.card_controls import CardControls, check_amounts, check_merchant, check_time
from veix.domain.cards import Card, CardStatus, CardType, expiry_text
from veix.domain.dynamic_cvv import cvv_matches
from veix.domain.errors import InsufficientFunds, UnsupportedCurrency
from veix.domain.events import DomainEvent
from veix.domain.fx import ExchangeRateProvider, convert
from veix.domain.ids import new_id
from veix.domain.money import Money
from veix.domain.ports import CardVault
from veix.domain.risk import RiskAssessment, RiskFeatures, RiskPolicy, RiskScorer
from veix.domain.services.cards import CardUnitOfWork, prepaid_account
from veix.domain.transactions import Transaction, TransactionStatus, TransactionType


@dataclass(frozen=True, slots=True)
class AuthCard:
    card: Card
    controls: CardControls
    key_id: str
    pan_blob: bytes
    cvv_blob: bytes
    timezone: str
    business_country: str


# The risk history's window: the card's approved purchases of the last
# HISTORY_DAYS days, counted in whole UTC days (history_window).
HISTORY_DAYS = 90
MEAN_PLACES = Decimal("0.000001")


def history_window(now: datetime) -> tuple[date, datetime]:
    """The first UTC day the history's amounts cover, and the earliest moment a
    merchant must have been seen at to count as seen: the stores keep the
    amounts per UTC day (a read costs at most HISTORY_DAYS + 1 rows, whatever
    the card's past), so the amounts' window starts at the beginning of the
    day HISTORY_DAYS days ago, the merchants' at that exact moment."""
    start = now.astimezone(UTC) - timedelta(days=HISTORY_DAYS)
    return start.date(), start


def velocity_window(now: datetime) -> tuple[datetime, datetime]:
    """The first minutes the "last 10 minutes" and "last hour" velocity windows
    count: the stores keep approvals per card and UTC minute (a read costs at
    most 61 rows, whatever the card's traffic), so a window is the current
    minute and the 10 (60) whole minutes before it: all of the exact last 10
    minutes (hour), and at most one minute more."""
    minute = velocity_minute(now)
    return minute - timedelta(minutes=10), minute - timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class CardHistory:
    """The card's approved purchases and incremental authorizations before
    this one (StoredAuth.in_risk_history): in the last 10 minutes and hour,
    over the history window, and whether one was at this merchant."""

    count_10m: int = 0
    amount_10m: Decimal = Decimal(0)
    count_1h: int = 0
    amount_1h: Decimal = Decimal(0)
    history_count: int = 0
    history_mean: Decimal = Decimal(0)
    history_max: Decimal = Decimal(0)
    seen_merchant: bool = False

    @staticmethod
    def mean(total: Decimal, count: int) -> Decimal:
        return (total / count).quantize(MEAN_PLACES) if count else Decimal(0)


class AuthorizationStore(Protocol):
    async def find(self, network_id: str, *, for_update: bool = True) -> StoredAuth | None:
        """By network id, locked (for_update) where the database locks rows."""
    async def get(self, auth_id: uuid.UUID, *, for_update: bool = False) -> StoredAuth | None: ...
    async def card_for_auth(self, *, lookup_hash: str | None, token: str | None,
                            card_id: uuid.UUID | None) -> AuthCard | None: ...
    async def spend(self, card_id: uuid.UUID, periods: list[str]) -> dict[str, Decimal]: ...
    async def add_spend(self, card_id: uuid.UUID, deltas: dict[str, Decimal]) -> None: ...
    async def history(self, card_id: uuid.UUID, now: datetime, merchant_key: str) -> CardHistory: ...
    async def features(self, card_id: uuid.UUID, periods: list[str], now: datetime, merchant_key: str,
                       account_code: str) -> tuple[dict[str, Decimal], CardHistory, Decimal]: ...
    async def balance(self, account_code: str) -> Decimal: ...
    async def insert(self, auth: StoredAuth, txn: Transaction) -> None: ...
    async def update(self, auth: StoredAuth, txn_status: TransactionStatus | None = None) -> None: ...
    async def add_alert(self, auth: StoredAuth, assessment: RiskAssessment, action: str) -> uuid.UUID: ...
    async def approved_retry(self, card_id: uuid.UUID, merchant_key: str, amount: Decimal,
                             now: datetime) -> StoredAuth | None: ...


class AuthorizationUnitOfWork(CardUnitOfWork, Protocol):
    authorizations: AuthorizationStore


@dataclass(frozen=True)
class AuthorizationConfig:
    hold_days: int = 7
    approval_window: timedelta = timedelta(hours=24)
    max_authorizations_per_hour: int = 60
    dcvv_secret: bytes = b""
    dcvv_window_seconds: int = 300
    overclear_tolerance: Decimal = Decimal("0.20")
    policy: RiskPolicy = field(default_factory=RiskPolicy)


def holds_account(business_id: uuid.UUID, currency: str) -> ledger.AccountRef:
    return ledger.AccountRef(f"business:{business_id}:holds:{currency}", currency,
                             ledger.AccountKind.BUSINESS_HOLDS, business_id, allow_negative=False)


def settlement_account(currency: str) -> ledger.AccountRef:
    return ledger.AccountRef(f"external:card_network:{currency}", currency,
                             ledger.AccountKind.CARD_SETTLEMENT, None, allow_negative=True)


def funding_account(card: Card) -> ledger.AccountRef:
    if card.type is CardType.PREPAID:
        return prepaid_account(card.id, card.business_id, card.currency)
    return ledger.business_available(card.business_id, card.currency)


def periods(local: datetime) -> tuple[str, str]:
    day = local.date().isoformat()  # YYYY-MM-DD (years 1000-9999), cheaper than strftime
    return f"D{day}", f"M{day[:7]}"


def _pan_checks(req: AuthRequest, ac: AuthCard, vault: CardVault, cfg: AuthorizationConfig,
                now: datetime) -> tuple[str, str] | None:
    card = ac.card
    if req.expiry is not None and req.expiry != expiry_text(card.expiry_date):
        return "14", "expiry_mismatch"
    if req.cvv is not None:
        pan, static_cvv = vault.open(card.id, ac.key_id, ac.pan_blob, ac.cvv_blob)
        # The dynamic CVV window is the server's clock, not the request's `at`.
        if not cvv_matches(cfg.dcvv_secret, pan, expiry_text(card.expiry_date), req.cvv, now,
                           window_seconds=cfg.dcvv_window_seconds, static_cvv=static_cvv):
            return "14", "cvv_mismatch"
    return None


def _state_checks(card: Card, at: datetime) -> tuple[str, str] | None:
    if card.status is CardStatus.CLOSED:
        return "14", "card_closed"
    if card.status is CardStatus.EXPIRED or card.expiry_date < at.date():
        return "54", "card_expired"
    if card.status is CardStatus.INACTIVE:
        return "57", "card_inactive"
    if card.status is CardStatus.FROZEN:
        return "62", "card_frozen"
    return None


async def authorize(
    uow: AuthorizationUnitOfWork, vault: CardVault, scorer: RiskScorer,
    rates: ExchangeRateProvider, cfg: AuthorizationConfig, req: AuthRequest, *, now: datetime,
) -> AuthResult:
    store = uow.authorizations
    existing = await store.find(req.network_id)
    if existing is not None:
        return AuthResult.of(existing)  # idempotent by network id
    ac = await store.card_for_auth(
        lookup_hash=vault.lookup_hash(req.pan) if req.pan else None, token=req.card_token,
        card_id=req.card_id)
    if ac is None:
        return decline(req.network_id, "14", "unknown_card", amount_currency=req.currency,
                       billing_currency=req.currency)
    card = ac.card
    local = req.at.astimezone(ZoneInfo(ac.timezone))
    day, month = periods(local)

    try:
        billing, rate = convert(req.amount, req.currency, card.currency, rates)
    except UnsupportedCurrency:
        return await _record_decline(uow, ac, req, now, "05", "currency_not_supported",
                                     Decimal(0), None, day, month)
    exchange_rate = rate if req.currency != card.currency else None

    parent: StoredAuth | None = None
    refusal = _pan_checks(req, ac, vault, cfg, now) or _state_checks(card, req.at)
    if refusal is None and req.kind == "incremental":
        parent = await store.find(req.original_id or "")
        if parent is None or parent.card_id != card.id or parent.status is not AuthorizationStatus.APPROVED:
            refusal = ("05", "original_authorization_not_found")
    if refusal is None and req.kind == "refund_credit":
        return await _refund_credit(uow, ac, req, now, billing, exchange_rate, day, month)
    if refusal is None and req.kind == "balance_inquiry":
        return await _balance_inquiry(uow, ac, req, now, day, month)
    if refusal is None:
        refusal = check_merchant(ac.controls, req.mcc, req.merchant_country) or check_time(ac.controls, local)
    if refusal is None and card.merchant_lock is not None:
        lock = card.merchant_lock.strip().lower()
        if lock not in {req.merchant_key, req.merchant_name.strip().lower()}:
            refusal = ("62", "merchant_not_allowed")
    account = funding_account(card)
    history = CardHistory()
    if refusal is None:
        # Spend counters, risk history and the funding balance in one read.
        spent, history, balance = await store.features(card.id, [day, month], now, req.merchant_key,
                                                       account.code)
        total = billing + (parent.billing_amount if parent else Decimal(0))
        refusal = check_amounts(ac.controls, billing, transaction_total=total,
                                spent_today=spent.get(day, Decimal(0)),
                                spent_month=spent.get(month, Decimal(0)),
                                spending_limit=card.spending_limit if card.type is not CardType.PREPAID
                                else None)
        if refusal is None and history.count_1h >= cfg.max_authorizations_per_hour:
            refusal = ("65", "frequency_limit_exceeded")
        if refusal is None and balance < billing:
            refusal = ("51", "insufficient_funds")
    assessment = RiskAssessment(0.0, ())
    action = "approve"
    if refusal is None:
        assessment = scorer.score(RiskFeatures(
            amount=billing, currency=card.currency, merchant_id=req.merchant_id,
            merchant_name=req.merchant_name, mcc=req.mcc, merchant_country=req.merchant_country,
            business_country=ac.business_country, local_hour=local.hour,
            count_10m=history.count_10m, amount_10m=history.amount_10m, count_1h=history.count_1h,
            amount_1h=history.amount_1h, history_count=history.history_count,
            history_mean=history.history_mean, history_max=history.history_max,
            seen_merchant_before=history.seen_merchant))
        action = cfg.policy.action(assessment.score)
        if action == "decline":
            refusal = ("59", "suspected_fraud")
    granted: StoredAuth | None = None
    if refusal is None and ac.controls.requires_approval:
        granted = await store.approved_retry(card.id, req.merchant_key, billing, now)
        if granted is None:
            return await _record_decline(uow, ac, req, now, "05", "approval_required", billing,
                                         exchange_rate, day, month, assessment=assessment,
                                         status=AuthorizationStatus.PENDING_APPROVAL, action=action)
    if refusal is not None:
        code, reason = refusal
        return await _record_decline(uow, ac, req, now, code, reason, billing, exchange_rate, day,
                                     month, assessment=assessment,
                                     action="decline" if code == "59" else action)
    try:
        return await _approve(uow, ac, req, now, billing, exchange_rate, day, month, account,
                              assessment, action, parent, cfg, consumed=granted)
    except InsufficientFunds:
        # Another authorization took the money between our read and the locked hold.
        return await _record_decline(uow, ac, req, now, "51", "insufficient_funds", billing,
                                     exchange_rate, day, month, assessment=assessment, action=action)


def _new_auth(ac: AuthCard, req: AuthRequest, now: datetime, *, status: AuthorizationStatus,
              code: str, reason: str | None, billing: Decimal, rate: Decimal | None,
              assessment: RiskAssessment, day: str, month: str) -> StoredAuth:
    return StoredAuth(
        id=new_id(), card_id=ac.card.id, business_id=ac.card.business_id,
        transaction_id=new_id(), network_id=req.network_id, kind=req.kind, status=status,
        response_code=code, decline_reason=reason, merchant_name=req.merchant_name,
        merchant_category_code=req.mcc, merchant_country=req.merchant_country,
        merchant_id=req.merchant_id, original_amount=req.amount, original_currency=req.currency,
        billing_amount=billing, billing_currency=ac.card.currency, exchange_rate=rate,
        approved_amount=Decimal(0), held_amount=Decimal(0), cleared_amount=Decimal(0),
        released_amount=Decimal(0), risk_score=assessment.score, risk_reasons=list(assessment.reasons),
        created_at=now, updated_at=now, spend_day=day, spend_month=month)


def _txn(auth: StoredAuth, status: TransactionStatus, *, error: tuple[str, str] | None = None) -> Transaction:
    return Transaction(
        id=auth.transaction_id, business_id=auth.business_id, type=TransactionType.CARD_AUTHORIZATION,
        status=status, amount=auth.billing_amount, currency=auth.billing_currency,
        created_at=auth.created_at, updated_at=auth.updated_at, payment_method="card",
        risk_score=auth.risk_score, error_code=error[0] if error else None,
        error_message=error[1] if error else None,
        metadata={"card_transaction_id": str(auth.id), "merchant": auth.merchant_name,
                  "network_id": auth.network_id})


def _events(uow: AuthorizationUnitOfWork, auth: StoredAuth, kind: str) -> None:
    uow.emit(DomainEvent("card_transaction.created" if kind == "created" else f"card_transaction.{kind}",
                         auth.business_id, {
                             "card_transaction_id": str(auth.id), "card_id": str(auth.card_id),
                             "transaction_id": str(auth.transaction_id), "status": auth.status.name,
                             "response_code": auth.response_code, "reason": auth.decline_reason,
                             "amount": str(auth.billing_amount), "currency": auth.billing_currency}))


async def _alert(uow: AuthorizationUnitOfWork, auth: StoredAuth, assessment: RiskAssessment,
                 action: str) -> None:
    alert_id = await uow.authorizations.add_alert(auth, assessment, action)
    uow.emit(DomainEvent("fraud_alert.created", auth.business_id, {
        "alert_id": str(alert_id), "card_id": str(auth.card_id), "card_transaction_id": str(auth.id),
        "transaction_id": str(auth.transaction_id), "risk_score": assessment.score,
        "reasons": list(assessment.reasons), "action": action}))


async def _record_decline(
    uow: AuthorizationUnitOfWork, ac: AuthCard, req: AuthRequest, now: datetime, code: str,
    reason: str, billing: Decimal, rate: Decimal | None, day: str, month: str, *,
    assessment: RiskAssessment | None = None,
    status: AuthorizationStatus = AuthorizationStatus.DECLINED, action: str = "approve",
) -> AuthResult:
    assessment = assessment or RiskAssessment(0.0, ())
    auth = _new_auth(ac, req, now, status=status, code=code, reason=reason, billing=billing, rate=rate,
                     assessment=assessment, day=day, month=month)
    if status is AuthorizationStatus.PENDING_APPROVAL:
        auth.approval_expires_at = None
    await uow.authorizations.insert(auth, _txn(auth, TransactionStatus.FAILED, error=(code, reason)))
    _events(uow, auth, "created")
    if action in ("review", "decline") and assessment.reasons:
        await _alert(uow, auth, assessment, action)
    return AuthResult.of(auth)


async def _approve(
    uow: AuthorizationUnitOfWork, ac: AuthCard, req: AuthRequest, now: datetime, billing: Decimal,
    rate: Decimal | None, day: str, month: str, account: ledger.AccountRef,
    assessment: RiskAssessment, action: str, parent: StoredAuth | None, cfg: AuthorizationConfig,
    consumed: StoredAuth | None = None,
) -> AuthResult:
    card = ac.card
    auth = _new_auth(ac, req, now, status=AuthorizationStatus.APPROVED, code="00", reason=None,
                     billing=billing, rate=rate, assessment=assessment, day=day, month=month)
    auth.approved_amount = req.amount
    auth.held_amount = billing
    auth.hold_expires_at = now + timedelta(days=cfg.hold_days)
    if billing > 0:
        # The hold first: it is the one step that can still fail (a concurrent
        # authorization took the money), and nothing may be written before it.
        await uow.ledger.post(ledger.journal_entry(
            business_id=card.business_id, kind="card_hold", description=f"Hold {req.merchant_name[:100]}",
            lines=ledger.transfer(account, holds_account(card.business_id, card.currency),
                                  Money.of(billing, card.currency)),
            occurred_at=now, transaction_id=auth.transaction_id))
        await uow.authorizations.add_spend(card.id, {day: billing, month: billing})
    if consumed is not None:
        consumed.status = AuthorizationStatus.DECLINED
        consumed.decline_reason = "approval_used"
        consumed.updated_at = now
        await uow.authorizations.update(consumed)
    if parent is not None:
        # An incremental authorization extends its original: the hold lives on
        # the original (which clearings and reversals name); this row records
        # the increment.
        auth.parent_id = parent.id
        auth.held_amount = Decimal(0)
        parent.held_amount += billing
        parent.billing_amount += billing
        if parent.original_currency == req.currency:
            parent.approved_amount += req.amount
        parent.updated_at = now
        await uow.authorizations.update(parent)
    if card.type is CardType.PREPAID:
        card.current_balance -= billing
        await uow.cards.save(card)
    await uow.authorizations.insert(auth, _txn(auth, TransactionStatus.PENDING))
    _events(uow, auth, "created")
    if action == "review":
        await _alert(uow, auth, assessment, "review")
    if card.type is CardType.SINGLE_USE:
        card.status = CardStatus.CLOSED
        card.updated_at = now
        await uow.cards.save(card)
        uow.emit(DomainEvent("card.status_changed", card.business_id, {
            "card_id": str(card.id), "from": "ACTIVE", "to": "CLOSED", "reason": "single_use"}))
    return AuthResult.of(auth)


async def _refund_credit(uow: AuthorizationUnitOfWork, ac: AuthCard, req: AuthRequest, now: datetime,
                         billing: Decimal, rate: Decimal | None, day: str, month: str) -> AuthResult:
    """A merchant refund to the card: money comes back from the network."""
    card = ac.card
    auth = _new_auth(ac, req, now, status=AuthorizationStatus.CLEARED, code="00", reason=None,
                     billing=billing, rate=rate, assessment=RiskAssessment(0.0, ()), day=day, month=month)
    auth.approved_amount = req.amount
    auth.cleared_amount = billing
    if billing > 0:
        await uow.ledger.post(ledger.journal_entry(
            business_id=card.business_id, kind="card_refund", description=f"Refund {req.merchant_name[:100]}",
            lines=ledger.transfer(settlement_account(card.currency), funding_account(card),
                                  Money.of(billing, card.currency)),
            occurred_at=now, transaction_id=auth.transaction_id))
    if card.type is CardType.PREPAID:
        card.current_balance += billing
        await uow.cards.save(card)
    txn = _txn(auth, TransactionStatus.SUCCEEDED)
    txn.type = TransactionType.REFUND
    await uow.authorizations.insert(auth, txn)
    _events(uow, auth, "created")
    return AuthResult.of(auth)


async def _balance_inquiry(uow: AuthorizationUnitOfWork, ac: AuthCard, req: AuthRequest, now: datetime,
                           day: str, month: str) -> AuthResult:
    balance = await uow.authorizations.balance(funding_account(ac.card).code)
    auth = _new_auth(ac, req, now, status=AuthorizationStatus.APPROVED, code="00", reason=None,
                     billing=Decimal(0), rate=None, assessment=RiskAssessment(0.0, ()), day=day, month=month)
    await uow.authorizations.insert(auth, _txn(auth, TransactionStatus.SUCCEEDED))
    result = AuthResult.of(auth)
    return AuthResult(**{**{f: getattr(result, f) for f in result.__dataclass_fields__},
                         "extra": {"available_balance": str(balance)}})
