"""Spending controls of a card: what they are, how they are validated, and the
pure rules that check one authorization against them."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from veix.domain.countries import parse_country
from veix.domain.errors import InvalidInput
from veix.domain.money import parse_amount

MAX_LIST = 200


@dataclass(frozen=True, slots=True)
class CardControls:
    allowed_mccs: frozenset[str] | None = None
    blocked_mccs: frozenset[str] | None = None
    allowed_countries: frozenset[str] | None = None
    blocked_countries: frozenset[str] | None = None
    max_transaction_amount: Decimal | None = None
    daily_limit: Decimal | None = None
    monthly_limit: Decimal | None = None
    allowed_days: frozenset[int] | None = None
    allowed_hours: frozenset[int] | None = None
    requires_approval: bool = False

    def to_json(self) -> dict[str, Any]:
        def lst(v: frozenset[Any] | None) -> list[Any] | None:
            return sorted(v) if v is not None else None

        return {
            "allowed_merchant_categories": lst(self.allowed_mccs),
            "blocked_merchant_categories": lst(self.blocked_mccs),
            "allowed_countries": lst(self.allowed_countries),
            "blocked_countries": lst(self.blocked_countries),
            "max_transaction_amount": self.max_transaction_amount,
            "daily_limit": self.daily_limit,
            "monthly_limit": self.monthly_limit,
            "allowed_days": lst(self.allowed_days),
            "allowed_hours": lst(self.allowed_hours),
            "requires_approval": self.requires_approval,
        }


def _mccs(values: Iterable[object] | None, field: list[str]) -> frozenset[str] | None:
    if values is None:
        return None
    out = set()
    for i, v in enumerate(values):
        if not isinstance(v, str) or len(v) != 4 or not v.isdigit():
            raise InvalidInput(f"Merchant category codes are 4 digits, got {v!r}", field=[*field, str(i)])
        out.add(v)
    if len(out) > MAX_LIST:
        raise InvalidInput(f"At most {MAX_LIST} codes", field=field)
    return frozenset(out)


def _countries(values: Iterable[object] | None, field: list[str]) -> frozenset[str] | None:
    if values is None:
        return None
    out = {parse_country(v, field=[*field, str(i)]) for i, v in enumerate(values)}
    if len(out) > MAX_LIST:
        raise InvalidInput(f"At most {MAX_LIST} countries", field=field)
    return frozenset(out)


def _ints(values: Iterable[object] | None, lo: int, hi: int, what: str,
          field: list[str]) -> frozenset[int] | None:
    if values is None:
        return None
    out = set()
    for i, v in enumerate(values):
        if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
            raise InvalidInput(f"{what} must be between {lo} and {hi}, got {v!r}", field=[*field, str(i)])
        out.add(v)
    if not out:
        raise InvalidInput(f"An empty list of {what} would block every authorization; omit it instead",
                           field=field)
    return frozenset(out)


def _limit(value: object, currency: str, field: list[str]) -> Decimal | None:
    if value is None:
        return None
    try:
        amount = parse_amount(value, currency, field=field[-1])
    except InvalidInput as exc:
        exc.field = list(field)  # the whole path, not only the last name
        raise
    if amount <= 0:
        raise InvalidInput("Limits must be greater than zero", field=field)
    return amount


def parse_controls(raw: Mapping[str, Any], currency: str, *, field: list[str]) -> CardControls:
    """Validate controls given with GraphQL names (camelCase keys)."""
    controls = CardControls(
        allowed_mccs=_mccs(raw.get("allowedMerchantCategories"), [*field, "allowedMerchantCategories"]),
        blocked_mccs=_mccs(raw.get("blockedMerchantCategories"), [*field, "blockedMerchantCategories"]),
        allowed_countries=_countries(raw.get("allowedCountries"), [*field, "allowedCountries"]),
        blocked_countries=_countries(raw.get("blockedCountries"), [*field, "blockedCountries"]),
        max_transaction_amount=_limit(raw.get("maxTransactionAmount"), currency,
                                      [*field, "maxTransactionAmount"]),
        daily_limit=_limit(raw.get("dailyLimit"), currency, [*field, "dailyLimit"]),
        monthly_limit=_limit(raw.get("monthlyLimit"), currency, [*field, "monthlyLimit"]),
        allowed_days=_ints(raw.get("allowedDays"), 1, 7, "days", [*field, "allowedDays"]),
        allowed_hours=_ints(raw.get("allowedHours"), 0, 23, "hours", [*field, "allowedHours"]),
        requires_approval=bool(raw.get("requiresApproval") or False),
    )
    c = controls
    if c.daily_limit is not None and c.monthly_limit is not None and c.daily_limit > c.monthly_limit:
        raise InvalidInput("The daily limit cannot exceed the monthly limit", field=[*field, "dailyLimit"])
    for per_txn_cap in (c.daily_limit, c.monthly_limit):
        if (c.max_transaction_amount is not None and per_txn_cap is not None
                and c.max_transaction_amount > per_txn_cap):
            raise InvalidInput("The per-transaction maximum cannot exceed the daily or monthly limit",
                               field=[*field, "maxTransactionAmount"])
    if c.allowed_mccs and c.blocked_mccs and c.allowed_mccs & c.blocked_mccs:
        raise InvalidInput("A category cannot be both allowed and blocked",
                           field=[*field, "blockedMerchantCategories"])
    if c.allowed_countries and c.blocked_countries and c.allowed_countries & c.blocked_countries:
        raise InvalidInput("A country cannot be both allowed and blocked", field=[*field, "blockedCountries"])
    return controls


def merge_controls(current: CardControls, raw: Mapping[str, Any], currency: str, *,
                   field: list[str]) -> CardControls:
    """Fields present in ``raw`` replace the current ones (explicit null clears)."""
    merged = {**controls_as_input(current), **raw}
    return parse_controls(merged, currency, field=field)


def controls_as_input(c: CardControls) -> dict[str, Any]:
    return {
        "allowedMerchantCategories": sorted(c.allowed_mccs) if c.allowed_mccs is not None else None,
        "blockedMerchantCategories": sorted(c.blocked_mccs) if c.blocked_mccs is not None else None,
        "allowedCountries": sorted(c.allowed_countries) if c.allowed_countries is not None else None,
        "blockedCountries": sorted(c.blocked_countries) if c.blocked_countries is not None else None,
        "maxTransactionAmount": c.max_transaction_amount,
        "dailyLimit": c.daily_limit,
        "monthlyLimit": c.monthly_limit,
        "allowedDays": sorted(c.allowed_days) if c.allowed_days is not None else None,
        "allowedHours": sorted(c.allowed_hours) if c.allowed_hours is not None else None,
        "requiresApproval": c.requires_approval,
    }


# ---------------------------------------------------------------- checks
# Each returns None when the authorization passes, else (ISO 8583 code, reason).

Refusal = tuple[str, str] | None


def check_merchant(c: CardControls, mcc: str, country: str) -> Refusal:
    if c.blocked_mccs is not None and mcc in c.blocked_mccs:
        return "57", "merchant_category_blocked"
    if c.allowed_mccs is not None and mcc not in c.allowed_mccs:
        return "57", "merchant_category_not_allowed"
    if c.blocked_countries is not None and country in c.blocked_countries:
        return "62", "country_blocked"
    if c.allowed_countries is not None and country not in c.allowed_countries:
        return "62", "country_not_allowed"
    return None


def check_time(c: CardControls, local: datetime) -> Refusal:
    if c.allowed_days is not None and local.isoweekday() not in c.allowed_days:
        return "62", "day_not_allowed"
    if c.allowed_hours is not None and local.hour not in c.allowed_hours:
        return "62", "hour_not_allowed"
    return None


def check_amounts(c: CardControls, amount: Decimal, *, transaction_total: Decimal,
                  spent_today: Decimal, spent_month: Decimal,
                  spending_limit: Decimal | None) -> Refusal:
    """``amount`` is what this authorization adds; ``transaction_total`` the whole
    authorization (larger than ``amount`` for an incremental one)."""
    if c.max_transaction_amount is not None and transaction_total > c.max_transaction_amount:
        return "61", "transaction_limit_exceeded"
    if c.daily_limit is not None and spent_today + amount > c.daily_limit:
        return "61", "daily_limit_exceeded"
    if c.monthly_limit is not None and spent_month + amount > c.monthly_limit:
        return "61", "monthly_limit_exceeded"
    if spending_limit is not None and spent_month + amount > spending_limit:
        return "61", "spending_limit_exceeded"
    return None
