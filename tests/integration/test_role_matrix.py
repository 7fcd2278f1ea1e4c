"""Every role against every operation implemented so far, through the public GraphQL API.

The expected outcome of each (role, operation) case comes from two tables written out
below, independently of ``veix/security/policy.csv`` and of the ``Authorizer``:

* ``ROLE_PERMISSIONS``: what each role may do (DESIGN.md section 8);
* ``OPERATIONS``: which permissions each operation needs. Creating an API key of role R
  also needs every permission of R: a key may not do more than whoever creates it.

A case is *allowed* when the role holds every permission the operation needs. An allowed
call must succeed and its effect must be visible to the business owner; a denied call must
answer with one top-level ``FORBIDDEN`` error and the owner must see that nothing changed.

Every case runs twice (except changing one's own role, which only a person can): with the
person's access token (a member with that role) and with an API key created with that role,
since keys act with their role.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.integration.conftest import Api

ROLES = ("OWNER", "ADMIN", "FINANCE", "DEVELOPER", "CARDHOLDER", "VIEWER")

# What each role may do: the role-permission matrix of DESIGN.md section 8, written out.
ALL_PERMISSIONS = frozenset({
    "business:read", "business:update", "business:verify",
    "members:read", "members:invite", "members:manage", "owners:manage",
    "api_keys:read", "api_keys:manage", "ledger:read", "funds:create",
    "cards:read", "cards:read_own", "cards:issue", "cards:manage", "cards:controls", "cards:reveal",
    "authorizations:decide", "transactions:read", "payments:create", "payments:refund",
    "disputes:manage", "webhooks:manage", "analytics:read", "billing:manage", "invoices:manage",
    "audit:read",
})
ROLE_PERMISSIONS: dict[str, frozenset[str]] = {
    "OWNER": ALL_PERMISSIONS,
    "ADMIN": ALL_PERMISSIONS - {"owners:manage"},
    "FINANCE": frozenset({
        "business:read", "members:read", "ledger:read", "funds:create",
        "cards:read", "cards:read_own", "cards:issue", "cards:manage", "cards:controls",
        "authorizations:decide", "transactions:read", "payments:create", "payments:refund",
        "disputes:manage", "analytics:read", "billing:manage", "invoices:manage",
    }),
    "DEVELOPER": frozenset({
        "business:read", "members:read", "api_keys:read", "api_keys:manage", "webhooks:manage",
        "ledger:read", "cards:read", "cards:read_own", "transactions:read", "payments:create",
        "analytics:read",
    }),
    "CARDHOLDER": frozenset({"business:read", "cards:read_own", "cards:reveal"}),
    "VIEWER": frozenset({
        "business:read", "members:read", "ledger:read", "cards:read", "cards:read_own",
        "transactions:read", "analytics:read",
    }),
}  # fmt: skip

# Which permissions each operation needs (all of them). An API key may not do more than the
# person or key creating it: creating a key of role R also needs every permission of R (for
# an OWNER key that includes owners:manage).
OPERATIONS: dict[str, frozenset[str]] = {
    "business": frozenset({"business:read"}),
    "balances": frozenset({"business:read", "ledger:read"}),
    "members": frozenset({"business:read", "members:read"}),
    "transactions": frozenset({"business:read", "transactions:read"}),
    "updateBusiness": frozenset({"business:update"}),
    "submitVerification": frozenset({"business:verify"}),
    "inviteMember": frozenset({"members:invite"}),
    "inviteMember_owner": frozenset({"members:invite", "owners:manage"}),
    "changeMemberRole": frozenset({"members:manage"}),
    "changeMemberRole_grantOwner": frozenset({"members:manage", "owners:manage"}),
    "changeMemberRole_ofOwner": frozenset({"members:manage", "owners:manage"}),
    "changeMemberRole_selfToOwner": frozenset({"members:manage", "owners:manage"}),
    "removeMember": frozenset({"members:manage"}),
    "removeMember_owner": frozenset({"members:manage", "owners:manage"}),
    **{f"createApiKey_{role}": frozenset({"api_keys:manage"}) | ROLE_PERMISSIONS[role]
       for role in ROLES},
    "revokeApiKey": frozenset({"api_keys:manage"}),
    "fundBusiness": frozenset({"funds:create"}),
}
# Operations that look at the business's money (their business is funded first).
NEEDS_FUNDS = {"balances", "transactions", "fundBusiness"}
# Operations that only make sense for a person (an API key is not a member).
PEOPLE_ONLY = {"changeMemberRole_selfToOwner"}


def expected_allowed(role: str, operation: str) -> bool:
    return OPERATIONS[operation] <= ROLE_PERMISSIONS[role]


def test_the_tables_agree_with_the_brief() -> None:
    """A spot check of the tables themselves, so a typo in them cannot hide a bug."""
    allowed = {op: {r for r in ROLES if expected_allowed(r, op)} for op in OPERATIONS}
    assert allowed["business"] == set(ROLES)
    assert allowed["balances"] == {"OWNER", "ADMIN", "FINANCE", "DEVELOPER", "VIEWER"}
    assert allowed["updateBusiness"] == {"OWNER", "ADMIN"}
    assert allowed["inviteMember_owner"] == {"OWNER"}
    assert allowed["createApiKey_VIEWER"] == {"OWNER", "ADMIN", "DEVELOPER"}
    assert allowed["createApiKey_ADMIN"] == {"OWNER", "ADMIN"}
    assert allowed["createApiKey_OWNER"] == {"OWNER"}
    assert all(ROLE_PERMISSIONS[r] <= ROLE_PERMISSIONS["ADMIN"] for r in ROLES if r != "OWNER")
    assert allowed["fundBusiness"] == {"OWNER", "ADMIN", "FINANCE"}


# --------------------------------------------------------------------------- queries

Q_BUSINESS = "query($id: ID!){ business(id:$id){ id name } }"
Q_BALANCES = "query($id: ID!){ business(id:$id){ id balances{ amount currency } } }"
Q_MEMBERS = """query($id: ID!){ business(id:$id){ id members(first:100){ totalCount
  edges{ node{ id role user{ email } } } } } }"""
Q_TRANSACTIONS = """query($id: ID!){ business(id:$id){ id transactions(first:100){ totalCount
  edges{ node{ id type status amount{ amount currency } } } } } }"""
Q_STATE = """query($id: ID!){ business(id:$id){ id name updatedAt verificationStatus
  complianceStatus{ kybVerified checks{ name status } } } }"""

M_UPDATE = """mutation($i: UpdateBusinessInput!){ updateBusiness(input:$i){
  business{ id name } userErrors{ code message field } } }"""
M_VERIFY = """mutation($id: ID!){ submitVerification(businessId:$id){
  business{ id verificationStatus complianceStatus{ checks{ name status } } }
  userErrors{ code message field } } }"""
M_INVITE = """mutation($i: InviteMemberInput!){ inviteMember(input:$i){
  member{ id role user{ email } } userErrors{ code message field } } }"""
M_CHANGE_ROLE = """mutation($id: ID!, $role: Role!){ changeMemberRole(memberId:$id, role:$role){
  member{ id role } userErrors{ code message field } } }"""
M_REMOVE = """mutation($id: ID!){ removeMember(memberId:$id){
  member{ id } userErrors{ code message field } } }"""
M_CREATE_KEY = """mutation($b: ID!, $n: String!, $r: Role!){ createApiKey(businessId:$b, name:$n, role:$r){
  apiKey{ id role revokedAt } secret userErrors{ code message field } } }"""
M_REVOKE_KEY = """mutation($id: ID!){ revokeApiKey(id:$id){
  apiKey{ id revokedAt } secret userErrors{ code message field } } }"""
M_FUND = """mutation($i: FundBusinessInput!){ fundBusiness(input:$i){
  transaction{ id type amount{ amount currency } } userErrors{ code message field } } }"""

FUNDED = "50.00"


# --------------------------------------------------------------------------- fixtures

@dataclass
class People:
    owner_token: str
    owner_email: str
    tokens: dict[str, str]  # role -> access token of a person used with that role
    emails: dict[str, str]


@dataclass
class Biz:
    """A fresh business per test, funded once, with the caller in place."""

    id: str
    name: str
    caller: str  # token or API key secret of the caller
    caller_member: str | None  # the caller's own member ID (people only)
    funding_id: str


@pytest.fixture(scope="module")
async def mapi(app: Any) -> AsyncIterator[Api]:
    """A client shared by the whole module, so people are signed up once."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://veix.test") as client:
        yield Api(client)


