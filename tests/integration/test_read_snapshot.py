"""A GraphQL request answers from one snapshot of the database: a write that commits
while the request is being resolved shows in all of its fields or in none."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from sqlalchemy import event

QUERY = """query($id: ID!) { business(id: $id) { name }
  businesses(first: 5) { edges { node { id name } } } }"""
RENAME = """mutation($i: UpdateBusinessInput!) { updateBusiness(input: $i) {
  business { name } userErrors { code } } }"""


@contextlib.contextmanager
def after_first_read_of(engine: Any, table: str, write: Callable[[], Awaitable[Any]]) -> Iterator[list[str]]:
    """Run ``write`` (to its commit) right after the first SELECT that reads ``table``
    has executed, before the request's next statement: a concurrent writer that
    commits between two statements of one request. Yields the statements seen."""
    seen: list[str] = []
    fired = False

    def after(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any,
              executemany: bool) -> None:
        nonlocal fired
        seen.append(statement)
        if fired or not statement.lstrip().upper().startswith("SELECT") or f"FROM {table}" not in statement:
            return
        fired = True
        # The listener runs inside SQLAlchemy's greenlet: run_async awaits the write there,
        # so the request's next statement waits until it has committed.
        conn.connection.dbapi_connection.run_async(lambda _driver: write())

    event.listen(engine.sync_engine, "after_cursor_execute", after)
    try:
        yield seen
    finally:
        event.remove(engine.sync_engine, "after_cursor_execute", after)
    assert fired, seen


async def test_a_write_committed_between_two_statements_of_a_query_shows_in_none_of_its_fields(api, app, owner):
    token, business_id = owner
    renamed: list[dict[str, Any]] = []

    async def rename() -> None:
        renamed.append(await api.ok(RENAME, {"i": {"businessId": business_id, "name": "Renamed GmbH"}}, token))

    with after_first_read_of(app.state.services.engine, "businesses", rename) as statements:
        data = await api.ok(QUERY, {"id": business_id}, token)
    assert renamed[0]["updateBusiness"]["business"]["name"] == "Renamed GmbH"
    assert sum("FROM businesses" in s for s in statements) >= 2, statements  # two reads, the write between
    listed = {e["node"]["id"]: e["node"]["name"] for e in data["businesses"]["edges"]}
    # Both fields from the snapshot the request started with: the name before the rename.
    assert data["business"]["name"] == listed[business_id] == "Acme GmbH"

    after = await api.ok(QUERY, {"id": business_id}, token)
    assert after["business"]["name"] == "Renamed GmbH"  # the next request sees the commit


async def test_a_mutation_reads_its_own_write_and_the_query_after_it_reads_afresh(api, owner):
    token, business_id = owner
    out = await api.ok(RENAME, {"i": {"businessId": business_id, "name": "First Name GmbH"}}, token)
    assert out["updateBusiness"]["business"]["name"] == "First Name GmbH"
    data = await api.ok(QUERY, {"id": business_id}, token)
    assert data["business"]["name"] == "First Name GmbH"
