"""Bad input through the public API: every mistake gets a clear answer (a
``userErrors`` entry with a code and field path, or a top-level error with a
code), never an internal error, and nothing is half-written (DESIGN.md
sections 3 and 9)."""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

import pytest

from tests.integration.conftest import BUSINESS_INPUT as _BUSINESS_INPUT
from tests.integration.conftest import PASSWORD, Api

BUSINESS_INPUT: dict[str, Any] = _BUSINESS_INPUT

CREATE_BUSINESS = ("mutation($i: CreateBusinessInput!){ createBusiness(input:$i){ business{ id } "
                   "userErrors{ field code message } } }")
UPDATE_BUSINESS = ("mutation($i: UpdateBusinessInput!){ updateBusiness(input:$i){ business{ id name "
                   "contactInfo{ email } } userErrors{ field code message } } }")
FUND = ("mutation($i: FundBusinessInput!){ fundBusiness(input:$i){ transaction{ id amount{ amount "
        "currency } } userErrors{ field code message } } }")
SIGN_UP = ("mutation($i: SignUpInput!){ signUp(input:$i){ accessToken refreshToken user{ id } "
           "userErrors{ field code message } } }")
LOG_IN = ("mutation($i: LogInInput!){ logIn(input:$i){ accessToken userErrors{ field code "
          "message } } }")
INVITE = ("mutation($i: InviteMemberInput!){ inviteMember(input:$i){ member{ id } "
          "userErrors{ field code message } } }")
SUBMIT = ("mutation($b: ID!){ submitVerification(businessId:$b){ business{ id verificationStatus "
          "complianceStatus{ kybVerified checks{ name status detail } } } "
          "userErrors{ field code message } } }")
CHANGE_ROLE = ("mutation($m: ID!){ changeMemberRole(memberId:$m, role: VIEWER){ member{ id role } "
               "userErrors{ field code message } } }")
REMOVE = ("mutation($m: ID!){ removeMember(memberId:$m){ member{ id } "
          "userErrors{ field code message } } }")
REVOKE_KEY = ("mutation($id: ID!){ revokeApiKey(id:$id){ apiKey{ id } secret "
              "userErrors{ field code message } } }")
CREATE_KEY = ("mutation($b: ID!){ createApiKey(businessId:$b, name:\"k\", role: VIEWER){ secret "
              "userErrors{ field code message } } }")
STATE = ("query($b: ID!){ business(id:$b){ name contactInfo{ email } balances{ amount currency } "
         "transactions(first: 100){ totalCount } members(first: 100){ totalCount } } "
         "businesses(first: 100){ totalCount } }")

MALFORMED_IDS = ["not-an-id", "!!!", base64.urlsafe_b64encode(b"garbage").decode().rstrip("="),
                 base64.urlsafe_b64encode(b"Business:not-a-uuid").decode(), "", "x" * 500,
                 "\u00e9\u00e9\u00e9"]


def gid(type_name: str, raw: uuid.UUID | None = None) -> str:
    """A well-formed global ID (of an object that need not exist)."""
    return base64.urlsafe_b64encode(f"{type_name}:{raw or uuid.uuid4()}".encode()).decode().rstrip(
        "=")


async def post(api: Api, query: str, variables: dict[str, Any] | None = None,
               token: str | None = None) -> dict[str, Any]:
    """A GraphQL POST that must be answered 200 without any internal error; every
    error carries the request id, which is also in the ``x-request-id`` header."""
    headers = {"authorization": f"Bearer {token}"} if token else {}
    r = await api.client.post("/graphql", json={"query": query, "variables": variables},
                              headers=headers)
    assert r.status_code == 200, r.text
    request_id = r.headers.get("x-request-id")
    assert request_id, r.headers
    body: dict[str, Any] = r.json()
    for e in body.get("errors", []):
        assert e["extensions"]["code"] != "INTERNAL_SERVER_ERROR", body
        assert e["extensions"]["requestId"] == request_id, body
    return body


def user_errors(body: dict[str, Any], mutation: str) -> list[tuple[str, list[str] | None]]:
    """(code, field) of each userErrors entry; the result object must be empty."""
    assert "errors" not in body, body
    payload = body["data"][mutation]
    for key, value in payload.items():
        if key != "userErrors":
            assert value is None, payload
    for e in payload["userErrors"]:
        assert e["message"], payload
    return [(e["code"], e["field"]) for e in payload["userErrors"]]


def top_level(body: dict[str, Any]) -> set[str]:
    assert body.get("errors"), body
    return {e["extensions"]["code"] for e in body["errors"]}


async def state(api: Api, token: str, business_id: str) -> dict[str, Any]:
    return await api.ok(STATE, {"b": business_id}, token)


