"""Payment rules: state machine, stale webhooks, fees, card input, routing and failover."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from veix.domain import payments as rules
from veix.domain.errors import InvalidInput, InvalidStateTransition, UnsupportedCurrency
from veix.domain.gateway import GatewayPaymentStatus, GatewayUnavailable, PaymentMethodType, PaymentRequest
from veix.domain.routing import candidates, parse_routes, route
from veix.domain.transactions import Gateway
from veix.domain.transactions import TransactionStatus as S
from veix.gateways.sandbox import SandboxGateway

NOW = datetime(2026, 11, 26, 12, tzinfo=UTC)
STATUSES = list(S)


# ---------------------------------------------------------------- state machine

def test_failed_canceled_and_refunded_payments_are_final() -> None:
    for final in (S.FAILED, S.CANCELED, S.REFUNDED):
        for target in STATUSES:
            assert not rules.can_transition(final, target)


def test_an_illegal_transition_is_an_error_with_its_code() -> None:
    with pytest.raises(InvalidStateTransition) as err:
        rules.check_transition(S.FAILED, S.SUCCEEDED)
    assert err.value.code.value == "INVALID_STATE_TRANSITION"


def test_a_late_processing_event_is_stale_after_success_but_not_before() -> None:
    assert rules.is_stale(S.SUCCEEDED, S.PROCESSING)
    assert rules.is_stale(S.REFUNDED, S.SUCCEEDED)
    assert not rules.is_stale(S.REQUIRES_ACTION, S.PROCESSING)
    assert not rules.is_stale(S.PROCESSING, S.SUCCEEDED)


@given(st.sampled_from(STATUSES), st.sampled_from(STATUSES))
def test_an_event_is_either_applicable_or_stale_or_refused(current: S, target: S) -> None:
    # Never both: an allowed move is not stale (except repeating the same status).
    if rules.can_transition(current, target) and current is not target:
        assert not rules.is_stale(current, target)


@given(st.decimals(min_value=Decimal("0.01"), max_value=Decimal("1000000"), places=2),
       st.decimals(min_value=0, max_value=Decimal("1000000"), places=2))
def test_refunds_never_leave_a_captured_payment_in_an_impossible_status(captured: Decimal, refunded: Decimal) -> None:
    status = rules.status_after_refunds(captured, min(refunded, captured))
    assert status in (S.SUCCEEDED, S.PARTIALLY_REFUNDED, S.REFUNDED)
    assert (status is S.REFUNDED) == (min(refunded, captured) >= captured)


def test_every_gateway_status_maps_to_a_payment_status() -> None:
    assert {rules.status_of(s) for s in GatewayPaymentStatus} <= set(STATUSES)
    assert rules.status_of(GatewayPaymentStatus.AUTHORIZED) is S.PENDING


# ---------------------------------------------------------------- fees

@given(st.decimals(min_value=Decimal("0.01"), max_value=Decimal("10000000"), places=2))
def test_the_fee_is_exact_in_the_currency_and_never_more_than_the_amount(amount: Decimal) -> None:
    fee = rules.FeeSchedule(Decimal("2.9"), 30).fee(amount, "EUR")
    assert fee == fee.quantize(Decimal("0.01")) and Decimal(0) <= fee <= amount


def test_fees_round_half_up_and_know_zero_decimal_currencies() -> None:
    schedule = rules.FeeSchedule(Decimal("2.9"), 30)
    assert schedule.fee(Decimal("100.00"), "EUR") == Decimal("3.20")
    assert schedule.fee(Decimal("0.10"), "EUR") == Decimal("0.10")  # capped at the amount
    assert schedule.fee(Decimal("1000"), "JPY") == Decimal("59")  # 29 + 30 yen


# ---------------------------------------------------------------- card input

def test_luhn_and_brands() -> None:
    assert rules.luhn_valid("4242424242424242") and not rules.luhn_valid("4242424242424241")
    assert rules.card_display("5555555555554444") == "Mastercard •••• 4444"
    assert rules.brand_of("378282246310005") is rules.CardBrand.AMEX


@pytest.mark.parametrize(("number", "month", "year", "cvc", "field"), [
    ("4242 4242 4242 4241", 12, 2030, "123", "number"),
    ("42424242", 12, 2030, "123", "number"),
    ("4242424242424242", 0, 2030, "123", "expMonth"),
    ("4242424242424242", 10, 2026, "123", "expMonth"),  # October 2026 is over on 26 November
    ("4242424242424242", 12, 2030, "12a", "cvc"),
    ("378282246310005", 12, 2030, "123", "cvc"),  # Amex takes 4
])
def test_bad_cards_name_the_field_and_never_echo_the_number(number, month, year, cvc, field) -> None:
    with pytest.raises(InvalidInput) as err:
        rules.validate_card(number, month, year, cvc, NOW)
    assert err.value.field == ["input", "card", field]
    assert number.replace(" ", "") not in err.value.message


def test_the_current_month_is_still_valid_and_two_digit_years_are_read_as_20xx() -> None:
    assert rules.validate_card("4242424242424242", 11, 26, "123", NOW).exp_year == 2026
    assert "4242424242424242" not in repr(rules.validate_card("4242424242424242", 11, 2026, "123", NOW))


# ---------------------------------------------------------------- routing

def test_routes_parse_and_bad_ones_are_refused() -> None:
    routes = parse_routes("card=stripe,sandbox; paypal=paypal")
    assert routes[PaymentMethodType.CARD] == (Gateway.STRIPE, Gateway.SANDBOX)
    for bad in ("card=visa", "cash=sandbox", "card="):
        with pytest.raises(ValueError):
            parse_routes(bad)


def _request(**overrides) -> PaymentRequest:
    import uuid

    from veix.domain.gateway import CardDetails

    base = dict(payment_id=uuid.uuid4(), business_id=uuid.uuid4(), amount=Decimal("10.00"), currency="EUR",
                method=PaymentMethodType.CARD, capture=True, idempotency_key=uuid.uuid4().hex,
                card=CardDetails("4242424242424242", 12, 2030, "123"))
    base.update(overrides)
    return PaymentRequest(**base)


def test_candidates_keep_only_capable_gateways_in_order() -> None:
    sandbox = SandboxGateway("whsec_" + "A" * 44)
    gateways = {Gateway.SANDBOX: sandbox}
    assert candidates(gateways, (Gateway.STRIPE, Gateway.SANDBOX), PaymentMethodType.CARD, "EUR",
                      manual_capture=False) == [sandbox]
    with pytest.raises(UnsupportedCurrency):
        candidates(gateways, (Gateway.SANDBOX,), PaymentMethodType.CARD, "HUF", manual_capture=False)
    with pytest.raises(InvalidInput) as err:
        candidates(gateways, (Gateway.SANDBOX,), PaymentMethodType.PAYPAL, "EUR", manual_capture=False)
    assert err.value.field == ["input", "method"] and not isinstance(err.value, UnsupportedCurrency)


async def test_route_fails_over_once_on_an_outage_and_never_on_a_decline() -> None:
    first, second = SandboxGateway("whsec_" + "A" * 44), SandboxGateway("whsec_" + "A" * 44)
    first.fail_next(1)
    gw, result, attempts = await route([first, second], lambda g: g.authorize(_request()))
    assert gw is second and result is not None and result.status is GatewayPaymentStatus.SUCCEEDED
    assert [a.outcome for a in attempts] == ["unavailable", "ok"]

    from veix.domain.gateway import CardDetails

    declined = _request(card=CardDetails("4000000000000002", 12, 2030, "123"))
    gw, result, attempts = await route([first, second], lambda g: g.authorize(declined))
    assert gw is first and result is not None and result.decline_code == "card_declined"
    assert len(attempts) == 1


async def test_when_both_are_down_route_reports_no_result() -> None:
    first, second = SandboxGateway("whsec_" + "A" * 44), SandboxGateway("whsec_" + "A" * 44)
    first.fail_next(1)
    second.fail_next(1)
    _, result, attempts = await route([first, second], lambda g: g.authorize(_request()))
    assert result is None and [a.outcome for a in attempts] == ["unavailable", "unavailable"]


async def test_a_third_gateway_is_never_tried() -> None:
    gws = [SandboxGateway("whsec_" + "A" * 44) for _ in range(3)]
    gws[0].fail_next(1)
    gws[1].fail_next(1)
    _, result, attempts = await route(gws, lambda g: g.authorize(_request()))
    assert result is None and len(attempts) == 2


def test_gateway_unavailable_is_not_a_decline() -> None:
    assert not issubclass(GatewayUnavailable, InvalidInput)


def test_fee_and_asset_settings_parse_and_refuse_garbage() -> None:
    fees = rules.parse_fees("stripe=2.5+25")
    assert fees["stripe"] == rules.FeeSchedule(Decimal("2.5"), 25) and fees["paypal"] == rules.DEFAULT_FEES["paypal"]
    for bad in ("visa=1+1", "stripe=abc", "stripe=150+0", "stripe=1+-5"):
        with pytest.raises(ValueError):
            rules.parse_fees(bad)
    specs = rules.parse_asset_specs("ETH:18::USD=3000;usdc:6:0xA0b8:USD=1,EUR=0.92")
    assert specs[1] == ("USDC", 6, "0xA0b8", {"USD": Decimal(1), "EUR": Decimal("0.92")})
    for bad in ("ETH:18", "ETH:x::USD=1", "ETH:18::USD=0", "E-TH:18::USD=1"):
        with pytest.raises(ValueError):
            rules.parse_asset_specs(bad)


async def test_the_sandbox_injects_latency_and_random_outages_when_configured() -> None:
    import time

    always_down = SandboxGateway("whsec_" + "A" * 44, failure_rate=1.0)
    with pytest.raises(GatewayUnavailable):
        await always_down.authorize(_request())
    slow = SandboxGateway("whsec_" + "A" * 44, latency=0.05)
    started = time.monotonic()
    assert (await slow.authorize(_request())).status is GatewayPaymentStatus.SUCCEEDED
    assert time.monotonic() - started >= 0.05
