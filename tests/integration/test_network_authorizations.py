"""POST /v1/network/authorizations over signed HTTP (NETWORK.md, DESIGN.md section 5).

One test per response code and reason, each card type's rule, dynamic CVV
windows, currency conversion, idempotent retries, signatures and bad input.
Every test starts from a fresh business (Acme GmbH, DE, Europe/Berlin) funded
through GraphQL and checks the money through ``business { balances }``; the
``api`` fixture verifies the whole ledger after each test.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import pytest
from sqlalchemy import func, select

from tests.integration import network_helpers
from tests.integration.network_helpers import (
    AUTHORIZATIONS,
    RESTAURANT,
    THURSDAY_AFTERNOON,
    auth_body,
    balance,
    card_transaction,
    card_transaction_count,
    fraud_alerts_of,
    holds_balance,
    issue_card,
    new_business,
    set_card_status,
    spend,
)
from veix.domain.cards import generate_pan
from veix.domain.dynamic_cvv import dynamic_cvv
from veix.domain.events import utcnow
from veix.domain.fx import DEFAULT_RATES
from veix.persistence.tables import journal_entries, network_messages, outbox, postings, transactions
from veix.security.signatures import signed_headers

network = network_helpers.network  # the fixture: signed HTTP to the app

CASINO_ABROAD = {"name": "Lucky Star Casino", "mcc": "7995", "country": "US", "id": "m_lucky_star"}
SUPERMARKET = {"name": "Biomarkt", "mcc": "5411", "country": "DE", "id": "m_biomarkt"}


def declined(answer: dict[str, Any], code: str, reason: str) -> None:
    assert (answer["approved"], answer["response_code"], answer["reason"]) == (False, code, reason), answer
    assert answer["approved_amount"] == "0.00", answer


def approved(answer: dict[str, Any], amount: str) -> None:
    assert (answer["approved"], answer["response_code"], answer["reason"]) == (True, "00", "approved"), answer
    assert answer["approved_amount"] == amount, answer


# ================================================================== 00
async def test_00_approval_holds_the_amount_and_counts_the_spend(api, app, network):
    biz = await new_business(api, fund="1000.00")
    card = await issue_card(app, biz.id)

    answer = await network.authorize(card, "42.50", at=THURSDAY_AFTERNOON)

    approved(answer, "42.50")
    assert answer["billing_amount"] == "42.50" and answer["billing_currency"] == "EUR"
    assert answer["exchange_rate"] is None
    assert 0 <= answer["risk_score"] < 0.5
    assert await balance(api, biz) == "957.50"
    assert await holds_balance(app, biz) == Decimal("42.50")
    assert await spend(app, card) == {"D2026-11-26": Decimal("42.50"), "M2026-11": Decimal("42.50")}
    row = await card_transaction(app, answer["id"])
    assert str(row.id) == answer["card_transaction_id"]
    assert (row.status, row.held_amount, row.kind) == ("approved", Decimal("42.50"), "purchase")


async def test_the_rows_a_decision_writes_have_ids_in_the_order_they_were_made(api, app, network):
    """UUID version 7 (veix.domain.ids): new rows land at the end of their indexes."""
    biz = await new_business(api, fund="1000.00")
    card = await issue_card(app, biz.id)
    first = await network.authorize(card, "10.00", at=THURSDAY_AFTERNOON)
    await asyncio.sleep(0.002)
    second = await network.authorize(card, "11.00", at=THURSDAY_AFTERNOON)
    rows = [await card_transaction(app, answer["id"]) for answer in (first, second)]
    async with app.state.services.engine.connect() as conn:
        txns = [(await conn.execute(select(transactions.c.id).where(transactions.c.id == r.transaction_id))).scalar_one()
                for r in rows]
        entries = [list((await conn.execute(select(journal_entries.c.id)
                                            .where(journal_entries.c.transaction_id == t))).scalars()) for t in txns]
        lines = [list((await conn.execute(select(postings.c.id).where(postings.c.entry_id.in_(e)))).scalars())
                 for e in entries]
        events = list((await conn.execute(select(outbox.c.id).where(outbox.c.payload["card_id"].as_string()
                                                                   == str(card.raw_id)))).scalars())
    assert len(events) >= 2, events  # card_transaction.created, each
    made = [[r.id, t, *e, *p] for r, t, e, p in zip(rows, txns, entries, lines, strict=True)]
    assert all(len(ids) >= 5 for ids in made), made  # card transaction, transaction, entry, two postings
    assert {value.version for ids in made for value in ids} | {e.version for e in events} == {7}
    assert max(made[0]) < min(made[1])


async def test_00_static_cvv_and_card_token_are_accepted(api, app, network):
    biz = await new_business(api, fund="100.00")
    card = await issue_card(app, biz.id)
    approved(await network.authorize(card, "10.00", cvv=card.cvv), "10.00")
    # A card can also be addressed by its public token instead of the PAN.
    async with app.state.services.engine.connect() as conn:
        from veix.persistence.tables import virtual_cards
        token = (await conn.execute(select(virtual_cards.c.public_token)
                                    .where(virtual_cards.c.id == card.raw_id))).scalar_one()
    body = auth_body(card, "5.00")
    del body["pan"]
    body["card_token"] = token
    r = await network.post(AUTHORIZATIONS, body)
    approved(r.json(), "5.00")
    assert await balance(api, biz) == "85.00"


# ================================================================== 05
async def test_05_card_requiring_approval_declines_and_waits_for_a_person(api, app, network):
    biz = await new_business(api, fund="500.00")
    card = await issue_card(app, biz.id, controls={"requiresApproval": True})

    answer = await network.authorize(card, "120.00")

    declined(answer, "05", "approval_required")
    assert (await card_transaction(app, answer["id"])).status == "pending_approval"
    assert await balance(api, biz) == "500.00"
    assert await holds_balance(app, biz) == Decimal(0)


async def test_05_incremental_for_an_unknown_original_is_not_honoured(api, app, network):
    biz = await new_business(api, fund="500.00")
    card = await issue_card(app, biz.id)

    answer = await network.authorize(card, "20.00", kind="incremental", original_id="auth_never_seen")

    declined(answer, "05", "original_authorization_not_found")
    assert await balance(api, biz) == "500.00"


async def test_05_a_currency_without_an_exchange_rate_is_not_honoured(api, app, network):
    biz = await new_business(api, fund="500.00")
    card = await issue_card(app, biz.id)
    answer = await network.authorize(card, "100.00", "BRL")  # a real currency, not in the rate table
    declined(answer, "05", "currency_not_supported")
    assert await balance(api, biz) == "500.00"


# ================================================================== 14
async def test_14_unknown_but_luhn_valid_pan(api, app, network):
    biz = await new_business(api, fund="100.00")
    card = await issue_card(app, biz.id)
    stranger = generate_pan("400000")  # valid Luhn, issued by nobody here
    assert stranger != card.pan

    answer = await network.authorize(card, "10.00", pan=stranger)

    declined(answer, "14", "unknown_card")
    assert answer["card_transaction_id"] is None
    assert await card_transaction(app, answer["id"]) is None
    assert await balance(api, biz) == "100.00"


async def test_14_expiry_that_does_not_match_the_card(api, app, network):
    biz = await new_business(api, fund="100.00")
    card = await issue_card(app, biz.id)
    year, month = card.expiry.split("-")
    wrong = f"{int(year) + 1}-{month}"

    answer = await network.authorize(card, "10.00", expiry=wrong)

    declined(answer, "14", "expiry_mismatch")
    assert await balance(api, biz) == "100.00"
    assert (await card_transaction(app, answer["id"])).status == "declined"


async def test_14_cvv_that_is_neither_the_static_nor_the_dynamic_one(api, app, network):
    biz = await new_business(api, fund="100.00")
    card = await issue_card(app, biz.id)
    now = utcnow()
    current = dynamic_cvv(app.state.services.auth_config.dcvv_secret, card.pan, card.expiry, now,
                          window_seconds=app.state.services.auth_config.dcvv_window_seconds)
    wrong = next(c for c in (f"{n:03d}" for n in range(1000)) if c not in {card.cvv, current})

    answer = await network.authorize(card, "10.00", cvv=wrong, at=now)

    declined(answer, "14", "cvv_mismatch")
    assert await balance(api, biz) == "100.00"


async def test_14_closed_card(api, app, network):
    biz = await new_business(api, fund="100.00")
    card = await issue_card(app, biz.id)
    await set_card_status(app, card, "CLOSED")

    declined(await network.authorize(card, "10.00"), "14", "card_closed")
    assert await balance(api, biz) == "100.00"


# ================================================================== 51
async def test_51_insufficient_funds_and_the_exact_balance_still_approves(api, app, network):
    biz = await new_business(api, fund="100.00")
    card = await issue_card(app, biz.id)

    declined(await network.authorize(card, "100.01"), "51", "insufficient_funds")
    assert await balance(api, biz) == "100.00"
    approved(await network.authorize(card, "100.00"), "100.00")
    assert await balance(api, biz) == "0.00"
    declined(await network.authorize(card, "0.01"), "51", "insufficient_funds")


# ================================================================== 54
async def test_54_card_whose_status_is_expired(api, app, network):
    biz = await new_business(api, fund="100.00")
    card = await issue_card(app, biz.id)
    await set_card_status(app, card, "EXPIRED")

    declined(await network.authorize(card, "10.00"), "54", "card_expired")
    assert await balance(api, biz) == "100.00"


async def test_54_authorization_after_the_expiry_date(api, app, network):
    biz = await new_business(api, fund="100.00")
    card = await issue_card(app, biz.id)
    year, month = (int(x) for x in card.expiry.split("-"))
    first_of_next_month = f"{year + (month == 12)}-{month % 12 + 1:02d}-01T12:00:00Z"

    declined(await network.authorize(card, "10.00", at=first_of_next_month), "54", "card_expired")
    # The last day of the expiry month is still valid.
    approved(await network.authorize(card, "10.00", at=f"{card.expiry}-28T12:00:00Z"), "10.00")


# ================================================================== 57
async def test_57_blocked_merchant_category(api, app, network):
    biz = await new_business(api, fund="100.00")
    card = await issue_card(app, biz.id, controls={"blockedMerchantCategories": ["7995", "5411"]})

    declined(await network.authorize(card, "10.00", merchant=SUPERMARKET), "57", "merchant_category_blocked")
    approved(await network.authorize(card, "10.00", merchant=RESTAURANT), "10.00")
    assert await balance(api, biz) == "90.00"


async def test_57_merchant_category_outside_the_allowed_ones(api, app, network):
    biz = await new_business(api, fund="100.00")
    card = await issue_card(app, biz.id, controls={"allowedMerchantCategories": ["5812", "5814"]})

    declined(await network.authorize(card, "10.00", merchant=SUPERMARKET), "57",
             "merchant_category_not_allowed")
    approved(await network.authorize(card, "10.00", merchant=RESTAURANT), "10.00")


async def test_57_inactive_card(api, app, network):
    biz = await new_business(api, fund="100.00")
    card = await issue_card(app, biz.id)
    await set_card_status(app, card, "INACTIVE")

    declined(await network.authorize(card, "10.00"), "57", "card_inactive")
    assert await balance(api, biz) == "100.00"


# ================================================================== 59
async def test_59_rapid_large_authorizations_at_a_foreign_casino_are_declined_as_fraud(api, app, network):
    """RulesScorer: foreign merchant (0.15) and high-risk MCC 7995 (0.35) give
    1 - 0.85 * 0.65 = 0.4475: approved. The sixth within 10 minutes adds
    velocity count (0.45), velocity amount (1,500 + 600 > 2,000: 0.45) and an
    amount spike (600 > 1.5 x 300: 0.35): 1 - 0.5525 * 0.55 * 0.55 * 0.65 = 0.891 >= 0.8."""
    biz = await new_business(api, fund="5000.00")
    card = await issue_card(app, biz.id)
    for _ in range(5):
        answer = await network.authorize(card, "300.00", merchant=CASINO_ABROAD, at=THURSDAY_AFTERNOON)
        approved(answer, "300.00")
        assert answer["risk_score"] == pytest.approx(0.4475)
    assert await fraud_alerts_of(app, card) == []

    answer = await network.authorize(card, "600.00", merchant=CASINO_ABROAD, at=THURSDAY_AFTERNOON)

    declined(answer, "59", "suspected_fraud")
    assert answer["risk_score"] == pytest.approx(0.8914, abs=1e-4)
    assert await balance(api, biz) == "3500.00"
    [alert] = await fraud_alerts_of(app, card)
    assert alert.action == "decline"
    assert set(alert.reasons) >= {"velocity_count_10m", "velocity_amount_10m", "amount_above_history",
                                  "foreign_merchant", "high_risk_mcc"}
    row = await card_transaction(app, answer["id"])
    assert (row.status, row.response_code) == ("declined", "59")


async def test_review_band_approves_and_raises_an_alert(api, app, network):
    """Foreign casino at 02:00 Berlin: 1 - 0.85 * 0.65 * 0.9 = 0.5028, between 0.5 and 0.8."""
    biz = await new_business(api, fund="500.00")
    card = await issue_card(app, biz.id)

    answer = await network.authorize(card, "50.00", merchant=CASINO_ABROAD, at="2026-11-26T01:00:00Z")

    approved(answer, "50.00")
    assert answer["risk_score"] == pytest.approx(0.5028, abs=1e-4)
    [alert] = await fraud_alerts_of(app, card)
    assert alert.action == "review"
    assert await balance(api, biz) == "450.00"


# ================================================================== 61
async def test_61_above_the_maximum_per_transaction(api, app, network):
    biz = await new_business(api, fund="1000.00")
    card = await issue_card(app, biz.id, controls={"maxTransactionAmount": "100.00"})

    declined(await network.authorize(card, "100.01"), "61", "transaction_limit_exceeded")
    approved(await network.authorize(card, "100.00"), "100.00")
    assert await balance(api, biz) == "900.00"


async def test_61_daily_limit_counts_the_business_local_day(api, app, network):
    biz = await new_business(api, fund="1000.00")
    card = await issue_card(app, biz.id, controls={"dailyLimit": "100.00"})

    approved(await network.authorize(card, "60.00", at="2026-11-26T10:00:00Z"), "60.00")
    declined(await network.authorize(card, "50.00", at="2026-11-26T11:00:00Z"), "61", "daily_limit_exceeded")
    approved(await network.authorize(card, "40.00", at="2026-11-26T12:00:00Z"), "40.00")
    declined(await network.authorize(card, "0.01", at="2026-11-26T22:59:00Z"), "61", "daily_limit_exceeded")
    # 23:30 UTC is already the 27th in Berlin: a new day for the limit.
    approved(await network.authorize(card, "50.00", at="2026-11-26T23:30:00Z"), "50.00")
    assert await spend(app, card) == {"D2026-11-26": Decimal("100.00"), "D2026-11-27": Decimal("50.00"),
                                      "M2026-11": Decimal("150.00")}
    assert await balance(api, biz) == "850.00"


async def test_61_monthly_limit(api, app, network):
    biz = await new_business(api, fund="1000.00")
    card = await issue_card(app, biz.id, controls={"dailyLimit": "100.00", "monthlyLimit": "150.00"})

    approved(await network.authorize(card, "90.00", at="2026-11-02T10:00:00Z"), "90.00")
    declined(await network.authorize(card, "90.00", at="2026-11-03T10:00:00Z"), "61", "monthly_limit_exceeded")
    approved(await network.authorize(card, "60.00", at="2026-11-03T10:00:00Z"), "60.00")
    # December is a new month.
    approved(await network.authorize(card, "90.00", at="2026-12-01T10:00:00Z"), "90.00")
    assert await balance(api, biz) == "760.00"


async def test_61_card_spending_limit(api, app, network):
    biz = await new_business(api, fund="1000.00")
    card = await issue_card(app, biz.id, spending_limit="50.00")

    approved(await network.authorize(card, "30.00"), "30.00")
    declined(await network.authorize(card, "20.01"), "61", "spending_limit_exceeded")


# ================================================================== 62
async def test_62_blocked_country(api, app, network):
    biz = await new_business(api, fund="100.00")
    card = await issue_card(app, biz.id, controls={"blockedCountries": ["RU", "US"]})

    declined(await network.authorize(card, "10.00", merchant={**RESTAURANT, "country": "US"}), "62",
             "country_blocked")
    approved(await network.authorize(card, "10.00", merchant={**RESTAURANT, "country": "FR"}), "10.00")


async def test_62_country_outside_the_allowed_ones(api, app, network):
    biz = await new_business(api, fund="100.00")
    card = await issue_card(app, biz.id, controls={"allowedCountries": ["DE", "AT", "FR"]})

    declined(await network.authorize(card, "10.00", merchant={**RESTAURANT, "country": "GB"}), "62",
             "country_not_allowed")
    approved(await network.authorize(card, "10.00", merchant={**RESTAURANT, "country": "AT"}), "10.00")


async def test_62_frozen_card_and_unfrozen_again(api, app, network):
    biz = await new_business(api, fund="100.00")
    card = await issue_card(app, biz.id)
    await set_card_status(app, card, "FROZEN")

    declined(await network.authorize(card, "10.00"), "62", "card_frozen")
    assert await balance(api, biz) == "100.00"
    await set_card_status(app, card, "ACTIVE")
    approved(await network.authorize(card, "10.00"), "10.00")


async def test_62_weekday_outside_the_allowed_days_in_the_business_time_zone(api, app, network):
    biz = await new_business(api, fund="100.00")
    card = await issue_card(app, biz.id, controls={"allowedDays": [1, 2, 3, 4, 5]})

    declined(await network.authorize(card, "10.00", at="2026-11-28T11:00:00Z"), "62", "day_not_allowed")
    # Friday 23:30 UTC is Saturday 00:30 in Berlin.
    declined(await network.authorize(card, "10.00", at="2026-11-27T23:30:00Z"), "62", "day_not_allowed")
    approved(await network.authorize(card, "10.00", at="2026-11-27T22:30:00Z"), "10.00")


async def test_62_hour_outside_the_allowed_hours_in_the_business_time_zone(api, app, network):
    biz = await new_business(api, fund="100.00")
    card = await issue_card(app, biz.id, controls={"allowedHours": list(range(9, 18))})

    # 07:30 UTC is 08:30 in Berlin (before 9); 08:30 UTC is 09:30 in Berlin.
    declined(await network.authorize(card, "10.00", at="2026-11-26T07:30:00Z"), "62", "hour_not_allowed")
    approved(await network.authorize(card, "10.00", at="2026-11-26T08:30:00Z"), "10.00")
    declined(await network.authorize(card, "10.00", at="2026-11-26T17:00:00Z"), "62", "hour_not_allowed")


# ================================================================== 65
async def test_65_more_authorizations_in_an_hour_than_allowed(api, app, network):
    limit = app.state.services.auth_config.max_authorizations_per_hour
    biz = await new_business(api, fund="1000.00")
    card = await issue_card(app, biz.id)

    for _ in range(limit):
        approved(await network.authorize(card, "1.00", at=THURSDAY_AFTERNOON), "1.00")
    declined(await network.authorize(card, "1.00", at=THURSDAY_AFTERNOON), "65", "frequency_limit_exceeded")
    assert await balance(api, biz) == str(Decimal("1000.00") - limit)


# ================================================================== card types
async def test_single_use_card_closes_after_its_first_approval(api, app, network):
    biz = await new_business(api, fund="100.00")
    card = await issue_card(app, biz.id, type="SINGLE_USE")

    declined(await network.authorize(card, "100.01"), "51", "insufficient_funds")  # a decline keeps it open
    approved(await network.authorize(card, "25.00"), "25.00")
    declined(await network.authorize(card, "5.00"), "14", "card_closed")
    assert await balance(api, biz) == "75.00"


async def test_subscription_card_pays_only_its_merchant(api, app, network):
    biz = await new_business(api, fund="100.00")
    card = await issue_card(app, biz.id, type="SUBSCRIPTION", merchant_lock="StreamFlix")
    streamflix = {"name": "STREAMFLIX", "mcc": "4899", "country": "DE", "id": "m_streamflix"}

    approved(await network.authorize(card, "12.99", merchant=streamflix), "12.99")
    declined(await network.authorize(card, "12.99", merchant=RESTAURANT), "62", "merchant_not_allowed")
    assert await balance(api, biz) == "87.01"


async def test_prepaid_card_spends_only_its_own_balance(api, app, network):
    biz = await new_business(api, fund="1000.00")
    card = await issue_card(app, biz.id, type="PREPAID", spending_limit="50.00")
    assert await balance(api, biz) == "950.00"  # loaded from the business balance

    declined(await network.authorize(card, "50.01"), "51", "insufficient_funds")
    approved(await network.authorize(card, "30.00"), "30.00")
    declined(await network.authorize(card, "20.01"), "51", "insufficient_funds")
    approved(await network.authorize(card, "20.00"), "20.00")
    assert await balance(api, biz) == "950.00"  # the business balance is untouched


# ================================================================== dynamic CVV
async def test_dynamic_cvv_of_the_current_window_approves_an_old_one_declines(api, app, network):
    cfg = app.state.services.auth_config
    biz = await new_business(api, fund="100.00")
    card = await issue_card(app, biz.id)
    now = utcnow()

    def dcvv(at: Any) -> str:
        return dynamic_cvv(cfg.dcvv_secret, card.pan, card.expiry, at, window_seconds=cfg.dcvv_window_seconds)

    current = dcvv(now)
    # Ten minutes back (or further, should that window's code collide with an accepted one).
    old = next(code for minutes in range(10, 200, 5)
               if (code := dcvv(now - timedelta(minutes=minutes))) not in {current, card.cvv})

    approved(await network.authorize(card, "10.00", cvv=current, at=now), "10.00")
    declined(await network.authorize(card, "10.00", cvv=old, at=now), "14", "cvv_mismatch")
    assert await balance(api, biz) == "90.00"


# ================================================================== FX
async def test_foreign_currency_is_billed_at_the_stored_rate(api, app, network):
    biz = await new_business(api, fund="1000.00")
    card = await issue_card(app, biz.id)  # EUR card
    rate = DEFAULT_RATES.rate("USD", "EUR")
    billing = (Decimal("100.00") * rate).quantize(Decimal("0.01"), ROUND_HALF_UP)

    answer = await network.authorize(card, "100.00", "USD", merchant={**RESTAURANT, "country": "US"})

    approved(answer, "100.00")
    assert answer["billing_amount"] == str(billing) == "92.57"
    assert (answer["billing_currency"], answer["exchange_rate"]) == ("EUR", str(rate))
    assert await balance(api, biz) == str(Decimal("1000.00") - billing)
    row = await card_transaction(app, answer["id"])
    assert (row.original_amount, row.original_currency) == (Decimal("100.00"), "USD")
    assert (row.billing_amount, row.exchange_rate) == (billing, rate)


async def test_usd_card_billed_for_a_euro_purchase(api, app, network):
    biz = await new_business(api, fund="500.00", currency="USD")
    card = await issue_card(app, biz.id, currency="USD")

    answer = await network.authorize(card, "50.00", "EUR")

    approved(answer, "50.00")
    assert (answer["billing_amount"], answer["exchange_rate"]) == ("54.01", "1.080235")  # 54.01175
    assert await balance(api, biz, "USD") == "445.99"


async def test_limits_apply_to_the_billed_amount(api, app, network):
    biz = await new_business(api, fund="1000.00")
    card = await issue_card(app, biz.id, controls={"maxTransactionAmount": "100.00"})
    # 108.00 USD is 99.98 EUR: within the 100 EUR maximum; 108.03 USD is 100.01 EUR.
    approved(await network.authorize(card, "108.00", "USD"), "108.00")
    declined(await network.authorize(card, "108.03", "USD"), "61", "transaction_limit_exceeded")


# ================================================================== idempotency
async def test_same_network_id_twice_gives_the_same_answer_and_one_hold(api, app, network):
    biz = await new_business(api, fund="100.00")
    card = await issue_card(app, biz.id)
    body = auth_body(card, "30.00", "USD")

    first = await network.post(AUTHORIZATIONS, body, msg_id="msg_first")
    again = await network.post(AUTHORIZATIONS, body, msg_id="msg_retry")  # a new delivery of the same auth

    assert first.status_code == again.status_code == 200
    assert first.json() == again.json()
    approved(first.json(), "30.00")
    assert await card_transaction_count(app, card) == 1
    assert await holds_balance(app, biz) == Decimal(first.json()["billing_amount"])
    assert await balance(api, biz) == str(Decimal("100.00") - Decimal(first.json()["billing_amount"]))


async def test_same_network_id_with_other_details_still_gets_the_original_answer(api, app, network):
    biz = await new_business(api, fund="100.00")
    card = await issue_card(app, biz.id)
    first = await network.authorize(card, "30.00", network_id="auth_dup_details")
    again = await network.authorize(card, "90.00", network_id="auth_dup_details")
    assert again == first
    assert await balance(api, biz) == "70.00"


async def test_same_webhook_id_twice_returns_the_stored_answer(api, app, network):
    biz = await new_business(api, fund="100.00")
    card = await issue_card(app, biz.id)
    body = auth_body(card, "100.00")

    first = await network.post(AUTHORIZATIONS, body, msg_id="msg_replayed")
    replay = await network.post(AUTHORIZATIONS, body, msg_id="msg_replayed")

    assert first.status_code == replay.status_code == 200
    assert replay.json() == first.json()
    approved(replay.json(), "100.00")
    assert await card_transaction_count(app, card) == 1
    assert await balance(api, biz) == "0.00"


async def test_quotes_backslashes_and_braces_are_stored_as_sent(api, app, network):
    """Text that needs quoting, in scalars, JSON and arrays, arrives unchanged
    and changes nothing else, also where PostgreSQL gets it as a literal (the
    locked path's lock statement: EXECUTE ... with BEGIN in one round trip)."""
    biz = await new_business(api, fund="100.00")
    card = await issue_card(app, biz.id)
    name = "O'Brien's \"Bar\" \\ {a,b} ''; DROP TABLE outbox; --"
    network_id = "auth_'\"\\{x}"
    body = auth_body(card, "12.00", network_id=network_id,
                     merchant={**RESTAURANT, "name": name, "id": "m_'\\\"{}"})

    first = await network.post(AUTHORIZATIONS, body, msg_id="msg_'quoted\\")
    replay = await network.post(AUTHORIZATIONS, body, msg_id="msg_'quoted\\")

    approved(first.json(), "12.00")
    assert replay.json() == first.json()
    row = await card_transaction(app, network_id)
    assert (row.merchant_name, row.merchant_id) == (name, "m_'\\\"{}")
    assert await card_transaction_count(app, card) == 1
    assert await balance(api, biz) == "88.00"
    by_token = {k: v for k, v in auth_body(card, "1.00").items() if k != "pan"}
    tokens = ("ct_x' OR '1'='1", "ct_\\'; SELECT pg_sleep(1); --", card.pan + "'")
    for token in tokens:
        declined((await network.post(AUTHORIZATIONS, {**by_token, "card_token": token})).json(), "14",
                 "unknown_card")
    pool = app.state.services.fast_pool
    if pool is not None:
        # The locked path's lock statement takes the card's key as a literal (see fast_pg): quotes are data.
        from veix.persistence import fast_pg

        async with pool.connection() as conn:
            for token in tokens:
                sql = await fast_pg._execute_text(conn, fast_pg._LOCK_SQL.format(where="public_token = $1"),
                                                  (token,))
                assert sql is not None and sql.startswith("EXECUTE ")
                async with conn.transaction():
                    assert await conn.fetch(sql) == []
    assert await balance(api, biz) == "88.00"


async def test_postgres_sends_begin_with_the_card_lock(api, app, network, monkeypatch):
    """On PostgreSQL a decision that runs under the card's lock (here: one the
    optimistic attempt does not make, see test_network_optimistic) sends the
    lock with BEGIN (its key as a literal), so none falls back to the slower
    path (one more round trip); an optimistic decision takes no lock first."""
    from veix.persistence import fast_pg

    if app.state.services.fast_pool is None:
        pytest.skip("the asyncpg hot path runs on PostgreSQL only")
    sent = []
    execute_text = fast_pg._execute_text

    async def recording(conn: Any, sql: str, args: Any) -> str | None:
        text = await execute_text(conn, sql, args)
        sent.append((text is not None, [type(a).__name__ for a in args]))
        return text

    monkeypatch.setattr(fast_pg, "_execute_text", recording)
    biz = await new_business(api, fund="100.00")
    card = await issue_card(app, biz.id)
    first = await network.post(AUTHORIZATIONS, auth_body(card, "12.00"))
    approved(first.json(), "12.00")
    approved((await network.post(AUTHORIZATIONS, auth_body(card, "13.00", currency="USD"))).json(), "13.00")
    declined((await network.post(AUTHORIZATIONS, auth_body(card, "500.00"))).json(), "51", "insufficient_funds")
    assert sent == []  # optimistic: no lock statement

    approved((await network.post(AUTHORIZATIONS, auth_body(card, "2.00", kind="incremental",
                                                           original_id=first.json()["id"]))).json(), "2.00")
    single = await issue_card(app, biz.id, type="SINGLE_USE")
    approved((await network.post(AUTHORIZATIONS, auth_body(single, "3.00"))).json(), "3.00")

    assert len(sent) == 2 and all(ok for ok, _ in sent), sent


async def test_postgres_an_unexpected_failure_is_a_500_with_a_json_body(api, app, network, monkeypatch, caplog):
    """Authorizations skip Starlette's middleware on PostgreSQL (NetworkFrontDoor):
    what it would have caught still becomes a 500, with a JSON body, logged;
    other methods on the path still get Starlette's 405."""
    from veix.resolvers import network as net

    if app.state.services.fast_pool is None:
        pytest.skip("the front door serves the asyncpg hot path (PostgreSQL)")
    biz = await new_business(api, fund="100.00")
    card = await issue_card(app, biz.id)

    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("the decision broke")

    monkeypatch.setattr(net, "run_authorization", broken)
    r = await network.post(AUTHORIZATIONS, auth_body(card, "10.00"))
    assert r.status_code == 500
    assert r.json() == {"error": "internal_error", "message": "The authorization could not be decided"}
    assert "the decision broke" in caplog.text
    assert card.pan not in r.text
    assert (await network.client.get(AUTHORIZATIONS)).status_code == 405
    assert await balance(api, biz) == "100.00"


async def test_a_rejected_malformed_message_can_be_fixed_and_resent_with_its_webhook_id(api, app, network):
    biz = await new_business(api, fund="100.00")
    card = await issue_card(app, biz.id)
    bad = await network.post(AUTHORIZATIONS, auth_body(card, "10.001"), msg_id="msg_fixed_later")
    assert bad.status_code == 400
    good = await network.post(AUTHORIZATIONS, auth_body(card, "10.00"), msg_id="msg_fixed_later")
    approved(good.json(), "10.00")


# ================================================================== signatures
def _other_secret() -> str:
    import base64
    import secrets
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


async def _stored_messages(app: Any) -> int:
    async with app.state.services.engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(network_messages))).scalar_one())