async def fund_input(business_id: str, amount: Any, currency: str) -> dict[str, Any]:
    return {"i": {"businessId": business_id, "amount": {"amount": amount, "currency": currency},
                  "idempotencyKey": uuid.uuid4().hex}}


# ---------------------------------------------------------------- currencies and amounts


@pytest.mark.parametrize("currency", ["XXX", "eur", "EURO", "", "E", "€", "XTS"])
async def test_create_business_with_an_unknown_currency(api: Api, owner: tuple[str, str],
                                                        currency: str) -> None:
    token, _ = owner
    before = await api.ok("{ businesses{ totalCount } }", token=token)
    body = await post(api, CREATE_BUSINESS, {"i": {**BUSINESS_INPUT, "defaultCurrency": currency}},
                      token)
    assert user_errors(body, "createBusiness") == [
        ("UNSUPPORTED_CURRENCY", ["input", "defaultCurrency"])]
    assert await api.ok("{ businesses{ totalCount } }", token=token) == before


@pytest.mark.parametrize("currency", ["XXX", "eur", "Eur", " EUR", "EURO", ""])
async def test_fund_with_an_unknown_currency(api: Api, owner: tuple[str, str],
                                             currency: str) -> None:
    token, business_id = owner
    await api.fund(token, business_id, "5.00", "EUR")
    before = await state(api, token, business_id)
    body = await post(api, FUND, await fund_input(business_id, "10.00", currency), token)
    assert user_errors(body, "fundBusiness") == [
        ("UNSUPPORTED_CURRENCY", ["input", "amount", "currency"])]
    assert await state(api, token, business_id) == before


@pytest.mark.parametrize(("amount", "currency"), [
    ("10.001", "EUR"), ("1.5", "JPY"), ("0.0001", "USD"), ("1.0001", "BHD"), ("1.5", "KRW"),
])
async def test_too_many_decimals_are_refused_not_rounded(api: Api, owner: tuple[str, str],
                                                        amount: str, currency: str) -> None:
    token, business_id = owner
    before = await state(api, token, business_id)
    body = await post(api, FUND, await fund_input(business_id, amount, currency), token)
    assert user_errors(body, "fundBusiness") == [("INVALID_INPUT", ["input", "amount", "amount"])]
    assert await state(api, token, business_id) == before


async def test_trailing_zeros_within_the_minor_unit_are_fine(api: Api,
                                                            owner: tuple[str, str]) -> None:
    token, business_id = owner
    for amount, currency in (("10.500", "EUR"), ("3.0", "JPY"), ("1.234", "BHD")):
        body = await post(api, FUND, await fund_input(business_id, amount, currency), token)
        assert body["data"]["fundBusiness"]["userErrors"] == [], body
    balances = (await state(api, token, business_id))["business"]["balances"]
    assert sorted((b["currency"], b["amount"]) for b in balances) == [
        ("BHD", "1.234"), ("EUR", "10.50"), ("JPY", "3")]


@pytest.mark.parametrize("amount", ["-5", "-0.01", "0", "0.00", "-0", "NaN", "Infinity",
                                    "-Infinity", "1" * 30, "1e40"])
async def test_negative_zero_and_absurd_funding_is_invalid(api: Api, owner: tuple[str, str],
                                                           amount: str) -> None:
    token, business_id = owner
    await api.fund(token, business_id, "1.00", "EUR")
    before = await state(api, token, business_id)
    body = await post(api, FUND, await fund_input(business_id, amount, "EUR"), token)
    assert user_errors(body, "fundBusiness") == [("INVALID_INPUT", ["input", "amount", "amount"])]
    assert await state(api, token, business_id) == before


@pytest.mark.parametrize("amount", ["abc", "", "1,5", "0x10", "--1", [1], {"a": 1}, True])
async def test_an_amount_that_is_not_a_decimal_is_a_request_error(
        api: Api, owner: tuple[str, str], amount: Any) -> None:
    token, business_id = owner
    before = await state(api, token, business_id)
    body = await post(api, FUND, await fund_input(business_id, amount, "EUR"), token)
    assert body["data"] is None
    assert top_level(body) == {"INVALID_INPUT"}
    assert await state(api, token, business_id) == before


async def test_a_non_decimal_literal_in_the_document_fails_validation(
        api: Api, owner: tuple[str, str]) -> None:
    token, business_id = owner
    query = ('mutation($b: ID!){ fundBusiness(input:{businessId:$b, amount:{amount:"abc", '
             'currency:"EUR"}, idempotencyKey:"k"}){ transaction{ id } } }')
    body = await post(api, query, {"b": business_id}, token)
    assert body["data"] is None
    assert top_level(body) == {"GRAPHQL_VALIDATION_FAILED"}


# ---------------------------------------------------------------- addresses, emails, text


