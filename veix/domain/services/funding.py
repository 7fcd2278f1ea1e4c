"""Funding a business from the sandbox funding source, idempotently."""

from __future__ import annotations

import hashlib
import uuid
from datetime import datetime

from veix.domain import ledger
from veix.domain.errors import IdempotencyKeyReused, InvalidInput, NotFound
from veix.domain.events import DomainEvent
from veix.domain.ids import new_id
from veix.domain.money import Money
from veix.domain.ports import UnitOfWork
from veix.domain.transactions import Gateway, Transaction, TransactionStatus, TransactionType

SANDBOX_SOURCE = "sandbox"


def request_fingerprint(*parts: object) -> str:
    return hashlib.sha256("|".join(str(p) for p in parts).encode()).hexdigest()


async def fund_business(
    uow: UnitOfWork,
    *,
    business_id: uuid.UUID,
    money: Money,
    idempotency_key: str,
    now: datetime,
) -> tuple[Transaction, bool]:
    """Post a balanced funding entry. Returns the transaction and whether it is new.

    The same key with the same parameters returns the original transaction;
    with other parameters it is refused. Concurrent requests with one key
    produce one entry (the key row is claimed inside this transaction).
    """
    if not 1 <= len(idempotency_key) <= 255:
        raise InvalidInput("idempotencyKey must be 1 to 255 characters",
                           field=["input", "idempotencyKey"])
    fingerprint = request_fingerprint("fund", business_id, money.amount, money.currency)
    scope = f"fund:{business_id}"
    claimed = await uow.idempotency.claim(scope, idempotency_key, fingerprint, now)
    if claimed is not None:
        stored_hash, result_id = claimed
        if stored_hash != fingerprint or result_id is None:
            raise IdempotencyKeyReused(
                "This idempotency key was used with different parameters",
                field=["input", "idempotencyKey"],
            )
        original = await uow.transactions.get(result_id)
        assert original is not None
        return original, False
    business = await uow.businesses.get(business_id)
    if business is None:
        raise NotFound("Business not found", field=["input", "businessId"])
    txn = Transaction(
        id=new_id(), business_id=business_id, type=TransactionType.FUNDING,
        status=TransactionStatus.SUCCEEDED, amount=money.amount, currency=money.currency,
        created_at=now, updated_at=now, payment_method="bank_transfer",
        gateway=Gateway.SANDBOX, idempotency_key=idempotency_key,
        metadata={"source": SANDBOX_SOURCE},
    )
    await uow.transactions.add(txn)
    entry = ledger.journal_entry(
        business_id=business_id, kind="funding", description="Sandbox funding",
        lines=ledger.transfer(
            ledger.funding_source(SANDBOX_SOURCE, money.currency),
            ledger.business_available(business_id, money.currency),
            money,
        ),
        occurred_at=now, transaction_id=txn.id,
    )
    await uow.ledger.post(entry)
    await uow.idempotency.complete(scope, idempotency_key, "Transaction", txn.id)
    uow.emit(DomainEvent("transaction.created", business_id,
                         {"transaction_id": str(txn.id), "type": txn.type.name,
                          "amount": str(money.amount), "currency": money.currency}))
    uow.audit("business.fund", "Transaction", txn.id, business_id=business_id,
              after={"amount": str(money.amount), "currency": money.currency})
    return txn, True
