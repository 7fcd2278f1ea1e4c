"""Relay global IDs: opaque base64url of ``Type:uuid``."""

from __future__ import annotations

import base64
import binascii
import uuid

from veix.domain.errors import InvalidInput, NotFound


def to_global_id(type_name: str, raw_id: uuid.UUID) -> str:
    return base64.urlsafe_b64encode(f"{type_name}:{raw_id}".encode()).decode().rstrip("=")


def parse_global_id(value: str) -> tuple[str, uuid.UUID]:
    """Any well-formed ID, whatever its type; malformed IDs are INVALID_INPUT."""
    if not isinstance(value, str) or len(value) > 200:
        raise InvalidInput("Malformed ID")
    try:
        padded = value + "=" * (-len(value) % 4)
        type_name, _, raw = base64.urlsafe_b64decode(padded.encode()).decode().partition(":")
        return type_name, uuid.UUID(raw)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidInput(f"Malformed ID {value[:40]!r}") from None


def from_global_id(value: str, expected: str, *, field: list[str]) -> uuid.UUID:
    """The UUID of an ID that must be of type ``expected`` (else it does not exist)."""
    try:
        type_name, raw = parse_global_id(value)
    except InvalidInput as exc:
        raise InvalidInput(exc.message, field=field) from None
    if type_name != expected:
        raise NotFound(f"No {expected} with this ID", field=field)
    return raw