@pytest.mark.parametrize("country", ["XX", "de", "DEU", "D", "", "12", "ÄÖ"])
async def test_invalid_country_code(api: Api, owner: tuple[str, str], country: str) -> None:
    token, _ = owner
    before = await api.ok("{ businesses{ totalCount } }", token=token)
    address = {**BUSINESS_INPUT["legalAddress"], "country": country}
    body = await post(api, CREATE_BUSINESS, {"i": {**BUSINESS_INPUT, "legalAddress": address}},
                      token)
    assert user_errors(body, "createBusiness") == [
        ("INVALID_INPUT", ["input", "legalAddress", "country"])]
    assert await api.ok("{ businesses{ totalCount } }", token=token) == before


async def test_invalid_country_code_on_update(api: Api, owner: tuple[str, str]) -> None:
    token, business_id = owner
    before = await state(api, token, business_id)
    address = {**BUSINESS_INPUT["legalAddress"], "country": "ZZ"}
    body = await post(api, UPDATE_BUSINESS, {"i": {"businessId": business_id,
                                                   "legalAddress": address, "name": "Renamed"}},
                      token)
    assert user_errors(body, "updateBusiness") == [
        ("INVALID_INPUT", ["input", "legalAddress", "country"])]
    assert await state(api, token, business_id) == before


BAD_EMAILS = ["not-an-email", "a@", "@example.com", "a b@example.com", "a@@example.com",
              "a@example", "\"quoted\"@example.com", "a@[127.0.0.1]", "a\n@example.com",
              "x" * 300 + "@example.com"]


@pytest.mark.parametrize("email", BAD_EMAILS)
async def test_malformed_email_on_sign_up(api: Api, email: str) -> None:
    body = await post(api, SIGN_UP, {"i": {"email": email, "password": PASSWORD, "name": "N"}})
    assert user_errors(body, "signUp") == [("INVALID_INPUT", ["input", "email"])]


@pytest.mark.parametrize("email", BAD_EMAILS[:4])
async def test_malformed_email_on_invite(api: Api, owner: tuple[str, str], email: str) -> None:
    token, business_id = owner
    before = await state(api, token, business_id)
    body = await post(api, INVITE, {"i": {"businessId": business_id, "email": email,
                                          "role": "VIEWER"}}, token)
    assert user_errors(body, "inviteMember") == [("INVALID_INPUT", ["input", "email"])]
    assert await state(api, token, business_id) == before


@pytest.mark.parametrize("email", BAD_EMAILS[:4])
async def test_malformed_contact_email(api: Api, owner: tuple[str, str], email: str) -> None:
    token, business_id = owner
    before = await state(api, token, business_id)
    contact = {**BUSINESS_INPUT["contactInfo"], "email": email}
    body = await post(api, CREATE_BUSINESS, {"i": {**BUSINESS_INPUT, "contactInfo": contact}},
                      token)
    assert user_errors(body, "createBusiness") == [
        ("INVALID_INPUT", ["input", "contactInfo", "email"])]
    body = await post(api, UPDATE_BUSINESS, {"i": {"businessId": business_id,
                                                   "contactInfo": contact}}, token)
    assert user_errors(body, "updateBusiness") == [
        ("INVALID_INPUT", ["input", "contactInfo", "email"])]
    assert await state(api, token, business_id) == before


async def test_malformed_email_on_log_in_is_not_an_internal_error(api: Api) -> None:
    body = await post(api, LOG_IN, {"i": {"email": "not-an-email", "password": PASSWORD}})
    assert user_errors(body, "logIn") == [("INVALID_INPUT", ["input", "email"])]


@pytest.mark.parametrize("field", ["name", "legalAddress.line1", "legalAddress.city",
                                   "legalAddress.postalCode", "taxId", "timezone"])
async def test_oversize_strings_on_create_business(api: Api, owner: tuple[str, str],
                                                   field: str) -> None:
    token, _ = owner
    before = await api.ok("{ businesses{ totalCount } }", token=token)
    data: dict[str, Any] = json.loads(json.dumps(BUSINESS_INPUT))
    target = data
    *parents, leaf = field.split(".")
    for part in parents:
        target = target[part]
    target[leaf] = "x" * 10_000
    body = await post(api, CREATE_BUSINESS, {"i": data}, token)
    assert user_errors(body, "createBusiness") == [("INVALID_INPUT", ["input", *field.split(".")])]
    assert await api.ok("{ businesses{ totalCount } }", token=token) == before


