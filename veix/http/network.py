"""``POST /v1/network/{authorizations,clearings,reversals}`` (NETWORK.md).

Every request is signed the Standard Webhooks way; a bad signature or a stale
timestamp gets 401 and changes nothing. A repeated ``webhook-id`` gets the
original answer. Malformed requests get a 4xx JSON body, never a 500.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from veix.domain.errors import Conflict, InsufficientFunds, InvalidStateTransition, NotFound, VeixError
from veix.resolvers import network as net
from veix.resolvers.services import Services
from veix.security.signatures import SignatureError, verify

log = logging.getLogger("veix.network")
MAX_BODY = 64_000


def _error(status: int, error: str, message: str, field: list[str] | None = None) -> JSONResponse:
    body: dict[str, Any] = {"error": error, "message": message}
    if field:
        body["field"] = ".".join(field)
    return JSONResponse(body, status_code=status)


def _status_of(exc: VeixError) -> int:
    if isinstance(exc, NotFound):
        return 404
    if isinstance(exc, Conflict | InvalidStateTransition | InsufficientFunds):
        return 409
    return 400


def _endpoint(services: Services, name: str,
              handle: Callable[[Any], Awaitable[tuple[int, dict[str, Any]]]]) -> Callable[..., Any]:
    async def endpoint(request: Request) -> JSONResponse:
        body = await request.body()
        if len(body) > MAX_BODY:
            return _error(413, "too_large", "Request body too large")
        try:
            message_id = verify(services.network_secret, request.headers, body)
        except SignatureError as exc:
            return _error(401, "invalid_signature", exc.reason)
        previous = await net.stored_answer(services, message_id)
        if previous is not None:
            return JSONResponse(previous[1], status_code=previous[0])
        try:
            raw = json.loads(body)
        except (ValueError, UnicodeDecodeError, RecursionError):
            return _error(400, "invalid_json", "The body is not valid JSON")
        try:
            status, response = await handle(raw)
        except VeixError as exc:
            status, response = _status_of(exc), {"error": exc.code.value.lower(), "message": exc.message,
                                                 **({"field": ".".join(exc.field)} if exc.field else {})}
            if status == 400:
                return JSONResponse(response, status_code=status)  # not kept: a fixed retry may pass
        status, response = await net.store_answer(services, message_id, name, status, response)
        return JSONResponse(response, status_code=status)

    return endpoint


def network_routes(services: Services, *, fast: bool = False) -> list[Route]:
    async def authorizations(raw: Any) -> tuple[int, dict[str, Any]]:
        result = await net.run_authorization(services, net.parse_authorization(raw))
        return 200, result.to_json()

    async def fast_authorizations(request: Request) -> JSONResponse:
        """PostgreSQL: the webhook-id answer is stored inside the decision's
        transaction, so a new message costs no extra round trips."""
        body = await request.body()
        if len(body) > MAX_BODY:
            return _error(413, "too_large", "Request body too large")
        try:
            message_id = verify(services.network_secret, request.headers, body)
        except SignatureError as exc:
            return _error(401, "invalid_signature", exc.reason)
        try:
            raw = json.loads(body)
        except (ValueError, UnicodeDecodeError, RecursionError):
            return _error(400, "invalid_json", "The body is not valid JSON")
        try:
            req = net.parse_authorization(raw)
            result = await net.run_authorization(services, req, message_id=message_id)
        except net.StoredAnswer as previous:
            return JSONResponse(previous.response, status_code=previous.status)
        except VeixError as exc:
            previous_answer = await net.stored_answer(services, message_id)
            if previous_answer is not None:
                return JSONResponse(previous_answer[1], status_code=previous_answer[0])
            return _error(_status_of(exc), exc.code.value.lower(), exc.message, exc.field)
        return JSONResponse(result.to_json())

    async def clearings(raw: Any) -> tuple[int, dict[str, Any]]:
        return 200, await net.run_clearing(services, raw)

    async def reversals(raw: Any) -> tuple[int, dict[str, Any]]:
        return 200, await net.run_reversal(services, raw)

    return [
        Route("/v1/network/authorizations",
              fast_authorizations if fast else _endpoint(services, "authorizations", authorizations),
              methods=["POST"]),
        Route("/v1/network/clearings", _endpoint(services, "clearings", clearings), methods=["POST"]),
        Route("/v1/network/reversals", _endpoint(services, "reversals", reversals), methods=["POST"]),
    ]
