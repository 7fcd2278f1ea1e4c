"""Lists are resolved through DataLoaders: the number of SQL statements of a
request does not grow with the number of rows it returns."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from sqlalchemy import event

NESTED = """{ businesses(first: 50) { totalCount edges { node { name balances { amount }
  members(first: 20) { totalCount edges { node { role user { email } } } } } } } }"""


@contextlib.contextmanager
def count_statements(engine) -> Iterator[list[str]]:
    seen: list[str] = []

    def before(conn, cursor, statement, parameters, context, executemany):
        seen.append(statement)

    event.listen(engine.sync_engine, "before_cursor_execute", before)
    try:
        yield seen
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", before)


async def _grow(api, token: str, businesses: int, members_each: int) -> None:
    for _ in range(businesses):
        business_id = await api.create_business(token)
        await api.fund(token, business_id, "10.00", "EUR")
        for i in range(members_each):
            await api.ok(
                "mutation($i: InviteMemberInput!){ inviteMember(input:$i){ member{ id } userErrors{ code } } }",
                {"i": {"businessId": business_id, "email": f"m{i}-{business_id[-12:]}@example.com",
                       "role": "VIEWER"}}, token)


async def test_nested_businesses_query_runs_a_constant_number_of_statements(api, app):
    engine = app.state.services.engine
    token, _ = await api.sign_up()
    await _grow(api, token, businesses=1, members_each=1)
    with count_statements(engine) as small:
        few = await api.ok(NESTED, token=token)
    await _grow(api, token, businesses=5, members_each=4)
    with count_statements(engine) as large:
        many = await api.ok(NESTED, token=token)
    assert few["businesses"]["totalCount"] == 1
    assert many["businesses"]["totalCount"] == 6
    rows = sum(len(e["node"]["members"]["edges"]) for e in many["businesses"]["edges"])
    assert rows == 1 + 1 + 5 * 5
    assert len(large) == len(small), (small, large)
    assert len(large) <= 8, large


async def test_transactions_are_counted_only_when_total_count_is_asked_for(api, app, owner):
    token, business_id = owner
    await api.fund(token, business_id, "10.00", "EUR")
    engine = app.state.services.engine
    page = "query($id: ID!){ business(id:$id){ transactions(first: 5){ edges{ node{ id } } %s } } }"
    with count_statements(engine) as without:
        await api.ok(page % "", {"id": business_id}, token)
    with count_statements(engine) as with_total:
        data = await api.ok(page % "totalCount", {"id": business_id}, token)
    assert data["business"]["transactions"]["totalCount"] == 1
    counts = [s for s in with_total if "count(" in s.lower()]
    assert len(counts) == 1 and not [s for s in without if "count(" in s.lower()]
    assert len(with_total) == len(without) + 1
