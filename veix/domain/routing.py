"""Choosing a gateway for a payment, and failing over once on an outage.

The order of gateways for a payment method comes from the business's own
routes (``business_payment_settings.routes``) when it has some, else from the
service's configured routes (``VEIX_PAYMENT_ROUTES``). Of that order, only
the gateways that are configured and whose capabilities support the method
and the currency (and manual capture when asked for) are candidates.

:func:`route` calls the first candidate. When it is *unavailable* (timeout,
connection failure, 5xx: :class:`GatewayUnavailable`) it tries the next
candidate once; a decline, or any other refusal, is final: a declined card is
never retried elsewhere. Every attempt is returned, for the transaction's
``routing`` record.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from veix.domain.errors import InvalidInput, UnsupportedCurrency
from veix.domain.gateway import GatewayResult, GatewayUnavailable, PaymentGateway, PaymentMethodType
from veix.domain.transactions import Gateway

MAX_ATTEMPTS = 2  # the first choice and one failover


@dataclass(frozen=True, slots=True)
class Attempt:
    gateway: Gateway
    outcome: str  # "ok" | "unavailable"
    detail: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {"gateway": self.gateway.name, "outcome": self.outcome, "detail": self.detail}


def candidates(
    gateways: Mapping[Gateway, PaymentGateway],
    order: Sequence[Gateway],
    method: PaymentMethodType,
    currency: str,
    *,
    manual_capture: bool,
) -> list[PaymentGateway]:
    """The capable gateways in preference order. None at all for the method: ``InvalidInput``
    on ``input.method``; none for the currency (or manual capture): ``UnsupportedCurrency``."""
    configured = [gateways[name] for name in order if name in gateways
                  and method in gateways[name].capabilities.methods]
    if not configured:
        raise InvalidInput(f"{method.name} payments are not configured on this server", field=["input", "method"])
    found: list[PaymentGateway] = []
    for name in order:
        gw = gateways.get(name)
        if gw is None or not gw.capabilities.supports(method, currency):
            continue
        if manual_capture and not gw.capabilities.manual_capture:
            continue
        found.append(gw)
    if not found:
        raise UnsupportedCurrency(
            f"No configured gateway accepts {method.name} payments in {currency}"
            + (" with manual capture" if manual_capture else ""),
            field=["input", "amount", "currency"])
    return found


async def route(
    chosen: Sequence[PaymentGateway],
    call: Callable[[PaymentGateway], Awaitable[GatewayResult]],
) -> tuple[PaymentGateway, GatewayResult | None, list[Attempt]]:
    """Call the first gateway, failing over to the next once on an outage.

    Returns the last gateway tried, its result (None when every try was an
    outage) and the attempts. Other exceptions propagate.
    """
    attempts: list[Attempt] = []
    last = chosen[0]
    for gw in chosen[:MAX_ATTEMPTS]:
        last = gw
        try:
            result = await call(gw)
        except GatewayUnavailable as exc:
            attempts.append(Attempt(gw.name, "unavailable", str(exc)[:200] or type(exc).__name__))
            continue
        attempts.append(Attempt(gw.name, "ok"))
        return gw, result, attempts
    return last, None, attempts


def parse_routes(text: str) -> dict[PaymentMethodType, tuple[Gateway, ...]]:
    """``"card=stripe,sandbox;paypal=paypal;crypto=crypto"`` -> routes; ValueError when malformed."""
    routes: dict[PaymentMethodType, tuple[Gateway, ...]] = {}
    for part in filter(None, (p.strip() for p in text.split(";"))):
        method, _, names = part.partition("=")
        try:
            kind = PaymentMethodType(method.strip().lower())
            order = tuple(Gateway(n.strip().lower()) for n in names.split(",") if n.strip())
        except ValueError as exc:
            raise ValueError(f"bad payment route {part!r}: {exc}") from None
        if not order:
            raise ValueError(f"bad payment route {part!r}: no gateway")
        routes[kind] = order
    return routes