async def _assert_unauthenticated_and_nothing_changed(api, app, network, biz, card, response, before) -> None:
    assert response.status_code == 401, response.text
    assert response.json()["error"] == "invalid_signature"
    assert await balance(api, biz) == "100.00"
    assert await card_transaction_count(app, card) == 0
    assert await _stored_messages(app) == before


@pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
async def test_401_when_a_signature_header_is_missing(api, app, network, missing):
    biz = await new_business(api, fund="100.00")
    card = await issue_card(app, biz.id)
    before = await _stored_messages(app)
    raw = json.dumps(auth_body(card, "10.00")).encode()
    headers = signed_headers(app.state.services.network_secret, f"msg_{uuid.uuid4().hex}", raw)
    del headers[missing]

    r = await network.client.post(AUTHORIZATIONS, content=raw, headers=headers)

    await _assert_unauthenticated_and_nothing_changed(api, app, network, biz, card, r, before)


async def test_401_when_signed_with_another_secret(api, app, network):
    biz = await new_business(api, fund="100.00")
    card = await issue_card(app, biz.id)
    before = await _stored_messages(app)
    r = await network.post(AUTHORIZATIONS, auth_body(card, "10.00"), secret=_other_secret())
    await _assert_unauthenticated_and_nothing_changed(api, app, network, biz, card, r, before)


