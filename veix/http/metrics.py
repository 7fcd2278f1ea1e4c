"""Prometheus metrics: request counts and latency by GraphQL operation and route."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest
from starlette.requests import Request
from starlette.responses import Response

GRAPHQL_LATENCY = Histogram(
    "veix_graphql_request_duration_seconds", "GraphQL request latency by operation",
    ["operation"], buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
GRAPHQL_REQUESTS = Counter(
    "veix_graphql_requests_total", "GraphQL requests by operation and outcome",
    ["operation", "outcome"],
)
HTTP_REQUESTS = Counter("veix_http_requests_total", "HTTP requests by route and status",
                        ["route", "status"])


def observe_graphql(operation: str, seconds: float, had_errors: bool) -> None:
    GRAPHQL_LATENCY.labels(operation).observe(seconds)
    GRAPHQL_REQUESTS.labels(operation, "error" if had_errors else "ok").inc()


async def metrics_endpoint(request: Request) -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
