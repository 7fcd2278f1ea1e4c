"""Step-up (TOTP) and revealCard: the full PAN and CVV leave the vault only
through revealCard, for a stepped-up caller with cards:reveal, audited, and
appear nowhere else: not in logs, other responses or the audit log
(DESIGN.md sections 5 and 8)."""

from __future__ import annotations

import base64
import json
import logging
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pyotp
from sqlalchemy import select

from tests.integration.conftest import Api
from tests.integration.test_cards_api import (
    CARD,
    CARDS,
    LIFECYCLE,
    SIMULATE,
    SPEND,
    UPDATE,
    issued,
    user_gid,
)
from veix.domain.cards import luhn_valid
from veix.persistence.tables import audit_log, outbox, users
from veix.resolvers.ids import parse_global_id
from veix.security.vault import mask_pan

ENROLL = "mutation{ enrollStepUp{ enrollment{ secret otpauthUri } userErrors{ field code message } } }"
VERIFY = "mutation($c: String!){ verifyStepUp(code:$c){ accessToken validUntil userErrors{ field code message } } }"
REVEAL = """mutation($i: CardIdInput!){ revealCard(input:$i){ card{ pan cvv expiryMonth expiryYear }
  userErrors{ field code message } } }"""
ME = "{ me { id email stepUpEnrolled } }"


async def enroll(api: Api, token: str) -> str:
    data = await api.ok(ENROLL, token=token)
    enrollment = data["enrollStepUp"]["enrollment"]
    assert enrollment["otpauthUri"].startswith("otpauth://totp/")
    assert f"secret={enrollment['secret']}" in enrollment["otpauthUri"]
    secret: str = enrollment["secret"]
    return secret


async def verify(api: Api, token: str, secret: str) -> str:
    data = await api.ok(VERIFY, {"c": pyotp.TOTP(secret).now()}, token)
    stepped: str = data["verifyStepUp"]["accessToken"]
    return stepped


async def step_up(api: Api, token: str) -> str:
    """Enroll a TOTP factor and verify a code: a token carrying a fresh step-up."""
    return await verify(api, token, await enroll(api, token))


async def reveal(api: Api, token: str, card_id: str) -> dict[str, Any]:
    body = await api.gql(REVEAL, {"i": {"cardId": card_id}}, token)
    assert "errors" not in body, body
    payload: dict[str, Any] = body["data"]["revealCard"]
    return payload


async def audit_rows(app: Any) -> list[dict[str, Any]]:
    async with app.state.services.engine.connect() as conn:
        return [dict(r._mapping) for r in await conn.execute(select(audit_log).order_by(audit_log.c.seq))]


# ================================================================== reveal

async def test_reveal_without_step_up_is_refused(api, owner):
    token, business_id = owner
    card = await issued(api, token, business_id)
    payload = await reveal(api, token, card["id"])
    assert payload["card"] is None
    assert payload["userErrors"][0]["code"] == "STEP_UP_REQUIRED"
    assert payload["userErrors"][0]["field"] == ["input", "cardId"]


async def test_reveal_with_a_fresh_step_up_shows_the_card_and_is_audited(api, app, owner):
    token, business_id = owner
    card = await issued(api, token, business_id)
    stepped = await step_up(api, token)
    payload = await reveal(api, stepped, card["id"])
    assert payload["userErrors"] == []
    revealed = payload["card"]
    pan = revealed["pan"]
    assert len(pan) == 16 and luhn_valid(pan) and pan.startswith("4")
    assert mask_pan(pan) == card["maskedNumber"]
    assert pan[-4:] == card["last4"]
    assert re.fullmatch(r"[0-9]{3}", revealed["cvv"])
    expiry = datetime.strptime(card["expiryDate"], "%Y-%m-%d").date()
    assert (revealed["expiryYear"], revealed["expiryMonth"]) == (expiry.year, expiry.month)

    _, raw_card = parse_global_id(card["id"])
    rows = [r for r in await audit_rows(app) if r["action"] == "card.reveal" and r["object_id"] == str(raw_card)]
    assert len(rows) == 1
    assert rows[0]["actor_type"] == "user" and rows[0]["after"] == {"masked_number": card["maskedNumber"]}
    text = json.dumps(rows[0], default=str)
    assert pan not in text and f'"{revealed["cvv"]}"' not in text


async def test_step_up_older_than_five_minutes_does_not_count(api, app, owner):
    token, business_id = owner
    card = await issued(api, token, business_id)
    _, user_id = parse_global_id(await user_gid(api, token))
    tokens = app.state.services.tokens
    stale, _ = tokens.issue_access(user_id, step_up_at=datetime.now(UTC) - timedelta(minutes=5, seconds=5))
    payload = await reveal(api, stale, card["id"])
    assert payload["userErrors"][0]["code"] == "STEP_UP_REQUIRED"
    fresh, _ = tokens.issue_access(user_id, step_up_at=datetime.now(UTC) - timedelta(minutes=4))
    assert (await reveal(api, fresh, card["id"]))["userErrors"] == []


