"""Row ids written in volume are UUID version 7 (veix.domain.ids)."""

from __future__ import annotations

import time
import uuid

import pytest

from veix.domain.ids import created_ms, new_id


def test_an_id_is_a_version_7_uuid_of_the_rfc_variant() -> None:
    value = new_id()
    assert value.version == 7
    assert value.variant == uuid.RFC_4122
    assert uuid.UUID(str(value)) == value


def test_an_id_starts_with_the_millisecond_it_was_made_at() -> None:
    before = time.time_ns() // 1_000_000
    value = new_id()
    after = time.time_ns() // 1_000_000
    assert before <= created_ms(value) <= after


def test_ids_made_in_later_milliseconds_sort_later() -> None:
    first = new_id()
    time.sleep(0.002)
    second = new_id()
    assert first < second and str(first) < str(second) and first.bytes < second.bytes


def test_ids_are_unique_and_random_within_a_millisecond() -> None:
    values = [new_id() for _ in range(100_000)]
    assert len(set(values)) == len(values)
    # the 74 bits after the time and version vary: no two of these share their random part
    assert len({v.int & ((1 << 76) - 1) for v in values}) == len(values)


def test_the_time_of_a_random_uuid_is_refused() -> None:
    with pytest.raises(ValueError, match="version 4"):
        created_ms(uuid.uuid4())
