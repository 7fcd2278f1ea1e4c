"""Inbound gateway webhooks and the sandbox's 3-D Secure page.

``POST /v1/webhooks/{gateway}`` (sandbox, stripe, paypal): the gateway's
adapter verifies the signature and timestamp before anything is parsed; the
event is stored and processed once per (gateway, event id), in one database
transaction. Answers:

* 200 ``{"received": true, "outcome": ...}``: applied, stale (the payment had
  moved past it), duplicate, unmatched (kept, applied when its payment
  appears) or ignored;
* 400 ``invalid_signature`` / 413 ``too_large``: nothing stored;
* 404 ``unknown_gateway``: the gateway is not configured here;
* 503 ``gateway_unavailable``: verification needs the gateway (PayPal) and it
  did not answer, so the gateway delivers again later.

``POST /v1/sandbox/3ds/{reference}`` completes a sandbox 3-D Secure challenge
(body ``{"outcome": "fail"}`` fails it); only when the sandbox is enabled.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from veix.domain.errors import NotFound, VeixError
from veix.domain.gateway import GatewayUnavailable, WebhookRejected
from veix.domain.transactions import Gateway
from veix.persistence.uow import SqlUnitOfWork
from veix.resolvers.ids import to_global_id
from veix.resolvers.services import Services

log = logging.getLogger("veix.payments")
MAX_BODY = 1_000_000
INBOUND = {"sandbox": Gateway.SANDBOX, "stripe": Gateway.STRIPE, "paypal": Gateway.PAYPAL}


def _error(status: int, error: str, message: str) -> JSONResponse:
    return JSONResponse({"error": error, "message": message}, status_code=status)


def payment_routes(services: Services) -> list[Route]:
    def new_uow() -> SqlUnitOfWork:
        return SqlUnitOfWork(services.engine)

    async def webhook(request: Request) -> JSONResponse:
        name = request.path_params["gateway"]
        gateway = INBOUND.get(name)
        gw = services.gateways.get(gateway) if gateway is not None and services.gateways else None
        if gw is None or services.payments is None:
            return _error(404, "unknown_gateway", f"No {name[:20]!r} gateway is configured here")
        body = await request.body()
        if len(body) > MAX_BODY:
            return _error(413, "too_large", "Request body too large")
        headers = {k.lower(): v for k, v in request.headers.items()}
        try:
            event = await gw.parse_webhook(body, headers)
        except WebhookRejected as exc:
            log.info("rejected %s webhook: %s", name, exc)
            return _error(400, "invalid_signature", str(exc)[:200] or "rejected")
        except GatewayUnavailable:
            return _error(503, "gateway_unavailable", "Could not verify the event with the gateway; retry")
        try:
            outcome = await services.payments.apply_event(new_uow, gw.name, event)
        except VeixError as exc:
            # Kept by nobody: the gateway retries, and the retry may find the state it needs.
            log.warning("%s webhook %s not applied: %s", name, event.event_id, exc.message)
            return _error(409, exc.code.value.lower(), exc.message)
        return JSONResponse({"received": True, "outcome": outcome})

    async def three_ds(request: Request) -> JSONResponse:
        if services.payments is None or Gateway.SANDBOX not in (services.gateways or {}):
            return _error(404, "not_found", "The sandbox is not enabled")
        body = await request.body()
        params: dict[str, Any] = {}
        if body:
            try:
                parsed = json.loads(body)
            except (ValueError, UnicodeDecodeError, RecursionError):
                return _error(400, "invalid_json", "The body is not valid JSON")
            if not isinstance(parsed, dict):
                return _error(400, "invalid_json", "The body must be a JSON object")
            params = parsed
        try:
            t = await services.payments.confirm(new_uow, Gateway.SANDBOX, request.path_params["reference"], params)
        except NotFound:
            return _error(404, "not_found", "No such sandbox payment")
        except VeixError as exc:
            return _error(409, exc.code.value.lower(), exc.message)
        return JSONResponse({"transactionId": to_global_id("Transaction", t.id), "status": t.status.name})

    return [
        Route("/v1/webhooks/{gateway}", webhook, methods=["POST"]),
        Route("/v1/sandbox/3ds/{reference}", three_ds, methods=["POST"]),
    ]
