"""Ids of rows written in volume: UUID version 7 (RFC 9562), ordered by creation time.

A random id (version 4) lands at a random place of its primary-key index, and of
every index that holds it (``postings.entry_id``, ``outbox.id``): each insert
dirties a different leaf page, the pages split half full, and once an index
outgrows the buffer cache nearly every insert reads a page back in. The
authorization path inserts some eight such ids per decision (transaction, card
transaction, journal entry, its postings, its events, a fraud alert): after a
240 s benchmark run those indexes made a fifth of PostgreSQL's block reads
(README, Performance, "Long runs"). A version-7 id
starts with its creation time in milliseconds: new ids land on the rightmost
leaf, which stays in memory and fills before it splits. The other 74 bits are
random, so ids stay unguessable and unique across processes without any
coordination; the clock only orders them (a clock set back makes one id sort
early, nothing worse).

Ids of few, long-lived rows (users, businesses, cards, keys) and every secret
or token stay random (``uuid.uuid4``, ``secrets``): nothing is gained there, and
a creation time in an id says a little about what it names.
"""

from __future__ import annotations

import os
import time
import uuid

_VERSION = 0x7 << 76
_VARIANT = 0b10 << 62
_RAND_A = (1 << 12) - 1
_RAND_B = (1 << 62) - 1


def new_id() -> uuid.UUID:
    """A version-7 UUID: 48 bits of Unix time in milliseconds, then 74 random bits."""
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    return uuid.UUID(int=(ms & ((1 << 48) - 1)) << 80 | _VERSION | ((rand >> 62) & _RAND_A) << 64
                     | _VARIANT | (rand & _RAND_B))


def created_ms(value: uuid.UUID) -> int:
    """The Unix time in milliseconds a version-7 id was made at."""
    if value.version != 7:
        raise ValueError(f"not a version-7 UUID: version {value.version}")
    return value.int >> 80
