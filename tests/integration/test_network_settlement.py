"""Clearings, reversals, incremental authorizations and hold expiry move the
hold exactly (NETWORK.md; DESIGN.md section 4).

Each step is checked on the business's available balance through GraphQL
(exact decimal strings), on the authorization row (held, cleared, released,
status) and on the card's spend counters; the ``api`` fixture verifies the
ledger after every test.
"""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import pytest
from sqlalchemy import select

from tests.integration import network_helpers
from tests.integration.network_helpers import (
    CLEARINGS,
    REVERSALS,
    THURSDAY_AFTERNOON,
    balance,
    card_transaction,
    expire_due_holds,
    holds_balance,
    iso,
    issue_card,
    new_business,
    spend,
)
from veix.domain.events import utcnow
from veix.domain.fx import DEFAULT_RATES
from veix.persistence.tables import transactions

network = network_helpers.network  # the fixture: signed HTTP to the app

DAY, MONTH = "D2026-11-26", "M2026-11"


async def _approved(network, card, amount: str, currency: str = "EUR", **kwargs: Any) -> str:
    answer = await network.authorize(card, amount, currency, at=THURSDAY_AFTERNOON, **kwargs)
    assert answer["response_code"] == "00", answer
    return str(answer["id"])


async def _state(app, network_id: str) -> tuple[str, Decimal, Decimal, Decimal]:
    row = await card_transaction(app, network_id)
    return row.status, row.held_amount, row.cleared_amount, row.released_amount


async def _txn_status(app, network_id: str) -> str:
    row = await card_transaction(app, network_id)
    async with app.state.services.engine.connect() as conn:
        return str((await conn.execute(select(transactions.c.status)
                                       .where(transactions.c.id == row.transaction_id))).scalar_one())


async def _setup(api, app, network, fund: str = "1000.00", amount: str = "100.00", **card: Any):
    biz = await new_business(api, fund=fund)
    issued = await issue_card(app, biz.id, **card)
    auth = await _approved(network, issued, amount)
    return biz, issued, auth


# ================================================================== clearings
async def test_full_clearing_posts_the_whole_hold(api, app, network):
    biz, card, auth = await _setup(api, app, network)
    assert await balance(api, biz) == "900.00"

    answer = await network.clear(auth, "100.00")

    assert answer == {"id": answer["id"], "authorization_id": auth, "status": "cleared",
                      "cleared_amount": "100.00", "held_amount": "0.00", "billing_currency": "EUR"}
    assert await balance(api, biz) == "900.00"
    assert await holds_balance(app, biz) == Decimal(0)
    assert await _state(app, auth) == ("cleared", Decimal(0), Decimal("100.00"), Decimal(0))
    assert await _txn_status(app, auth) == "succeeded"
    assert await spend(app, card) == {DAY: Decimal("100.00"), MONTH: Decimal("100.00")}


async def test_partial_final_clearing_releases_the_rest(api, app, network):
    biz, card, auth = await _setup(api, app, network)

    answer = await network.clear(auth, "60.00")

    assert (answer["status"], answer["cleared_amount"], answer["held_amount"]) == ("cleared", "60.00", "0.00")
    assert await balance(api, biz) == "940.00"
    assert await holds_balance(app, biz) == Decimal(0)
    assert await _state(app, auth) == ("cleared", Decimal(0), Decimal("60.00"), Decimal("40.00"))
    assert await spend(app, card) == {DAY: Decimal("60.00"), MONTH: Decimal("60.00")}


async def test_two_partial_clearings_then_a_final_one(api, app, network):
    biz, card, auth = await _setup(api, app, network)

    first = await network.clear(auth, "30.00", final=False)
    assert (first["status"], first["cleared_amount"], first["held_amount"]) == ("approved", "30.00", "70.00")
    assert await balance(api, biz) == "900.00"
    assert await holds_balance(app, biz) == Decimal("70.00")

    second = await network.clear(auth, "30.00", final=False)
    assert (second["status"], second["cleared_amount"], second["held_amount"]) == ("approved", "60.00", "40.00")
    assert await balance(api, biz) == "900.00"

    last = await network.clear(auth, "20.00", final=True)
    assert (last["status"], last["cleared_amount"], last["held_amount"]) == ("cleared", "80.00", "0.00")
    assert await balance(api, biz) == "920.00"
    assert await holds_balance(app, biz) == Decimal(0)
    assert await _state(app, auth) == ("cleared", Decimal(0), Decimal("80.00"), Decimal("20.00"))
    assert await spend(app, card) == {DAY: Decimal("80.00"), MONTH: Decimal("80.00")}


