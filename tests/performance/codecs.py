"""Client CPU per parameter sent and per column read, by PostgreSQL type, with
asyncpg's own (binary) codecs and with the authorization path's connection
set-up (veix.persistence.fast_pg._init: json through orjson, numeric in text). asyncpg's side has json.dumps and json.loads for jsonb, its usual set-up.

Usage (any PostgreSQL; nothing is written):

    python -m tests.performance.codecs --url 'postgresql+asyncpg://postgres@127.0.0.1:5432/test'

Each figure is the process CPU of a statement with 40 parameters (or 40
columns) of the type, less that of a statement with one, divided by 40: the
lowest of three tries.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import asyncpg

from veix.persistence.fast_pg import _init, asyncpg_connect_args

VALUES: dict[str, Any] = {
    "uuid": uuid.uuid4(), "numeric": Decimal("1234.56"), "timestamptz": datetime.now(UTC),
    "text": "approved", "int4": 5, "jsonb": {"reasons": ["velocity_10m"], "score": 0.25}, "bool": True,
}
N = 40


async def _cpu_per_call(conn: asyncpg.Connection, sql: str, args: list[Any], calls: int) -> float:
    for _ in range(calls // 10):
        await conn.fetchrow(sql, *args)
    start = time.process_time()
    for _ in range(calls):
        await conn.fetchrow(sql, *args)
    return (time.process_time() - start) / calls


async def _measure(url: str, veix_codecs: bool, calls: int) -> dict[str, tuple[float, float]]:
    args = asyncpg_connect_args(url)
    conn = await asyncpg.connect(**{**args, "server_settings": {"timezone": "UTC", "jit": "off"}})
    try:
        if veix_codecs:
            await _init(conn)
        else:  # asyncpg takes json as text: the usual set-up
            await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")
        found = {}
        for name, value in VALUES.items():
            send = "SELECT 1 WHERE " + " AND ".join(f"${i + 1}::{name} IS NOT NULL" for i in range(N))
            read = "SELECT " + ", ".join(f"$1::{name} AS c{i}" for i in range(N))
            runs = []
            for _ in range(3):  # the lowest of three, each against a base measured just before
                base = await _cpu_per_call(conn, "SELECT 1 WHERE $1::int4 IS NOT NULL", [1], calls)
                sent = await _cpu_per_call(conn, send, [value] * N, calls)
                got = await _cpu_per_call(conn, read, [value], calls)
                runs.append(((sent - base) / N, (got - base) / N))
            found[name] = (min(r[0] for r in runs), min(r[1] for r in runs))
        return found
    finally:
        await conn.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True, help="SQLAlchemy URL of a PostgreSQL database")
    parser.add_argument("--calls", type=int, default=3000)
    options = parser.parse_args()
    asyncpg_own = await _measure(options.url, False, options.calls)
    veix = await _measure(options.url, True, options.calls)
    print(f"{'type':<12} {'send: asyncpg':>14} {'veix':>8} {'read: asyncpg':>14} {'veix':>8}   (µs of client CPU)")
    for name in VALUES:
        (s0, r0), (s1, r1) = asyncpg_own[name], veix[name]
        print(f"{name:<12} {s0 * 1e6:>14.2f} {s1 * 1e6:>8.2f} {r0 * 1e6:>14.2f} {r1 * 1e6:>8.2f}")


if __name__ == "__main__":
    asyncio.run(main())
