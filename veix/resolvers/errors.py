"""How domain errors reach the client: ``userErrors`` or a top-level error."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from veix.domain.errors import Forbidden, Unauthenticated, VeixError

T = TypeVar("T")

TOP_LEVEL = (Unauthenticated, Forbidden)


async def attempt(fn: Callable[[], Awaitable[T]]) -> tuple[T | None, list[VeixError]]:
    """Run a mutation body: expected errors become ``userErrors``; authentication
    and authorization errors stay top-level (with ``extensions.code``); anything
    else is a bug and propagates to be masked with a request id."""
    try:
        return await fn(), []
    except TOP_LEVEL:
        raise
    except VeixError as exc:
        return None, [exc]
