"""Fraud scoring for card authorizations (and, later, payments).

The authorization decision (NETWORK.md) runs inside one database transaction
with a p99 budget of 100 ms, so scoring is a pure, synchronous function of a
:class:`RiskFeatures` snapshot: no I/O, no clock, no randomness (target well
under 50 µs). The caller gathers the features (velocity windows, 90-day
history, merchant seen before) with the queries it already runs, calls
``scorer.score(features)`` and maps the score to an action with
:class:`RiskPolicy`.

``RulesScorer`` is the default scorer: a handful of explainable rules, each
with a weight, combined as a noisy-OR::

    score = 1 - prod(1 - w_i)   over the rules that triggered

so several weak signals add up (two rules of 0.1 give 0.19), the score grows
whenever a rule is added, and it never exceeds 1. Every triggered rule adds a
stable machine word to ``RiskAssessment.reasons`` (several words may come
from one rule, for example both velocity windows):

====================== ======================================================
reason                 triggers when
====================== ======================================================
``velocity_count_10m`` this authorization would be more than 5 in 10 minutes
``velocity_count_1h``  ... more than 15 in one hour
``velocity_amount_10m`` approved amount in 10 minutes, this one included,
                       above 2,000 (card currency units)
``velocity_amount_1h`` ... in one hour above 5,000
``amount_above_history`` with at least 5 approved authorizations in 90 days:
                       the amount is above 3x their mean, or more than 50 %
                       above their maximum
``foreign_merchant``   merchant country differs from the business's country
``high_risk_mcc``      merchant category in ``HIGH_RISK_MCCS``
``new_merchant``       first authorization at this merchant for a card that
                       already has history
``night_hours``        00:00-05:59 in the business's time zone
====================== ======================================================

The two windows of one rule count once in the product: a burst that exceeds
both the 10-minute and the one-hour count is one velocity signal, not two.
All thresholds and weights live in :class:`RulesConfig`.

Replacing the rules by a learned model: write a class with a method
``score(self, features: RiskFeatures) -> RiskAssessment`` (it satisfies the
:class:`RiskScorer` protocol structurally, no inheritance needed), train it on
the same features (they are what the authorization path can compute cheaply
and what gets stored with each authorization), load the model once at start
up and keep inference in-process and synchronous, calibrate its output to a
probability in [0, 1], and return the words of its strongest contributions as
``reasons``. Wire it in at the composition root instead of ``RulesScorer``:
the authorization code only knows ``RiskScorer`` and ``RiskPolicy``, so it
does not change. The thresholds of ``RiskPolicy`` are then tuned to the
model's precision/recall rather than to the rule weights.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Literal, Protocol

# Stable reason words (part of the API: they are stored and shown to people).
VELOCITY_COUNT_10M = "velocity_count_10m"
VELOCITY_COUNT_1H = "velocity_count_1h"
VELOCITY_AMOUNT_10M = "velocity_amount_10m"
VELOCITY_AMOUNT_1H = "velocity_amount_1h"
AMOUNT_ABOVE_HISTORY = "amount_above_history"
FOREIGN_MERCHANT = "foreign_merchant"
HIGH_RISK_MCC = "high_risk_mcc"
NEW_MERCHANT = "new_merchant"
NIGHT_HOURS = "night_hours"

REASONS: tuple[str, ...] = (
    VELOCITY_COUNT_10M,
    VELOCITY_COUNT_1H,
    VELOCITY_AMOUNT_10M,
    VELOCITY_AMOUNT_1H,
    AMOUNT_ABOVE_HISTORY,
    FOREIGN_MERCHANT,
    HIGH_RISK_MCC,
    NEW_MERCHANT,
    NIGHT_HOURS,
)

# Merchant category codes (ISO 18245) that card schemes and acquirers treat as
# high risk for fraud, money laundering or chargebacks.
HIGH_RISK_MCCS: frozenset[str] = frozenset(
    {
        "4829",  # wire transfers and money orders
        "6051",  # non-financial institutions: foreign currency, quasi-cash, crypto assets
        "6540",  # non-financial institutions: stored-value card purchase or load
        "6211",  # security brokers and dealers (trading, investment platforms)
        "7995",  # betting: casinos, lottery tickets, gaming chips, off-track betting
        "7801",  # government-licensed online casinos (online gambling)
        "7802",  # government-licensed horse and dog racing
        "5962",  # direct marketing: travel-related arrangement services
        "5966",  # direct marketing: outbound telemarketing merchants
        "5967",  # direct marketing: inbound teleservices (premium lines, adult content)
    }
)


@dataclass(frozen=True, slots=True)
class RiskFeatures:
    """Everything a scorer may look at, computed before scoring.

    Amounts are in the card's currency (the authorization amount after
    conversion). The velocity windows and the 90-day history cover the
    card's *approved* purchases and incremental authorizations *before* this
    one, each with the amount its own decision approved (an increment is not
    counted again in its original). The velocity windows count whole UTC
    minutes (the current one and the 10, or 60, before: the stores keep them
    per minute, see veix.domain.services.authorize.velocity_window); the
    history counts whole UTC days (today and the 90 before: the stores keep
    it per day, see veix.domain.services.authorize.history_window), the
    merchant seen before the exact last 90 days.
    """

    amount: Decimal
    currency: str
    merchant_id: str | None
    merchant_name: str
    mcc: str
    merchant_country: str
    business_country: str
    local_hour: int  # 0-23, in the business's time zone
    count_10m: int
    amount_10m: Decimal
    count_1h: int
    amount_1h: Decimal
    history_count: int  # last 90 days
    history_mean: Decimal
    history_max: Decimal
    seen_merchant_before: bool

    def __post_init__(self) -> None:
        if not 0 <= self.local_hour <= 23:
            raise ValueError(f"local_hour must be 0-23, got {self.local_hour}")


@dataclass(frozen=True, slots=True)
class RiskAssessment:
    """A score in [0, 1] (rounded to 4 decimals) and why."""

    score: float
    reasons: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not 0.0 <= self.score <= 1.0:  # also refuses NaN
            raise ValueError(f"A risk score lies in [0, 1], got {self.score}")
        object.__setattr__(self, "score", round(float(self.score), 4))


class RiskScorer(Protocol):
    """Synchronous, I/O-free scoring; runs inside the authorization transaction."""

    def score(self, features: RiskFeatures) -> RiskAssessment: ...


def _weight(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must lie in [0, 1], got {value}")


@dataclass(frozen=True, slots=True)
class RulesConfig:
    """Thresholds and weights of :class:`RulesScorer`.

    Amount thresholds are in card currency units: configure them per
    deployment (or per card currency) so that 2,000 means the same thing.
    """

    # Velocity: more than N authorizations, this one included.
    max_count_10m: int = 5
    max_count_1h: int = 15
    # Velocity: approved amount in the window, this one included, above.
    max_amount_10m: Decimal = Decimal(2000)
    max_amount_1h: Decimal = Decimal(5000)
    # Amount spike, judged only with enough history.
    history_min_count: int = 5
    history_mean_multiple: Decimal = Decimal(3)
    history_max_multiple: Decimal = Decimal("1.5")
    high_risk_mccs: frozenset[str] = field(default_factory=lambda: HIGH_RISK_MCCS)
    # Night: start <= hour < end (wraps around midnight when start > end).
    night_start_hour: int = 0
    night_end_hour: int = 6
    # Weights of the noisy-OR, each in [0, 1].
    velocity_count_weight: float = 0.45
    velocity_amount_weight: float = 0.45
    amount_spike_weight: float = 0.35
    foreign_weight: float = 0.15
    high_risk_mcc_weight: float = 0.35
    new_merchant_weight: float = 0.1
    night_weight: float = 0.1

    def __post_init__(self) -> None:
        for name in (
            "velocity_count_weight",
            "velocity_amount_weight",
            "amount_spike_weight",
            "foreign_weight",
            "high_risk_mcc_weight",
            "new_merchant_weight",
            "night_weight",
        ):
            _weight(name, getattr(self, name))
        for name in ("night_start_hour", "night_end_hour"):
            if not 0 <= getattr(self, name) <= 24:
                raise ValueError(f"{name} must lie in 0-24")
        if self.history_min_count < 1:
            raise ValueError("history_min_count must be at least 1")


class RulesScorer:
    """The default :class:`RiskScorer`: explainable rules, combined noisy-OR."""

    __slots__ = ("_config", "_night")

    def __init__(self, config: RulesConfig | None = None) -> None:
        self._config = config if config is not None else RulesConfig()
        start, end = self._config.night_start_hour, self._config.night_end_hour
        if start <= end:
            self._night = frozenset(range(start, end))
        else:
            self._night = frozenset(range(start, 24)) | frozenset(range(end))

    @property
    def config(self) -> RulesConfig:
        return self._config

    def score(self, features: RiskFeatures) -> RiskAssessment:
        c = self._config
        f = features
        reasons: list[str] = []
        keep = 1.0  # prod(1 - w_i) over triggered rules

        velocity_count = False
        if f.count_10m + 1 > c.max_count_10m:
            reasons.append(VELOCITY_COUNT_10M)
            velocity_count = True
        if f.count_1h + 1 > c.max_count_1h:
            reasons.append(VELOCITY_COUNT_1H)
            velocity_count = True
        if velocity_count:
            keep *= 1.0 - c.velocity_count_weight

        velocity_amount = False
        if f.amount_10m + f.amount > c.max_amount_10m:
            reasons.append(VELOCITY_AMOUNT_10M)
            velocity_amount = True
        if f.amount_1h + f.amount > c.max_amount_1h:
            reasons.append(VELOCITY_AMOUNT_1H)
            velocity_amount = True
        if velocity_amount:
            keep *= 1.0 - c.velocity_amount_weight

        if f.history_count >= c.history_min_count and (
            f.amount > f.history_mean * c.history_mean_multiple
            or f.amount > f.history_max * c.history_max_multiple
        ):
            reasons.append(AMOUNT_ABOVE_HISTORY)
            keep *= 1.0 - c.amount_spike_weight

        if f.merchant_country != f.business_country:
            reasons.append(FOREIGN_MERCHANT)
            keep *= 1.0 - c.foreign_weight

        if f.mcc in c.high_risk_mccs:
            reasons.append(HIGH_RISK_MCC)
            keep *= 1.0 - c.high_risk_mcc_weight

        if f.history_count > 0 and not f.seen_merchant_before:
            reasons.append(NEW_MERCHANT)
            keep *= 1.0 - c.new_merchant_weight

        if f.local_hour in self._night:
            reasons.append(NIGHT_HOURS)
            keep *= 1.0 - c.night_weight

        return RiskAssessment(min(1.0, max(0.0, 1.0 - keep)), tuple(reasons))


Action = Literal["approve", "review", "decline"]


@dataclass(frozen=True)
class RiskPolicy:
    """Maps a score to an action.

    ``decline``: refuse (ISO 8583 ``59``, suspected fraud). ``review``: approve
    and raise an alert for a person to look at. ``approve``: nothing to do.
    """

    review_threshold: float = 0.5
    decline_threshold: float = 0.8

    def __post_init__(self) -> None:
        if not (
            math.isfinite(self.review_threshold)
            and math.isfinite(self.decline_threshold)
            and 0.0 <= self.review_threshold <= self.decline_threshold <= 1.0
        ):
            raise ValueError(
                "RiskPolicy needs 0 <= review_threshold <= decline_threshold <= 1, got "
                f"{self.review_threshold} and {self.decline_threshold}"
            )

    def action(self, score: float) -> Action:
        if score >= self.decline_threshold:
            return "decline"
        if score >= self.review_threshold:
            return "review"
        return "approve"
