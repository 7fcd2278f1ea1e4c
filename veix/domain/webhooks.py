"""Outbound webhooks: the pure rules (endpoint validation, retry schedule, disabling).

- **Event types** an endpoint subscribes to are checked against the events Veix emits:
  the families ``business.*``, ``member.*``, ``card.*``, ``card_transaction.*``,
  ``transaction.*`` (payments, refunds, fundings: ``.created``, ``.updated``) and ``dispute.*``
  (a family wildcard or one ``family.action`` name), and the exact names
  ``fraud_alert.created`` and ``webhook_endpoint.disabled``. No list (``None``) means every event.
- **URL**: in production only ``https``, and never a host that names this machine or a
  private network: ``localhost`` (and ``*.localhost``), or an IP literal that is private,
  loopback, link-local, multicast, reserved or unspecified (IPv4-mapped IPv6 included).
  Names are not resolved here (DNS rebinding makes a resolve-time check unreliable anyway);
  the literal and well-known-name check stops the obvious SSRF. In development ``http`` and
  loopback/private addresses are allowed, so a receiver on the laptop works.
- **Retries**: exponential backoff with full jitter: before attempt ``n+1`` wait a uniform
  random time in ``[1 s, min(cap, base * 2**(n-1))]`` (base 30 s, cap 6 h); a delivery still
  failing 3 days after it was created is abandoned.
- **Disabling**: an endpoint whose ``threshold`` (default 20) consecutive deliveries were
  abandoned is disabled (a success resets the count); a ``webhook_endpoint.disabled`` event
  says so.
"""

from __future__ import annotations

import ipaddress
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum
from urllib.parse import urlsplit

from veix.domain.errors import InvalidInput
from veix.domain.validation import FieldPath, optional_text, parse_url

BASE_DELAY = timedelta(seconds=30)
MAX_DELAY = timedelta(hours=6)
MIN_DELAY = timedelta(seconds=1)
GIVE_UP_AFTER = timedelta(days=3)
DISABLE_AFTER = 20
MAX_EVENT_TYPES = 50
MAX_DESCRIPTION = 500
TEST_EVENT = "webhook.test"
DISABLED_EVENT = "webhook_endpoint.disabled"

WILDCARD_FAMILIES = frozenset({"business", "member", "card", "card_transaction", "transaction", "dispute"})
# Families whose actions are few and known: only these names (or the wildcard) are accepted.
CLOSED_FAMILIES = {"transaction": frozenset({"created", "updated"}), "dispute": frozenset({"created", "updated"})}
EXACT_TYPES = frozenset({"transaction.created", "fraud_alert.created", DISABLED_EVENT})
_ACTION_RE = re.compile(r"[a-z][a-z0-9_]{0,47}")


class EndpointStatus(str, Enum):
    ENABLED = "enabled"
    DISABLED = "disabled"


class DeliveryStatus(str, Enum):
    PENDING = "pending"  # not attempted yet
    FAILED = "failed"  # the last attempt failed; retried at next_attempt_at
    SUCCEEDED = "succeeded"
    ABANDONED = "abandoned"  # failed for longer than GIVE_UP_AFTER


def _path(field: FieldPath, *more: str) -> list[str]:
    return [*field, *more]


def parse_event_types(value: Sequence[object] | None, *, field: FieldPath) -> list[str] | None:
    """The subscribed event types, de-duplicated in order; ``None`` (every event) stays None."""
    if value is None:
        return None
    if len(value) == 0:
        raise InvalidInput("List at least one event type, or omit eventTypes for every event",
                           field=_path(field))
    if len(value) > MAX_EVENT_TYPES:
        raise InvalidInput(f"At most {MAX_EVENT_TYPES} event types", field=_path(field))
    seen: list[str] = []
    for item in value:
        if not isinstance(item, str) or not is_known_event_type(item.strip()):
            shown = str(item)[:64]
            raise InvalidInput(f"Unknown event type {shown!r}; e.g. card.*, card_transaction.created, "
                               "transaction.created, fraud_alert.created", field=_path(field))
        name = item.strip()
        if name not in seen:
            seen.append(name)
    return seen


def is_known_event_type(name: str) -> bool:
    if name in EXACT_TYPES:
        return True
    family, sep, action = name.partition(".")
    if not sep or family not in WILDCARD_FAMILIES:
        return False
    if family in CLOSED_FAMILIES:
        return action == "*" or action in CLOSED_FAMILIES[family]
    return action == "*" or _ACTION_RE.fullmatch(action) is not None


def subscribes(event_types: Sequence[str] | None, event_type: str) -> bool:
    """Whether an endpoint subscribed to ``event_types`` (None: all) receives ``event_type``.
    ``webhook.test`` is never fanned out by type: it goes to the one endpoint it names."""
    if event_type == TEST_EVENT:
        return False
    if event_types is None:
        return True
    family = event_type.partition(".")[0]
    return event_type in event_types or f"{family}.*" in event_types


def _forbidden_ip(host: str) -> bool:
    text = host.strip("[]")
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return (ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_multicast
            or ip.is_reserved or ip.is_unspecified or not ip.is_global)


def _numeric_ipv4_shorthand(host: str) -> bool:
    # "127.1", "2130706433", "0x7f.0.0.1": forms some resolvers read as IPv4 addresses.
    try:
        ipaddress.ip_address(host)
        return False  # a regular literal: _forbidden_ip decides
    except ValueError:
        pass
    parts = host.split(".")
    return all(re.fullmatch(r"(0x[0-9a-f]+|[0-9]+)", p) is not None for p in parts if p) and bool(
        host.strip("."))


def parse_endpoint_url(value: object, *, field: FieldPath, production: bool) -> str:
    """An endpoint URL: see the module docstring for what production refuses."""
    url = parse_url(value, field=field)
    if not production:
        return url
    parts = urlsplit(url)
    if parts.scheme.lower() != "https":
        raise InvalidInput("Webhook URLs must use https", field=_path(field))
    host = (parts.hostname or "").lower().rstrip(".")
    if (host == "localhost" or host.endswith(".localhost") or host.endswith(".local")
            or host.endswith(".internal") or _forbidden_ip(host) or _numeric_ipv4_shorthand(host)):
        raise InvalidInput("Webhook URLs must not point to a private, loopback or reserved address",
                           field=_path(field))
    return url


def parse_description(value: object, *, field: FieldPath) -> str | None:
    return optional_text(value, field=field, max_len=MAX_DESCRIPTION)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    base: timedelta = BASE_DELAY
    cap: timedelta = MAX_DELAY
    give_up_after: timedelta = GIVE_UP_AFTER

    def ceiling(self, attempts: int) -> timedelta:
        """The largest wait after ``attempts`` failed attempts (before jitter)."""
        exponent = min(max(attempts - 1, 0), 40)
        return min(self.cap, self.base * (1 << exponent))

    def next_attempt(self, attempts: int, created_at: datetime, now: datetime,
                     rng: random.Random | None = None) -> datetime | None:
        """When to try again after ``attempts`` failed attempts, or None to abandon.

        Full jitter: uniform in [MIN_DELAY, ceiling]. The last retry is at the deadline at latest.
        """
        deadline = created_at + self.give_up_after
        if now >= deadline:
            return None
        ceiling = self.ceiling(attempts).total_seconds()
        low = MIN_DELAY.total_seconds()
        wait = (rng or random).uniform(low, max(low, ceiling))
        return min(now + timedelta(seconds=wait), deadline)


def should_disable(consecutive_abandoned: int, threshold: int = DISABLE_AFTER) -> bool:
    return consecutive_abandoned >= threshold
