"""Card network messages (authorizations, clearings, reversals): parsing and the
use cases, shared by the signed HTTP endpoints and the sandbox mutation."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, NoReturn

from prometheus_client import Counter
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from veix.domain.authorization import KINDS, AuthRequest, AuthResult, money_text, past_deadline
from veix.domain.cards import luhn_valid
from veix.domain.countries import parse_country
from veix.domain.errors import InvalidInput
from veix.domain.events import utcnow
from veix.domain.money import parse_amount, parse_currency
from veix.domain.services import authorize as auth_svc
from veix.domain.services import settlement
from veix.persistence import network_messages
from veix.persistence.uow import Actor, SqlUnitOfWork
from veix.resolvers.services import Services

NETWORK = Actor("network", None)
log = logging.getLogger("veix.network")

PAST_DEADLINE = Counter(
    "veix_authorizations_past_deadline_total",
    "Authorizations answered 91 (issuer unavailable) without a decision because they waited past "
    "VEIX_NETWORK_DEADLINE_MS, by stage (queued: before the decision began; decided: its writes were not made)",
    ["stage"],
)
LATE_LOOKUPS = Counter(
    "veix_authorizations_late_lookups_total",
    "Authorizations past VEIX_NETWORK_DEADLINE_MS, by what looking them up found (decided_before: a "
    "redelivery, same webhook-id or network id, answered with that decision; new: answered 91; failed: "
    "the lookup failed or was late, answered 91)",
    ["outcome"],
)
# How long a request past its deadline may take to find out whether it was decided
# before (one indexed read): the network waits a few seconds, the deadline is 1.5 s.
REDELIVERY_LOOKUP_BUDGET = 0.25


class PastDeadline(Exception):
    """The request waited past its deadline (``stage``: "queued" before the
    decision began, "decided" before its writes): ``result`` (91) is the
    answer, nothing was written, and it is not kept under the webhook-id (the
    network's redelivery of the same message is decided afresh)."""

    def __init__(self, result: AuthResult, stage: str) -> None:
        super().__init__("past the network's deadline")
        self.result, self.stage = result, stage


@dataclass(frozen=True, slots=True)
class Deadline:
    """When an authorization must be decided by (``time.monotonic()``): it is not
    started after ``start_by`` and not written after ``finish_by``. The tenth of
    the budget between them is for the decision itself, so that under a
    standing queue few decisions are made only to be dropped before their writes."""

    start_by: float
    finish_by: float

    @classmethod
    def after(cls, received: float, budget: float) -> Deadline:
        return cls(received + 0.9 * budget, received + budget)


class _Shedding:
    """Counts requests answered 91 past their deadline; logs them at most every
    10 s (under overload a line per request would add to the load)."""

    def __init__(self) -> None:
        self.unlogged = 0
        self.logged_at = float("-inf")

    def check(self, deadline: Deadline | None, req: AuthRequest, stage: str) -> None:
        """``stage`` "queued": before the decision; "decided": before its writes."""
        if deadline is None:
            return
        if time.monotonic() > (deadline.start_by if stage == "queued" else deadline.finish_by):
            self.shed(req, stage)

    def shed(self, req: AuthRequest, stage: str) -> NoReturn:
        raise PastDeadline(past_deadline(req.network_id, req.currency), stage)

    def answered_91(self, stage: str) -> None:
        PAST_DEADLINE.labels(stage).inc()
        self.unlogged += 1
        now = time.monotonic()
        if now - self.logged_at >= 10:
            log.warning("%d authorization(s) answered 91 without a decision: they waited past the "
                        "network's deadline (VEIX_NETWORK_DEADLINE_MS); the server is overloaded",
                        self.unlogged)
            self.unlogged, self.logged_at = 0, now


_shedding = _Shedding()


def _text(raw: Mapping[str, Any], key: str, *, max_len: int, required: bool = True,
          prefix: str = "") -> str | None:
    value = raw.get(key)
    if value is None:
        if required:
            raise InvalidInput(f"{prefix}{key} is required", field=[prefix + key])
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > max_len:
        raise InvalidInput(f"{prefix}{key} must be a non-empty string of at most {max_len} characters",
                           field=[prefix + key])
    return value.strip()


def _when(raw: Mapping[str, Any], key: str = "at") -> datetime:
    value = raw.get(key)
    if value is None:
        return utcnow()
    try:
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        if moment.tzinfo is None:
            raise InvalidInput(f"{key} must carry a time zone (e.g. Z)", field=[key])
        moment = moment.astimezone(UTC)
    except (ValueError, OverflowError):
        raise InvalidInput(f"{key} must be an ISO 8601 time", field=[key]) from None
    if not 2000 <= moment.year <= 2999:
        raise InvalidInput(f"{key} is not a plausible transaction time", field=[key])
    return moment


def _amount(raw: Mapping[str, Any], currency: str, *, required: bool = True) -> Decimal | None:
    value = raw.get("amount")
    if value is None:
        if required:
            raise InvalidInput("amount is required", field=["amount"])
        return None
    if not isinstance(value, str | int) or isinstance(value, bool):
        raise InvalidInput("amount is a decimal string such as \"42.50\"", field=["amount"])
    amount = parse_amount(value, currency)
    if amount < 0:
        raise InvalidInput("amount cannot be negative", field=["amount"])
    return amount


def _decimal(value: object) -> Decimal:
    if not isinstance(value, str | int) or isinstance(value, bool):
        raise InvalidInput("amount is a decimal string such as \"42.50\"", field=["amount"])
    try:
        amount = Decimal(str(value))
    except ArithmeticError:
        raise InvalidInput(f"{value!r} is not a decimal amount", field=["amount"]) from None
    if not amount.is_finite() or amount < 0:
        raise InvalidInput("amount must be a finite, non-negative decimal", field=["amount"])
    return amount


def parse_authorization(raw: object) -> AuthRequest:
    if not isinstance(raw, Mapping):
        raise InvalidInput("The body must be a JSON object")
    network_id = _text(raw, "id", max_len=128)
    currency = parse_currency(raw.get("currency"))
    kind = raw.get("kind", "purchase")
    if not isinstance(kind, str) or kind not in KINDS:
        raise InvalidInput(f"kind must be one of {sorted(KINDS)}", field=["kind"])
    amount = _amount(raw, currency)
    assert amount is not None
    if amount == 0 and kind != "balance_inquiry":
        raise InvalidInput("amount must be greater than zero", field=["amount"])
    pan = _text(raw, "pan", max_len=19, required=False)
    token = _text(raw, "card_token", max_len=64, required=False)
    if (pan is None) == (token is None):
        raise InvalidInput("Give exactly one of pan and card_token", field=["pan"])
    if pan is not None and not (pan.isascii() and pan.isdigit() and 12 <= len(pan) <= 19 and luhn_valid(pan)):
        raise InvalidInput("pan is not a valid card number (digits, Luhn check)", field=["pan"])
    expiry = _text(raw, "expiry", max_len=7, required=False)
    if expiry is not None and not (expiry.isascii() and len(expiry) == 7 and expiry[4] == "-"
                                   and expiry[:4].isdigit() and expiry[5:].isdigit()
                                   and 1 <= int(expiry[5:]) <= 12):
        raise InvalidInput("expiry must be YYYY-MM", field=["expiry"])
    cvv = _text(raw, "cvv", max_len=4, required=False)
    if cvv is not None and not (cvv.isascii() and cvv.isdigit() and len(cvv) in (3, 4)):
        raise InvalidInput("cvv must be 3 or 4 digits", field=["cvv"])
    merchant = raw.get("merchant")
    if not isinstance(merchant, Mapping):
        raise InvalidInput("merchant is required: {name, mcc, country, id}", field=["merchant"])
    mcc = merchant.get("mcc")
    if not isinstance(mcc, str) or len(mcc) != 4 or not (mcc.isascii() and mcc.isdigit()):
        raise InvalidInput("merchant.mcc must be 4 digits", field=["merchant.mcc"])
    original_id = _text(raw, "original_id", max_len=128, required=kind == "incremental")
    return AuthRequest(
        network_id=network_id or "", amount=amount, currency=currency,
        merchant_name=_text(merchant, "name", max_len=200, prefix="merchant.") or "",
        mcc=mcc, merchant_country=parse_country(merchant.get("country"), field=["merchant.country"]),
        merchant_id=_text(merchant, "id", max_len=128, required=False, prefix="merchant."),
        at=_when(raw), kind=kind, pan=pan, card_token=token, expiry=expiry, cvv=cvv,
        original_id=original_id)


async def run_authorization(services: Services, req: AuthRequest, *, actor: Actor = NETWORK,
                            request_id: str | None = None, message_id: str | None = None,
                            deadline: Deadline | None = None) -> AuthResult:
    """The decision in one transaction; a concurrent duplicate of the same
    network id loses the unique-key race and then reads the winner's answer.

    With ``message_id`` (the webhook-id), the answer is stored in the same
    transaction; if that webhook-id was answered before, that answer wins and
    this attempt rolls back (``StoredAnswer`` is raised carrying it).

    With ``deadline``, a request still waiting for its connection at its
    ``start_by``, or whose decision (its database lock, on SQLite) ends after
    its ``finish_by``, is not decided and nothing is written: ``PastDeadline``
    carries the 91, unless the request is a redelivery of one decided before
    (its webhook-id or network id): ``StoredAnswer`` then carries that answer,
    as it would in time."""
    try:
        if services.fast_pool is not None:
            return await _run_fast(services, req, message_id, deadline)
        return await _run_sql(services, req, actor, request_id, deadline)
    except PastDeadline as late:
        outcome, earlier = await _answered_before(services, req, message_id)
        LATE_LOOKUPS.labels(outcome).inc()
        if earlier is None:
            _shedding.answered_91(late.stage)
            raise
        raise StoredAnswer(*earlier) from None


async def _answered_before(services: Services, req: AuthRequest,
                           message_id: str | None) -> tuple[str, tuple[int, dict[str, Any]] | None]:
    """A late request's earlier answer, if it is a redelivery (NETWORK.md: a
    repeated webhook-id gets the original answer; a repeated network id its
    decision), with the lookup's outcome. One indexed read within
    REDELIVERY_LOOKUP_BUDGET (on PostgreSQL batched with the other late
    requests', on a connection of its own: fast_pg.LateLookups); if that read
    fails or is late too, 91 it is."""
    failures: tuple[type[Exception], ...] = (TimeoutError, SQLAlchemyError, OSError)
    try:
        if services.late_lookups is not None:
            from asyncpg import InterfaceError, PostgresError

            failures += (PostgresError, InterfaceError)
            earlier = await services.late_lookups.find(message_id, req.network_id,
                                                       within=REDELIVERY_LOOKUP_BUDGET)
        else:
            async with asyncio.timeout(REDELIVERY_LOOKUP_BUDGET):
                earlier = await network_messages.answered_before(services.engine, message_id, req.network_id)
    except failures as exc:
        log.debug("no redelivery lookup for a late authorization: %r", exc)
        return "failed", None
    if earlier is None:
        return "new", None
    if isinstance(earlier, tuple):
        return "decided_before", earlier
    return "decided_before", (200, AuthResult.of(earlier).to_json())


async def _run_sql(services: Services, req: AuthRequest, actor: Actor, request_id: str | None,
                   deadline: Deadline | None) -> AuthResult:
    for attempt in range(2):
        try:
            _shedding.check(deadline, req, "queued")
            async with SqlUnitOfWork(services.engine, actor=actor, request_id=request_id) as uow:
                result = await auth_svc.authorize(uow, services.vault, services.scorer, services.rates,
                                                  services.auth_config, req, now=utcnow())
                _shedding.check(deadline, req, "decided")  # (SQLite: the wait is for the write lock)
                await uow.commit()
                return result
        except IntegrityError:
            if attempt:
                raise
    raise AssertionError("unreachable")


class StoredAnswer(Exception):
    def __init__(self, status: int, response: dict[str, Any]) -> None:
        super().__init__("webhook-id answered before")
        self.status, self.response = status, response


async def _run_fast(services: Services, req: AuthRequest, message_id: str | None,
                    deadline: Deadline | None) -> AuthResult:
    """The decision on the asyncpg hot path: first optimistically (two round
    trips, no lock; see veix.persistence.fast_pg), then, if that attempt could
    not finish, under the card's lock."""
    from asyncpg.exceptions import UniqueViolationError

    from veix.persistence.fast_pg import (
        AUTHORIZATION_ATTEMPTS,
        DebitRefused,
        NeedLock,
        PgAuthorizationUnitOfWork,
        QueueTimeout,
        RunAgain,
    )

    assume_new, defer_debits, optimistic = True, True, True
    # At most: optimistic, then under the lock with the debit deferred, with it at once, after
    # a lost prepared statement, after a duplicate network id (each of these changes one flag).
    for _attempt in range(5):
        path = "optimistic" if optimistic else "locked"
        _shedding.check(deadline, req, "queued")  # e.g. kept waiting by a busy event loop
        try:
            async with PgAuthorizationUnitOfWork(services.fast_pool, assume_new=assume_new,
                                                 defer_debits=defer_debits, optimistic=optimistic,
                                                 start_by=deadline.start_by if deadline else None) as uow:
                now = utcnow()
                uow.authorizations.prefetch(now, req.merchant_key, req.at)
                result = await auth_svc.authorize(uow, services.vault, services.scorer,  # type: ignore[arg-type]
                                                  services.rates, services.auth_config, req, now=now)
                _shedding.check(deadline, req, "decided")  # nothing written yet (the writes are one statement)
                if message_id is not None:
                    uow.store_answer(message_id, "authorizations", result.to_json(), now)
                if not await uow.commit():
                    previous = await stored_answer(services, message_id or "")
                    assert previous is not None
                    raise StoredAnswer(*previous)
                AUTHORIZATION_ATTEMPTS.labels(path, "decided").inc()
                return result
        except QueueTimeout:  # no connection came free by the start-by time (HotPool.acquire)
            _shedding.shed(req, "queued")
        except NeedLock as again:
            AUTHORIZATION_ATTEMPTS.labels(path, again.reason).inc()
            optimistic = False  # again, under the card's lock
        except DebitRefused:
            AUTHORIZATION_ATTEMPTS.labels(path, "debit_refused").inc()
            defer_debits = False  # a concurrent decision took the money: again, with the debit at once
        except RunAgain:
            AUTHORIZATION_ATTEMPTS.labels(path, "run_again").inc()
        except UniqueViolationError:
            AUTHORIZATION_ATTEMPTS.labels(path, "duplicate").inc()
            if not assume_new:
                raise
            assume_new = False  # a duplicate network id: again, finding the first answer
            optimistic = False  # (the lookup by network id needs the transaction)
    raise AssertionError("unreachable")


async def run_clearing(services: Services, raw: object) -> dict[str, Any]:
    if not isinstance(raw, Mapping):
        raise InvalidInput("The body must be a JSON object")
    clearing_id = _text(raw, "id", max_len=128) or ""
    authorization_id = _text(raw, "authorization_id", max_len=128) or ""
    currency = parse_currency(raw.get("currency"))
    amount = _amount(raw, currency)
    assert amount is not None
    final = raw.get("final", True)
    if not isinstance(final, bool):
        raise InvalidInput("final must be true or false", field=["final"])
    now = utcnow()
    async with SqlUnitOfWork(services.engine, actor=NETWORK) as uow:
        auth = await settlement.clear(uow, services.auth_config, clearing_id=clearing_id,
                                      authorization_id=authorization_id, amount=amount,
                                      currency=currency, final=final, now=now)
        await uow.commit()
    return {"id": clearing_id, "authorization_id": authorization_id, "status": auth.status.name.lower(),
            "cleared_amount": money_text(auth.cleared_amount, auth.billing_currency),
            "held_amount": money_text(auth.held_amount, auth.billing_currency),
            "billing_currency": auth.billing_currency}


async def run_reversal(services: Services, raw: object) -> dict[str, Any]:
    if not isinstance(raw, Mapping):
        raise InvalidInput("The body must be a JSON object")
    reversal_id = _text(raw, "id", max_len=128) or ""
    authorization_id = _text(raw, "authorization_id", max_len=128) or ""
    currency = parse_currency(raw["currency"]) if raw.get("currency") is not None else None
    # The currency's decimals are checked by the reversal itself, which knows the
    # authorization's billing currency when the request names none.
    amount = _decimal(raw["amount"]) if raw.get("amount") is not None else None
    now = utcnow()
    async with SqlUnitOfWork(services.engine, actor=NETWORK) as uow:
        auth = await settlement.reverse(uow, reversal_id=reversal_id, authorization_id=authorization_id,
                                        amount=amount, currency=currency, now=now)
        await uow.commit()
    return {"id": reversal_id, "authorization_id": authorization_id, "status": auth.status.name.lower(),
            "released_amount": money_text(auth.released_amount, auth.billing_currency),
            "held_amount": money_text(auth.held_amount, auth.billing_currency),
            "billing_currency": auth.billing_currency}


async def stored_answer(services: Services, message_id: str) -> tuple[int, dict[str, Any]] | None:
    return await network_messages.stored(services.engine, message_id)


async def store_answer(services: Services, message_id: str, endpoint: str, status: int,
                       response: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """Keep the answer for a repeated webhook-id; the first stored answer wins."""
    return await network_messages.store(services.engine, message_id, endpoint, status, response, utcnow())
