"""PaymentMethod, Refund, Dispute and the routing record of a payment."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Annotated

import strawberry
from strawberry.scalars import JSON
from strawberry.types import Info

from veix.domain import disputes as d_disputes
from veix.domain import transactions as d_txn
from veix.domain.disputes import DisputeStatus as _DisputeStatus
from veix.domain.errors import NotFound
from veix.domain.gateway import PaymentMethodType as _PaymentMethodType
from veix.resolvers import loaders
from veix.resolvers.context import Context
from veix.schema.types.common import Gateway, Money, Node, TransactionStatus, gid

if TYPE_CHECKING:
    from veix.schema.types.business import Transaction

PaymentMethodType = strawberry.enum(_PaymentMethodType, name="PaymentMethodType",
                                    description="How a customer pays.")
DisputeStatus = strawberry.enum(_DisputeStatus, name="DisputeStatus", description="Where a dispute stands.")


@strawberry.type(description="What a payment was made with (card brand and last digits, PayPal, a crypto asset).")
class PaymentMethod(Node):
    id: strawberry.ID = strawberry.field(description="Global ID.")
    type: PaymentMethodType = strawberry.field(description="Card, PayPal or crypto.")
    display: str = strawberry.field(description="For people: 'Visa •••• 4242', 'PayPal', 'ETH'. Never a full number.")
    gateway: Gateway = strawberry.field(description="The gateway that processed it.")
    created_at: datetime = strawberry.field(description="Creation time (UTC).")

    @classmethod
    def of(cls, p: d_disputes.PaymentMethodRecord) -> PaymentMethod:
        return cls(id=gid("PaymentMethod", p.id), type=p.type, display=p.display, gateway=p.gateway,
                   created_at=p.created_at)


@strawberry.type(description="A refund of (part of) a payment.")
class Refund(Node):
    id: strawberry.ID = strawberry.field(description="Global ID (also a Transaction of type REFUND).")
    amount: Money = strawberry.field(description="Amount refunded.")
    reason: str | None = strawberry.field(description="Why, as given.")
    status: TransactionStatus = strawberry.field(
        description="PENDING (sent to the gateway, funds reserved), SUCCEEDED or FAILED (funds released).")
    created_at: datetime = strawberry.field(description="Creation time (UTC).")

    @classmethod
    def of(cls, t: d_txn.Transaction) -> Refund:
        return cls(id=gid("Transaction", t.id), amount=Money.parts(t.amount, t.currency), reason=t.description,
                   status=t.status, created_at=t.created_at)


@strawberry.type(description="A chargeback: the customer's bank disputes a payment.")
class Dispute(Node):
    id: strawberry.ID = strawberry.field(description="Global ID.")
    amount: Money = strawberry.field(description="Disputed amount, withdrawn from the business when it opened.")
    reason: str = strawberry.field(description="The reason the card network gave, e.g. fraudulent.")
    status: DisputeStatus = strawberry.field(description="NEEDS_RESPONSE, UNDER_REVIEW, WON or LOST.")
    evidence_due_by: datetime | None = strawberry.field(description="Submit evidence before this (UTC).")
    evidence: JSON | None = strawberry.field(description="The evidence submitted.")
    created_at: datetime = strawberry.field(description="When the dispute opened (UTC).")
    transaction_id: strawberry.Private[uuid.UUID]

    @classmethod
    def of(cls, d: d_disputes.Dispute) -> Dispute:
        return cls(id=gid("Dispute", d.id), amount=Money.parts(d.amount, d.currency), reason=d.reason,
                   status=d.status, evidence_due_by=d.evidence_due_by, evidence=d.evidence,
                   created_at=d.created_at, transaction_id=d.transaction_id)

    @strawberry.field(description="The disputed payment.")
    async def transaction(
        self, info: Info[Context, None]
    ) -> Annotated[Transaction, strawberry.lazy("veix.schema.types.business")]:
        from veix.schema.types.business import Transaction

        t = await loaders.transactions(info.context).load(self.transaction_id)
        if t is None:
            raise NotFound("Transaction not found")
        return Transaction.of(t)


@strawberry.type(description="One gateway tried for a payment, in order (a failover shows two).")
class GatewayAttempt:
    gateway: Gateway = strawberry.field(description="The gateway tried.")
    outcome: str = strawberry.field(description="ok, or unavailable (timeout, 5xx): then the next one was tried.")
    detail: str | None = strawberry.field(description="What went wrong, for unavailable.")