async def test_oversize_strings_elsewhere(api: Api, owner: tuple[str, str]) -> None:
    token, business_id = owner
    before = await state(api, token, business_id)
    huge = "x" * 10_000
    body = await post(api, UPDATE_BUSINESS, {"i": {"businessId": business_id, "name": huge}}, token)
    assert user_errors(body, "updateBusiness") == [("INVALID_INPUT", ["input", "name"])]
    body = await post(api, INVITE, {"i": {"businessId": business_id,
                                          "email": huge + "@example.com", "role": "VIEWER"}}, token)
    assert user_errors(body, "inviteMember") == [("INVALID_INPUT", ["input", "email"])]
    body = await post(api, "mutation($b: ID!, $n: String!){ createApiKey(businessId:$b, name:$n, "
                      "role: VIEWER){ secret apiKey{ id } userErrors{ field code message } } }",
                      {"b": business_id, "n": huge}, token)
    assert user_errors(body, "createApiKey") == [("INVALID_INPUT", ["name"])]
    body = await post(api, FUND, {"i": {"businessId": business_id,
                                        "amount": {"amount": "1.00", "currency": "EUR"},
                                        "idempotencyKey": huge}}, token)
    assert user_errors(body, "fundBusiness") == [("INVALID_INPUT", ["input", "idempotencyKey"])]
    assert await state(api, token, business_id) == before

    email = f"huge-{uuid.uuid4().hex[:8]}@example.com"
    body = await post(api, SIGN_UP, {"i": {"email": email, "password": PASSWORD, "name": huge}})
    assert user_errors(body, "signUp") == [("INVALID_INPUT", ["input", "name"])]
    body = await post(api, SIGN_UP, {"i": {"email": email, "password": huge, "name": "N"}})
    assert user_errors(body, "signUp") == [("INVALID_INPUT", ["input", "password"])]
    # Neither attempt created the account.
    assert top_level(await post(api, LOG_IN, {"i": {"email": email, "password": PASSWORD}})) == {
        "UNAUTHENTICATED"}
    body = await post(api, LOG_IN, {"i": {"email": email, "password": huge}})
    assert top_level(body) == {"UNAUTHENTICATED"}


async def test_control_characters_in_names_are_refused(api: Api, owner: tuple[str, str]) -> None:
    token, business_id = owner
    for name in ("Evil\u202eCorp", "Line\nbreak", "nul\x00byte", "   "):
        body = await post(api, UPDATE_BUSINESS, {"i": {"businessId": business_id, "name": name}},
                          token)
        assert user_errors(body, "updateBusiness") == [("INVALID_INPUT", ["input", "name"])]


async def test_body_over_the_size_limit_is_refused_with_json(api: Api) -> None:
    r = await api.client.post("/graphql", json={"query": "{ __typename }",
                                                "variables": {"x": "y" * 1_100_000}})
    assert r.status_code == 413
    assert r.headers["content-type"].startswith("application/json")
    assert r.json()["errors"][0]["extensions"]["requestId"] == r.headers["x-request-id"]


# ---------------------------------------------------------------- verification


async def test_invalid_tax_id_is_recorded_as_a_failed_kyb_check(api: Api) -> None:
    token, _ = await api.sign_up("KYB")
    business_id = await api.create_business(token, taxId="DE000")
    body = await post(api, SUBMIT, {"b": business_id}, token)
    assert "errors" not in body, body
    payload = body["data"]["submitVerification"]
    assert payload["userErrors"] == []
    business = payload["business"]
    assert business["verificationStatus"] == "REJECTED"
    assert business["complianceStatus"]["kybVerified"] is False
    checks = {c["name"]: c for c in business["complianceStatus"]["checks"]}
    assert checks["tax_id"]["status"] == "failed"
    assert checks["tax_id"]["detail"]
    # Read back: the result is stored.
    data = await api.ok("query($b: ID!){ business(id:$b){ verificationStatus complianceStatus{ "
                        "checks{ name status } } } }", {"b": business_id}, token)
    assert data["business"]["verificationStatus"] == "REJECTED"
    assert {"name": "tax_id", "status": "failed"} in data["business"]["complianceStatus"]["checks"]


async def test_valid_business_verifies(api: Api, owner: tuple[str, str]) -> None:
    token, business_id = owner
    body = await post(api, SUBMIT, {"b": business_id}, token)
    business = body["data"]["submitVerification"]["business"]
    assert business["verificationStatus"] == "VERIFIED", business
    assert all(c["status"] == "passed" for c in business["complianceStatus"]["checks"])


# ---------------------------------------------------------------- unknown, foreign, malformed IDs


@pytest.fixture
async def stranger(api: Api) -> tuple[str, str, str]:
    """Another tenant: (token, business id, a funding transaction id)."""
    token, _ = await api.sign_up("Stranger")
    business_id = await api.create_business(token, name="Stranger Ltd")
    body = await api.fund(token, business_id, "50.00", "EUR")
    return token, business_id, body["data"]["fundBusiness"]["transaction"]["id"]


