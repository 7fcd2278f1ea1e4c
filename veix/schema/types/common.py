"""Scalars, Node, PageInfo, Money, UserError and the enums shared by every domain."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import TYPE_CHECKING

import strawberry
from strawberry.scalars import JSON

from veix.domain import money as domain_money
from veix.domain.business import BusinessStatus as _BusinessStatus
from veix.domain.business import BusinessType as _BusinessType
from veix.domain.business import VerificationStatus as _VerificationStatus
from veix.domain.errors import ErrorCode as _ErrorCode
from veix.domain.errors import VeixError
from veix.domain.team import Role as _Role
from veix.domain.transactions import Gateway as _Gateway
from veix.domain.transactions import TransactionStatus as _TransactionStatus
from veix.domain.transactions import TransactionType as _TransactionType
from veix.resolvers.ids import to_global_id

if TYPE_CHECKING:
    pass

__all__ = ["JSON"]

ErrorCode = strawberry.enum(_ErrorCode, name="ErrorCode",
                            description="Stable machine-readable error codes.")
Role = strawberry.enum(_Role, name="Role", description="A member's role in one business.")
BusinessType = strawberry.enum(_BusinessType, name="BusinessType",
                               description="Legal form of a business.")
BusinessStatus = strawberry.enum(_BusinessStatus, name="BusinessStatus",
                                 description="Whether a business can operate.")
VerificationStatus = strawberry.enum(
    _VerificationStatus, name="VerificationStatus",
    description="KYB state: UNVERIFIED -> PENDING -> VERIFIED | REJECTED.")
TransactionType = strawberry.enum(_TransactionType, name="TransactionType",
                                  description="What kind of money movement a transaction is.")
TransactionStatus = strawberry.enum(_TransactionStatus, name="TransactionStatus",
                                    description="Where a transaction is in its state machine.")
Gateway = strawberry.enum(_Gateway, name="Gateway", description="Who processed a payment.")


@strawberry.interface(description="An object with a globally unique, opaque ID.")
class Node:
    id: strawberry.ID = strawberry.field(description="Opaque global ID; pass it to `node`.")


def gid(type_name: str, raw: uuid.UUID) -> strawberry.ID:
    return strawberry.ID(to_global_id(type_name, raw))


@strawberry.type(description="Relay pagination information.")
class PageInfo:
    has_next_page: bool = strawberry.field(description="More items follow `endCursor`.")
    has_previous_page: bool = strawberry.field(description="Items precede `startCursor`.")
    start_cursor: str | None = strawberry.field(description="Cursor of the first edge.")
    end_cursor: str | None = strawberry.field(description="Cursor of the last edge; pass as `after`.")


@strawberry.type(description="An exact amount in an ISO 4217 currency.")
class Money:
    amount: Decimal = strawberry.field(description="Decimal amount, serialised as a string.")
    currency: str = strawberry.field(description="ISO 4217 currency code.")

    @classmethod
    def of(cls, money: domain_money.Money) -> Money:
        return cls(amount=money.amount, currency=money.currency)

    @classmethod
    def parts(cls, amount: Decimal, currency: str) -> Money:
        """From a stored NUMERIC(20,6), shown at the currency's scale (10.500000 -> 10.50)."""
        return cls.of(domain_money.Money(amount, currency))


@strawberry.input(description="An amount and its currency.")
class MoneyInput:
    amount: Decimal = strawberry.field(description="Decimal; at most the currency's decimals.")
    currency: str = strawberry.field(description="ISO 4217 currency code, e.g. EUR.")


@strawberry.type(description="Why a mutation did not do what was asked.")
class UserError:
    field: list[str] | None = strawberry.field(description="Path of the input field at fault.")
    code: ErrorCode = strawberry.field(description="Stable machine-readable code.")
    message: str = strawberry.field(description="Human-readable explanation.")

    @classmethod
    def of(cls, error: VeixError) -> UserError:
        return cls(field=error.field, code=error.code, message=error.message)