async def test_over_clearing_within_tolerance_takes_the_extra_from_available_funds(api, app, network):
    biz, card, auth = await _setup(api, app, network)

    answer = await network.clear(auth, "115.00")  # a tip: tolerance is 20 %

    assert (answer["status"], answer["cleared_amount"], answer["held_amount"]) == ("cleared", "115.00", "0.00")
    assert await balance(api, biz) == "885.00"
    assert await holds_balance(app, biz) == Decimal(0)
    assert await spend(app, card) == {DAY: Decimal("115.00"), MONTH: Decimal("115.00")}


async def test_over_clearing_up_to_exactly_the_tolerance_is_allowed(api, app, network):
    biz, _, auth = await _setup(api, app, network)
    assert (await network.clear(auth, "120.00"))["cleared_amount"] == "120.00"
    assert await balance(api, biz) == "880.00"


async def test_over_clearing_above_tolerance_is_refused_and_changes_nothing(api, app, network):
    biz, _, auth = await _setup(api, app, network)

    refused = await network.clear(auth, "120.01", status=409)

    assert refused["error"] == "conflict" and refused["field"] == "amount"
    assert await balance(api, biz) == "900.00"
    assert await holds_balance(app, biz) == Decimal("100.00")
    assert await _state(app, auth) == ("approved", Decimal("100.00"), Decimal(0), Decimal(0))
    # The authorization can still be cleared properly.
    assert (await network.clear(auth, "100.00"))["status"] == "cleared"
    assert await balance(api, biz) == "900.00"


async def test_over_clearing_without_the_available_funds_is_refused(api, app, network):
    biz, _, auth = await _setup(api, app, network, fund="100.00")
    assert await balance(api, biz) == "0.00"

    refused = await network.clear(auth, "110.00", status=409)

    assert refused["error"] == "insufficient_funds"
    assert await balance(api, biz) == "0.00"
    assert await _state(app, auth) == ("approved", Decimal("100.00"), Decimal(0), Decimal(0))


async def test_clearing_in_the_merchant_currency_uses_the_stored_rate(api, app, network):
    biz = await new_business(api, fund="1000.00")
    card = await issue_card(app, biz.id)
    auth = await _approved(network, card, "100.00", "USD")
    rate = DEFAULT_RATES.rate("USD", "EUR")
    billed = (Decimal("100.00") * rate).quantize(Decimal("0.01"), ROUND_HALF_UP)
    assert await balance(api, biz) == str(Decimal("1000.00") - billed)

    partial = await network.clear(auth, "50.00", "USD")

    cleared = (Decimal("50.00") * rate).quantize(Decimal("0.01"), ROUND_HALF_UP)
    assert (partial["status"], partial["cleared_amount"], partial["held_amount"]) == (
        "cleared", str(cleared), "0.00")
    assert await balance(api, biz) == str(Decimal("1000.00") - cleared) == "953.71"


async def test_clearing_an_unknown_authorization_is_404(api, app, network):
    refused = await network.clear("auth_nobody_knows", "10.00", status=404)
    assert refused["error"] == "not_found"


async def test_clearing_a_declined_authorization_is_refused(api, app, network):
    biz = await new_business(api, fund="10.00")
    card = await issue_card(app, biz.id)
    answer = await network.authorize(card, "50.00")
    assert answer["response_code"] == "51"
    refused = await network.clear(answer["id"], "50.00", status=409)
    assert refused["error"] == "invalid_state_transition"
    assert await balance(api, biz) == "10.00"


