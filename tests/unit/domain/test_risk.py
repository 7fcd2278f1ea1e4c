"""Fraud scoring: explainable rules combined noisy-OR, and the policy over the score."""

from __future__ import annotations

import dataclasses
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from veix.domain.risk import (
    HIGH_RISK_MCCS,
    REASONS,
    RiskAssessment,
    RiskFeatures,
    RiskPolicy,
    RiskScorer,
    RulesConfig,
    RulesScorer,
)

# An ordinary lunch: domestic, daytime, known merchant, in line with history.
ORDINARY = RiskFeatures(
    amount=Decimal("42.50"),
    currency="EUR",
    merchant_id="m_123",
    merchant_name="ACME GmbH",
    mcc="5812",
    merchant_country="DE",
    business_country="DE",
    local_hour=13,
    count_10m=0,
    amount_10m=Decimal(0),
    count_1h=1,
    amount_1h=Decimal("12.00"),
    history_count=30,
    history_mean=Decimal("40.00"),
    history_max=Decimal("120.00"),
    seen_merchant_before=True,
)

SCORER = RulesScorer()
CONFIG = RulesConfig()


def score(**changes: object) -> RiskAssessment:
    return SCORER.score(dataclasses.replace(ORDINARY, **changes))  # type: ignore[arg-type]


def test_an_ordinary_authorization_scores_zero() -> None:
    assert SCORER.score(ORDINARY) == RiskAssessment(0.0, ())


def test_rules_scorer_satisfies_the_protocol() -> None:
    scorer: RiskScorer = SCORER
    assert scorer.score(ORDINARY).score == 0.0


@pytest.mark.parametrize(
    ("changes", "reasons", "weight"),
    [
        ({"count_10m": 5}, ("velocity_count_10m",), CONFIG.velocity_count_weight),
        ({"count_10m": 0, "count_1h": 15}, ("velocity_count_1h",), CONFIG.velocity_count_weight),
        (
            {"amount_10m": Decimal("1960.00"), "amount_1h": Decimal("1960.00")},
            ("velocity_amount_10m",),
            CONFIG.velocity_amount_weight,
        ),
        ({"amount_1h": Decimal("4960.00")}, ("velocity_amount_1h",), CONFIG.velocity_amount_weight),
        ({"amount": Decimal("121.00")}, ("amount_above_history",), CONFIG.amount_spike_weight),
        (
            {"amount": Decimal("181.00"), "history_max": Decimal("2000.00")},
            ("amount_above_history",),
            CONFIG.amount_spike_weight,
        ),
        (
            {"amount": Decimal("110.00"), "history_mean": Decimal("60.00"), "history_max": Decimal("70")},
            ("amount_above_history",),
            CONFIG.amount_spike_weight,
        ),
        ({"merchant_country": "FR"}, ("foreign_merchant",), CONFIG.foreign_weight),
        ({"mcc": "7995"}, ("high_risk_mcc",), CONFIG.high_risk_mcc_weight),
        ({"seen_merchant_before": False}, ("new_merchant",), CONFIG.new_merchant_weight),
        ({"local_hour": 0}, ("night_hours",), CONFIG.night_weight),
        ({"local_hour": 5}, ("night_hours",), CONFIG.night_weight),
    ],
)
def test_each_rule_triggers_alone_with_its_reason(
    changes: dict[str, object], reasons: tuple[str, ...], weight: float
) -> None:
    assessment = score(**changes)
    assert assessment.reasons == reasons
    assert assessment.score == round(weight, 4)
    assert set(assessment.reasons) <= set(REASONS)


@pytest.mark.parametrize(
    "changes",
    [
        {"count_10m": 4},  # the 5th in 10 minutes is still fine
        {"count_10m": 0, "count_1h": 14},
        {"amount_10m": Decimal("1957.50"), "amount_1h": Decimal("1957.50")},  # exactly 2,000
        {"amount_1h": Decimal("4957.50")},  # exactly 5,000
        {"amount": Decimal("120.00")},  # exactly 3x the mean, not above
        {"amount": Decimal("180.00"), "history_mean": Decimal(100)},  # max by 50 % exactly
        {"local_hour": 6},
        {"local_hour": 23},
    ],
)
def test_rules_do_not_trigger_at_their_thresholds(changes: dict[str, object]) -> None:
    assert score(**changes) == RiskAssessment(0.0, ())


