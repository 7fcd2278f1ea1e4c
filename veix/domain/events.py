"""Domain events: facts the domain raises, written to the outbox on commit."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from veix.domain.ids import new_id


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class DomainEvent:
    """``type`` is a stable dotted name such as ``business.funded``."""

    type: str
    business_id: uuid.UUID | None
    payload: dict[str, Any]
    id: uuid.UUID = field(default_factory=new_id)
    occurred_at: datetime = field(default_factory=utcnow)
