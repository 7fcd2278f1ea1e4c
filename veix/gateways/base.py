"""The gateway Protocol and its value types, plus helpers adapters share.

The contract itself lives in :mod:`veix.domain.gateway` (the processor in
the domain calls it and the domain imports no adapter); this module is what
adapters import.
"""

from __future__ import annotations

from decimal import Decimal

from veix.domain.currencies import minor_units
from veix.domain.gateway import (
    CardDetails,
    DisputeInfo,
    GatewayCapabilities,
    GatewayFailure,
    GatewayPaymentStatus,
    GatewayResult,
    GatewayUnavailable,
    PaymentGateway,
    PaymentMethodType,
    PaymentRequest,
    PaypalDetails,
    RefundResult,
    RefundStatus,
    WebhookEvent,
    WebhookKind,
    WebhookRejected,
)

__all__ = [
    "CardDetails", "DisputeInfo", "GatewayCapabilities", "GatewayFailure", "GatewayPaymentStatus",
    "GatewayResult", "GatewayUnavailable", "PaymentGateway", "PaymentMethodType", "PaymentRequest",
    "PaypalDetails", "RefundResult", "RefundStatus", "WebhookEvent", "WebhookKind", "WebhookRejected",
    "from_minor", "to_minor",
]


def to_minor(amount: Decimal, currency: str) -> int:
    """``Decimal("12.50")`` EUR -> ``1250``; refuses amounts finer than the currency."""
    scaled = amount.scaleb(minor_units(currency))
    if scaled != scaled.to_integral_value():
        raise ValueError(f"{amount} has more decimals than {currency} allows")
    return int(scaled)


def from_minor(value: int, currency: str) -> Decimal:
    return (Decimal(value).scaleb(-minor_units(currency))).quantize(
        Decimal(1).scaleb(-minor_units(currency)))
