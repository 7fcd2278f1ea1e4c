"""Virtual cards through the GraphQL API: issuing, lifecycle, controls, who sees
what, sandbox authorizations, approvals and spend (DESIGN.md section 5)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from tests.integration.conftest import Api
from tests.integration.test_statement_count import count_statements

CARD_FIELDS = """id type status network currency maskedNumber last4 expiryDate spendingLimit
  currentBalance merchantLock metadata createdAt
  controls{ allowedMerchantCategories blockedMerchantCategories allowedCountries blockedCountries
    maxTransactionAmount dailyLimit monthlyLimit allowedDays allowedHours requiresApproval }"""
ISSUE = ("mutation($i: IssueCardInput!){ issueCard(input:$i){ card{ " + CARD_FIELDS
         + " } userErrors{ field code message } } }")
CARD = "query($id: ID!){ card(id:$id){ " + CARD_FIELDS + " } }"
SPEND = """query($id: ID!){ card(id:$id){ currentBalance spend{ today{ amount currency }
  thisMonth{ amount currency } remainingToday{ amount currency } remainingThisMonth{ amount currency } } } }"""
BALANCES = "query($id: ID!){ business(id:$id){ balances{ amount currency } } }"
CARDS = """query($id: ID!, $status: CardStatus){ business(id:$id){ cards(first: 50, status: $status){
  totalCount edges{ cursor node{ id last4 status } } pageInfo{ hasNextPage endCursor } } } }"""
LIFECYCLE = ("mutation($i: CardIdInput!){ %s(input:$i){ card{ id status last4 maskedNumber type "
             "spendingLimit metadata controls{ dailyLimit blockedMerchantCategories } } "
             "userErrors{ field code message } } }")
CT_FIELDS = """id status responseCode declineReason riskScore merchantName merchantCategoryCode
  merchantCountry exchangeRate originalAmount{ amount currency } billingAmount{ amount currency }
  createdAt card{ id } transaction{ id type status amount{ amount currency } }"""
SIMULATE = ("mutation($i: SimulateAuthorizationInput!){ simulateAuthorization(input:$i){ cardTransaction{ "
            + CT_FIELDS + " } userErrors{ field code message } } }")
DECIDE = ("mutation($i: DecideAuthorizationInput!){ decideAuthorization(input:$i){ cardTransaction{ "
          + CT_FIELDS + " } userErrors{ field code message } } }")
UPDATE = """mutation($i: UpdateCardControlsInput!){ updateCardControls(input:$i){ card{ id spendingLimit
  controls{ maxTransactionAmount dailyLimit monthlyLimit allowedMerchantCategories allowedCountries
    blockedCountries allowedDays allowedHours requiresApproval } } userErrors{ field code message } } }"""


async def issue(api: Api, token: str, business_id: str, **fields: Any) -> dict[str, Any]:
    """The issueCard payload (card and userErrors)."""
    body = await api.gql(ISSUE, {"i": {
        "businessId": business_id, "type": "STANDARD", "network": "VISA", "currency": "EUR",
        "idempotencyKey": uuid.uuid4().hex, **fields}}, token)
    assert "errors" not in body, body
    payload: dict[str, Any] = body["data"]["issueCard"]
    return payload


async def issued(api: Api, token: str, business_id: str, **fields: Any) -> dict[str, Any]:
    payload = await issue(api, token, business_id, **fields)
    assert payload["userErrors"] == [], payload
    card: dict[str, Any] = payload["card"]
    return card


async def simulate(api: Api, token: str, card_id: str, amount: str, *, merchant: str = "Café Einstein",
                   mcc: str = "5812", country: str = "DE", currency: str = "EUR",
                   at: str | None = None) -> dict[str, Any]:
    i: dict[str, Any] = {"cardId": card_id, "amount": {"amount": amount, "currency": currency},
                         "merchantName": merchant, "merchantCategoryCode": mcc, "merchantCountry": country}
    if at is not None:
        i["at"] = at
    data = await api.ok(SIMULATE, {"i": i}, token)
    ct: dict[str, Any] = data["simulateAuthorization"]["cardTransaction"]
    return ct


async def lifecycle(api: Api, token: str, mutation: str, card_id: str) -> dict[str, Any]:
    body = await api.gql(LIFECYCLE % mutation, {"i": {"cardId": card_id}}, token)
    assert "errors" not in body, body
    payload: dict[str, Any] = body["data"][mutation]
    return payload


async def balances(api: Api, token: str, business_id: str) -> dict[str, str]:
    data = await api.ok(BALANCES, {"id": business_id}, token)
    return {b["currency"]: b["amount"] for b in data["business"]["balances"]}


async def user_gid(api: Api, token: str) -> str:
    return str((await api.ok("{ me { id } }", token=token))["me"]["id"])


# ================================================================== issuing

async def test_issue_each_card_type(api, owner):
    token, business_id = owner
    await api.fund(token, business_id, "100.00")
    standard = await issued(api, token, business_id, metadata={"team": "ops"},
                            controls={"dailyLimit": "500", "allowedCountries": ["DE", "FR"]})
    assert standard["type"] == "STANDARD" and standard["status"] == "ACTIVE"
    assert standard["network"] == "VISA" and standard["maskedNumber"].startswith("4")
    assert standard["maskedNumber"].endswith(standard["last4"]) and "•" in standard["maskedNumber"]
    assert len(standard["maskedNumber"].replace(" ", "")) == 16
    assert standard["last4"].isdigit() and len(standard["last4"]) == 4
    expiry = datetime.strptime(standard["expiryDate"], "%Y-%m-%d").date()
    assert expiry.year == datetime.now(UTC).year + 3
    assert standard["metadata"] == {"team": "ops"}
    assert standard["controls"]["dailyLimit"] == "500.00"
    assert standard["controls"]["allowedCountries"] == ["DE", "FR"]
    assert standard["controls"]["requiresApproval"] is False
    assert standard["currentBalance"] == "0.00"

    single = await issued(api, token, business_id, type="SINGLE_USE", network="MASTERCARD")
    assert single["type"] == "SINGLE_USE" and single["network"] == "MASTERCARD"
    assert single["maskedNumber"][:2] in {"51", "52", "53", "54", "55"} or \
        2221 <= int(single["maskedNumber"][:4]) <= 2720

    sub = await issued(api, token, business_id, type="SUBSCRIPTION", merchantLock="Netflix",
                       spendingLimit="15.99")
    assert sub["type"] == "SUBSCRIPTION" and sub["merchantLock"] == "Netflix"
    assert sub["spendingLimit"] == "15.99"

    prepaid = await issued(api, token, business_id, type="PREPAID", spendingLimit="40.00")
    assert prepaid["type"] == "PREPAID" and prepaid["currentBalance"] == "40.00"
    assert await balances(api, token, business_id) == {"EUR": "60.00"}

    listed = await api.ok(CARDS, {"id": business_id}, token)
    ids = [e["node"]["id"] for e in listed["business"]["cards"]["edges"]]
    assert ids == [prepaid["id"], sub["id"], single["id"], standard["id"]]  # newest first
    assert listed["business"]["cards"]["totalCount"] == 4


async def test_subscription_needs_a_merchant_lock_and_only_it_has_one(api, owner):
    token, business_id = owner
    missing = await issue(api, token, business_id, type="SUBSCRIPTION")
    assert missing["card"] is None
    assert missing["userErrors"][0]["code"] == "INVALID_INPUT"
    assert missing["userErrors"][0]["field"] == ["input", "merchantLock"]
    misplaced = await issue(api, token, business_id, type="STANDARD", merchantLock="Netflix")
    assert misplaced["userErrors"][0]["field"] == ["input", "merchantLock"]


async def test_subscription_card_declines_other_merchants(api, owner):
    token, business_id = owner
    await api.fund(token, business_id, "100.00")
    sub = await issued(api, token, business_id, type="SUBSCRIPTION", merchantLock="Netflix")
    other = await simulate(api, token, sub["id"], "9.99", merchant="Spotify", mcc="4899")
    assert (other["status"], other["responseCode"], other["declineReason"]) == (
        "DECLINED", "62", "merchant_not_allowed")
    ok = await simulate(api, token, sub["id"], "9.99", merchant="Netflix", mcc="4899")
    assert (ok["status"], ok["responseCode"]) == ("APPROVED", "00")


async def test_prepaid_card_is_loaded_from_the_business_balance(api, owner):
    token, business_id = owner
    await api.fund(token, business_id, "100.00")
    prepaid = await issued(api, token, business_id, type="PREPAID", spendingLimit="30.00")
    assert await balances(api, token, business_id) == {"EUR": "70.00"}

    short = await issue(api, token, business_id, type="PREPAID", spendingLimit="70.01")
    assert short["card"] is None
    assert short["userErrors"][0]["code"] == "INSUFFICIENT_FUNDS"
    assert short["userErrors"][0]["field"] == ["input", "spendingLimit"]
    assert await balances(api, token, business_id) == {"EUR": "70.00"}

    no_amount = await issue(api, token, business_id, type="PREPAID")
    assert no_amount["userErrors"][0]["field"] == ["input", "spendingLimit"]

    spent = await simulate(api, token, prepaid["id"], "12.50")
    assert spent["responseCode"] == "00"
    data = await api.ok(SPEND, {"id": prepaid["id"]}, token)
    assert data["card"]["currentBalance"] == "17.50"
    too_much = await simulate(api, token, prepaid["id"], "17.51")
    assert (too_much["responseCode"], too_much["declineReason"]) == ("51", "insufficient_funds")

    closed = await lifecycle(api, token, "closeCard", prepaid["id"])
    assert closed["card"]["status"] == "CLOSED"
    # What was left on the card (17.50) goes back; the 12.50 stays held for the merchant.
    assert await balances(api, token, business_id) == {"EUR": "87.50"}


async def test_issue_card_is_idempotent(api, owner):
    token, business_id = owner
    await api.fund(token, business_id, "100.00")
    fields = {"type": "PREPAID", "spendingLimit": "25.00", "idempotencyKey": "card-1",
              "controls": {"dailyLimit": "10"}}
    first = await issued(api, token, business_id, **fields)
    again = await issued(api, token, business_id, **fields)
    assert again == first
    assert await balances(api, token, business_id) == {"EUR": "75.00"}
    other = await issue(api, token, business_id, **{**fields, "spendingLimit": "26.00"})
    assert other["card"] is None
    assert other["userErrors"][0]["code"] == "IDEMPOTENCY_KEY_REUSED"
    listed = await api.ok(CARDS, {"id": business_id}, token)
    assert listed["business"]["cards"]["totalCount"] == 1
    assert await balances(api, token, business_id) == {"EUR": "75.00"}


async def test_issue_input_errors_name_the_field(api, owner):
    token, business_id = owner
    cases = {
        "currency": ({"currency": "XYZ"}, "UNSUPPORTED_CURRENCY"),
        "spendingLimit": ({"spendingLimit": "-1"}, "INVALID_INPUT"),
        "idempotencyKey": ({"idempotencyKey": ""}, "INVALID_INPUT"),
        "metadata": ({"metadata": [1, 2]}, "INVALID_INPUT"),
        "cardholderId": ({"cardholderId": "not-an-id"}, "INVALID_INPUT"),
    }
    for name, (fields, code) in cases.items():
        payload = await issue(api, token, business_id, **fields)
        assert payload["card"] is None, name
        assert payload["userErrors"][0]["field"] == ["input", name], payload
        assert payload["userErrors"][0]["code"] == code, payload


async def test_cardholder_must_be_a_member(api, owner):
    token, business_id = owner
    stranger, _ = await api.sign_up("Stranger")
    payload = await issue(api, token, business_id, cardholderId=await user_gid(api, stranger))
    assert payload["userErrors"][0]["code"] == "NOT_FOUND"
    assert payload["userErrors"][0]["field"] == ["input", "cardholderId"]


# ================================================================== lifecycle

async def test_lifecycle_legal_transitions(api, owner):
    token, business_id = owner
    card = await issued(api, token, business_id, status="INACTIVE")
    assert card["status"] == "INACTIVE"
    for mutation, expected in [("activateCard", "ACTIVE"), ("freezeCard", "FROZEN"),
                               ("unfreezeCard", "ACTIVE"), ("freezeCard", "FROZEN"),
                               ("closeCard", "CLOSED")]:
        payload = await lifecycle(api, token, mutation, card["id"])
        assert payload["userErrors"] == [], (mutation, payload)
        assert payload["card"]["status"] == expected
    data = await api.ok(CARD, {"id": card["id"]}, token)
    assert data["card"]["status"] == "CLOSED"
    closed = await api.ok(CARDS, {"id": business_id, "status": "CLOSED"}, token)
    assert closed["business"]["cards"]["totalCount"] == 1
    active = await api.ok(CARDS, {"id": business_id, "status": "ACTIVE"}, token)
    assert active["business"]["cards"]["totalCount"] == 0


async def test_frozen_card_is_declined_until_unfrozen(api, owner):
    token, business_id = owner
    await api.fund(token, business_id, "100.00")
    card = await issued(api, token, business_id)
    await lifecycle(api, token, "freezeCard", card["id"])
    frozen = await simulate(api, token, card["id"], "5.00")
    assert (frozen["responseCode"], frozen["declineReason"]) == ("62", "card_frozen")
    await lifecycle(api, token, "unfreezeCard", card["id"])
    assert (await simulate(api, token, card["id"], "5.00"))["responseCode"] == "00"


@pytest.mark.parametrize(("start", "mutation"), [
    ("ACTIVE", "activateCard"), ("ACTIVE", "unfreezeCard"), ("INACTIVE", "freezeCard"),
    ("INACTIVE", "unfreezeCard"), ("FROZEN", "activateCard"), ("FROZEN", "freezeCard"),
    ("CLOSED", "activateCard"), ("CLOSED", "freezeCard"), ("CLOSED", "unfreezeCard"),
    ("CLOSED", "closeCard"), ("CLOSED", "renewCard"),
])
async def test_lifecycle_illegal_transitions(api, owner, start, mutation):
    token, business_id = owner
    card = await issued(api, token, business_id, status="INACTIVE" if start == "INACTIVE" else "ACTIVE")
    if start == "FROZEN":
        await lifecycle(api, token, "freezeCard", card["id"])
    if start == "CLOSED":
        await lifecycle(api, token, "closeCard", card["id"])
    payload = await lifecycle(api, token, mutation, card["id"])
    assert payload["card"] is None
    assert payload["userErrors"] == [{"field": ["input", "cardId"], "code": "INVALID_STATE_TRANSITION",
                                      "message": payload["userErrors"][0]["message"]}]
    data = await api.ok(CARD, {"id": card["id"]}, token)
    assert data["card"]["status"] == start


async def test_renew_gives_a_new_number_and_closes_the_old_card(api, owner):
    token, business_id = owner
    old = await issued(api, token, business_id, spendingLimit="300",
                       controls={"dailyLimit": "50", "blockedMerchantCategories": ["7995"]})
    payload = await lifecycle(api, token, "renewCard", old["id"])
    assert payload["userErrors"] == []
    new = payload["card"]
    assert new["id"] != old["id"]
    assert new["last4"] != old["last4"]  # a 1 in 10,000 chance of a false failure
    assert new["status"] == "ACTIVE" and new["type"] == "STANDARD"
    assert new["spendingLimit"] == "300.00"
    assert new["controls"] == {"dailyLimit": "50.00", "blockedMerchantCategories": ["7995"]}
    assert new["metadata"]["renewed_from"]
    old_now = await api.ok(CARD, {"id": old["id"]}, token)
    assert old_now["card"]["status"] == "CLOSED"


async def test_renewing_a_prepaid_card_moves_its_balance(api, owner):
    token, business_id = owner
    await api.fund(token, business_id, "50.00")
    old = await issued(api, token, business_id, type="PREPAID", spendingLimit="20.00")
    new = (await lifecycle(api, token, "renewCard", old["id"]))["card"]
    assert new["type"] == "PREPAID"
    data = await api.ok(SPEND, {"id": new["id"]}, token)
    assert data["card"]["currentBalance"] == "20.00"
    assert (await api.ok(SPEND, {"id": old["id"]}, token))["card"]["currentBalance"] == "0.00"
    assert await balances(api, token, business_id) == {"EUR": "30.00"}


# ================================================================== controls

BAD_CONTROLS = {
    "mcc_not_digits": ({"allowedMerchantCategories": ["5812", "ABCD"]},
                       ["allowedMerchantCategories", "1"]),
    "blocked_mcc_short": ({"blockedMerchantCategories": ["581"]}, ["blockedMerchantCategories", "0"]),
    "unknown_country": ({"allowedCountries": ["XX"]}, ["allowedCountries", "0"]),
    "lower_case_country": ({"blockedCountries": ["DE", "fr"]}, ["blockedCountries", "1"]),
    "hour_24": ({"allowedHours": [9, 24]}, ["allowedHours", "1"]),
    "hour_negative": ({"allowedHours": [-1]}, ["allowedHours", "0"]),
    "day_0": ({"allowedDays": [0]}, ["allowedDays", "0"]),
    "day_8": ({"allowedDays": [1, 8]}, ["allowedDays", "1"]),
    "no_days": ({"allowedDays": []}, ["allowedDays"]),
    "daily_above_monthly": ({"dailyLimit": "600", "monthlyLimit": "500"}, ["dailyLimit"]),
    "negative_limit": ({"maxTransactionAmount": "-5"}, ["maxTransactionAmount"]),
    "zero_limit": ({"monthlyLimit": "0"}, ["monthlyLimit"]),
    "too_many_decimals": ({"dailyLimit": "10.001"}, ["dailyLimit"]),
    "max_above_daily": ({"maxTransactionAmount": "200", "dailyLimit": "100"}, ["maxTransactionAmount"]),
    "allowed_and_blocked": ({"allowedCountries": ["DE"], "blockedCountries": ["DE"]}, ["blockedCountries"]),
}


@pytest.mark.parametrize("case", list(BAD_CONTROLS))
async def test_bad_controls_are_user_errors_with_the_field_path(api, owner, case):
    token, business_id = owner
    controls, path = BAD_CONTROLS[case]
    payload = await issue(api, token, business_id, controls=controls)
    assert payload["card"] is None
    assert payload["userErrors"][0]["code"] == "INVALID_INPUT", payload
    assert payload["userErrors"][0]["field"] == ["input", "controls", *path], payload
    # The same validation guards updateCardControls.
    card = await issued(api, token, business_id)
    body = await api.gql(UPDATE, {"i": {"cardId": card["id"], "controls": controls}}, token)
    errors = body["data"]["updateCardControls"]["userErrors"]
    assert errors[0]["field"] == ["input", "controls", *path], body


async def test_update_controls_changes_only_the_given_fields(api, owner):
    token, business_id = owner
    card = await issued(api, token, business_id, controls={
        "dailyLimit": "100", "allowedCountries": ["DE"], "allowedHours": [9, 10, 11]})
    # Tightening needs no step-up: lower a limit, add one, add restrictions.
    data = await api.ok(UPDATE, {"i": {"cardId": card["id"], "controls": {
        "dailyLimit": "80", "maxTransactionAmount": "50", "allowedDays": [1, 2, 3, 4, 5],
        "requiresApproval": True}}}, token)
    controls = data["updateCardControls"]["card"]["controls"]
    assert controls == {"maxTransactionAmount": "50.00", "dailyLimit": "80.00", "monthlyLimit": None,
                        "allowedMerchantCategories": None, "allowedCountries": ["DE"],
                        "blockedCountries": None, "allowedDays": [1, 2, 3, 4, 5],
                        "allowedHours": [9, 10, 11], "requiresApproval": True}
    # An explicit null clears a (non-limit) control.
    data = await api.ok(UPDATE, {"i": {"cardId": card["id"], "controls": {"allowedHours": None}}}, token)
    assert data["updateCardControls"]["card"]["controls"]["allowedHours"] is None
    assert data["updateCardControls"]["card"]["controls"]["dailyLimit"] == "80.00"


async def test_blocked_country_and_hours_decline(api, owner):
    token, business_id = owner
    await api.fund(token, business_id, "100.00")
    card = await issued(api, token, business_id, controls={"blockedCountries": ["US"], "allowedHours": [9]})
    tomorrow = datetime.now(UTC).date() + timedelta(days=1)

    def berlin(hour: int) -> str:  # the business's time zone decides the hour
        return datetime.combine(tomorrow, time(hour, 30), tzinfo=ZoneInfo("Europe/Berlin")).isoformat()

    abroad = await simulate(api, token, card["id"], "5.00", country="US", at=berlin(9))
    assert (abroad["responseCode"], abroad["declineReason"]) == ("62", "country_blocked")
    late = await simulate(api, token, card["id"], "5.00", at=berlin(11))
    assert (late["responseCode"], late["declineReason"]) == ("62", "hour_not_allowed")
    ok = await simulate(api, token, card["id"], "5.00", at=berlin(9))
    assert ok["responseCode"] == "00"


# ================================================================== who sees what

async def test_cardholder_sees_and_acts_only_on_their_own_cards(api, owner):
    token, business_id = owner
    holder_token, _ = await api.member_token(token, business_id, "CARDHOLDER")
    holder_gid = await user_gid(api, holder_token)
    mine = await issued(api, token, business_id, cardholderId=holder_gid)
    other = await issued(api, token, business_id)

    listed = await api.ok(CARDS, {"id": business_id}, holder_token)
    assert [e["node"]["id"] for e in listed["business"]["cards"]["edges"]] == [mine["id"]]
    assert listed["business"]["cards"]["totalCount"] == 1
    assert (await api.ok(CARD, {"id": mine["id"]}, holder_token))["card"]["id"] == mine["id"]
    assert (await api.ok(CARD, {"id": other["id"]}, holder_token))["card"] is None
    node = "query($id: ID!){ node(id:$id){ id ... on Card { last4 } } }"
    assert (await api.ok(node, {"id": other["id"]}, holder_token))["node"] is None
    assert (await api.ok(node, {"id": mine["id"]}, holder_token))["node"]["last4"] == mine["last4"]

    holder = "query($id: ID!){ card(id:$id){ cardholder{ id name } } }"
    assert (await api.ok(holder, {"id": mine["id"]}, token))["card"]["cardholder"]["id"] == holder_gid

    # Another card answers like a missing one; their own card needs cards:manage.
    payload = await lifecycle(api, holder_token, "freezeCard", other["id"])
    assert payload["userErrors"][0]["code"] == "NOT_FOUND"
    body = await api.gql(LIFECYCLE % "freezeCard", {"i": {"cardId": mine["id"]}}, holder_token)
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    assert (await api.ok(CARD, {"id": mine["id"]}, token))["card"]["status"] == "ACTIVE"


async def test_other_businesses_cards_do_not_exist(api, owner):
    token, business_id = owner
    await api.fund(token, business_id, "100.00")
    card = await issued(api, token, business_id)
    ct = await simulate(api, token, card["id"], "5.00")
    outsider, _ = await api.sign_up("Outsider")
    await api.create_business(outsider)
    assert (await api.ok(CARD, {"id": card["id"]}, outsider))["card"] is None
    node = "query($id: ID!){ node(id:$id){ id } }"
    assert (await api.ok(node, {"id": ct["id"]}, outsider))["node"] is None
    assert (await api.ok(node, {"id": ct["id"]}, token))["node"]["id"] == ct["id"]
    for mutation in ["freezeCard", "closeCard", "renewCard"]:
        payload = await lifecycle(api, outsider, mutation, card["id"])
        assert payload["userErrors"][0]["code"] == "NOT_FOUND", mutation
    body = await api.gql(SIMULATE, {"i": {"cardId": card["id"], "amount": {"amount": "1", "currency": "EUR"},
                                          "merchantName": "X", "merchantCategoryCode": "5812",
                                          "merchantCountry": "DE"}}, outsider)
    assert body["data"]["simulateAuthorization"]["userErrors"][0]["code"] == "NOT_FOUND"
    body = await api.gql(DECIDE, {"i": {"cardTransactionId": ct["id"], "approve": True}}, outsider)
    assert body["data"]["decideAuthorization"]["userErrors"][0]["code"] == "NOT_FOUND"
    payload = await issue(api, outsider, business_id)
    assert payload["userErrors"][0]["code"] == "NOT_FOUND"
    assert (await api.ok(CARD, {"id": card["id"]}, token))["card"]["status"] == "ACTIVE"


async def test_role_permissions_on_cards(api, owner):
    token, business_id = owner
    card = await issued(api, token, business_id)
    viewer, _ = await api.member_token(token, business_id, "VIEWER")
    body = await api.gql(ISSUE, {"i": {"businessId": business_id, "type": "STANDARD", "network": "VISA",
                                       "currency": "EUR", "idempotencyKey": "v"}}, viewer)
    assert body["data"] is None
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    # A viewer reads every card but changes none.
    assert (await api.ok(CARD, {"id": card["id"]}, viewer))["card"]["id"] == card["id"]
    body = await api.gql(LIFECYCLE % "closeCard", {"i": {"cardId": card["id"]}}, viewer)
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    body = await api.gql(UPDATE, {"i": {"cardId": card["id"], "controls": {"dailyLimit": "1"}}}, viewer)
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    # Finance issues and manages cards.
    finance, _ = await api.member_token(token, business_id, "FINANCE")
    made = await issued(api, finance, business_id)
    assert (await lifecycle(api, finance, "freezeCard", made["id"]))["card"]["status"] == "FROZEN"
    # A developer may not issue.
    developer, _ = await api.member_token(token, business_id, "DEVELOPER")
    body = await api.gql(ISSUE, {"i": {"businessId": business_id, "type": "STANDARD", "network": "VISA",
                                       "currency": "EUR", "idempotencyKey": "d"}}, developer)
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    listed = await api.ok(CARDS, {"id": business_id}, token)
    assert listed["business"]["cards"]["totalCount"] == 2


async def test_anonymous_callers_are_refused(api, owner):
    token, business_id = owner
    card = await issued(api, token, business_id)
    body = await api.gql(CARD, {"id": card["id"]})
    assert body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    body = await api.gql(LIFECYCLE % "freezeCard", {"i": {"cardId": card["id"]}})
    assert body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


# ================================================================== authorizations

async def test_simulated_authorizations_approve_and_decline(api, owner):
    token, business_id = owner
    await api.fund(token, business_id, "500.00")
    card = await issued(api, token, business_id, controls={"blockedMerchantCategories": ["7995"]})
    approved = await simulate(api, token, card["id"], "25.00")
    assert (approved["status"], approved["responseCode"], approved["declineReason"]) == ("APPROVED", "00", None)
    assert approved["billingAmount"] == {"amount": "25.00", "currency": "EUR"}
    assert approved["originalAmount"] == {"amount": "25.00", "currency": "EUR"}
    assert approved["exchangeRate"] is None
    assert approved["card"] == {"id": card["id"]}
    assert approved["transaction"]["type"] == "CARD_AUTHORIZATION"
    assert approved["transaction"]["status"] == "PENDING"
    assert approved["transaction"]["amount"] == {"amount": "25.00", "currency": "EUR"}
    assert (approved["merchantName"], approved["merchantCategoryCode"], approved["merchantCountry"]) == (
        "Café Einstein", "5812", "DE")
    assert 0 <= approved["riskScore"] <= 1
    assert await balances(api, token, business_id) == {"EUR": "475.00"}

    declined = await simulate(api, token, card["id"], "10.00", merchant="Casino", mcc="7995")
    assert (declined["status"], declined["responseCode"], declined["declineReason"]) == (
        "DECLINED", "57", "merchant_category_blocked")
    assert declined["transaction"]["status"] == "FAILED"
    assert await balances(api, token, business_id) == {"EUR": "475.00"}

    data = await api.ok("""query($id: ID!){ card(id:$id){ transactions(first: 10){ totalCount
      edges{ cursor node{ id status } } pageInfo{ hasNextPage } } } }""", {"id": card["id"]}, token)
    conn = data["card"]["transactions"]
    assert [e["node"]["id"] for e in conn["edges"]] == [declined["id"], approved["id"]]  # newest first
    assert conn["totalCount"] == 2 and conn["pageInfo"]["hasNextPage"] is False
    page = await api.ok("""query($id: ID!, $after: String){ card(id:$id){ transactions(first: 1, after: $after){
      edges{ node{ id } } pageInfo{ hasNextPage } } } }""", {"id": card["id"], "after": conn["edges"][0]["cursor"]},
                        token)
    assert [e["node"]["id"] for e in page["card"]["transactions"]["edges"]] == [approved["id"]]


async def test_foreign_currency_is_billed_in_the_card_currency(api, owner):
    token, business_id = owner
    await api.fund(token, business_id, "500.00")
    card = await issued(api, token, business_id)
    ct = await simulate(api, token, card["id"], "20.00", currency="USD")
    assert ct["responseCode"] == "00"
    assert ct["originalAmount"] == {"amount": "20.00", "currency": "USD"}
    assert ct["billingAmount"]["currency"] == "EUR" and ct["exchangeRate"] is not None


async def test_single_use_card_closes_after_its_first_approval(api, owner):
    token, business_id = owner
    await api.fund(token, business_id, "100.00")
    card = await issued(api, token, business_id, type="SINGLE_USE")
    assert (await simulate(api, token, card["id"], "5.00"))["responseCode"] == "00"
    assert (await api.ok(CARD, {"id": card["id"]}, token))["card"]["status"] == "CLOSED"
    again = await simulate(api, token, card["id"], "5.00")
    assert again["responseCode"] == "14"


async def test_simulate_input_errors(api, owner):
    token, business_id = owner
    card = await issued(api, token, business_id)
    base = {"cardId": card["id"], "amount": {"amount": "5.00", "currency": "EUR"}, "merchantName": "Shop",
            "merchantCategoryCode": "5812", "merchantCountry": "DE"}
    cases = [
        ({"merchantCategoryCode": "ABCD"}, ["input", "merchantCategoryCode"]),
        ({"merchantCountry": "XX"}, ["input", "merchantCountry"]),
        ({"amount": {"amount": "-1", "currency": "EUR"}}, ["input", "amount", "amount"]),
        ({"amount": {"amount": "1.001", "currency": "EUR"}}, ["input", "amount", "amount"]),
        ({"amount": {"amount": "1", "currency": "ABC"}}, ["input", "amount", "currency"]),
        ({"merchantName": "  "}, ["input", "merchantName"]),
    ]
    for change, path in cases:
        body = await api.gql(SIMULATE, {"i": {**base, **change}}, token)
        errors = body["data"]["simulateAuthorization"]["userErrors"]
        assert errors and errors[0]["field"] == path, (change, body)


async def test_requires_approval_flow(api, owner):
    token, business_id = owner
    await api.fund(token, business_id, "500.00")
    card = await issued(api, token, business_id, controls={"requiresApproval": True})
    first = await simulate(api, token, card["id"], "40.00", merchant="Hotel Adlon", mcc="7011")
    assert (first["status"], first["responseCode"], first["declineReason"]) == (
        "PENDING_APPROVAL", "05", "approval_required")
    assert await balances(api, token, business_id) == {"EUR": "500.00"}

    viewer, _ = await api.member_token(token, business_id, "VIEWER")
    body = await api.gql(DECIDE, {"i": {"cardTransactionId": first["id"], "approve": True}}, viewer)
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"

    finance, _ = await api.member_token(token, business_id, "FINANCE")
    decided = await api.ok(DECIDE, {"i": {"cardTransactionId": first["id"], "approve": True}}, finance)
    assert decided["decideAuthorization"]["cardTransaction"]["id"] == first["id"]
    twice = await api.gql(DECIDE, {"i": {"cardTransactionId": first["id"], "approve": True}}, token)
    assert twice["data"]["decideAuthorization"]["userErrors"][0]["code"] == "INVALID_STATE_TRANSITION"

    # Another merchant is not covered by the approval.
    elsewhere = await simulate(api, token, card["id"], "10.00", merchant="Other Hotel", mcc="7011")
    assert elsewhere["status"] == "PENDING_APPROVAL"
    retry = await simulate(api, token, card["id"], "38.00", merchant="Hotel Adlon", mcc="7011")
    assert (retry["status"], retry["responseCode"]) == ("APPROVED", "00")
    assert await balances(api, token, business_id) == {"EUR": "462.00"}
    # The approval is used up.
    again = await simulate(api, token, card["id"], "1.00", merchant="Hotel Adlon", mcc="7011")
    assert again["status"] == "PENDING_APPROVAL"

    rejected = await api.ok(DECIDE, {"i": {"cardTransactionId": elsewhere["id"], "approve": False}}, token)
    ct = rejected["decideAuthorization"]["cardTransaction"]
    assert (ct["status"], ct["declineReason"]) == ("DECLINED", "approval_rejected")
    retry_rejected = await simulate(api, token, card["id"], "10.00", merchant="Other Hotel", mcc="7011")
    assert retry_rejected["status"] == "PENDING_APPROVAL"
    assert await balances(api, token, business_id) == {"EUR": "462.00"}


async def test_approval_covers_at_most_the_approved_amount(api, owner):
    token, business_id = owner
    await api.fund(token, business_id, "500.00")
    card = await issued(api, token, business_id, controls={"requiresApproval": True})
    first = await simulate(api, token, card["id"], "40.00", merchant="Hotel Adlon")
    await api.ok(DECIDE, {"i": {"cardTransactionId": first["id"], "approve": True}}, token)
    more = await simulate(api, token, card["id"], "40.01", merchant="Hotel Adlon")
    assert more["status"] == "PENDING_APPROVAL"
    exact = await simulate(api, token, card["id"], "40.00", merchant="Hotel Adlon")
    assert exact["status"] == "APPROVED"


async def test_spend_summary_after_approvals(api, owner):
    token, business_id = owner
    await api.fund(token, business_id, "1000.00")
    card = await issued(api, token, business_id, spendingLimit="250",
                        controls={"dailyLimit": "100", "monthlyLimit": "300"})
    empty = (await api.ok(SPEND, {"id": card["id"]}, token))["card"]
    assert empty["spend"] == {"today": {"amount": "0.00", "currency": "EUR"},
                              "thisMonth": {"amount": "0.00", "currency": "EUR"},
                              "remainingToday": {"amount": "100.00", "currency": "EUR"},
                              "remainingThisMonth": {"amount": "250.00", "currency": "EUR"}}
    assert (await simulate(api, token, card["id"], "30.00"))["responseCode"] == "00"
    assert (await simulate(api, token, card["id"], "20.50"))["responseCode"] == "00"
    over = await simulate(api, token, card["id"], "49.51")
    assert (over["responseCode"], over["declineReason"]) == ("61", "daily_limit_exceeded")
    data = (await api.ok(SPEND, {"id": card["id"]}, token))["card"]
    assert data["currentBalance"] == "50.50"
    assert data["spend"] == {"today": {"amount": "50.50", "currency": "EUR"},
                             "thisMonth": {"amount": "50.50", "currency": "EUR"},
                             "remainingToday": {"amount": "49.50", "currency": "EUR"},
                             "remainingThisMonth": {"amount": "199.50", "currency": "EUR"}}
    unlimited = await issued(api, token, business_id)
    await simulate(api, token, unlimited["id"], "12.00")
    data = (await api.ok(SPEND, {"id": unlimited["id"]}, token))["card"]["spend"]
    assert data["today"]["amount"] == "12.00"
    assert data["remainingToday"] is None and data["remainingThisMonth"] is None


# ================================================================== statements

NESTED_CARDS = """query($id: ID!){ business(id:$id){ cards(first: 50){ totalCount edges{ node{
  id last4 maskedNumber cardholder{ email } business{ name }
  controls{ dailyLimit allowedCountries } currentBalance
  spend{ today{ amount } remainingToday{ amount } }
  transactions(first: 10){ totalCount edges{ node{ id responseCode card{ last4 } transaction{ id status } } } }
} } } } }"""


async def test_nested_cards_query_runs_a_constant_number_of_statements(api, app, owner):
    token, business_id = owner
    await api.fund(token, business_id, "5000.00")
    holder_token, _ = await api.member_token(token, business_id, "CARDHOLDER")
    holder = await user_gid(api, holder_token)

    async def grow(cards: int, authorizations: int) -> None:
        for _ in range(cards):
            card = await issued(api, token, business_id, cardholderId=holder,
                                controls={"dailyLimit": "1000", "allowedCountries": ["DE"]})
            for _ in range(authorizations):
                await simulate(api, token, card["id"], "1.00")

    engine = app.state.services.engine
    await grow(1, 1)
    with count_statements(engine) as small:
        few = await api.ok(NESTED_CARDS, {"id": business_id}, token)
    await grow(6, 3)
    with count_statements(engine) as large:
        many = await api.ok(NESTED_CARDS, {"id": business_id}, token)
    assert few["business"]["cards"]["totalCount"] == 1
    assert many["business"]["cards"]["totalCount"] == 7
    rows = sum(len(e["node"]["transactions"]["edges"]) for e in many["business"]["cards"]["edges"])
    assert rows == 1 + 6 * 3
    assert len(large) == len(small), (small, large)
    assert len(large) <= 12, large


# ================================================================== contract

CONTRACT = Path(__file__).resolve().parents[3] / "shared" / "API.graphql"
CARD_TYPES = [
    "Card", "CardControls", "SpendSummary", "CardTransaction", "CardConnection", "CardEdge",
    "CardTransactionConnection", "CardTransactionEdge", "CardControlsInput", "IssueCardInput", "CardPayload",
    "CardIdInput", "UpdateCardControlsInput", "RevealedCard", "RevealCardPayload", "SimulateAuthorizationInput",
    "AuthorizationPayload", "DecideAuthorizationInput", "StepUpEnrollment", "StepUpEnrollPayload",
    "StepUpPayload", "CardStatus", "CardType", "CardNetwork", "AuthorizationStatus",
]
CARD_OPERATIONS = [
    "issueCard", "activateCard", "freezeCard", "unfreezeCard", "closeCard", "renewCard", "updateCardControls",
    "revealCard", "simulateAuthorization", "decideAuthorization", "enrollStepUp", "verifyStepUp",
]


def test_the_cards_part_of_the_schema_is_the_contract():
    """Every type, field, argument and operation of the cards section, with the contract's types."""
    if not CONTRACT.exists():
        pytest.skip("the contract is not next to the repository")
    from graphql import GraphQLEnumType
    from graphql import build_schema as parse_sdl

    from veix.schema import build_schema

    contract = parse_sdl(CONTRACT.read_text()).type_map
    ours = build_schema()._schema.type_map
    problems = []

    def compare(where: str, theirs: Any, mine: Any) -> None:
        if mine is None:
            problems.append(f"missing {where}")
            return
        if str(theirs.type) != str(mine.type):
            problems.append(f"{where}: {mine.type} instead of {theirs.type}")
        for arg, spec in getattr(theirs, "args", {}).items():
            if arg not in mine.args or str(mine.args[arg].type) != str(spec.type):
                problems.append(f"{where}({arg})")

    for name in CARD_TYPES:
        theirs, mine = contract[name], ours.get(name)
        if mine is None:
            problems.append(f"missing type {name}")
        elif isinstance(theirs, GraphQLEnumType):
            if set(theirs.values) != set(mine.values):
                problems.append(f"enum {name}")
        else:
            for field, spec in theirs.fields.items():
                compare(f"{name}.{field}", spec, mine.fields.get(field))
    for op in CARD_OPERATIONS:
        compare(f"Mutation.{op}", contract["Mutation"].fields[op], ours["Mutation"].fields.get(op))
    compare("Query.card", contract["Query"].fields["card"], ours["Query"].fields.get("card"))
    compare("Business.cards", contract["Business"].fields["cards"], ours["Business"].fields.get("cards"))
    assert problems == []