async def test_who_may_reveal(api, owner):
    token, business_id = owner
    holder, _ = await api.member_token(token, business_id, "CARDHOLDER")
    mine = await issued(api, token, business_id, cardholderId=await user_gid(api, holder))
    other = await issued(api, token, business_id)
    holder_stepped = await step_up(api, holder)
    assert (await reveal(api, holder_stepped, mine["id"]))["card"]["pan"][-4:] == mine["last4"]
    refused = await reveal(api, holder_stepped, other["id"])
    assert refused["card"] is None and refused["userErrors"][0]["code"] == "NOT_FOUND"
    # Finance manages cards but never sees a PAN, step-up or not.
    finance, _ = await api.member_token(token, business_id, "FINANCE")
    body = await api.gql(REVEAL, {"i": {"cardId": other["id"]}}, await step_up(api, finance))
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    # Another business: like a card that does not exist.
    outsider, _ = await api.sign_up("Outsider")
    refused = await reveal(api, await step_up(api, outsider), other["id"])
    assert refused["userErrors"][0]["code"] == "NOT_FOUND"


# ================================================================== step-up

async def test_step_up_secret_is_stored_encrypted_and_re_enrolling_replaces_it(api, app):
    token, _ = await api.sign_up()
    assert (await api.ok(ME, token=token))["me"]["stepUpEnrolled"] is False
    first = await enroll(api, token)
    assert (await api.ok(ME, token=token))["me"]["stepUpEnrolled"] is True
    _, user_id = parse_global_id((await api.ok(ME, token=token))["me"]["id"])
    async with app.state.services.engine.connect() as conn:
        stored = (await conn.execute(select(users.c.step_up_secret).where(users.c.id == user_id))).scalar_one()
    key_id, _, blob = stored.partition(":")
    assert key_id and base64.b64decode(blob) and first not in stored

    # Replacing a factor needs a step-up with the current one.
    body = await api.gql(ENROLL, None, token)
    assert body["data"]["enrollStepUp"]["userErrors"][0]["code"] == "STEP_UP_REQUIRED"
    stepped = (await api.ok(VERIFY, {"c": pyotp.TOTP(first).now()}, token))["verifyStepUp"]["accessToken"]
    second = await enroll(api, stepped)
    assert second != first
    stale_code = pyotp.TOTP(first).now()
    if stale_code != pyotp.TOTP(second).now():  # equal by chance once in a million
        body = await api.gql(VERIFY, {"c": stale_code}, token)
        assert body["data"]["verifyStepUp"]["userErrors"][0]["code"] == "INVALID_INPUT"
    data = await api.ok(VERIFY, {"c": pyotp.TOTP(second).now()}, token)
    valid_until = datetime.fromisoformat(data["verifyStepUp"]["validUntil"])
    assert timedelta(minutes=4, seconds=50) < valid_until - datetime.now(UTC) <= timedelta(minutes=5)
    claims = app.state.services.tokens.decode_access(data["verifyStepUp"]["accessToken"])
    assert claims.user_id == user_id and claims.step_up_at is not None


async def test_wrong_or_missing_codes_are_user_errors_and_audited(api, app):
    token, _ = await api.sign_up()
    body = await api.gql(VERIFY, {"c": "123456"}, token)
    assert body["data"]["verifyStepUp"] == {
        "accessToken": None, "validUntil": None,
        "userErrors": [{"field": ["code"], "code": "INVALID_INPUT",
                        "message": body["data"]["verifyStepUp"]["userErrors"][0]["message"]}]}
    secret = await enroll(api, token)
    right = pyotp.TOTP(secret).now()
    wrong = f"{(int(right) + 1) % 1_000_000:06d}"
    for code in [wrong, "abcdef", "12345", ""]:
        body = await api.gql(VERIFY, {"c": code}, token)
        errors = body["data"]["verifyStepUp"]["userErrors"]
        assert errors[0]["code"] == "INVALID_INPUT" and errors[0]["field"] == ["code"], code
        assert body["data"]["verifyStepUp"]["accessToken"] is None
    _, user_id = parse_global_id((await api.ok(ME, token=token))["me"]["id"])
    actions = [r["action"] for r in await audit_rows(app) if r["object_id"] == str(user_id)]
    assert actions.count("user.step_up_failed") == 4
    assert "user.step_up_enroll" in actions


