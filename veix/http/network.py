"""``POST /v1/network/{authorizations,clearings,reversals}`` (NETWORK.md).

Every request is signed the Standard Webhooks way; a bad signature or a stale
timestamp gets 401 and changes nothing. A repeated ``webhook-id`` gets the
original answer. Malformed requests get a 4xx JSON body, never a 500.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from veix.domain.errors import Conflict, InsufficientFunds, InvalidStateTransition, NotFound, VeixError
from veix.http.server import RECEIVED
from veix.resolvers import network as net
from veix.resolvers.services import Services
from veix.security.signatures import SignatureError, verify

log = logging.getLogger("veix.network")
MAX_BODY = 64_000


def received_at(scope: Scope) -> float:
    """When the request arrived: stamped by ``veix serve``'s protocol
    (veix.http.server) as it read the head, else now."""
    stamp = scope.get(RECEIVED)
    return stamp if isinstance(stamp, float) else time.monotonic()


def _error_body(error: str, message: str, field: list[str] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"error": error, "message": message}
    if field:
        body["field"] = ".".join(field)
    return body


def _error(status: int, error: str, message: str, field: list[str] | None = None) -> JSONResponse:
    return JSONResponse(_error_body(error, message, field), status_code=status)


def _status_of(exc: VeixError) -> int:
    if isinstance(exc, NotFound):
        return 404
    if isinstance(exc, Conflict | InvalidStateTransition | InsufficientFunds):
        return 409
    return 400


def _endpoint(services: Services, name: str,
              handle: Callable[[Any, net.Deadline], Awaitable[tuple[int, dict[str, Any]]]]) -> Callable[..., Any]:
    async def endpoint(request: Request) -> JSONResponse:
        deadline = net.Deadline.after(received_at(request.scope), services.network_deadline)
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
            raw = orjson.loads(body)
        except (ValueError, UnicodeDecodeError, RecursionError):
            return _error(400, "invalid_json", "The body is not valid JSON")
        try:
            status, response = await handle(raw, deadline)
        except net.StoredAnswer as previous:  # late, but decided before: not a new answer to keep
            return JSONResponse(previous.response, status_code=previous.status)
        except net.PastDeadline as late:
            return JSONResponse(late.result.to_json())  # not a decision: not kept under the webhook-id
        except VeixError as exc:
            status, response = _status_of(exc), {"error": exc.code.value.lower(), "message": exc.message,
                                                 **({"field": ".".join(exc.field)} if exc.field else {})}
            if status == 400:
                return JSONResponse(response, status_code=status)  # not kept: a fixed retry may pass
        status, response = await net.store_answer(services, message_id, name, status, response)
        return JSONResponse(response, status_code=status)

    return endpoint


class _Asgi:
    """Starlette routes call a plain function with a Request; an object is an ASGI app."""

    __slots__ = ("app",)

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]]) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)


AUTHORIZATIONS_PATH = "/v1/network/authorizations"


class NetworkFrontDoor:
    """The whole app, with the card network's authorizations taken at the
    door: they go straight to their endpoint instead of through Starlette's
    middleware and router (they are the service's hottest requests; every
    other request goes to ``app``). An error the endpoint did not answer
    becomes a 500 with a JSON body, as the ServerErrorMiddleware it skips
    would give (a text one)."""

    def __init__(self, app: Any, authorizations: Callable[[Scope, Receive, Send], Awaitable[None]]) -> None:
        self.app = app
        self.authorizations = authorizations

    def __getattr__(self, name: str) -> Any:  # app.state, app.router...: the app's own
        return getattr(self.app, name)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != AUTHORIZATIONS_PATH or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: dict[str, Any]) -> None:
            nonlocal started
            started = True
            await send(message)

        try:
            await self.authorizations(scope, receive, tracking_send)
        except Exception:
            log.exception("authorization request failed")
            if started:
                raise
            data = json.dumps(_error_body("internal_error", "The authorization could not be decided")).encode()
            await send({"type": "http.response.start", "status": 500,
                        "headers": [(b"content-length", str(len(data)).encode()),
                                    (b"content-type", b"application/json")]})
            await send({"type": "http.response.body", "body": data})


def fast_authorization_endpoint(services: Services) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    """The bare ASGI endpoint of ``POST /v1/network/authorizations`` on
    PostgreSQL (see ``network_routes``)."""
    return _fast_endpoints(services)


def network_routes(services: Services, *, fast: bool = False) -> list[Route]:
    async def authorizations(raw: Any, deadline: net.Deadline) -> tuple[int, dict[str, Any]]:
        result = await net.run_authorization(services, net.parse_authorization(raw), deadline=deadline)
        return 200, result.to_json()

    async def clearings(raw: Any, deadline: net.Deadline) -> tuple[int, dict[str, Any]]:  # (no network deadline)
        return 200, await net.run_clearing(services, raw)

    async def reversals(raw: Any, deadline: net.Deadline) -> tuple[int, dict[str, Any]]:
        return 200, await net.run_reversal(services, raw)

    return [
        Route(AUTHORIZATIONS_PATH,
              _Asgi(_fast_endpoints(services)) if fast else _endpoint(services, "authorizations", authorizations),
              methods=["POST"]),
        Route("/v1/network/clearings", _endpoint(services, "clearings", clearings), methods=["POST"]),
        Route("/v1/network/reversals", _endpoint(services, "reversals", reversals), methods=["POST"]),
    ]


def _fast_endpoints(services: Services) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    async def fast_answer(headers: Headers, body: bytes, deadline: net.Deadline) -> tuple[int, dict[str, Any]]:
        """PostgreSQL: the webhook-id answer is stored inside the decision's
        transaction, so a new message costs no extra round trips."""
        if len(body) > MAX_BODY:
            return 413, _error_body("too_large", "Request body too large")
        try:
            message_id = verify(services.network_secret, headers, body)
        except SignatureError as exc:
            return 401, _error_body("invalid_signature", exc.reason)
        try:
            raw = orjson.loads(body)
        except (ValueError, UnicodeDecodeError, RecursionError):
            return 400, _error_body("invalid_json", "The body is not valid JSON")
        try:
            req = net.parse_authorization(raw)
            result = await net.run_authorization(services, req, message_id=message_id, deadline=deadline)
        except net.StoredAnswer as previous:
            return previous.status, previous.response
        except net.PastDeadline as late:
            return 200, late.result.to_json()  # not a decision: not kept under the webhook-id
        except VeixError as exc:
            previous_answer = await net.stored_answer(services, message_id)
            if previous_answer is not None:
                return previous_answer
            return _status_of(exc), _error_body(exc.code.value.lower(), exc.message, exc.field)
        return 200, result.to_json()

    async def fast_authorizations(scope: Scope, receive: Receive, send: Send) -> None:
        """A bare ASGI endpoint (no Request object or per-request wrappers:
        this path carries the card network's whole load); same answers as
        the Starlette endpoints."""
        deadline = net.Deadline.after(received_at(scope), services.network_deadline)
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size <= MAX_BODY:
                chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks) if size <= MAX_BODY else b"x" * (MAX_BODY + 1)
        status, response = await fast_answer(Headers(scope=scope), body, deadline)
        data = orjson.dumps(response)
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-length", str(len(data)).encode("latin-1")),
                                (b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": data})

    return fast_authorizations