@pytest.fixture(scope="module")
async def people(mapi: Api) -> People:
    owner_token, owner_email = await mapi.sign_up("Owner")
    tokens, emails = {}, {}
    for role in ROLES:
        tokens[role], emails[role] = await mapi.sign_up(f"{role.title()} Person")
    return People(owner_token, owner_email, tokens, emails)


async def invite(api: Api, token: str, business_id: str, email: str, role: str) -> str:
    data = await api.ok(M_INVITE, {"i": {"businessId": business_id, "email": email, "role": role}},
                        token)
    return str(data["inviteMember"]["member"]["id"])


async def create_key(api: Api, token: str, business_id: str, role: str) -> tuple[str, str]:
    data = await api.ok(M_CREATE_KEY, {"b": business_id, "n": f"{role} key", "r": role}, token)
    payload = data["createApiKey"]
    assert payload["apiKey"]["role"] == role
    return str(payload["apiKey"]["id"]), str(payload["secret"])


async def new_business(api: Api, people: People, funded: bool = True) -> tuple[str, str, str]:
    """A fresh business of the owner, funded with FUNDED EUR unless told otherwise."""
    name = f"Matrix {uuid.uuid4().hex[:8]}"
    business_id = await api.create_business(people.owner_token, name=name)
    if not funded:
        return business_id, name, ""
    funded_body = await api.fund(people.owner_token, business_id, FUNDED)
    assert "errors" not in funded_body, funded_body
    assert funded_body["data"]["fundBusiness"]["userErrors"] == [], funded_body
    return business_id, name, str(funded_body["data"]["fundBusiness"]["transaction"]["id"])


