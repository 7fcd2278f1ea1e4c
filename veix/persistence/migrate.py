"""Run Alembic migrations from code (``veix migrate``, ``veix serve``, tests)."""

from __future__ import annotations

import asyncio
from importlib import resources

from alembic import command
from alembic.config import Config
from sqlalchemy.ext.asyncio import AsyncEngine


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(resources.files("veix.persistence") / "migrations"))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


async def migrate(engine: AsyncEngine) -> None:
    """Upgrade to head over the given engine (one connection, committed)."""
    cfg = alembic_config(engine.url.render_as_string(hide_password=False))

    def _upgrade(connection: object) -> None:
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, "head")

    async with engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            # Two processes starting at once must not both create the tables.
            from sqlalchemy import text

            await conn.execute(text("SELECT pg_advisory_lock(7405)"))
        await conn.run_sync(_upgrade)
        await conn.commit()
        if conn.dialect.name == "postgresql":
            from sqlalchemy import text

            await conn.execute(text("SELECT pg_advisory_unlock(7405)"))
            await conn.commit()


def migrate_sync(engine: AsyncEngine) -> None:
    asyncio.run(migrate(engine))