async def test_401_when_the_body_was_changed_after_signing(api, app, network):
    biz = await new_business(api, fund="100.00")
    card = await issue_card(app, biz.id)
    before = await _stored_messages(app)
    signed = json.dumps(auth_body(card, "1.00")).encode()
    sent = signed.replace(b'"1.00"', b'"99.00"')
    headers = signed_headers(app.state.services.network_secret, f"msg_{uuid.uuid4().hex}", signed)
    r = await network.client.post(AUTHORIZATIONS, content=sent, headers=headers)
    await _assert_unauthenticated_and_nothing_changed(api, app, network, biz, card, r, before)


@pytest.mark.parametrize("offset", [-301, 301, -3600], ids=["stale", "future", "an-hour-old"])
async def test_401_when_the_timestamp_is_more_than_300_seconds_away(api, app, network, offset):
    biz = await new_business(api, fund="100.00")
    card = await issue_card(app, biz.id)
    before = await _stored_messages(app)
    r = await network.post(AUTHORIZATIONS, auth_body(card, "10.00"), timestamp=int(time.time()) + offset)
    await _assert_unauthenticated_and_nothing_changed(api, app, network, biz, card, r, before)


async def test_a_401_is_not_remembered_for_the_webhook_id(api, app, network):
    biz = await new_business(api, fund="100.00")
    card = await issue_card(app, biz.id)
    body = auth_body(card, "10.00")
    bad = await network.post(AUTHORIZATIONS, body, msg_id="msg_after_401", secret=_other_secret())
    assert bad.status_code == 401
    good = await network.post(AUTHORIZATIONS, body, msg_id="msg_after_401")
    approved(good.json(), "10.00")


