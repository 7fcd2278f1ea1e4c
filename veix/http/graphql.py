"""The ``/graphql`` endpoint: a lean handler around ``schema.execute``.

Owning the handler (instead of Strawberry's view) lets us authenticate once,
share one read connection per request and close it, mask unexpected errors
with a request id that is also in the log, and time each operation.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from typing import Any

import strawberry
from graphql import GraphQLError
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from strawberry.http.ides import get_graphql_ide_html
from strawberry.schema.exceptions import InvalidOperationTypeError
from strawberry.types.graphql import OperationType

from veix.domain.errors import Unauthenticated, VeixError
from veix.http.metrics import observe_graphql
from veix.resolvers.context import Context, authenticate
from veix.resolvers.services import Services

log = logging.getLogger("veix.graphql")
_OPERATION_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
MAX_BODY = 1_000_000


def _bad_request(message: str, request_id: str, status: int = 400) -> JSONResponse:
    return JSONResponse(
        {"errors": [{"message": message, "extensions": {"code": "BAD_REQUEST",
                                                        "requestId": request_id}}]},
        status_code=status, headers={"x-request-id": request_id},
    )


def format_error(error: GraphQLError, request_id: str) -> dict[str, Any]:
    original = error.original_error
    out: dict[str, Any] = {"message": error.message}
    if error.locations:
        out["locations"] = [{"line": loc.line, "column": loc.column} for loc in error.locations]
    if error.path:
        out["path"] = error.path
    if isinstance(original, VeixError):
        code = "UNAUTHENTICATED" if isinstance(original, Unauthenticated) else original.code.value
        out["message"] = original.message
        out["extensions"] = {"code": code, "requestId": request_id}
    elif original is None:
        out["extensions"] = {"code": "GRAPHQL_VALIDATION_FAILED", "requestId": request_id}
    elif isinstance(original, GraphQLError):
        # A variable value that its type cannot coerce (e.g. Decimal "abc", Int "x"):
        # graphql-core wraps the coercion error; it is the client's input, not a bug.
        out["extensions"] = {"code": "INVALID_INPUT", "requestId": request_id}
    else:
        log.error("unexpected error in request %s", request_id, exc_info=original)
        out["message"] = f"Internal server error (request id {request_id})"
        out["extensions"] = {"code": "INTERNAL_SERVER_ERROR", "requestId": request_id}
    return out


class GraphQLEndpoint:
    def __init__(self, schema: strawberry.Schema, services: Services) -> None:
        self.schema = schema
        self.services = services

    async def handle(self, request: Request) -> Response:
        request_id = request.headers.get("x-request-id") or uuid.uuid4().hex
        if not re.fullmatch(r"[A-Za-z0-9._-]{1,64}", request_id):
            request_id = uuid.uuid4().hex
        if request.method == "GET":
            accept = request.headers.get("accept", "")
            if "text/html" in accept and "query" not in request.query_params:
                return HTMLResponse(get_graphql_ide_html("graphiql"))
            params: dict[str, Any] = dict(request.query_params)
            if "variables" in params:
                try:
                    params["variables"] = json.loads(params["variables"])
                except ValueError:
                    return _bad_request("variables is not valid JSON", request_id)
            allowed = {OperationType.QUERY}
        elif request.method == "POST":
            body = await request.body()
            if len(body) > MAX_BODY:
                return _bad_request("Request body too large", request_id, 413)
            try:
                params = json.loads(body)
            except (ValueError, RecursionError):
                return _bad_request("Request body is not valid JSON", request_id)
            allowed = {OperationType.QUERY, OperationType.MUTATION}
        else:
            return _bad_request("Use GET or POST", request_id, 405)
        if not isinstance(params, dict) or not isinstance(params.get("query"), str):
            return _bad_request("Missing 'query' string", request_id)
        variables = params.get("variables")
        if variables is not None and not isinstance(variables, dict):
            return _bad_request("'variables' must be an object", request_id)
        operation_name = params.get("operationName")
        if operation_name is not None and not isinstance(operation_name, str):
            return _bad_request("'operationName' must be a string", request_id)

        ctx = Context(self.services, request_id)
        started = time.perf_counter()
        try:
            await authenticate(ctx, request.headers.get("authorization"))
            result = await self.schema.execute(
                params["query"], variable_values=variables, context_value=ctx,
                operation_name=operation_name, allowed_operation_types=allowed,
            )
        except InvalidOperationTypeError:
            return _bad_request("Mutations must be sent with POST", request_id, 405)
        finally:
            await ctx.close()
        label = operation_name if operation_name and _OPERATION_NAME.match(operation_name) else "anonymous"
        observe_graphql(label, time.perf_counter() - started, bool(result.errors))
        payload: dict[str, Any] = {"data": result.data}
        if result.errors:
            payload["errors"] = [format_error(e, request_id) for e in result.errors]
        return JSONResponse(payload, headers={"x-request-id": request_id})


class QuietSchema(strawberry.Schema):
    """Unexpected errors are logged once by the endpoint, with the request id."""

    def process_errors(self, errors: list[GraphQLError], execution_context: Any = None) -> None:
        return None
