"""The one error hierarchy of Veix.

Every error the domain raises is a :class:`VeixError` with a stable ``code``
(the ``ErrorCode`` enum of the GraphQL contract), a human ``message`` and,
where it concerns one input, the ``field`` path. The GraphQL layer turns them
into ``userErrors``; the HTTP layer into a JSON 4xx. Nothing else is caught.

    VeixError
    +-- InvalidInput            INVALID_INPUT (and UNSUPPORTED_CURRENCY, INVALID_TAX_ID)
    +-- NotFound                NOT_FOUND (also for objects of another business)
    +-- Conflict                CONFLICT
    +-- Forbidden               FORBIDDEN
    +-- StepUpRequired          STEP_UP_REQUIRED
    +-- InvalidStateTransition  INVALID_STATE_TRANSITION
    +-- LimitExceeded           LIMIT_EXCEEDED
    +-- InsufficientFunds       INSUFFICIENT_FUNDS
    +-- IdempotencyKeyReused    IDEMPOTENCY_KEY_REUSED
    +-- GatewayError            GATEWAY_ERROR
    +-- CardDeclined            CARD_DECLINED
    +-- RiskBlocked             RISK_BLOCKED
    +-- RateLimited             RATE_LIMITED
    +-- Unauthenticated         (top-level UNAUTHENTICATED, not a user error)
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import Enum


class ErrorCode(str, Enum):
    """Stable machine-readable codes, identical to ``ErrorCode`` in API.graphql."""

    INVALID_INPUT = "INVALID_INPUT"
    NOT_FOUND = "NOT_FOUND"
    CONFLICT = "CONFLICT"
    FORBIDDEN = "FORBIDDEN"
    STEP_UP_REQUIRED = "STEP_UP_REQUIRED"
    INVALID_STATE_TRANSITION = "INVALID_STATE_TRANSITION"
    LIMIT_EXCEEDED = "LIMIT_EXCEEDED"
    INSUFFICIENT_FUNDS = "INSUFFICIENT_FUNDS"
    IDEMPOTENCY_KEY_REUSED = "IDEMPOTENCY_KEY_REUSED"
    GATEWAY_ERROR = "GATEWAY_ERROR"
    CARD_DECLINED = "CARD_DECLINED"
    RISK_BLOCKED = "RISK_BLOCKED"
    UNSUPPORTED_CURRENCY = "UNSUPPORTED_CURRENCY"
    INVALID_TAX_ID = "INVALID_TAX_ID"
    RATE_LIMITED = "RATE_LIMITED"


class VeixError(Exception):
    """Base of every expected error; carries a stable code."""

    code: ErrorCode = ErrorCode.INVALID_INPUT

    def __init__(
        self,
        message: str,
        *,
        field: Sequence[str] | None = None,
        code: ErrorCode | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.field: list[str] | None = list(field) if field is not None else None
        if code is not None:
            self.code = code


class InvalidInput(VeixError):
    code = ErrorCode.INVALID_INPUT


class UnsupportedCurrency(InvalidInput):
    code = ErrorCode.UNSUPPORTED_CURRENCY


class InvalidTaxId(InvalidInput):
    code = ErrorCode.INVALID_TAX_ID


class NotFound(VeixError):
    code = ErrorCode.NOT_FOUND


class Conflict(VeixError):
    code = ErrorCode.CONFLICT


class Forbidden(VeixError):
    code = ErrorCode.FORBIDDEN


class StepUpRequired(VeixError):
    code = ErrorCode.STEP_UP_REQUIRED


class InvalidStateTransition(VeixError):
    code = ErrorCode.INVALID_STATE_TRANSITION


class LimitExceeded(VeixError):
    code = ErrorCode.LIMIT_EXCEEDED


class InsufficientFunds(VeixError):
    code = ErrorCode.INSUFFICIENT_FUNDS


class IdempotencyKeyReused(VeixError):
    code = ErrorCode.IDEMPOTENCY_KEY_REUSED


class GatewayError(VeixError):
    code = ErrorCode.GATEWAY_ERROR


class CardDeclined(VeixError):
    code = ErrorCode.CARD_DECLINED


class RiskBlocked(VeixError):
    code = ErrorCode.RISK_BLOCKED


class RateLimited(VeixError):
    code = ErrorCode.RATE_LIMITED


class Unauthenticated(VeixError):
    """No valid credentials: a top-level error, never a ``userErrors`` entry."""

    code = ErrorCode.FORBIDDEN


class InvariantViolation(AssertionError):
    """A ledger or state invariant is broken: a bug, never a user error."""