async def test_a_signature_under_any_listed_secret_is_accepted_during_rotation(api, app, network):
    biz = await new_business(api, fund="100.00")
    card = await issue_card(app, biz.id)
    raw = json.dumps(auth_body(card, "10.00")).encode()
    ts = int(time.time())
    real = signed_headers(app.state.services.network_secret, "msg_rotation", raw, timestamp=ts)
    old = signed_headers(_other_secret(), "msg_rotation", raw, timestamp=ts)
    headers = {**real, "webhook-signature": f"{old['webhook-signature']} {real['webhook-signature']}"}
    r = await network.client.post(AUTHORIZATIONS, content=raw, headers=headers)
    approved(r.json(), "10.00")


# ================================================================== bad input
def _without(key: str):
    def change(body: dict[str, Any]) -> None:
        del body[key]
    return change


def _set(key: str, value: Any):
    def change(body: dict[str, Any]) -> None:
        body[key] = value
    return change


def _merchant(key: str, value: Any):
    def change(body: dict[str, Any]) -> None:
        if value is _DELETE:
            del body["merchant"][key]
        else:
            body["merchant"][key] = value
    return change


_DELETE = object()

BAD_AUTHORIZATIONS = {
    "pan-not-luhn": _set("pan", "4242424242424241"),
    "pan-with-letters": _set("pan", "4242ABCD42424242"),
    "pan-too-short": _set("pan", "42424242"),
    "pan-a-number": _set("pan", 4242424242424242),
    "pan-with-superscript-digit": _set("pan", "4242424242²42424"),
    "pan-and-token": _set("card_token", "ct_x"),
    "no-card": _without("pan"),
    "unknown-currency": _set("currency", "XYZ"),
    "lowercase-currency": _set("currency", "eur"),
    "currency-a-number": _set("currency", 978),
    "negative-amount": _set("amount", "-10.00"),
    "zero-amount": _set("amount", "0.00"),
    "three-decimals": _set("amount", "10.001"),
    "amount-a-float": _set("amount", 10.5),
    "amount-a-boolean": _set("amount", True),
    "amount-not-a-number": _set("amount", "ten"),
    "amount-nan": _set("amount", "NaN"),
    "amount-infinite": _set("amount", "Infinity"),
    "amount-huge": _set("amount", "1" + "0" * 40),
    "amount-missing": _without("amount"),
    "mcc-letters": _merchant("mcc", "ABCD"),
    "mcc-three-digits": _merchant("mcc", "581"),
    "mcc-a-number": _merchant("mcc", 5812),
    "merchant-country-unknown": _merchant("country", "XX"),
    "merchant-name-missing": _merchant("name", _DELETE),
    "merchant-a-string": _set("merchant", "ACME"),
    "merchant-missing": _without("merchant"),
    "id-missing": _without("id"),
    "id-empty": _set("id", ""),
    "id-a-number": _set("id", 12345),
    "id-too-long": _set("id", "a" * 129),
    "expiry-malformed": _set("expiry", "11/29"),
    "expiry-month-13": _set("expiry", "2029-13"),
    "expiry-superscript-month": _set("expiry", "2029-1²"),
    "cvv-letters": _set("cvv", "12a"),
    "cvv-a-number": _set("cvv", 123),
    "kind-unknown": _set("kind", "cash_advance"),
    "kind-a-list": _set("kind", ["purchase"]),
    "incremental-without-original": _set("kind", "incremental"),
    "at-not-a-time": _set("at", "yesterday"),
    "at-without-time-zone": _set("at", "2026-11-26T13:05:00"),
    "at-a-number": _set("at", 1764162300),
    "at-before-year-one-in-utc": _set("at", "0001-01-01T00:10:00+05:00"),
    "at-year-9999": _set("at", "9999-12-31T23:30:00Z"),
}