async def business_with_caller(api: Api, people: People, kind: str, role: str,
                               funded: bool) -> Biz:
    business_id, name, funding_id = await new_business(api, people, funded)
    member = None
    if kind == "user":
        member = await invite(api, people.owner_token, business_id, people.emails[role], role)
        caller = people.tokens[role]
    else:
        _, caller = await create_key(api, people.owner_token, business_id, role)
    return Biz(business_id, name, caller, member, funding_id)


# --------------------------------------------------------------------------- assertions

def assert_forbidden(body: dict[str, Any], field: str) -> None:
    """One top-level FORBIDDEN error, and the denied data is not returned."""
    errors = body.get("errors")
    assert errors, f"expected FORBIDDEN, got {body}"
    assert [e.get("extensions", {}).get("code") for e in errors] == ["FORBIDDEN"], body
    assert body["data"] is None or body["data"].get(field) is None, body


def assert_success(body: dict[str, Any], field: str) -> dict[str, Any]:
    assert "errors" not in body, body
    value = body["data"][field]
    assert value is not None, body
    if "userErrors" in value:
        assert value["userErrors"] == [], body
    result: dict[str, Any] = value
    return result


async def owner_read(api: Api, people: People, query: str, business_id: str) -> dict[str, Any]:
    data = await api.ok(query, {"id": business_id}, people.owner_token)
    business: dict[str, Any] = data["business"]
    assert business is not None
    return business


async def owner_members(api: Api, people: People, business_id: str) -> dict[str, tuple[str, str]]:
    """Member id -> (role, email), as the owner sees the team."""
    b = await owner_read(api, people, Q_MEMBERS, business_id)
    conn = b["members"]
    assert conn["totalCount"] == len(conn["edges"])
    return {e["node"]["id"]: (e["node"]["role"], e["node"]["user"]["email"]) for e in conn["edges"]}


async def owner_balances(api: Api, people: People, business_id: str) -> list[dict[str, str]]:
    b = await owner_read(api, people, Q_BALANCES, business_id)
    balances: list[dict[str, str]] = b["balances"]
    return balances


async def key_can_read(api: Api, secret: str, business_id: str) -> dict[str, Any]:
    return await api.gql(Q_BUSINESS, {"id": business_id}, secret)


def assert_unauthenticated(body: dict[str, Any]) -> None:
    errors = body.get("errors")
    assert errors, f"expected UNAUTHENTICATED, got {body}"
    assert [e.get("extensions", {}).get("code") for e in errors] == ["UNAUTHENTICATED"], body
    assert body["data"] is None or all(v is None for v in body["data"].values()), body


# --------------------------------------------------------------------------- operations

Operation = Callable[[Api, People, Biz, bool], Awaitable[None]]


async def op_business(api: Api, people: People, biz: Biz, allowed: bool) -> None:
    body = await api.gql(Q_BUSINESS, {"id": biz.id}, biz.caller)
    if allowed:
        assert assert_success(body, "business") == {"id": biz.id, "name": biz.name}
    else:
        assert_forbidden(body, "business")


