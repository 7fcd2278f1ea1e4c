"""The crypto watcher's loop: open crypto payments -> chain -> processor, once per state.

Runs inside ``veix serve`` (and ``veix worker``) when the crypto gateway is
configured; ``veix payments upkeep`` runs one round by hand.
Each event carries a deterministic id (``crypto:<address>:<state>``), so two
watchers, or a round repeated after a crash, apply it once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from veix.domain.services.payments import PaymentProcessor
from veix.domain.transactions import Gateway, TransactionStatus
from veix.gateways.crypto import CryptoGateway, OpenDeposit
from veix.persistence.repositories.payments import open_payments

log = logging.getLogger("veix.crypto")


async def watch_once(engine: AsyncEngine, gateway: CryptoGateway, processor: PaymentProcessor,
                     new_uow: Callable[[], AbstractAsyncContextManager[Any]], now: datetime) -> dict[str, int]:
    """One round; returns how many events of each outcome were applied."""
    async with engine.connect() as conn:
        payments = await open_payments(conn, Gateway.CRYPTO)
    deposits = []
    for t in payments:
        details = t.gateway_data.get("details")
        if not details:
            continue
        last = "processing" if t.status is TransactionStatus.PROCESSING else None
        deposits.append(OpenDeposit.from_details(details, last_state=last))
    outcomes: dict[str, int] = {}
    if not deposits:
        return outcomes
    events = await gateway.watcher().check(deposits, now)
    for event in events:
        outcome = await processor.apply_event(new_uow, Gateway.CRYPTO, event)
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    return outcomes