def test_both_velocity_windows_count_as_one_signal() -> None:
    assessment = score(count_10m=9, count_1h=20)
    assert assessment.reasons == ("velocity_count_10m", "velocity_count_1h")
    assert assessment.score == CONFIG.velocity_count_weight


def test_an_amount_spike_needs_enough_history() -> None:
    assert score(amount=Decimal("1000"), history_count=4).reasons == ()
    assert score(amount=Decimal("1000"), history_count=5).reasons == ("amount_above_history",)


def test_a_new_merchant_counts_only_for_a_card_with_history() -> None:
    fresh_card = {"history_count": 0, "history_mean": Decimal(0), "history_max": Decimal(0)}
    assert score(seen_merchant_before=False, **fresh_card).reasons == ()


def test_every_default_high_risk_mcc_triggers() -> None:
    assert {"4829", "6051", "7995", "6211", "5967"} <= HIGH_RISK_MCCS
    for mcc in HIGH_RISK_MCCS:
        assert score(mcc=mcc).reasons == ("high_risk_mcc",)


def test_weak_signals_add_up_noisy_or() -> None:
    assessment = score(local_hour=3, seen_merchant_before=False)
    assert assessment.reasons == ("new_merchant", "night_hours")
    assert assessment.score == pytest.approx(1 - 0.9 * 0.9)


def test_everything_at_once_stays_at_most_one() -> None:
    assessment = score(
        count_10m=50,
        count_1h=50,
        amount_10m=Decimal(10**6),
        amount_1h=Decimal(10**6),
        amount=Decimal(10**5),
        merchant_country="RU",
        mcc="6051",
        seen_merchant_before=False,
        local_hour=2,
    )
    assert assessment.reasons == REASONS
    expected = 1 - 0.55 * 0.55 * 0.65 * 0.85 * 0.65 * 0.9 * 0.9
    assert assessment.score == round(expected, 4)
    assert assessment.score <= 1.0
    saturated = RulesScorer(RulesConfig(foreign_weight=1.0, night_weight=1.0))
    assert saturated.score(dataclasses.replace(ORDINARY, merchant_country="US", local_hour=1)).score == 1.0


def test_the_config_is_honoured() -> None:
    config = RulesConfig(
        max_count_10m=2,
        max_amount_1h=Decimal(100),
        high_risk_mccs=frozenset({"5812"}),
        night_start_hour=22,
        night_end_hour=7,
        foreign_weight=0.5,
    )
    scorer = RulesScorer(config)
    assert scorer.config is config
    assert scorer.score(dataclasses.replace(ORDINARY, count_10m=2)).reasons[0] == "velocity_count_10m"
    assert scorer.score(dataclasses.replace(ORDINARY, amount_1h=Decimal(60), mcc="5411")).reasons == (
        "velocity_amount_1h",
    )
    assert "high_risk_mcc" in scorer.score(ORDINARY).reasons
    for hour, night in [(21, False), (22, True), (0, True), (6, True), (7, False)]:
        features = dataclasses.replace(ORDINARY, local_hour=hour, mcc="5411")
        assert ("night_hours" in scorer.score(features).reasons) is night
    foreign = dataclasses.replace(ORDINARY, mcc="5411", merchant_country="FR")
    assert scorer.score(foreign).score == 0.5


