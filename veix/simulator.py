"""Realistic card-network authorization traffic (NETWORK.md, "Simulator").

:class:`Simulator` turns a card and a moment into the JSON body a card network
sends to ``POST /v1/network/authorizations``: a merchant from a catalogue of
everyday spending (restaurants, groceries, fuel, travel, software, transport)
in the merchant's own country and currency, with an amount typical for it.
A configurable share of the requests (default 5 %) is fraud-like instead:
bursts of 3-6 large authorizations on one card at high-risk merchant
categories (6051 quasi-cash and crypto, 7995 betting, 4829 wire transfers) in
a foreign country at night.

It is pure: no I/O, no clock (``now`` is an argument) and every random choice
comes from ``random.Random(seed)``, so one seed gives one traffic. Network ids
are ``auth_<run id><counter>`` in hex: unique within a run, and the run id
(random unless given) keeps two runs with one seed from colliding on the
server's idempotency by network id.
"""

from __future__ import annotations

import random
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from veix.domain.currencies import minor_units

DEFAULT_FRAUD_SHARE = 0.05
HIGH_RISK_MCCS = ("6051", "7995", "4829")
BURST_LENGTH = (3, 6)  # authorizations in one fraud burst, inclusive


@dataclass(frozen=True, slots=True)
class Merchant:
    name: str
    id: str
    mcc: str
    country: str
    currency: str
    low: Decimal  # typical amount range, in the merchant's currency
    high: Decimal
    weight: int = 10  # how often it appears relative to the others

    def json(self) -> dict[str, str]:
        return {"name": self.name, "mcc": self.mcc, "country": self.country, "id": self.id}


def _m(name: str, mid: str, mcc: str, country: str, currency: str, low: str, high: str,
       weight: int = 10) -> Merchant:
    return Merchant(name, mid, mcc, country, currency, Decimal(low), Decimal(high), weight)


# Everyday spending of a European business with some US, UK and Asian travel.
MERCHANTS: tuple[Merchant, ...] = (
    # restaurants (5812)
    _m("Trattoria Da Enzo", "m_rest_enzo", "5812", "IT", "EUR", "18", "140", 14),
    _m("Café Einstein", "m_rest_einstein", "5812", "DE", "EUR", "6", "45", 18),
    _m("Le Petit Bistro", "m_rest_bistro", "5812", "FR", "EUR", "22", "160", 10),
    _m("Dishoom Shoreditch", "m_rest_dishoom", "5812", "GB", "GBP", "25", "180", 8),
    _m("Sweetgreen", "m_rest_sweetgreen", "5812", "US", "USD", "12", "40", 8),
    _m("Ichiran Shibuya", "m_rest_ichiran", "5812", "JP", "JPY", "980", "4800", 4),
    _m("Vapiano Amsterdam", "m_rest_vapiano", "5812", "NL", "EUR", "12", "70", 8),
    # groceries (5411)
    _m("REWE Markt", "m_groc_rewe", "5411", "DE", "EUR", "8", "120", 16),
    _m("Albert Heijn", "m_groc_ah", "5411", "NL", "EUR", "5", "90", 10),
    _m("Carrefour Market", "m_groc_carrefour", "5411", "FR", "EUR", "10", "150", 10),
    _m("Tesco Express", "m_groc_tesco", "5411", "GB", "GBP", "4", "60", 8),
    _m("Whole Foods Market", "m_groc_wholefoods", "5411", "US", "USD", "15", "200", 6),
    _m("ICA Supermarket", "m_groc_ica", "5411", "SE", "SEK", "60", "900", 4),
    # fuel (5541)
    _m("Aral Tankstelle", "m_fuel_aral", "5541", "DE", "EUR", "30", "110", 12),
    _m("Shell Recharge", "m_fuel_shell", "5541", "NL", "EUR", "25", "100", 8),
    _m("TotalEnergies", "m_fuel_total", "5541", "FR", "EUR", "30", "120", 8),
    _m("Orlen", "m_fuel_orlen", "5541", "PL", "PLN", "120", "450", 4),
    _m("Chevron", "m_fuel_chevron", "5541", "US", "USD", "30", "90", 4),
    # travel: airlines (4511) and hotels (7011)
    _m("Lufthansa", "m_air_lufthansa", "4511", "DE", "EUR", "90", "1400", 6),
    _m("KLM Royal Dutch Airlines", "m_air_klm", "4511", "NL", "EUR", "80", "1200", 5),
    _m("Ryanair", "m_air_ryanair", "4511", "IE", "EUR", "20", "260", 6),
    _m("British Airways", "m_air_ba", "4511", "GB", "GBP", "70", "1100", 4),
    _m("Delta Air Lines", "m_air_delta", "4511", "US", "USD", "150", "1800", 3),
    _m("Motel One Berlin", "m_hotel_motelone", "7011", "DE", "EUR", "79", "320", 6),
    _m("NH Collection Madrid", "m_hotel_nh", "7011", "ES", "EUR", "110", "600", 4),
    _m("Premier Inn London", "m_hotel_premierinn", "7011", "GB", "GBP", "70", "380", 4),
    _m("Hilton Zurich Airport", "m_hotel_hilton_zrh", "7011", "CH", "CHF", "160", "700", 3),
    _m("Marriott Marquis", "m_hotel_marriott", "7011", "US", "USD", "180", "900", 3),
    # software (5734) and digital goods (5817)
    _m("JetBrains", "m_soft_jetbrains", "5734", "CZ", "EUR", "9", "700", 4),
    _m("Atlassian", "m_soft_atlassian", "5734", "AU", "USD", "10", "900", 5),
    _m("GitHub", "m_soft_github", "5734", "US", "USD", "4", "420", 6),
    _m("DATEV eG", "m_soft_datev", "5734", "DE", "EUR", "25", "300", 4),
    _m("Figma", "m_dig_figma", "5817", "US", "USD", "12", "450", 5),
    _m("Notion Labs", "m_dig_notion", "5817", "US", "USD", "8", "240", 5),
    _m("Spotify", "m_dig_spotify", "5817", "SE", "EUR", "11", "18", 4),
    _m("Google Workspace", "m_dig_gworkspace", "5817", "IE", "EUR", "6", "900", 6),
    # transport (4121)
    _m("FREE NOW", "m_taxi_freenow", "4121", "DE", "EUR", "9", "65", 10),
    _m("Uber", "m_taxi_uber", "4121", "NL", "EUR", "8", "70", 10),
    _m("Bolt", "m_taxi_bolt", "4121", "PL", "PLN", "18", "160", 5),
    _m("Addison Lee", "m_taxi_addisonlee", "4121", "GB", "GBP", "15", "120", 3),
    _m("Lyft", "m_taxi_lyft", "4121", "US", "USD", "10", "80", 4),
)

