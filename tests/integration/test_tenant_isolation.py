"""Tenant isolation: nothing of business B exists for anyone of business A.

Business A and business B have separate owners. A member of A in every role, and an API key
of A with role OWNER, address B's objects by their real IDs with every query and mutation
that takes one. Each answer must be exactly the answer for a random ID of the same type that
does not exist (queries: ``null`` and no errors; mutations: a ``NOT_FOUND`` user error, never
``FORBIDDEN``), so B's IDs cannot even be probed. Afterwards B's owner sees B unchanged.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.integration.conftest import Api

ROLES = ("OWNER", "ADMIN", "FINANCE", "DEVELOPER", "CARDHOLDER", "VIEWER")
PRINCIPALS = (*ROLES, "API_KEY_OWNER")

Q_SNAPSHOT = """query($id: ID!){ business(id:$id){
  id name type status taxId registrationDate timezone defaultCurrency verificationStatus
  legalAddress{ line1 line2 city region postalCode country }
  contactInfo{ email phone website }
  complianceStatus{ kybVerified sanctionsClear checks{ name status } }
  createdAt updatedAt
  balances{ amount currency }
  members(first:100){ totalCount edges{ node{ id role joinedAt user{ id email name } } } }
  transactions(first:100){ totalCount edges{ node{ id type status amount{ amount currency } } } }
} }"""
Q_BUSINESSES = "{ businesses(first:100){ totalCount edges{ node{ id name } } } }"
Q_ME = "{ me{ memberships{ role business{ id } } } }"

M_INVITE = """mutation($i: InviteMemberInput!){ inviteMember(input:$i){
  member{ id role } userErrors{ code message field } } }"""
M_CREATE_KEY = """mutation($b: ID!, $n: String!, $r: Role!){ createApiKey(businessId:$b, name:$n, role:$r){
  apiKey{ id role } secret userErrors{ code message field } } }"""

# Every operation that names an object of B. ``kind`` is the type of the ID the operation
# takes, ``target`` which of B's objects it names, ``field`` the response field.
OPERATIONS: dict[str, dict[str, Any]] = {
    "business": dict(kind="Business", target="business", field="business", query=(
        "query($id: ID!){ business(id:$id){ id name balances{ amount } "
        "members{ totalCount } transactions{ totalCount } } }"), variables=lambda i: {"id": i}),
    "node_business": dict(kind="Business", target="business", field="node", query=(
        "query($id: ID!){ node(id:$id){ id ... on Business{ name } } }"),
        variables=lambda i: {"id": i}),
    "node_transaction": dict(kind="Transaction", target="transaction", field="node", query=(
        "query($id: ID!){ node(id:$id){ id ... on Transaction{ amount{ amount } } } }"),
        variables=lambda i: {"id": i}),
    "transaction": dict(kind="Transaction", target="transaction", field="transaction", query=(
        "query($id: ID!){ transaction(id:$id){ id amount{ amount currency } business{ id } } }"),
        variables=lambda i: {"id": i}),
    "updateBusiness": dict(kind="Business", target="business", field="updateBusiness", query=(
        "mutation($i: UpdateBusinessInput!){ updateBusiness(input:$i){ business{ id name } "
        "userErrors{ code message field } } }"),
        variables=lambda i: {"i": {"businessId": i, "name": "Hijacked"}}),
    "submitVerification": dict(kind="Business", target="business", field="submitVerification",
        query=("mutation($id: ID!){ submitVerification(businessId:$id){ business{ id } "
               "userErrors{ code message field } } }"), variables=lambda i: {"id": i}),
    "inviteMember": dict(kind="Business", target="business", field="inviteMember", query=M_INVITE,
        variables=lambda i: {"i": {"businessId": i, "email": "mole@example.com",
                                   "role": "VIEWER"}}),
    "inviteMember_owner": dict(kind="Business", target="business", field="inviteMember",
        query=M_INVITE, variables=lambda i: {"i": {"businessId": i, "email": "mole@example.com",
                                                   "role": "OWNER"}}),
    "changeMemberRole_owner": dict(kind="Member", target="owner_member", field="changeMemberRole",
        query=("mutation($id: ID!, $r: Role!){ changeMemberRole(memberId:$id, role:$r){ "
               "member{ id role } userErrors{ code message field } } }"),
        variables=lambda i: {"id": i, "r": "VIEWER"}),
    "changeMemberRole_viewer": dict(kind="Member", target="viewer_member",
        field="changeMemberRole",
        query=("mutation($id: ID!, $r: Role!){ changeMemberRole(memberId:$id, role:$r){ "
               "member{ id role } userErrors{ code message field } } }"),
        variables=lambda i: {"id": i, "r": "OWNER"}),
    "removeMember_owner": dict(kind="Member", target="owner_member", field="removeMember", query=(
        "mutation($id: ID!){ removeMember(memberId:$id){ member{ id } "
        "userErrors{ code message field } } }"), variables=lambda i: {"id": i}),
    "removeMember_viewer": dict(kind="Member", target="viewer_member", field="removeMember",
        query=("mutation($id: ID!){ removeMember(memberId:$id){ member{ id } "
               "userErrors{ code message field } } }"), variables=lambda i: {"id": i}),
    "createApiKey": dict(kind="Business", target="business", field="createApiKey",
        query=M_CREATE_KEY, variables=lambda i: {"b": i, "n": "backdoor", "r": "VIEWER"}),
    "createApiKey_owner": dict(kind="Business", target="business", field="createApiKey",
        query=M_CREATE_KEY, variables=lambda i: {"b": i, "n": "backdoor", "r": "OWNER"}),
    "revokeApiKey": dict(kind="ApiKey", target="api_key", field="revokeApiKey", query=(
        "mutation($id: ID!){ revokeApiKey(id:$id){ apiKey{ id revokedAt } secret "
        "userErrors{ code message field } } }"), variables=lambda i: {"id": i}),
    "fundBusiness": dict(kind="Business", target="business", field="fundBusiness", query=(
        "mutation($i: FundBusinessInput!){ fundBusiness(input:$i){ transaction{ id } "
        "userErrors{ code message field } } }"),
        variables=lambda i: {"i": {"businessId": i, "amount": {"amount": "1000.00",
                                                               "currency": "EUR"},
                                   "idempotencyKey": "isolation-probe"}}),
}  # fmt: skip


B_FUNDING_KEY = "b-funding-2024-001"


def random_id(type_name: str) -> str:
    """A well-formed Relay ID of ``type_name`` that names nothing (base64url of Type:uuid)."""
    raw = f"{type_name}:{uuid.uuid4()}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def id_type(global_id: str) -> str:
    return base64.urlsafe_b64decode(global_id + "=" * (-len(global_id) % 4)).decode().split(":")[0]


@dataclass
class World:
    a_id: str
    a_owner: str
    b_id: str
    b_owner: str
    b_targets: dict[str, str]  # target name -> B's object ID
    b_key_secret: str
    b_before: dict[str, Any]
    callers: dict[str, str]  # principal -> token or API key secret of A


@pytest.fixture(scope="module")
async def mapi(app: Any) -> AsyncIterator[Api]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://veix.test") as client:
        yield Api(client)


async def snapshot(api: Api, token: str, business_id: str) -> dict[str, Any]:
    data = await api.ok(Q_SNAPSHOT, {"id": business_id}, token)
    business: dict[str, Any] = data["business"]
    assert business is not None and business["id"] == business_id
    return business


@pytest.fixture(scope="module")
async def world(mapi: Api) -> World:
    a_owner, _ = await mapi.sign_up("Owner A")
    a_id = await mapi.create_business(a_owner, name="Alpha Ltd")
    b_owner, _ = await mapi.sign_up("Owner B")
    b_id = await mapi.create_business(b_owner, name="Bravo GmbH")

    funded = await mapi.fund(b_owner, b_id, "250.00", key=B_FUNDING_KEY)
    assert funded["data"]["fundBusiness"]["userErrors"] == [], funded
    b_txn = funded["data"]["fundBusiness"]["transaction"]["id"]
    _, b_viewer = await mapi.member_token(b_owner, b_id, "VIEWER")
    key = (await mapi.ok(M_CREATE_KEY, {"b": b_id, "n": "B's partner", "r": "DEVELOPER"},
                         b_owner))["createApiKey"]
    before = await snapshot(mapi, b_owner, b_id)
    b_owner_member = next(e["node"]["id"] for e in before["members"]["edges"]
                          if e["node"]["role"] == "OWNER")

    callers = {"OWNER": a_owner}
    for role in ROLES[1:]:
        callers[role], _ = await mapi.member_token(a_owner, a_id, role)
    a_key = (await mapi.ok(M_CREATE_KEY, {"b": a_id, "n": "A's partner", "r": "OWNER"},
                           a_owner))["createApiKey"]
    callers["API_KEY_OWNER"] = a_key["secret"]

    targets = {"business": b_id, "transaction": b_txn, "owner_member": b_owner_member,
               "viewer_member": b_viewer, "api_key": key["apiKey"]["id"]}
    return World(a_id, a_owner, b_id, b_owner, targets, key["secret"], before, callers)


def without_request_ids(body: dict[str, Any]) -> dict[str, Any]:
    for error in body.get("errors", []):
        error.get("extensions", {}).pop("requestId", None)
    return body


def test_random_ids_have_the_shape_of_real_ones() -> None:
    """The probe IDs are only meaningful if they are well-formed IDs of the right type."""
    for kind in ("Business", "Transaction", "Member", "ApiKey"):
        assert id_type(random_id(kind)) == kind


@pytest.mark.parametrize("principal", PRINCIPALS)
@pytest.mark.parametrize("operation", list(OPERATIONS))
async def test_objects_of_another_business_answer_like_missing_ones(
    mapi: Api, world: World, principal: str, operation: str
) -> None:
    op = OPERATIONS[operation]
    token = world.callers[principal]
    b_object = world.b_targets[op["target"]]
    assert id_type(b_object) == op["kind"]
    missing = random_id(op["kind"])

    on_b = await mapi.gql(op["query"], op["variables"](b_object), token)
    on_missing = await mapi.gql(op["query"], op["variables"](missing), token)

    field = op["field"]
    assert "errors" not in on_b, on_b
    if op["query"].lstrip().startswith("query"):
        assert on_b == {"data": {field: None}}
    else:
        payload = on_b["data"][field]
        assert [e["code"] for e in payload["userErrors"]] == ["NOT_FOUND"], on_b
        assert all(v is None for k, v in payload.items() if k != "userErrors"), on_b
    # Identical to a miss, apart from the ID itself (should a message ever echo it).
    as_b = json.dumps(without_request_ids(on_b)).replace(b_object, "<ID>")
    as_missing = json.dumps(without_request_ids(on_missing)).replace(missing, "<ID>")
    assert as_b == as_missing


@pytest.mark.parametrize("principal", PRINCIPALS)
async def test_businesses_lists_only_own_business(
    mapi: Api, world: World, principal: str
) -> None:
    data = await mapi.ok(Q_BUSINESSES, None, world.callers[principal])
    assert data["businesses"]["totalCount"] == 1
    assert [e["node"]["id"] for e in data["businesses"]["edges"]] == [world.a_id]
    if principal != "API_KEY_OWNER":
        me = await mapi.ok(Q_ME, None, world.callers[principal])
        assert [m["business"]["id"] for m in me["me"]["memberships"]] == [world.a_id]


async def test_idempotency_keys_of_b_mean_nothing_in_a(mapi: Api, world: World) -> None:
    """B's funding key, reused in A with the same amount, funds A: it neither replays B's
    transaction nor reports the key as reused (which would tell A that B used it)."""
    first = await mapi.fund(world.callers["FINANCE"], world.a_id, "250.00", key=B_FUNDING_KEY)
    assert "errors" not in first and first["data"]["fundBusiness"]["userErrors"] == [], first
    txn = first["data"]["fundBusiness"]["transaction"]
    assert txn["id"] != world.b_targets["transaction"]
    read = await mapi.ok("query($id: ID!){ transaction(id:$id){ business{ id } } }",
                         {"id": txn["id"]}, world.a_owner)
    assert read["transaction"]["business"]["id"] == world.a_id
    # Within A the key now replays A's own transaction.
    again = await mapi.fund(world.callers["API_KEY_OWNER"], world.a_id, "250.00",
                            key=B_FUNDING_KEY)
    assert again["data"]["fundBusiness"] == {"transaction": txn, "userErrors": []}, again


async def test_business_b_is_unchanged_afterwards(api: Api, world: World) -> None:
    """Runs after the probes (tests run in file order): B's owner sees B as it was."""
    after = await snapshot(api, world.b_owner, world.b_id)
    assert after == world.b_before
    assert after["name"] == "Bravo GmbH"
    assert after["balances"] == [{"amount": "250.00", "currency": "EUR"}]
    assert after["members"]["totalCount"] == 2
    # No API key list exists in the API: check B's key still works and no key of A got in.
    read = await api.gql("query($id: ID!){ business(id:$id){ id } }", {"id": world.b_id},
                         world.b_key_secret)
    assert read == {"data": {"business": {"id": world.b_id}}}
    businesses = await api.ok(Q_BUSINESSES, None, world.b_owner)
    assert [e["node"]["id"] for e in businesses["businesses"]["edges"]] == [world.b_id]