# ================================================================== reversals
async def test_full_reversal_releases_the_hold(api, app, network):
    biz, card, auth = await _setup(api, app, network)

    answer = await network.reverse(auth)

    assert answer == {"id": answer["id"], "authorization_id": auth, "status": "reversed",
                      "released_amount": "100.00", "held_amount": "0.00", "billing_currency": "EUR"}
    assert await balance(api, biz) == "1000.00"
    assert await holds_balance(app, biz) == Decimal(0)
    assert await _txn_status(app, auth) == "canceled"
    assert await spend(app, card) == {DAY: Decimal(0), MONTH: Decimal(0)}


async def test_partial_reversal_then_clearing_of_the_rest(api, app, network):
    biz, card, auth = await _setup(api, app, network)

    partial = await network.reverse(auth, "40.00")
    assert (partial["status"], partial["released_amount"], partial["held_amount"]) == ("approved", "40.00", "60.00")
    assert await balance(api, biz) == "940.00"
    assert await holds_balance(app, biz) == Decimal("60.00")
    assert await spend(app, card) == {DAY: Decimal("60.00"), MONTH: Decimal("60.00")}

    cleared = await network.clear(auth, "60.00")
    assert (cleared["status"], cleared["cleared_amount"], cleared["held_amount"]) == ("cleared", "60.00", "0.00")
    assert await balance(api, biz) == "940.00"
    assert await _state(app, auth) == ("cleared", Decimal(0), Decimal("60.00"), Decimal("40.00"))


async def test_reversal_above_the_remaining_hold_is_refused(api, app, network):
    biz, _, auth = await _setup(api, app, network)
    refused = await network.reverse(auth, "100.01", status=409)
    assert refused["error"] == "conflict"
    assert await balance(api, biz) == "900.00"


async def test_reversal_after_the_final_clearing_is_refused(api, app, network):
    biz, _, auth = await _setup(api, app, network)
    await network.clear(auth, "100.00")
    refused = await network.reverse(auth, status=409)
    assert refused["error"] == "invalid_state_transition"
    assert await balance(api, biz) == "900.00"


async def test_reversal_of_a_prepaid_card_returns_the_money_to_the_card(api, app, network):
    biz = await new_business(api, fund="1000.00")
    card = await issue_card(app, biz.id, type="PREPAID", spending_limit="50.00")
    auth = await _approved(network, card, "50.00")
    assert (await network.authorize(card, "0.01"))["reason"] == "insufficient_funds"

    await network.reverse(auth)

    assert await balance(api, biz) == "950.00"  # the business keeps what it loaded onto the card
    assert (await network.authorize(card, "50.00"))["response_code"] == "00"


async def test_reversal_of_an_unknown_authorization_is_404(api, app, network):
    refused = await network.reverse("auth_nobody_knows", "5.00", status=404)
    assert refused["error"] == "not_found"


# ================================================================== incremental
async def test_incremental_authorization_extends_the_original_hold(api, app, network):
    biz, card, auth = await _setup(api, app, network)

    more = await network.authorize(card, "50.00", kind="incremental", original_id=auth, at=THURSDAY_AFTERNOON)

    assert (more["response_code"], more["approved_amount"]) == ("00", "50.00")
    assert await balance(api, biz) == "850.00"
    assert await holds_balance(app, biz) == Decimal("150.00")
    original = await card_transaction(app, auth)
    assert (original.held_amount, original.billing_amount) == (Decimal("150.00"), Decimal("150.00"))
    assert (await card_transaction(app, more["id"])).parent_id == original.id
    assert await spend(app, card) == {DAY: Decimal("150.00"), MONTH: Decimal("150.00")}

    cleared = await network.clear(auth, "150.00")

    assert (cleared["status"], cleared["cleared_amount"], cleared["held_amount"]) == ("cleared", "150.00", "0.00")
    assert await balance(api, biz) == "850.00"
    assert await holds_balance(app, biz) == Decimal(0)


async def test_reversing_an_extended_authorization_releases_both_parts(api, app, network):
    biz, card, auth = await _setup(api, app, network)
    await network.authorize(card, "50.00", kind="incremental", original_id=auth)

    answer = await network.reverse(auth)

    assert (answer["status"], answer["released_amount"]) == ("reversed", "150.00")
    assert await balance(api, biz) == "1000.00"