@pytest.mark.parametrize(
    "bad",
    [
        {"foreign_weight": 1.5},
        {"night_weight": -0.1},
        {"velocity_count_weight": float("nan")},
        {"night_end_hour": 25},
        {"history_min_count": 0},
    ],
)
def test_an_invalid_config_is_refused(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        RulesConfig(**bad)  # type: ignore[arg-type]


def test_features_and_assessments_are_checked() -> None:
    with pytest.raises(ValueError):
        dataclasses.replace(ORDINARY, local_hour=24)
    with pytest.raises(ValueError):
        RiskAssessment(1.01)
    with pytest.raises(ValueError):
        RiskAssessment(float("nan"))
    assert RiskAssessment(0.123456).score == 0.1235
    with pytest.raises(dataclasses.FrozenInstanceError):
        ORDINARY.amount = Decimal(1)  # type: ignore[misc]


@pytest.mark.parametrize(
    ("value", "action"),
    [
        (0.0, "approve"),
        (0.4999, "approve"),
        (0.5, "review"),
        (0.7999, "review"),
        (0.8, "decline"),
        (1.0, "decline"),
    ],
)
def test_policy_thresholds(value: float, action: str) -> None:
    assert RiskPolicy().action(value) == action


def test_policy_is_configurable_and_checked() -> None:
    policy = RiskPolicy(review_threshold=0.3, decline_threshold=0.6)
    assert [policy.action(s) for s in (0.29, 0.3, 0.6)] == ["approve", "review", "decline"]
    assert RiskPolicy(0.9, 0.9).action(0.9) == "decline"
    for review, decline in [(0.8, 0.5), (-0.1, 0.5), (0.5, 1.1), (float("nan"), 0.8)]:
        with pytest.raises(ValueError):
            RiskPolicy(review, decline)


def test_default_policy_over_default_rules() -> None:
    policy = RiskPolicy()
    assert policy.action(SCORER.score(ORDINARY).score) == "approve"
    assert policy.action(score(merchant_country="FR", local_hour=3).score) == "approve"
    assert policy.action(score(count_10m=9, amount_10m=Decimal(5000)).score) == "review"
    burst = score(count_10m=9, amount_10m=Decimal(5000), mcc="6051", merchant_country="FR")
    assert policy.action(burst.score) == "decline"


money = st.decimals(min_value=0, max_value=10**9, places=2, allow_nan=False, allow_infinity=False)
counts = st.integers(min_value=0, max_value=10**6)
countries = st.sampled_from(["DE", "FR", "US", "GB", "JP"])
features_strategy = st.builds(
    RiskFeatures,
    amount=money,
    currency=st.sampled_from(["EUR", "USD", "JPY"]),
    merchant_id=st.none() | st.text(max_size=10),
    merchant_name=st.text(max_size=20),
    mcc=st.sampled_from(sorted(HIGH_RISK_MCCS)) | st.from_regex(r"\A[0-9]{4}\Z"),
    merchant_country=countries,
    business_country=countries,
    local_hour=st.integers(min_value=0, max_value=23),
    count_10m=counts,
    amount_10m=money,
    count_1h=counts,
    amount_1h=money,
    history_count=counts,
    history_mean=money,
    history_max=money,
    seen_merchant_before=st.booleans(),
)
weights = st.floats(min_value=0.0, max_value=1.0)
configs = st.builds(
    RulesConfig,
    velocity_count_weight=weights,
    velocity_amount_weight=weights,
    amount_spike_weight=weights,
    foreign_weight=weights,
    high_risk_mcc_weight=weights,
    new_merchant_weight=weights,
    night_weight=weights,
)


@given(features_strategy, configs)
def test_score_stays_within_zero_and_one(features: RiskFeatures, config: RulesConfig) -> None:
    assessment = RulesScorer(config).score(features)
    assert 0.0 <= assessment.score <= 1.0
    assert assessment.score == round(assessment.score, 4)
    assert len(set(assessment.reasons)) == len(assessment.reasons)
    assert set(assessment.reasons) <= set(REASONS)
    assert (assessment.score > 0) <= bool(assessment.reasons)


@given(features_strategy, configs)
def test_adding_a_signal_never_lowers_the_score(features: RiskFeatures, config: RulesConfig) -> None:
    scorer = RulesScorer(config)
    before = scorer.score(features)
    for extra in (
        {"merchant_country": "ZZ"},
        {"mcc": "7995"},
        {"local_hour": 3},
        {"count_10m": 10**7},
        {"amount_1h": Decimal(10**12)},
    ):
        after = scorer.score(dataclasses.replace(features, **extra))
        assert after.score >= before.score
        assert set(before.reasons) <= set(after.reasons)