async def op_balances(api: Api, people: People, biz: Biz, allowed: bool) -> None:
    body = await api.gql(Q_BALANCES, {"id": biz.id}, biz.caller)
    if allowed:
        assert assert_success(body, "business")["balances"] == [
            {"amount": FUNDED, "currency": "EUR"}]
    else:
        assert_forbidden(body, "business")
        assert body["errors"][0]["path"] == ["business", "balances"], body


async def op_members(api: Api, people: People, biz: Biz, allowed: bool) -> None:
    body = await api.gql(Q_MEMBERS, {"id": biz.id}, biz.caller)
    if allowed:
        conn = assert_success(body, "business")["members"]
        seen = {(e["node"]["role"], e["node"]["user"]["email"]) for e in conn["edges"]}
        assert ("OWNER", people.owner_email) in seen
        assert conn["totalCount"] == len(conn["edges"]) == len(
            await owner_members(api, people, biz.id))
    else:
        assert_forbidden(body, "business")
        assert body["errors"][0]["path"] == ["business", "members"], body


async def op_transactions(api: Api, people: People, biz: Biz, allowed: bool) -> None:
    body = await api.gql(Q_TRANSACTIONS, {"id": biz.id}, biz.caller)
    if allowed:
        conn = assert_success(body, "business")["transactions"]
        assert conn["totalCount"] == 1
        assert [e["node"] for e in conn["edges"]] == [{
            "id": biz.funding_id, "type": "FUNDING", "status": "SUCCEEDED",
            "amount": {"amount": FUNDED, "currency": "EUR"}}]
    else:
        assert_forbidden(body, "business")
        assert body["errors"][0]["path"] == ["business", "transactions"], body


async def op_update_business(api: Api, people: People, biz: Biz, allowed: bool) -> None:
    before = await owner_read(api, people, Q_STATE, biz.id)
    new_name = f"Renamed {uuid.uuid4().hex[:8]}"
    body = await api.gql(M_UPDATE, {"i": {"businessId": biz.id, "name": new_name}}, biz.caller)
    after = await owner_read(api, people, Q_STATE, biz.id)
    if allowed:
        assert assert_success(body, "updateBusiness")["business"] == {"id": biz.id,
                                                                       "name": new_name}
        assert after["name"] == new_name
    else:
        assert_forbidden(body, "updateBusiness")
        assert after == before and after["name"] == biz.name


async def op_submit_verification(api: Api, people: People, biz: Biz, allowed: bool) -> None:
    before = await owner_read(api, people, Q_STATE, biz.id)
    assert before["verificationStatus"] == "UNVERIFIED"
    body = await api.gql(M_VERIFY, {"id": biz.id}, biz.caller)
    after = await owner_read(api, people, Q_STATE, biz.id)
    if allowed:
        result = assert_success(body, "submitVerification")["business"]
        assert result["verificationStatus"] in {"VERIFIED", "REJECTED"}
        assert result["complianceStatus"]["checks"]
        assert after["verificationStatus"] == result["verificationStatus"]
        assert after["complianceStatus"]["checks"] == result["complianceStatus"]["checks"]
    else:
        assert_forbidden(body, "submitVerification")
        assert after == before
        assert after["complianceStatus"]["checks"] == []


async def _invite(api: Api, people: People, biz: Biz, allowed: bool, role: str) -> None:
    before = await owner_members(api, people, biz.id)
    email = f"invitee-{uuid.uuid4().hex[:10]}@example.com"
    body = await api.gql(M_INVITE, {"i": {"businessId": biz.id, "email": email, "role": role}},
                         biz.caller)
    after = await owner_members(api, people, biz.id)
    if allowed:
        member = assert_success(body, "inviteMember")["member"]
        assert member["role"] == role and member["user"]["email"] == email
        assert after == before | {member["id"]: (role, email)}
    else:
        assert_forbidden(body, "inviteMember")
        assert after == before


async def op_invite_member(api: Api, people: People, biz: Biz, allowed: bool) -> None:
    await _invite(api, people, biz, allowed, "VIEWER")


async def op_invite_owner(api: Api, people: People, biz: Biz, allowed: bool) -> None:
    await _invite(api, people, biz, allowed, "OWNER")


async def _change_role(api: Api, people: People, biz: Biz, allowed: bool, from_role: str,
                       to_role: str) -> None:
    target = await invite(api, people.owner_token, biz.id,
                          f"target-{uuid.uuid4().hex[:10]}@example.com", from_role)
    before = await owner_members(api, people, biz.id)
    body = await api.gql(M_CHANGE_ROLE, {"id": target, "role": to_role}, biz.caller)
    after = await owner_members(api, people, biz.id)
    if allowed:
        assert assert_success(body, "changeMemberRole")["member"] == {"id": target,
                                                                       "role": to_role}
        assert after == before | {target: (to_role, before[target][1])}
    else:
        assert_forbidden(body, "changeMemberRole")
        assert after == before and after[target][0] == from_role


