"""The hash chain of the audit log.

Each record's hash covers the previous record's hash and the record's own
canonical JSON, so editing, deleting or reordering any row breaks every link
after it. ``verify_chain`` reports the first broken link.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

GENESIS = "0" * 64


def _default(value: object) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, UUID | Decimal):
        return str(value)
    raise TypeError(f"not serialisable in the audit log: {type(value).__name__}")


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=_default)


def record_hash(prev_hash: str, record: Mapping[str, Any]) -> str:
    return hashlib.sha256((prev_hash + canonical_json(record)).encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class ChainBreak:
    seq: int
    reason: str


def verify_chain(rows: Iterable[tuple[int, str, str, Mapping[str, Any]]]) -> ChainBreak | None:
    """``rows`` are ``(seq, prev_hash, hash, record)`` in ``seq`` order."""
    expected_prev = GENESIS
    for seq, prev_hash, stored_hash, record in rows:
        if prev_hash != expected_prev:
            return ChainBreak(seq, "prev_hash does not match the previous record's hash")
        if record_hash(prev_hash, record) != stored_hash:
            return ChainBreak(seq, "record content does not match its hash")
        expected_prev = stored_hash
    return None