async def test_api_keys_cannot_step_up(api, owner):
    token, business_id = owner
    data = await api.ok("mutation($b: ID!){ createApiKey(businessId:$b, name:\"k\", role: ADMIN){ secret "
                        "userErrors{ code } } }", {"b": business_id}, token)
    key = data["createApiKey"]["secret"]
    body = await api.gql(ENROLL, token=key)
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    card = await issued(api, token, business_id)
    assert (await reveal(api, key, card["id"]))["userErrors"][0]["code"] == "STEP_UP_REQUIRED"


# ================================================================== raising limits

async def test_raising_or_removing_a_limit_needs_a_fresh_step_up(api, owner):
    token, business_id = owner
    card = await issued(api, token, business_id, spendingLimit="500",
                        controls={"dailyLimit": "100", "monthlyLimit": "400", "maxTransactionAmount": "50"})

    async def update(tok: str, controls: dict[str, Any], **extra: Any) -> dict[str, Any]:
        body = await api.gql(UPDATE, {"i": {"cardId": card["id"], "controls": controls, **extra}}, tok)
        assert "errors" not in body, body
        payload: dict[str, Any] = body["data"]["updateCardControls"]
        return payload

    for controls, extra, path in [
        ({"dailyLimit": "150"}, {}, ["input", "controls", "dailyLimit"]),
        ({"dailyLimit": None}, {}, ["input", "controls", "dailyLimit"]),
        ({"monthlyLimit": "401"}, {}, ["input", "controls", "monthlyLimit"]),
        ({"maxTransactionAmount": "60"}, {}, ["input", "controls", "maxTransactionAmount"]),
        ({}, {"spendingLimit": "501"}, ["input", "spendingLimit"]),
        ({}, {"spendingLimit": None}, ["input", "spendingLimit"]),
    ]:
        payload = await update(token, controls, **extra)
        assert payload["card"] is None
        assert payload["userErrors"][0]["code"] == "STEP_UP_REQUIRED", (controls, extra)
        assert payload["userErrors"][0]["field"] == path
    unchanged = await api.ok(CARD, {"id": card["id"]}, token)
    assert unchanged["card"]["controls"]["dailyLimit"] == "100.00"
    assert unchanged["card"]["spendingLimit"] == "500.00"

    lowered = await update(token, {"dailyLimit": "80"}, spendingLimit="450")
    assert lowered["userErrors"] == []
    assert lowered["card"]["spendingLimit"] == "450.00"

    stepped = await step_up(api, token)
    raised = await update(stepped, {"dailyLimit": "200", "monthlyLimit": None}, spendingLimit="900")
    assert raised["userErrors"] == []
    assert raised["card"]["controls"]["dailyLimit"] == "200.00"
    assert raised["card"]["controls"]["monthlyLimit"] is None
    assert raised["card"]["spendingLimit"] == "900.00"


# ================================================================== nothing leaks

def _mentions(text: str, pan: str, cvv: str) -> list[str]:
    found = []
    spaced = " ".join(pan[i:i + 4] for i in range(0, 16, 4))
    for needle in (pan, spaced, f"'{cvv}'", f'"{cvv}"'):
        if needle in text:
            found.append(needle)
    if re.search(rf"cvv\W{{0,6}}{cvv}(?![0-9])", text, re.IGNORECASE):
        found.append("cvv=" + cvv)
    return found


