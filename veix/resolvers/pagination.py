"""Keyset (cursor) pagination: one way to build every connection."""

from __future__ import annotations

import base64
import binascii
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Generic, TypeVar

from veix.domain.errors import InvalidInput

MAX_PAGE = 100
DEFAULT_PAGE = 20
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Cursor:
    at: datetime
    id: uuid.UUID

    def encode(self) -> str:
        raw = f"{self.at.isoformat()}|{self.id}".encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(value: str | None) -> Cursor | None:
    if value is None:
        return None
    try:
        raw = base64.urlsafe_b64decode((value + "=" * (-len(value) % 4)).encode()).decode()
        at, _, ident = raw.partition("|")
        moment = datetime.fromisoformat(at)
        if moment.tzinfo is None or moment.utcoffset() is None:
            raise ValueError("naive cursor time")  # ours always carry an offset
        return Cursor(moment, uuid.UUID(ident))
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidInput("Malformed cursor", field=["after"]) from None


def page_size(first: int | None) -> int:
    if first is None:
        return DEFAULT_PAGE
    if first < 0 or first > MAX_PAGE:
        raise InvalidInput(f"first must be between 0 and {MAX_PAGE}", field=["first"])
    return first


@dataclass(frozen=True, slots=True)
class PageArgs:
    first: int
    after: Cursor | None

    @classmethod
    def of(cls, first: int | None, after: str | None) -> PageArgs:
        return cls(page_size(first), decode_cursor(after))


@dataclass(slots=True)
class Page(Generic[T]):
    items: list[tuple[Cursor, T]]
    has_next: bool
    has_previous: bool
    total: int