# Fraud-like merchants: high-risk categories in countries a European business rarely buys in.
FRAUD_MERCHANTS: tuple[Merchant, ...] = (
    _m("CoinVault Exchange", "m_risk_coinvault", "6051", "MT", "EUR", "400", "4900"),
    _m("Bitnova Crypto", "m_risk_bitnova", "6051", "PA", "USD", "500", "4900"),
    _m("QuickCash Card Load", "m_risk_quickcash", "6051", "NG", "USD", "300", "2500"),
    _m("Royal Spin Casino", "m_risk_royalspin", "7995", "CW", "USD", "250", "3000"),
    _m("BetStar Online", "m_risk_betstar", "7995", "CY", "EUR", "200", "2500"),
    _m("Lucky Dragon Gaming", "m_risk_luckydragon", "7995", "PH", "USD", "300", "3500"),
    _m("SwiftWire Transfers", "m_risk_swiftwire", "4829", "NG", "USD", "500", "4900"),
    _m("GlobalMoney Remit", "m_risk_globalmoney", "4829", "RO", "EUR", "400", "4000"),
)


@dataclass(frozen=True, slots=True)
class CardRef:
    """How the network names a card: PAN and expiry (and CVV), or the public token."""

    pan: str | None = None
    expiry: str | None = None  # "YYYY-MM"
    cvv: str | None = None
    card_token: str | None = None
    card_id: str | None = None
    business_id: str | None = None

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> CardRef:
        """One entry of a ``veix bench setup-cards`` file."""
        if not raw.get("pan") and not raw.get("card_token"):
            raise ValueError("a card needs a pan or a card_token")
        return cls(pan=raw.get("pan"), expiry=raw.get("expiry"), cvv=raw.get("cvv"),
                   card_token=raw.get("card_token"), card_id=raw.get("card_id"),
                   business_id=raw.get("business_id"))

    @property
    def key(self) -> str:
        return self.pan or self.card_token or ""


def amount_text(amount: Decimal, currency: str) -> str:
    """An amount at its currency's number of decimals: "42.50" EUR, "1980" JPY."""
    places = Decimal(1).scaleb(-minor_units(currency))
    return str(amount.quantize(places, rounding=ROUND_HALF_UP))


