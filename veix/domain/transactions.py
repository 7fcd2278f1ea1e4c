"""Transactions: every movement of money a business can see."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import Enum
from typing import Any


class TransactionType(str, Enum):
    PAYMENT = "payment"
    REFUND = "refund"
    PAYOUT = "payout"
    CARD_AUTHORIZATION = "card_authorization"
    CARD_CLEARING = "card_clearing"
    FUNDING = "funding"
    FEE = "fee"
    ADJUSTMENT = "adjustment"


class TransactionStatus(str, Enum):
    PENDING = "pending"
    REQUIRES_ACTION = "requires_action"
    PROCESSING = "processing"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"
    PARTIALLY_REFUNDED = "partially_refunded"
    REFUNDED = "refunded"
    DISPUTED = "disputed"


class Gateway(str, Enum):
    SANDBOX = "sandbox"
    STRIPE = "stripe"
    PAYPAL = "paypal"
    CRYPTO = "crypto"


@dataclass(slots=True)
class Transaction:
    id: uuid.UUID
    business_id: uuid.UUID
    type: TransactionType
    status: TransactionStatus
    amount: Decimal
    currency: str
    created_at: datetime
    updated_at: datetime
    payment_method: str | None = None
    gateway: Gateway | None = None
    gateway_reference: str | None = None
    customer_id: str | None = None
    risk_score: float = 0.0
    processing_fee: Decimal = Decimal(0)
    refunded_amount: Decimal = Decimal(0)
    error_code: str | None = None
    error_message: str | None = None
    idempotency_key: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    next_action: dict[str, Any] | None = None
    # Payments (issue 5): a refund points at its payment; what was captured so far;
    # the gateways tried, in order (failover is recorded here).
    parent_id: uuid.UUID | None = None
    payment_method_id: uuid.UUID | None = None
    captured_amount: Decimal = Decimal(0)
    description: str | None = None
    routing: list[dict[str, Any]] | None = None
    # What the gateway reported, kept apart from the caller's metadata: its status word,
    # the details it needs later (a crypto deposit's address and expected amount), what
    # can still be captured, what the chain showed.
    gateway_data: dict[str, Any] = field(default_factory=dict)
