"""fundBusiness: balanced ledger entries, exact money, idempotency (DESIGN.md section 4)."""

from __future__ import annotations

import asyncio
import uuid

from sqlalchemy import func, select

from veix.persistence.tables import journal_entries, transactions

BALANCES = "query($id: ID!){ business(id:$id){ balances{ amount currency } } }"


async def _balances(api, token, business_id):
    data = await api.ok(BALANCES, {"id": business_id}, token)
    return {b["currency"]: b["amount"] for b in data["business"]["balances"]}


async def _entries(app, transaction_id_gid: str) -> int:
    from veix.resolvers.ids import parse_global_id

    _, raw = parse_global_id(transaction_id_gid)
    async with app.state.services.engine.connect() as conn:
        return int((await conn.execute(
            select(func.count()).select_from(journal_entries)
            .where(journal_entries.c.transaction_id == raw))).scalar_one())


async def test_funding_credits_the_business_balance_exactly(api, owner):
    token, business_id = owner
    await api.fund(token, business_id, "12345678901234.12", "EUR")
    await api.fund(token, business_id, "0.01", "EUR")
    await api.fund(token, business_id, "500", "JPY")
    assert await _balances(api, token, business_id) == {
        "EUR": "12345678901234.13", "JPY": "500"}


async def test_funding_is_a_funding_transaction_visible_in_the_business(api, owner):
    token, business_id = owner
    body = await api.fund(token, business_id, "42.50", "EUR")
    txn = body["data"]["fundBusiness"]["transaction"]
    data = await api.ok(
        "query($id: ID!){ transaction(id:$id){ type status amount{ amount currency } "
        "business{ id } gateway } }", {"id": txn["id"]}, token)
    assert data["transaction"] == {"type": "FUNDING", "status": "SUCCEEDED",
                                   "amount": {"amount": "42.50", "currency": "EUR"},
                                   "business": {"id": business_id}, "gateway": "SANDBOX"}
    listed = await api.ok(
        "query($id: ID!){ business(id:$id){ transactions(first: 10){ totalCount "
        "edges{ node{ id } } } } }", {"id": business_id}, token)
    assert [e["node"]["id"] for e in listed["business"]["transactions"]["edges"]] == [txn["id"]]


async def test_same_key_and_parameters_returns_the_original_result_once(api, app, owner):
    token, business_id = owner
    first = await api.fund(token, business_id, "10.00", "EUR", key="fund-1")
    again = await api.fund(token, business_id, "10.00", "EUR", key="fund-1")
    assert first == again
    txn_id = first["data"]["fundBusiness"]["transaction"]["id"]
    assert await _entries(app, txn_id) == 1
    assert await _balances(api, token, business_id) == {"EUR": "10.00"}


async def test_same_key_with_other_parameters_is_refused(api, owner):
    token, business_id = owner
    await api.fund(token, business_id, "10.00", "EUR", key="fund-2")
    other = await api.fund(token, business_id, "11.00", "EUR", key="fund-2")
    assert other["data"]["fundBusiness"]["transaction"] is None
    assert other["data"]["fundBusiness"]["userErrors"][0]["code"] == "IDEMPOTENCY_KEY_REUSED"
    assert await _balances(api, token, business_id) == {"EUR": "10.00"}


async def test_idempotency_keys_are_scoped_to_the_business(api):
    token, _ = await api.sign_up()
    a = await api.create_business(token)
    b = await api.create_business(token)
    await api.fund(token, a, "5.00", "EUR", key="shared-key")
    body = await api.fund(token, b, "5.00", "EUR", key="shared-key")
    assert body["data"]["fundBusiness"]["userErrors"] == []
    assert await _balances(api, token, b) == {"EUR": "5.00"}


async def test_twenty_concurrent_requests_with_one_key_make_exactly_one_entry(api, app, owner):
    token, business_id = owner
    key = f"concurrent-{uuid.uuid4().hex}"
    results = await asyncio.gather(
        *[api.fund(token, business_id, "7.00", "EUR", key=key) for _ in range(20)])
    ids = {r["data"]["fundBusiness"]["transaction"]["id"] for r in results}
    assert len(ids) == 1, results
    assert all(r["data"]["fundBusiness"]["userErrors"] == [] for r in results)
    assert await _entries(app, ids.pop()) == 1
    assert await _balances(api, token, business_id) == {"EUR": "7.00"}
    async with app.state.services.engine.connect() as conn:
        count = (await conn.execute(select(func.count()).select_from(transactions).where(
            transactions.c.idempotency_key == key))).scalar_one()
    assert count == 1


async def test_concurrent_fundings_with_distinct_keys_all_count(api, owner):
    token, business_id = owner
    await asyncio.gather(*[api.fund(token, business_id, "1.10", "EUR") for _ in range(15)])
    assert await _balances(api, token, business_id) == {"EUR": "16.50"}


async def test_transactions_filter_by_amount_range_pages_correctly(api, owner):
    token, business_id = owner
    for amount in ("5.00", "50.00", "60.00", "500.00"):
        await api.fund(token, business_id, amount, "EUR")
    query = ("query($id: ID!, $a: String){ business(id:$id){ transactions(first: 1, after: $a, "
             "filter: {minAmount: \"10\", maxAmount: \"100.00\"}){ totalCount pageInfo{ hasNextPage endCursor } "
             "edges{ node{ amount{ amount } } } } } }")
    first = (await api.ok(query, {"id": business_id}, token))["business"]["transactions"]
    assert [e["node"]["amount"]["amount"] for e in first["edges"]] == ["50.00"]
    assert first["pageInfo"]["hasNextPage"] is True
    assert first["totalCount"] == 2  # what the filter selects over all pages, not the business's 4
    second = (await api.ok(query, {"id": business_id, "a": first["pageInfo"]["endCursor"]}, token))
    page = second["business"]["transactions"]
    assert [e["node"]["amount"]["amount"] for e in page["edges"]] == ["60.00"]
    assert page["pageInfo"]["hasNextPage"] is False
    assert page["totalCount"] == 2


async def test_transactions_total_count_follows_every_filter(api, owner):
    token, business_id = owner
    await api.fund(token, business_id, "5.00", "EUR")
    await api.fund(token, business_id, "7.00", "USD")
    query = ("query($id: ID!, $f: TransactionFilter){ business(id:$id){ transactions(first: 10, filter: $f){ "
             "totalCount edges{ node{ amount{ currency } } } } } }")
    cases = [
        (None, 2), ({"currency": "USD"}, 1), ({"types": ["FUNDING"]}, 2), ({"types": ["PAYMENT"]}, 0),
        ({"statuses": ["FAILED"]}, 0), ({"from": "2000-01-01T00:00:00Z", "to": "2000-01-02T00:00:00Z"}, 0),
        ({"from": "2000-01-01T00:00:00Z"}, 2), ({"minAmount": "6"}, 1),
    ]
    for flt, count in cases:
        page = (await api.ok(query, {"id": business_id, "f": flt}, token))["business"]["transactions"]
        assert (page["totalCount"], len(page["edges"])) == (count, count), flt