async def op_change_role(api: Api, people: People, biz: Biz, allowed: bool) -> None:
    await _change_role(api, people, biz, allowed, "VIEWER", "FINANCE")


async def op_change_role_grant_owner(api: Api, people: People, biz: Biz, allowed: bool) -> None:
    await _change_role(api, people, biz, allowed, "VIEWER", "OWNER")


async def op_change_role_of_owner(api: Api, people: People, biz: Biz, allowed: bool) -> None:
    await _change_role(api, people, biz, allowed, "OWNER", "ADMIN")


async def op_change_own_role_to_owner(api: Api, people: People, biz: Biz,
                                      allowed: bool) -> None:
    assert biz.caller_member is not None
    before = await owner_members(api, people, biz.id)
    body = await api.gql(M_CHANGE_ROLE, {"id": biz.caller_member, "role": "OWNER"}, biz.caller)
    after = await owner_members(api, people, biz.id)
    if allowed:
        assert assert_success(body, "changeMemberRole")["member"] == {
            "id": biz.caller_member, "role": "OWNER"}
        assert after[biz.caller_member][0] == "OWNER"
    else:
        assert_forbidden(body, "changeMemberRole")
        assert after == before and after[biz.caller_member][0] != "OWNER"


async def _remove(api: Api, people: People, biz: Biz, allowed: bool, target_role: str) -> None:
    target = await invite(api, people.owner_token, biz.id,
                          f"target-{uuid.uuid4().hex[:10]}@example.com", target_role)
    before = await owner_members(api, people, biz.id)
    body = await api.gql(M_REMOVE, {"id": target}, biz.caller)
    after = await owner_members(api, people, biz.id)
    if allowed:
        assert assert_success(body, "removeMember")["member"] == {"id": target}
        assert target not in after
        assert after == {k: v for k, v in before.items() if k != target}
    else:
        assert_forbidden(body, "removeMember")
        assert after == before


async def op_remove_member(api: Api, people: People, biz: Biz, allowed: bool) -> None:
    await _remove(api, people, biz, allowed, "VIEWER")


async def op_remove_owner(api: Api, people: People, biz: Biz, allowed: bool) -> None:
    await _remove(api, people, biz, allowed, "OWNER")


async def _create_key(api: Api, people: People, biz: Biz, allowed: bool, role: str) -> None:
    body = await api.gql(M_CREATE_KEY, {"b": biz.id, "n": "partner", "r": role}, biz.caller)
    if allowed:
        payload = assert_success(body, "createApiKey")
        assert payload["apiKey"]["role"] == role and payload["apiKey"]["revokedAt"] is None
        assert payload["secret"]
        # The new key works, for this business.
        read = await key_can_read(api, payload["secret"], biz.id)
        assert read == {"data": {"business": {"id": biz.id, "name": biz.name}}}
    else:
        # The API has no way to list keys; the denied call must at least hand out nothing.
        assert_forbidden(body, "createApiKey")


def op_create_key(role: str) -> Operation:
    async def run(api: Api, people: People, biz: Biz, allowed: bool) -> None:
        await _create_key(api, people, biz, allowed, role)
    return run


async def op_revoke_key(api: Api, people: People, biz: Biz, allowed: bool) -> None:
    key_id, secret = await create_key(api, people.owner_token, biz.id, "VIEWER")
    body = await api.gql(M_REVOKE_KEY, {"id": key_id}, biz.caller)
    read = await key_can_read(api, secret, biz.id)
    if allowed:
        payload = assert_success(body, "revokeApiKey")
        assert payload["apiKey"]["id"] == key_id and payload["apiKey"]["revokedAt"] is not None
        assert payload["secret"] is None
        assert_unauthenticated(read)
    else:
        assert_forbidden(body, "revokeApiKey")
        assert read == {"data": {"business": {"id": biz.id, "name": biz.name}}}