async def test_unknown_and_foreign_business_ids_are_not_found(
        api: Api, owner: tuple[str, str], stranger: tuple[str, str, str]) -> None:
    token, own_business = owner
    s_token, foreign, _ = stranger
    foreign_before = await state(api, s_token, foreign)
    user = (await api.ok("{ me{ id } }", token=token))["me"]["id"]
    for business_id in (gid("Business"), foreign, user, gid("Member")):
        body = await post(api, FUND, await fund_input(business_id, "10.00", "EUR"), token)
        assert user_errors(body, "fundBusiness") == [("NOT_FOUND", ["input", "businessId"])]
        body = await post(api, SUBMIT, {"b": business_id}, token)
        assert user_errors(body, "submitVerification") == [("NOT_FOUND", ["businessId"])]
        body = await post(api, INVITE, {"i": {"businessId": business_id,
                                              "email": "x@example.com", "role": "ADMIN"}}, token)
        assert user_errors(body, "inviteMember") == [("NOT_FOUND", ["input", "businessId"])]
        body = await post(api, UPDATE_BUSINESS, {"i": {"businessId": business_id,
                                                       "name": "Hijacked"}}, token)
        assert user_errors(body, "updateBusiness") == [("NOT_FOUND", ["input", "businessId"])]
        body = await post(api, CREATE_KEY, {"b": business_id}, token)
        assert user_errors(body, "createApiKey") == [("NOT_FOUND", ["businessId"])]
        # Queries answer exactly as for something that does not exist.
        body = await post(api, "query($b: ID!){ business(id:$b){ id name } }",
                          {"b": business_id}, token)
        assert body == {"data": {"business": None}}
        if business_id != user:  # node() of one's own user ID is oneself
            body = await post(api, "query($b: ID!){ node(id:$b){ id } }", {"b": business_id},
                              token)
            assert body == {"data": {"node": None}}
    assert await state(api, s_token, foreign) == foreign_before
    assert (await state(api, token, own_business))["businesses"]["totalCount"] == 1


async def test_unknown_and_foreign_member_transaction_and_key_ids(
        api: Api, owner: tuple[str, str], stranger: tuple[str, str, str]) -> None:
    token, _ = owner
    s_token, foreign, foreign_txn = stranger
    members = await api.ok("query($b: ID!){ business(id:$b){ members{ edges{ node{ id } } } } }",
                           {"b": foreign}, s_token)
    foreign_member = members["business"]["members"]["edges"][0]["node"]["id"]
    for member_id in (gid("Member"), foreign_member, foreign):
        body = await post(api, CHANGE_ROLE, {"m": member_id}, token)
        assert user_errors(body, "changeMemberRole") == [("NOT_FOUND", ["memberId"])]
        body = await post(api, REMOVE, {"m": member_id}, token)
        assert user_errors(body, "removeMember") == [("NOT_FOUND", ["memberId"])]
    for txn_id in (gid("Transaction"), foreign_txn, gid("Business")):
        body = await post(api, "query($t: ID!){ transaction(id:$t){ id } }", {"t": txn_id}, token)
        assert body == {"data": {"transaction": None}}
    body = await post(api, "query($t: ID!){ node(id:$t){ id } }", {"t": foreign_txn}, token)
    assert body == {"data": {"node": None}}
    key = (await api.ok(CREATE_KEY, {"b": foreign}, s_token))["createApiKey"]
    for key_id in (gid("ApiKey"), gid("Business")):
        body = await post(api, REVOKE_KEY, {"id": key_id}, token)
        assert user_errors(body, "revokeApiKey") == [("NOT_FOUND", ["id"])]
    # The stranger's member and key are untouched.
    still = await post(api, "{ businesses{ totalCount } }", token=key["secret"])
    assert still == {"data": {"businesses": {"totalCount": 1}}}
    again = await api.ok("query($b: ID!){ business(id:$b){ members{ edges{ node{ id role } } } } }",
                         {"b": foreign}, s_token)
    assert again["business"]["members"]["edges"] == [
        {"node": {"id": foreign_member, "role": "OWNER"}}]


@pytest.mark.parametrize("bad_id", MALFORMED_IDS)
async def test_malformed_ids_in_mutations_are_invalid_input(
        api: Api, owner: tuple[str, str], bad_id: str) -> None:
    token, business_id = owner
    before = await state(api, token, business_id)
    cases = [
        (FUND, await fund_input(bad_id, "1.00", "EUR"), "fundBusiness", ["input", "businessId"]),
        (SUBMIT, {"b": bad_id}, "submitVerification", ["businessId"]),
        (INVITE, {"i": {"businessId": bad_id, "email": "a@example.com", "role": "VIEWER"}},
         "inviteMember", ["input", "businessId"]),
        (UPDATE_BUSINESS, {"i": {"businessId": bad_id, "name": "n"}}, "updateBusiness",
         ["input", "businessId"]),
        (CHANGE_ROLE, {"m": bad_id}, "changeMemberRole", ["memberId"]),
        (REMOVE, {"m": bad_id}, "removeMember", ["memberId"]),
        (REVOKE_KEY, {"id": bad_id}, "revokeApiKey", ["id"]),
        (CREATE_KEY, {"b": bad_id}, "createApiKey", ["businessId"]),
    ]
    for query, variables, name, field in cases:
        body = await post(api, query, variables, token)
        assert user_errors(body, name) == [("INVALID_INPUT", field)], name
    assert await state(api, token, business_id) == before