async def test_incremental_counts_the_whole_authorization_against_the_transaction_maximum(api, app, network):
    biz, card, auth = await _setup(api, app, network, controls={"maxTransactionAmount": "120.00"})

    more = await network.authorize(card, "30.00", kind="incremental", original_id=auth)

    assert (more["response_code"], more["reason"]) == ("61", "transaction_limit_exceeded")
    assert await balance(api, biz) == "900.00"
    ok = await network.authorize(card, "20.00", kind="incremental", original_id=auth)
    assert ok["response_code"] == "00"
    assert await balance(api, biz) == "880.00"


async def test_an_incremental_cannot_extend_a_cleared_authorization(api, app, network):
    biz, card, auth = await _setup(api, app, network)
    await network.clear(auth, "100.00")
    more = await network.authorize(card, "10.00", kind="incremental", original_id=auth)
    assert (more["response_code"], more["reason"]) == ("05", "original_authorization_not_found")
    assert await balance(api, biz) == "900.00"


# ================================================================== expiry
async def test_holds_expire_after_the_configured_days_and_release_the_funds(api, app, network):
    biz, card, auth = await _setup(api, app, network)
    hold_days = app.state.services.auth_config.hold_days
    row = await card_transaction(app, auth)
    assert abs(row.hold_expires_at - (utcnow() + timedelta(days=hold_days))) < timedelta(minutes=1)

    assert await expire_due_holds(app, utcnow() + timedelta(days=hold_days - 1), biz) == []
    assert await balance(api, biz) == "900.00"

    assert await expire_due_holds(app, row.hold_expires_at + timedelta(seconds=1), biz) == [auth]

    assert await balance(api, biz) == "1000.00"
    assert await holds_balance(app, biz) == Decimal(0)
    assert await _state(app, auth) == ("expired", Decimal(0), Decimal(0), Decimal("100.00"))
    assert await _txn_status(app, auth) == "canceled"
    assert await spend(app, card) == {DAY: Decimal(0), MONTH: Decimal(0)}
    # An expired authorization can no longer be cleared.
    assert (await network.clear(auth, "100.00", status=409))["error"] == "invalid_state_transition"


async def test_expiry_of_a_partly_cleared_hold_releases_only_the_rest(api, app, network):
    biz, _, auth = await _setup(api, app, network)
    await network.clear(auth, "30.00", final=False)
    row = await card_transaction(app, auth)

    await expire_due_holds(app, row.hold_expires_at + timedelta(seconds=1), biz)

    assert await balance(api, biz) == "970.00"
    assert await _state(app, auth) == ("cleared", Decimal(0), Decimal("30.00"), Decimal("70.00"))
    assert await _txn_status(app, auth) == "succeeded"


# ================================================================== retries
async def test_same_clearing_webhook_id_twice_posts_once(api, app, network):
    _, _, auth = await _setup(api, app, network)
    body = {"id": "clr_replayed", "authorization_id": auth, "amount": "30.00", "currency": "EUR",
            "final": False, "at": iso(utcnow())}

    first = await network.post(CLEARINGS, body, msg_id="msg_clearing_replayed")
    again = await network.post(CLEARINGS, body, msg_id="msg_clearing_replayed")

    assert first.status_code == again.status_code == 200
    assert again.json() == first.json()
    assert await _state(app, auth) == ("approved", Decimal("70.00"), Decimal("30.00"), Decimal(0))


async def test_same_clearing_id_with_a_new_webhook_id_posts_once(api, app, network):
    biz, _, auth = await _setup(api, app, network)
    body = {"id": "clr_sent_twice", "authorization_id": auth, "amount": "30.00", "currency": "EUR",
            "final": False, "at": iso(utcnow())}

    first = await network.post(CLEARINGS, body, msg_id="msg_clearing_1")
    again = await network.post(CLEARINGS, body, msg_id="msg_clearing_2")

    assert first.status_code == again.status_code == 200
    assert await _state(app, auth) == ("approved", Decimal("70.00"), Decimal("30.00"), Decimal(0))
    assert await balance(api, biz) == "900.00"