async def op_fund_business(api: Api, people: People, biz: Biz, allowed: bool) -> None:
    body = await api.gql(M_FUND, {"i": {"businessId": biz.id,
                                        "amount": {"amount": "7.25", "currency": "EUR"},
                                        "idempotencyKey": uuid.uuid4().hex}}, biz.caller)
    balances = await owner_balances(api, people, biz.id)
    txns = (await owner_read(api, people, Q_TRANSACTIONS, biz.id))["transactions"]
    if allowed:
        txn = assert_success(body, "fundBusiness")["transaction"]
        assert txn["type"] == "FUNDING" and txn["amount"] == {"amount": "7.25", "currency": "EUR"}
        assert balances == [{"amount": "57.25", "currency": "EUR"}]
        assert {e["node"]["id"] for e in txns["edges"]} == {biz.funding_id, txn["id"]}
    else:
        assert_forbidden(body, "fundBusiness")
        assert balances == [{"amount": FUNDED, "currency": "EUR"}]
        assert txns["totalCount"] == 1


RUNNERS: dict[str, Operation] = {
    "business": op_business,
    "balances": op_balances,
    "members": op_members,
    "transactions": op_transactions,
    "updateBusiness": op_update_business,
    "submitVerification": op_submit_verification,
    "inviteMember": op_invite_member,
    "inviteMember_owner": op_invite_owner,
    "changeMemberRole": op_change_role,
    "changeMemberRole_grantOwner": op_change_role_grant_owner,
    "changeMemberRole_ofOwner": op_change_role_of_owner,
    "changeMemberRole_selfToOwner": op_change_own_role_to_owner,
    "removeMember": op_remove_member,
    "removeMember_owner": op_remove_owner,
    **{f"createApiKey_{role}": op_create_key(role) for role in ROLES},
    "revokeApiKey": op_revoke_key,
    "fundBusiness": op_fund_business,
}
assert set(RUNNERS) == set(OPERATIONS)

CASES = [
    pytest.param(kind, role, op,
                 id=f"{kind}-{role}-{op}-{'allowed' if expected_allowed(role, op) else 'denied'}")
    for kind in ("user", "api_key")
    for role in ROLES
    for op in OPERATIONS
    if not (kind == "api_key" and op in PEOPLE_ONLY)
]


@pytest.mark.parametrize(("kind", "role", "operation"), CASES)
async def test_role_may_exactly_what_the_matrix_says(
    mapi: Api, people: People, kind: str, role: str, operation: str
) -> None:
    biz = await business_with_caller(mapi, people, kind, role, operation in NEEDS_FUNDS)
    await RUNNERS[operation](mapi, people, biz, expected_allowed(role, operation))


# --------------------------------------------------------------------------- API keys

async def test_api_keys_act_with_their_role_and_stop_when_revoked(
    api: Api, people: People
) -> None:
    business_id, _, _ = await new_business(api, people)
    viewer_id, viewer = await create_key(api, people.owner_token, business_id, "VIEWER")
    finance_id, finance = await create_key(api, people.owner_token, business_id, "FINANCE")

    def fund(secret: str, amount: str) -> Awaitable[dict[str, Any]]:
        return api.fund(secret, business_id, amount)

    # VIEWER: may read balances, may not add funds.
    body = await api.gql(Q_BALANCES, {"id": business_id}, viewer)
    assert assert_success(body, "business")["balances"] == [{"amount": FUNDED, "currency": "EUR"}]
    assert_forbidden(await fund(viewer, "1.00"), "fundBusiness")
    assert await owner_balances(api, people, business_id) == [
        {"amount": FUNDED, "currency": "EUR"}]

    # FINANCE: may add funds and sees them.
    assert_success(await fund(finance, "10.00"), "fundBusiness")
    body = await api.gql(Q_BALANCES, {"id": business_id}, finance)
    assert assert_success(body, "business")["balances"] == [{"amount": "60.00", "currency": "EUR"}]
    assert await owner_balances(api, people, business_id) == [
        {"amount": "60.00", "currency": "EUR"}]

    # Revoked keys are refused outright, whatever their role.
    for key_id in (viewer_id, finance_id):
        assert_success(await api.gql(M_REVOKE_KEY, {"id": key_id}, people.owner_token),
                       "revokeApiKey")
    assert_unauthenticated(await api.gql(Q_BALANCES, {"id": business_id}, viewer))
    assert_unauthenticated(await api.gql(Q_BALANCES, {"id": business_id}, finance))
    assert_unauthenticated(await fund(finance, "10.00"))
    assert await owner_balances(api, people, business_id) == [
        {"amount": "60.00", "currency": "EUR"}]

    # A key that never existed is refused the same way.
    assert_unauthenticated(await api.gql(Q_BALANCES, {"id": business_id},
                                         finance[:-4] + ("0000" if finance[-4:] != "0000"
                                                         else "1111")))