def iso_z(moment: datetime) -> str:
    """``2026-11-26T13:05:00Z``: UTC, whole seconds."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(slots=True)
class _Burst:
    card: CardRef
    merchants: tuple[Merchant, ...]
    remaining: int


class Simulator:
    """Seeded authorization traffic; see the module docstring."""

    def __init__(self, seed: int | None = None, *, fraud_share: float = DEFAULT_FRAUD_SHARE,
                 run_id: str | None = None, include_cvv: bool = True,
                 merchants: Sequence[Merchant] = MERCHANTS,
                 fraud_merchants: Sequence[Merchant] = FRAUD_MERCHANTS) -> None:
        if not 0.0 <= fraud_share <= 1.0:
            raise ValueError("fraud_share lies in [0, 1]")
        if not merchants or not fraud_merchants:
            raise ValueError("the simulator needs merchants")
        self.rng = random.Random(seed)
        self.fraud_share = fraud_share
        # ``fraud_share`` is the share of *requests*; each burst is several of them, so a burst
        # starts with p where share = L / (1/p - 1 + L), L the mean burst length.
        mean = sum(BURST_LENGTH) / 2
        self._burst_p = fraud_share / (mean * (1 - fraud_share) + fraud_share)
        self.include_cvv = include_cvv
        self.run_id = run_id if run_id is not None else secrets.token_hex(5)
        self.merchants = tuple(merchants)
        self.fraud_merchants = tuple(fraud_merchants)
        self._weights = [m.weight for m in self.merchants]
        self._count = 0
        self._bursts: dict[str, _Burst] = {}

    def next_id(self) -> str:
        """A fresh network id: ``auth_`` and hex digits."""
        self._count += 1
        return f"auth_{self.run_id}{self._count:010x}"

    def pick_card(self, cards: Sequence[CardRef], *, turn: int | None = None) -> CardRef:
        """The card for the next authorization: one in the middle of a fraud burst, else
        any (at random), or with ``turn`` the turn-th in ``cards`` (round robin)."""
        if self._bursts:
            return next(iter(self._bursts.values())).card
        if not cards:
            raise ValueError("no cards to pick from")
        return cards[self.rng.randrange(len(cards)) if turn is None else turn % len(cards)]

    def next_request(self, card: CardRef, now: datetime) -> dict[str, Any]:
        """The JSON body of one authorization of ``card`` at about ``now`` (aware)."""
        if now.tzinfo is None:
            raise ValueError("now must be timezone-aware")
        if card.pan is None and card.card_token is None:
            raise ValueError("the card needs a pan or a card_token")
        burst = self._bursts.get(card.key)
        if burst is None and self.rng.random() < self._burst_p:
            burst = self._start_burst(card)
        if burst is not None:
            merchant = self.rng.choice(burst.merchants)
            amount = self._amount(merchant, skew=0.7)
            at = self._night(now)
            burst.remaining -= 1
            if burst.remaining <= 0:
                del self._bursts[card.key]
        else:
            merchant = self.rng.choices(self.merchants, weights=self._weights)[0]
            amount = self._amount(merchant, skew=0.25)
            at = now
        body: dict[str, Any] = {"id": self.next_id()}
        if card.pan is not None:
            body["pan"] = card.pan
            if card.expiry is not None:
                body["expiry"] = card.expiry
            if self.include_cvv and card.cvv is not None:
                body["cvv"] = card.cvv
        else:
            body["card_token"] = card.card_token
        body.update({
            "amount": amount_text(amount, merchant.currency),
            "currency": merchant.currency,
            "merchant": merchant.json(),
            "kind": "purchase",
            "at": iso_z(at),
        })
        return body

    def _start_burst(self, card: CardRef) -> _Burst:
        """A fraud pattern: 3-6 authorizations at one or two high-risk merchants."""
        first = self.rng.choice(self.fraud_merchants)
        merchants: tuple[Merchant, ...] = (first,)
        if self.rng.random() < 0.4:
            merchants += (self.rng.choice(self.fraud_merchants),)
        burst = _Burst(card, merchants, self.rng.randint(*BURST_LENGTH))
        self._bursts[card.key] = burst
        return burst

    def _amount(self, merchant: Merchant, *, skew: float) -> Decimal:
        """Mostly near the low end of the range (skew = where the mode sits, 0..1)."""
        low, high = float(merchant.low), float(merchant.high)
        value = self.rng.triangular(low, high, low + (high - low) * skew)
        return Decimal(repr(value))

    def _night(self, now: datetime) -> datetime:
        """Between 00:00 and 04:59 UTC of the same day (night in Europe), never after ``now``."""
        base = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        since_midnight = int((now - base).total_seconds())
        return base + timedelta(seconds=self.rng.randrange(max(1, min(5 * 3600, since_midnight))))