async def test_same_reversal_id_with_a_new_webhook_id_releases_once(api, app, network):
    biz, _, auth = await _setup(api, app, network)
    body = {"id": "rev_sent_twice", "authorization_id": auth, "amount": "40.00", "at": iso(utcnow())}

    first = await network.post(REVERSALS, body, msg_id="msg_reversal_1")
    again = await network.post(REVERSALS, body, msg_id="msg_reversal_2")

    assert first.status_code == again.status_code == 200
    assert await _state(app, auth) == ("approved", Decimal("60.00"), Decimal(0), Decimal("40.00"))
    assert await balance(api, biz) == "940.00"


# ================================================================== bad input
BAD_CLEARINGS = {
    "missing-id": {"authorization_id": "AUTH", "amount": "10.00", "currency": "EUR"},
    "missing-authorization": {"id": "c1", "amount": "10.00", "currency": "EUR"},
    "missing-amount": {"id": "c1", "authorization_id": "AUTH", "currency": "EUR"},
    "missing-currency": {"id": "c1", "authorization_id": "AUTH", "amount": "10.00"},
    "unknown-currency": {"id": "c1", "authorization_id": "AUTH", "amount": "10.00", "currency": "XYZ"},
    "other-currency": {"id": "c1", "authorization_id": "AUTH", "amount": "10.00", "currency": "GBP"},
    "negative-amount": {"id": "c1", "authorization_id": "AUTH", "amount": "-10.00", "currency": "EUR"},
    "zero-amount": {"id": "c1", "authorization_id": "AUTH", "amount": "0", "currency": "EUR"},
    "three-decimals": {"id": "c1", "authorization_id": "AUTH", "amount": "10.001", "currency": "EUR"},
    "float-amount": {"id": "c1", "authorization_id": "AUTH", "amount": 10.0, "currency": "EUR"},
    "final-a-string": {"id": "c1", "authorization_id": "AUTH", "amount": "10.00", "currency": "EUR",
                       "final": "yes"},
    "authorization-a-number": {"id": "c1", "authorization_id": 7, "amount": "10.00", "currency": "EUR"},
    "a-list": [],
}


@pytest.mark.parametrize("mistake", list(BAD_CLEARINGS))
async def test_bad_clearings_get_a_4xx_json_error(api, app, network, mistake):
    biz, _, auth = await _setup(api, app, network)
    body = BAD_CLEARINGS[mistake]
    if isinstance(body, dict):
        body = {k: (auth if v == "AUTH" else v) for k, v in body.items()}

    r = await network.post(CLEARINGS, body)

    assert 400 <= r.status_code < 500, (r.status_code, r.text)
    assert r.json()["error"]
    assert await balance(api, biz) == "900.00"
    assert await _state(app, auth) == ("approved", Decimal("100.00"), Decimal(0), Decimal(0))


BAD_REVERSALS = {
    "missing-id": {"authorization_id": "AUTH"},
    "missing-authorization": {"id": "r1"},
    "negative-amount": {"id": "r1", "authorization_id": "AUTH", "amount": "-1.00"},
    "zero-amount": {"id": "r1", "authorization_id": "AUTH", "amount": "0.00"},
    "three-decimals": {"id": "r1", "authorization_id": "AUTH", "amount": "1.001"},
    "unknown-currency": {"id": "r1", "authorization_id": "AUTH", "amount": "1.00", "currency": "XYZ"},
    "amount-a-list": {"id": "r1", "authorization_id": "AUTH", "amount": ["1.00"]},
    "a-string": "reverse",
}


@pytest.mark.parametrize("mistake", list(BAD_REVERSALS))
async def test_bad_reversals_get_a_4xx_json_error(api, app, network, mistake):
    biz, _, auth = await _setup(api, app, network)
    body = BAD_REVERSALS[mistake]
    if isinstance(body, dict):
        body = {k: (auth if v == "AUTH" else v) for k, v in body.items()}
    else:
        body = json.dumps(body)

    r = await network.post(REVERSALS, body)

    assert 400 <= r.status_code < 500, (r.status_code, r.text)
    assert r.json()["error"]
    assert await balance(api, biz) == "900.00"
    assert await _state(app, auth) == ("approved", Decimal("100.00"), Decimal(0), Decimal(0))

