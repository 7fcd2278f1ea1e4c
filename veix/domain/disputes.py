"""Disputes (chargebacks) and the payment methods payments were made with."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import Enum
from typing import Any

from veix.domain.gateway import PaymentMethodType
from veix.domain.transactions import Gateway, TransactionStatus


class DisputeStatus(str, Enum):
    NEEDS_RESPONSE = "needs_response"
    UNDER_REVIEW = "under_review"
    WON = "won"
    LOST = "lost"


OPEN_DISPUTE = frozenset({DisputeStatus.NEEDS_RESPONSE, DisputeStatus.UNDER_REVIEW})


@dataclass(slots=True)
class Dispute:
    id: uuid.UUID
    business_id: uuid.UUID
    transaction_id: uuid.UUID
    gateway: Gateway
    gateway_reference: str
    amount: Decimal
    currency: str
    reason: str
    status: DisputeStatus
    evidence_due_by: datetime | None
    evidence: dict[str, Any] | None
    withdrawn_available: Decimal
    withdrawn_receivable: Decimal
    status_before: TransactionStatus
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class PaymentMethodRecord:
    id: uuid.UUID
    business_id: uuid.UUID
    type: PaymentMethodType
    display: str
    gateway: Gateway
    created_at: datetime


@dataclass(frozen=True, slots=True)
class PaymentSettings:
    """A business's routing preferences (gateway order per method) and Stripe account."""

    business_id: uuid.UUID
    routes: dict[str, list[str]] | None
    stripe_account: str | None