@pytest.mark.parametrize("bad_id", MALFORMED_IDS)
async def test_malformed_ids_in_queries_are_a_top_level_invalid_input(
        api: Api, owner: tuple[str, str], bad_id: str) -> None:
    token, _ = owner
    for field in ("business", "node", "transaction"):
        body = await post(api, f"query($id: ID!){{ {field}(id:$id){{ id }} }}", {"id": bad_id},
                          token)
        assert body["data"] == {field: None}, body
        assert top_level(body) == {"INVALID_INPUT"}
        assert body["errors"][0]["path"] == [field]


async def test_node_with_an_unknown_type_is_invalid_input(api: Api, owner: tuple[str, str]) -> None:
    token, _ = owner
    body = await post(api, "query($id: ID!){ node(id:$id){ id } }", {"id": gid("Spaceship")}, token)
    assert body["data"] == {"node": None}
    assert top_level(body) == {"INVALID_INPUT"}


# ---------------------------------------------------------------- pagination


@pytest.mark.parametrize("first", [1000, 101, -1, -1000])
async def test_page_size_out_of_range(api: Api, owner: tuple[str, str], first: int) -> None:
    token, business_id = owner
    body = await post(api, "query($f: Int){ businesses(first:$f){ totalCount } }", {"f": first},
                      token)
    assert body["data"] is None
    assert top_level(body) == {"INVALID_INPUT"}
    body = await post(api, "query($b: ID!, $f: Int){ business(id:$b){ id members(first:$f){ "
                      "totalCount } transactions(first:$f){ totalCount } } }",
                      {"b": business_id, "f": first}, token)
    assert top_level(body) == {"INVALID_INPUT"}
    assert body["data"] == {"business": None}


async def test_page_size_limits_are_inclusive(api: Api, owner: tuple[str, str]) -> None:
    token, _ = owner
    for first in (0, 1, 100):
        data = await api.ok("query($f: Int){ businesses(first:$f){ totalCount edges{ node{ id } } } }",
                            {"f": first}, token)
        assert data["businesses"]["totalCount"] == 1
        assert len(data["businesses"]["edges"]) == min(first, 1)


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


@pytest.mark.parametrize("cursor", [
    "!!!", "not-a-cursor", "", _b64("garbage"), _b64("2024-01-01T00:00:00+00:00|not-a-uuid"),
    _b64(f"yesterday|{uuid.uuid4()}"), "x" * 5000, base64.b64encode(b"\xff\xfe\xfd").decode(),
])
async def test_malformed_after_cursor(api: Api, owner: tuple[str, str], cursor: str) -> None:
    token, business_id = owner
    body = await post(api, "query($a: String){ businesses(after:$a){ totalCount } }", {"a": cursor},
                      token)
    assert body["data"] is None
    assert top_level(body) == {"INVALID_INPUT"}
    body = await post(api, "query($b: ID!, $a: String){ business(id:$b){ members(after:$a){ "
                      "totalCount } } }", {"b": business_id, "a": cursor}, token)
    assert top_level(body) == {"INVALID_INPUT"}


@pytest.mark.parametrize(("at", "valid"), [
    ("2024-01-01T00:00:00", False), ("2024-01-01", False), ("9999-12-31T23:59:59+00:00", True),
    ("2024-01-01T00:00:00+05:30", True), ("0001-01-01T00:00:00+00:00", True),
])
async def test_hand_made_cursors_never_fail_internally(api: Api, owner: tuple[str, str], at: str,
                                                       valid: bool) -> None:
    """Our cursors carry a UTC offset; one without (naive time) is malformed, any
    well-formed time is answered (an empty or full page), never a 500."""
    token, business_id = owner
    cursor = _b64(f"{at}|{uuid.uuid4()}")
    queries = [("query($a: String){ businesses(after:$a){ totalCount edges{ node{ id } } } }",
                {"a": cursor}),
               ("query($b: ID!, $a: String){ business(id:$b){ members(after:$a){ totalCount } "
                "transactions(after:$a){ totalCount } } }", {"b": business_id, "a": cursor})]
    for query, variables in queries:
        body = await post(api, query, variables, token)
        if valid:
            assert "errors" not in body, body
        else:
            assert top_level(body) == {"INVALID_INPUT"}


