"""Card authorization: requests, results and stored authorizations.

The decision order follows NETWORK.md: card and expiry (and CVV) -> card
state -> controls -> funds -> fraud score -> approval requirement.
ISO 8583 response codes: 00 approved, 05 do not honour, 14 invalid card,
51 insufficient funds, 54 expired card, 57 not permitted, 59 suspected fraud,
61 amount limit, 62 restricted card, 65 frequency limit; 91 issuer unavailable
(not a decision: the request waited past the answer deadline, see
``past_deadline``).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from enum import Enum
from typing import Any

from veix.domain.currencies import minor_units


def money_text(amount: Decimal, currency: str) -> str:
    """An amount at its currency's scale: "42.50" EUR, "5" JPY."""
    return str(amount.quantize(Decimal(1).scaleb(-minor_units(currency))))


KINDS = frozenset({"purchase", "incremental", "refund_credit", "balance_inquiry"})
RISK_HISTORY_KINDS = ("purchase", "incremental")


def merchant_key(merchant_id: str | None, merchant_name: str | None) -> str:
    """A merchant as approvals, the risk history and pending approvals match it:
    its network id, else its name, trimmed and lowercased."""
    return (merchant_id or merchant_name or "").strip().lower()


def velocity_minute(at: datetime) -> datetime:
    """The UTC minute the fraud score's velocity windows count a moment in
    (veix.domain.services.authorize.velocity_window)."""
    return at.astimezone(UTC).replace(second=0, microsecond=0)


class AuthorizationStatus(str, Enum):
    PENDING_APPROVAL = "pending_approval"
    APPROVED = "approved"
    DECLINED = "declined"
    CLEARED = "cleared"
    REVERSED = "reversed"
    EXPIRED = "expired"


@dataclass(frozen=True, slots=True)
class AuthRequest:
    network_id: str
    amount: Decimal
    currency: str
    merchant_name: str
    mcc: str
    merchant_country: str
    at: datetime
    kind: str = "purchase"
    pan: str | None = None
    card_token: str | None = None
    card_id: uuid.UUID | None = None  # the sandbox simulator addresses cards directly
    expiry: str | None = None
    cvv: str | None = None
    merchant_id: str | None = None
    original_id: str | None = None

    @property
    def merchant_key(self) -> str:
        return merchant_key(self.merchant_id, self.merchant_name)


@dataclass(slots=True)
class StoredAuth:
    """One row of ``card_transactions``."""

    id: uuid.UUID
    card_id: uuid.UUID
    business_id: uuid.UUID
    transaction_id: uuid.UUID
    network_id: str
    kind: str
    status: AuthorizationStatus
    response_code: str
    decline_reason: str | None
    merchant_name: str | None
    merchant_category_code: str | None
    merchant_country: str | None
    merchant_id: str | None
    original_amount: Decimal
    original_currency: str
    billing_amount: Decimal
    billing_currency: str
    exchange_rate: Decimal | None
    approved_amount: Decimal
    held_amount: Decimal
    cleared_amount: Decimal
    released_amount: Decimal
    risk_score: float
    risk_reasons: list[str]
    created_at: datetime
    updated_at: datetime
    parent_id: uuid.UUID | None = None
    spend_day: str | None = None
    spend_month: str | None = None
    hold_expires_at: datetime | None = None
    approval_expires_at: datetime | None = None
    decided_by: uuid.UUID | None = None

    @property
    def approved(self) -> bool:
        return self.response_code == "00"

    @property
    def merchant_key(self) -> str:
        """As AuthRequest.merchant_key: the merchant as the risk history knows it."""
        return merchant_key(self.merchant_id, self.merchant_name)

    @property
    def history_day(self) -> date:
        """The UTC day the risk history counts this authorization in."""
        return self.created_at.astimezone(UTC).date()

    @property
    def history_minute(self) -> datetime:
        """The UTC minute the velocity windows count this authorization in."""
        return velocity_minute(self.created_at)

    @property
    def in_risk_history(self) -> bool:
        """An approved purchase or incremental authorization: what the risk
        scorer's history of the card counts (veix.domain.services.authorize.CardHistory)."""
        return self.response_code == "00" and self.kind in RISK_HISTORY_KINDS


@dataclass(frozen=True, slots=True)
class AuthResult:
    """The answer to the network (NETWORK.md response)."""

    network_id: str
    approved: bool
    response_code: str
    reason: str
    approved_amount: Decimal
    amount_currency: str
    billing_amount: Decimal
    billing_currency: str
    exchange_rate: Decimal | None
    risk_score: float
    card_transaction_id: uuid.UUID | None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.network_id,
            "approved": self.approved,
            "response_code": self.response_code,
            "reason": self.reason,
            "approved_amount": money_text(self.approved_amount, self.amount_currency),
            "billing_amount": money_text(self.billing_amount, self.billing_currency),
            "billing_currency": self.billing_currency,
            "exchange_rate": str(self.exchange_rate) if self.exchange_rate is not None else None,
            "risk_score": self.risk_score,
            "card_transaction_id": str(self.card_transaction_id) if self.card_transaction_id else None,
        }

    @classmethod
    def of(cls, auth: StoredAuth) -> AuthResult:
        return cls(
            network_id=auth.network_id, approved=auth.approved, response_code=auth.response_code,
            reason=auth.decline_reason or "approved", approved_amount=auth.approved_amount,
            amount_currency=auth.original_currency, billing_amount=auth.billing_amount,
            billing_currency=auth.billing_currency, exchange_rate=auth.exchange_rate,
            risk_score=auth.risk_score, card_transaction_id=auth.id)


def decline(network_id: str, code: str, reason: str, *, amount_currency: str,
            billing_currency: str, billing_amount: Decimal = Decimal(0)) -> AuthResult:
    """A decline that records nothing (no card could be identified)."""
    return AuthResult(network_id, False, code, reason, Decimal(0), amount_currency,
                      billing_amount, billing_currency, None, 0.0, None)


def past_deadline(network_id: str, currency: str) -> AuthResult:
    """The answer to a request that waited past the network's deadline: 91
    (issuer unavailable), nothing decided and nothing recorded. The network
    has stood in for the issuer by then; a decision made now could hold funds
    for a purchase the network already settled otherwise."""
    return decline(network_id, "91", "issuer_unavailable", amount_currency=currency, billing_currency=currency)
