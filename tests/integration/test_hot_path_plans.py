"""The hot path's statements are prepared once per connection with
plan_cache_mode=force_generic_plan: each plan is made at a connection's first
use, from the tables as they are then. On a fresh database (empty tables) a
join planned that way hashes whole tables (fast_pg.LateLookups needed its own
settings for it); a lookup by a unique key stays an index scan. This pins both
on a database just migrated, and the writes statement of a real decision
(built per decision: it is caught from the one connection of the decisions' pool)."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from sqlalchemy.engine import make_url

from tests.conftest import TEST_DB_URL
from tests.integration.conftest import Api
from tests.integration.network_helpers import THURSDAY_AFTERNOON, Network, NetworkClient, issue_card, new_business
from veix.app import create_app
from veix.config import Settings
from veix.persistence import fast_pg
from veix.persistence.engine import make_engine
from veix.persistence.migrate import migrate

pytestmark = pytest.mark.postgres

HOT_STATEMENTS = {
    "the card and its features, by card number": fast_pg._CARD_FEATURES_SQL.format(where="c.card_number_hash = $1"),
    "the card and its features, by token": fast_pg._CARD_FEATURES_SQL.format(where="c.public_token = $1"),
    "the card, by id": fast_pg._CARD_SQL.format(where="c.id = $1"),
    "the card's lock": fast_pg._LOCK_SQL.format(where="id = $1"),
    "an authorization, by network id": f"SELECT {fast_pg.AUTH_COLUMNS} FROM card_transactions "
                                       "WHERE network_id = $1 FOR UPDATE",
}


@pytest.fixture
async def fresh_database() -> AsyncIterator[str]:
    """A database just migrated: every table empty."""
    name = f"veix_plans_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(**fast_pg.asyncpg_connect_args(TEST_DB_URL))
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = make_url(TEST_DB_URL).set(database=name).render_as_string(hide_password=False)
    try:
        engine = make_engine(url)
        try:
            await migrate(engine)
        finally:
            await engine.dispose()
        yield url
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def generic_plan(conn: asyncpg.Connection, sql: str) -> list[tuple[str, str]]:
    """(node type, relation or index) of the statement's generic plan."""
    arity = len((await conn.prepare(sql)).get_parameters())
    await conn.execute(f"PREPARE probe AS {sql}")
    try:
        plan = await conn.fetchval(f"EXPLAIN (FORMAT JSON) EXECUTE probe({', '.join(['NULL'] * arity)})")
    finally:
        await conn.execute("DEALLOCATE probe")
    nodes: list[tuple[str, str]] = []

    def walk(node: dict[str, Any]) -> None:
        nodes.append((node["Node Type"], node.get("Index Name") or node.get("Relation Name") or ""))
        for child in node.get("Plans", []):
            walk(child)

    walk((json.loads(plan) if isinstance(plan, str) else plan)[0]["Plan"])
    return nodes


def whole_table_work(nodes: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return [n for n in nodes if n[0] in {"Seq Scan", "Hash Join", "Merge Join"}]


async def test_the_hot_paths_lookups_read_by_index_on_a_fresh_database(fresh_database: str) -> None:
    pool = await fast_pg.create_pool(fresh_database, size=1)
    try:
        async with pool.connection() as conn:
            for name, sql in HOT_STATEMENTS.items():
                assert whole_table_work(await generic_plan(conn, sql)) == [], name
    finally:
        await pool.close()


async def test_the_late_lookups_read_by_index_on_a_fresh_database(fresh_database: str) -> None:
    lookups = await fast_pg.LateLookups.open(fresh_database, statement_timeout=1.0)
    try:
        async with lookups._pool.connection() as conn:
            nodes = await generic_plan(conn, fast_pg._ANSWERED_BEFORE_SQL)
            assert whole_table_work(nodes) == [], nodes
            # ... which it would not without its settings
            await conn.execute("SET enable_seqscan = on; SET enable_hashjoin = on; SET enable_mergejoin = on")
            assert whole_table_work(await generic_plan(conn, fast_pg._ANSWERED_BEFORE_SQL)) != []
    finally:
        await lookups.close()


async def test_a_decisions_writes_statement_writes_by_index_on_a_fresh_database(
        fresh_database: str, tmp_path: Path) -> None:
    settings = Settings(database_url=fresh_database, secrets_file=tmp_path / "secrets.json",
                        run_dispatcher=False, db_pool_size=1).with_secrets()
    application = create_app(settings, migrate_on_start=False)
    statements: list[str] = []
    async with application.router.lifespan_context(application):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=application),
                                     base_url="http://veix.test") as client, NetworkClient(application) as net:
            api, network = Api(client), Network(net)
            biz = await new_business(api, fund="500.00")
            card = await issue_card(application, biz.id)
            async with application.state.services.fast_pool.connection() as conn:  # its only connection
                conn.add_query_logger(lambda record: statements.append(record.query))
            for amount in ("20.00", "35.50"):  # a first decision on the card, and one with its history
                assert (await network.authorize(card, amount, at=THURSDAY_AFTERNOON))["approved"]
    writes = [sql for sql in statements if sql.startswith("WITH ") and "INSERT INTO card_transactions" in sql]
    assert len(writes) == 2, statements
    pool = await fast_pg.create_pool(fresh_database, size=1)
    try:
        async with pool.connection() as conn:
            for sql in writes:
                nodes = await generic_plan(conn, sql)
                assert ("ModifyTable", "card_transactions") in nodes, nodes
                assert whole_table_work(nodes) == [], nodes
    finally:
        await pool.close()