async def test_pagination_walks_every_business_once(api: Api) -> None:
    token, _ = await api.sign_up("Many")
    made = [await api.create_business(token, name=f"Biz {i}") for i in range(5)]
    seen: list[str] = []
    after = None
    while True:
        data = await api.ok("query($a: String){ businesses(first: 2, after:$a){ totalCount "
                            "pageInfo{ hasNextPage endCursor } edges{ node{ id } } } }",
                            {"a": after}, token)
        conn = data["businesses"]
        assert conn["totalCount"] == 5
        seen += [e["node"]["id"] for e in conn["edges"]]
        if not conn["pageInfo"]["hasNextPage"]:
            break
        after = conn["pageInfo"]["endCursor"]
    assert seen == made


# ---------------------------------------------------------------- abusive documents


def _nested(levels: int) -> str:
    inner = "id"
    for _ in range(levels):
        inner = (f"memberships {{ business {{ members {{ edges {{ node {{ user {{ {inner} }} }} }} }} }} }}")
    return inner


async def test_a_deeply_nested_query_is_rejected_before_execution(
        api: Api, owner: tuple[str, str]) -> None:
    token, _ = owner
    query = "{ me { " + _nested(4) + " } }"  # 26 levels
    body = await post(api, query, None, token)
    assert body["data"] is None
    assert top_level(body) == {"GRAPHQL_VALIDATION_FAILED"}
    assert "depth" in body["errors"][0]["message"]


async def test_a_deep_mutation_is_rejected_and_does_nothing(api: Api,
                                                            owner: tuple[str, str]) -> None:
    token, _ = owner
    before = await api.ok("{ businesses{ totalCount } }", token=token)
    query = ("mutation($i: CreateBusinessInput!){ createBusiness(input:$i){ business{ members{ "
             "edges{ node{ user{ " + _nested(3) + " } } } } } } }")
    body = await post(api, query, {"i": BUSINESS_INPUT}, token)
    assert body["data"] is None
    assert top_level(body) == {"GRAPHQL_VALIDATION_FAILED"}
    assert await api.ok("{ businesses{ totalCount } }", token=token) == before


@pytest.mark.parametrize("query", [
    "{ me { " + " ".join(["id"] * 2500) + " } }",
    "{ " + " ".join(f"a{i}: __typename" for i in range(1000)) + " }",
    "query(" + ", ".join(f"$v{i}: Int" for i in range(700)) + ") { __typename }",
])
async def test_a_huge_query_is_rejected(api: Api, owner: tuple[str, str], query: str) -> None:
    token, _ = owner
    body = await post(api, query, None, token)
    assert body["data"] is None
    assert top_level(body) == {"GRAPHQL_VALIDATION_FAILED"}


async def test_too_many_aliases_are_rejected(api: Api, owner: tuple[str, str]) -> None:
    token, _ = owner
    query = "{ " + " ".join(f"a{i}: me {{ id }}" for i in range(40)) + " }"
    body = await post(api, query, None, token)
    assert body["data"] is None
    assert top_level(body) == {"GRAPHQL_VALIDATION_FAILED"}


async def test_syntax_errors_and_unknown_fields_are_validation_errors(api: Api) -> None:
    for query in ("{ me { id ", "{ nope }", "mutation { nope }", "}{", "query($x: Nope){ me{ id } }"):
        body = await post(api, query)
        assert body["data"] is None
        assert top_level(body) == {"GRAPHQL_VALIDATION_FAILED"}


# ---------------------------------------------------------------- the HTTP envelope


