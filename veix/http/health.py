"""Probes: ``/healthz`` (process alive) and ``/readyz`` (dependencies reachable)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.requests import Request
from starlette.responses import JSONResponse


async def healthz(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


def readyz_endpoint(
    engine: AsyncEngine, broadcast_ping: Callable[[], Awaitable[None]]
) -> Callable[[Request], Awaitable[JSONResponse]]:
    async def readyz(request: Request) -> JSONResponse:
        checks: dict[str, str] = {}

        async def db() -> None:
            async with engine.connect() as conn:
                await conn.execute(text("SELECT 1"))

        for name, probe in (("database", db), ("broadcaster", broadcast_ping)):
            try:
                await asyncio.wait_for(probe(), timeout=2)
                checks[name] = "ok"
            except Exception as exc:  # noqa: BLE001 - a probe reports any failure as not ready
                checks[name] = f"unavailable: {type(exc).__name__}"
        ready = all(v == "ok" for v in checks.values())
        return JSONResponse({"status": "ready" if ready else "not ready", "checks": checks},
                            status_code=200 if ready else 503)

    return readyz