async def test_pan_and_cvv_appear_nowhere_but_in_the_reveal_response(api, app, owner, caplog):
    caplog.set_level(logging.DEBUG)
    # Every logger at DEBUG, even those with a level of their own (SQLAlchemy sets WARNING),
    # so SQL statements with their parameters and result rows are captured too.
    for name, logger in list(logging.root.manager.loggerDict.items()):
        if isinstance(logger, logging.Logger) and logger.level not in (logging.NOTSET, logging.DEBUG):
            caplog.set_level(logging.DEBUG, logger=name)
    token, business_id = owner
    responses: list[str] = []

    async def call(query: str, variables: dict[str, Any] | None = None, tok: str | None = token) -> dict[str, Any]:
        r = await api.client.post("/graphql", json={"query": query, "variables": variables},
                                  headers={"authorization": f"Bearer {tok}"} if tok else {})
        responses.append(r.text)
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body

    await call("mutation($i: FundBusinessInput!){ fundBusiness(input:$i){ transaction{ id } } }",
               {"i": {"businessId": business_id, "amount": {"amount": "500.00", "currency": "EUR"},
                      "idempotencyKey": uuid.uuid4().hex}})
    card_id = (await call("""mutation($i: IssueCardInput!){ issueCard(input:$i){ card{ id maskedNumber last4 }
      userErrors{ code } } }""", {"i": {"businessId": business_id, "type": "STANDARD", "network": "VISA",
                                         "currency": "EUR", "idempotencyKey": "leak",
                                         "controls": {"dailyLimit": "300"}}}))["data"]["issueCard"]["card"]["id"]
    enrollment = (await call(ENROLL))["data"]["enrollStepUp"]["enrollment"]
    stepped = (await call(VERIFY, {"c": pyotp.TOTP(enrollment["secret"]).now()}))["data"]["verifyStepUp"][
        "accessToken"]
    before = await call(CARD, {"id": card_id})

    # The one response that carries the PAN and CVV, kept apart.
    r = await api.client.post("/graphql", json={"query": REVEAL, "variables": {"i": {"cardId": card_id}}},
                              headers={"authorization": f"Bearer {stepped}"})
    revealed = r.json()["data"]["revealCard"]["card"]
    pan, cvv = revealed["pan"], revealed["cvv"]
    assert luhn_valid(pan)
    assert {pan, f'"{cvv}"'} <= set(_mentions(r.text, pan, cvv))  # the detector finds them where they are

    sim = {"cardId": card_id, "amount": {"amount": "12.34", "currency": "EUR"}, "merchantName": "Shop",
           "merchantCategoryCode": "5812", "merchantCountry": "DE"}
    await call(SIMULATE, {"i": sim})
    await call(SIMULATE, {"i": {**sim, "merchantCategoryCode": "ABCD"}})  # a user error
    await call(SIMULATE, {"i": {**sim, "amount": {"amount": "9999.00", "currency": "EUR"}}})  # a decline
    await call(UPDATE, {"i": {"cardId": card_id, "controls": {"dailyLimit": "400"}}}, stepped)
    await call(UPDATE, {"i": {"cardId": card_id, "controls": {"dailyLimit": "900"}}})  # step-up required
    await call(CARD, {"id": card_id})
    await call(SPEND, {"id": card_id})
    await call(CARDS, {"id": business_id})
    await call("query($id: ID!){ node(id:$id){ id ... on Card { maskedNumber last4 } } }", {"id": card_id})
    await call("""query($id: ID!){ card(id:$id){ transactions(first: 10){ edges{ node{ id responseCode
      transaction{ id metadata errorCode errorMessage } } } } } }""", {"id": card_id})
    await call("query($id: ID!){ business(id:$id){ transactions(first: 50){ edges{ node{ id metadata } } } } }",
               {"id": business_id})
    await call(REVEAL, {"i": {"cardId": card_id}})  # no step-up: refused
    await call(LIFECYCLE % "freezeCard", {"i": {"cardId": card_id}})
    await call(LIFECYCLE % "renewCard", {"i": {"cardId": card_id}})
    await call(LIFECYCLE % "closeCard", {"i": {"cardId": card_id}})  # already closed: a user error
    await call(CARD, {"id": card_id}, tok=None)  # unauthenticated
    await call("{ card(id: \"nonsense\") { id } }")  # malformed id: a top-level error

    assert before["data"]["card"]["maskedNumber"] == mask_pan(pan)
    assert caplog.records, "logging at DEBUG captured nothing"
    assert any(r.name.startswith("sqlalchemy.engine") for r in caplog.records)
    for text in responses:
        assert _mentions(text, pan, cvv) == [], text
    leaks = []
    for record in caplog.records:
        message = record.getMessage()
        for text in (message, repr(record.args), record.exc_text or ""):
            if _mentions(text, pan, cvv):
                leaks.append((record.name, text[:300]))
    assert leaks == []
    assert _mentions(caplog.text, pan, cvv) == []

    async with app.state.services.engine.connect() as conn:
        audits = [dict(r._mapping) for r in await conn.execute(select(audit_log))]
        events = [dict(r._mapping) for r in await conn.execute(select(outbox))]
    assert any(a["action"] == "card.reveal" for a in audits)
    for row in audits + events:
        assert _mentions(json.dumps(row, default=str), pan, cvv) == [], row


async def test_five_wrong_step_up_codes_lock_the_account(api, app):
    token, _ = await api.sign_up()
    secret = await enroll(api, token)
    right = pyotp.TOTP(secret).now()
    wrong = f"{(int(right) + 500_000) % 1_000_000:06d}"
    for _ in range(5):
        body = await api.gql(VERIFY, {"c": wrong}, token)
        assert body["data"]["verifyStepUp"]["accessToken"] is None
    body = await api.gql(VERIFY, {"c": right}, token)
    assert body["data"]["verifyStepUp"]["userErrors"][0]["code"] == "RATE_LIMITED"
    assert body["data"]["verifyStepUp"]["accessToken"] is None