def _assert_json_error(r: Any, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json"), r.headers
    request_id = r.headers["x-request-id"]
    body: dict[str, Any] = r.json()
    assert body["errors"], body
    for e in body["errors"]:
        assert e["message"]
        assert e["extensions"]["code"] == "BAD_REQUEST"
        assert e["extensions"]["requestId"] == request_id
    assert "data" not in body or body["data"] is None
    return body


@pytest.mark.parametrize("content", [b"not json", b"{", b"", b"\xff\xfe", b"null", b"[1, 2]",
                                     b'"{ me { id } }"', b"{}", b'{"query": 5}',
                                     b'{"query": null}', b'{"variables": {}}'])
async def test_a_body_that_is_not_a_graphql_request_is_a_400(api: Api, content: bytes) -> None:
    r = await api.client.post("/graphql", content=content,
                              headers={"content-type": "application/json"})
    _assert_json_error(r, 400)


@pytest.mark.parametrize("variables", [[1, 2], "x", 5, True])
async def test_variables_of_the_wrong_type_are_a_400(api: Api, variables: Any) -> None:
    r = await api.client.post("/graphql", json={"query": "{ __typename }", "variables": variables})
    _assert_json_error(r, 400)


async def test_operation_name_of_the_wrong_type_is_a_400(api: Api) -> None:
    r = await api.client.post("/graphql", json={"query": "{ __typename }", "operationName": 5})
    _assert_json_error(r, 400)


@pytest.mark.parametrize("variables", [{"f": "abc"}, {"f": 2**40}, {"f": 1.5}, {"f": [1]}])
async def test_a_variable_value_of_the_wrong_type_is_invalid_input(
        api: Api, owner: tuple[str, str], variables: dict[str, Any]) -> None:
    token, _ = owner
    body = await post(api, "query($f: Int){ businesses(first:$f){ totalCount } }", variables, token)
    assert body["data"] is None
    assert top_level(body) == {"INVALID_INPUT"}
    assert "$f" in body["errors"][0]["message"]


async def test_input_objects_with_missing_or_wrong_fields_are_invalid_input(api: Api) -> None:
    email = f"half-{uuid.uuid4().hex[:8]}@example.com"
    for variables in ({"i": {"email": email}}, {"i": None}, {"i": "x"},
                      {"i": {"email": 5, "password": PASSWORD, "name": "n"}},
                      {"i": {"email": email, "password": PASSWORD, "name": "n", "extra": 1}}):
        body = await post(api, SIGN_UP, variables)
        assert body["data"] is None
        assert top_level(body) == {"INVALID_INPUT"}
    # None of them signed anybody up.
    assert top_level(await post(api, LOG_IN, {"i": {"email": email, "password": PASSWORD}})) == {
        "UNAUTHENTICATED"}


async def test_an_unknown_enum_value_is_invalid_input(api: Api, owner: tuple[str, str]) -> None:
    token, business_id = owner
    before = await state(api, token, business_id)
    body = await post(api, INVITE, {"i": {"businessId": business_id, "email": "e@example.com",
                                          "role": "SUPERUSER"}}, token)
    assert body["data"] is None
    assert top_level(body) == {"INVALID_INPUT"}
    assert await state(api, token, business_id) == before


async def test_get_with_a_mutation_is_a_405_and_does_nothing(api: Api) -> None:
    email = f"get-{uuid.uuid4().hex[:8]}@example.com"
    query = ('mutation { signUp(input:{email:"' + email + '", password:"' + PASSWORD +
             '", name:"G"}){ accessToken } }')
    r = await api.client.get("/graphql", params={"query": query})
    _assert_json_error(r, 405)
    assert top_level(await post(api, LOG_IN, {"i": {"email": email, "password": PASSWORD}})) == {
        "UNAUTHENTICATED"}


async def test_get_queries_work_and_bad_get_variables_are_a_400(api: Api) -> None:
    r = await api.client.get("/graphql", params={"query": "{ __typename }"})
    assert r.status_code == 200 and r.json() == {"data": {"__typename": "Query"}}
    assert r.headers["x-request-id"]
    r = await api.client.get("/graphql", params={"query": "{ __typename }", "variables": "{bad"})
    _assert_json_error(r, 400)
    r = await api.client.get("/graphql", params={"query": "query($f: Int){ __typename }",
                                                 "variables": "[1]"})
    _assert_json_error(r, 400)
    r = await api.client.get("/graphql")
    _assert_json_error(r, 400)


async def test_the_client_request_id_is_echoed_and_a_bad_one_replaced(api: Api) -> None:
    r = await api.client.post("/graphql", json={"query": "{ me { id } }"},
                              headers={"x-request-id": "trace-abc.123"})
    assert r.headers["x-request-id"] == "trace-abc.123"
    assert r.json()["errors"][0]["extensions"] == {"code": "UNAUTHENTICATED",
                                                   "requestId": "trace-abc.123"}
    r = await api.client.post("/graphql", json={"query": "{ me { id } }"},
                              headers={"x-request-id": "bad id\twith<html>"})
    request_id = r.headers["x-request-id"]
    assert request_id != "bad id\twith<html>" and request_id.isalnum()
    assert r.json()["errors"][0]["extensions"]["requestId"] == request_id


async def test_every_error_response_carries_a_request_id(api: Api, owner: tuple[str, str]) -> None:
    token, _ = owner
    responses = [
        await api.client.post("/graphql", json={"query": "{ me { id } }"}),
        await api.client.post("/graphql", json={"query": "{ nope }"}),
        await api.client.post("/graphql", json={"query": "{ business(id: \"!!!\") { id } }"},
                              headers={"authorization": f"Bearer {token}"}),
        await api.client.post("/graphql", json={"query": "{ me { id } }"},
                              headers={"authorization": "Bearer nope"}),
        await api.client.post("/graphql", content=b"nope"),
        await api.client.get("/graphql", params={
            "query": 'mutation { refreshToken(refreshToken: "x") { accessToken } }'}),
    ]
    for r in responses:
        request_id = r.headers["x-request-id"]
        body = r.json()
        assert body["errors"], body
        for e in body["errors"]:
            assert e["extensions"]["requestId"] == request_id
            assert e["extensions"]["code"] != "INTERNAL_SERVER_ERROR"