KNOWN_500S: dict[str, str] = {}  # every malformed input gets a 4xx


def _cases(mistakes: dict[str, Any], bugs: dict[str, str]) -> list[Any]:
    return [pytest.param(name, id=name, marks=[pytest.mark.xfail(strict=True, reason=bugs[name])]
                         if name in bugs else []) for name in mistakes]


@pytest.mark.parametrize("mistake", _cases(BAD_AUTHORIZATIONS, KNOWN_500S))
async def test_bad_input_gets_a_4xx_json_error_never_a_500(api, app, network, mistake):
    biz = await new_business(api, fund="100.00")
    card = await issue_card(app, biz.id)
    body = auth_body(card, "10.00")
    BAD_AUTHORIZATIONS[mistake](body)

    r = await network.post(AUTHORIZATIONS, body)

    assert 400 <= r.status_code < 500, (r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/json")
    assert r.json()["error"] and r.json()["message"]
    assert await balance(api, biz) == "100.00"
    assert await card_transaction_count(app, card) == 0


BAD_BODIES = {
    "not-json": b"{not json",
    "empty": b"",
    "truncated": b'{"id": "auth_1", "amount": ',
    "not-utf8": b'{"id": "\xff\xfe"}',
    "a-list": b"[]",
    "a-string": b'"authorize me"',
    "null": b"null",
    "deeply-nested": b"[" * 30_000 + b"]" * 30_000,
}


@pytest.mark.parametrize("name", _cases(BAD_BODIES, {}))
async def test_malformed_bodies_get_a_4xx_json_error(api, app, network, name):
    r = await network.post(AUTHORIZATIONS, BAD_BODIES[name])
    assert 400 <= r.status_code < 500, (r.status_code, r.text)
    assert r.json()["error"]


async def test_too_large_body_is_refused(api, app, network):
    r = await network.post(AUTHORIZATIONS, b"{" + b" " * 70_000 + b"}")
    assert r.status_code == 413 and r.json()["error"] == "too_large"


async def test_unknown_card_by_token_declines_14(api, app, network):
    biz = await new_business(api, fund="100.00")
    card = await issue_card(app, biz.id)
    body = auth_body(card, "10.00", card_token="ct_nobody")
    del body["pan"]
    r = await network.post(AUTHORIZATIONS, body)
    declined(r.json(), "14", "unknown_card")
