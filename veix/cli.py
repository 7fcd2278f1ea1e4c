"""The ``veix`` command: serve, worker, migrate, demo, audit/ledger verification, schema export.

Exit status: 0 on success, 1 when a verification finds a problem (or the
database cannot be used), 2 when the command refuses to run (bad arguments,
missing production secrets, an unsafe configuration).

Only ``serve``, ``worker`` and ``demo`` need the application secrets (and so
refuse to run in production without them); ``migrate``, the verifications and
``export-schema`` use none, so a migration job or an operator's shell does not
need the signing and vault keys.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from pydantic import ValidationError
from sqlalchemy import delete
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from veix.config import MissingSecrets, Settings, load_settings
from veix.domain.events import utcnow
from veix.persistence.engine import WRITE, make_engine
from veix.persistence.migrate import migrate
from veix.persistence.tables import idempotency_keys

log = logging.getLogger("veix.cli")

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
DEMO_FILE_NAME = ".veix-demo.json"

T = TypeVar("T")


class CliError(Exception):
    """A refusal or failure reported as one message on stderr, without a traceback."""

    def __init__(self, message: str, status: int = 2) -> None:
        super().__init__(message)
        self.status = status


# ------------------------------------------------------------------ helpers
def _configure_logging(level: str = "INFO") -> None:
    logging.basicConfig(level=level, format=LOG_FORMAT, force=True)


def _settings(*, with_secrets: bool) -> Settings:
    """Settings from ``VEIX_*``; secrets filled in (development) or required (production)."""
    try:
        settings = load_settings() if with_secrets else Settings()
    except MissingSecrets as exc:
        raise CliError(f"veix: {exc}") from None
    except ValidationError as exc:
        raise CliError(f"veix: invalid VEIX_* settings:\n{exc}") from None
    level = settings.log_level.upper()
    if not isinstance(logging.getLevelName(level), int):
        raise CliError(f"veix: VEIX_LOG_LEVEL={settings.log_level!r} is not a logging level")
    logging.getLogger().setLevel(level)
    return settings


def _safe_url(settings: Settings) -> str:
    from sqlalchemy.engine import make_url

    return make_url(settings.database_url).render_as_string(hide_password=True)


def _with_engine(settings: Settings, work: Callable[[AsyncEngine], Awaitable[T]]) -> T:
    """Run ``work`` on a fresh engine; database failures become a one-line error (status 1)."""

    async def run() -> T:
        engine = make_engine(settings.database_url, pool_size=2)
        try:
            return await work(engine)
        finally:
            await engine.dispose()

    try:
        return asyncio.run(run())
    except (SQLAlchemyError, OSError) as exc:
        message = str(exc).splitlines()[0] if str(exc) else ""
        raise CliError(
            f"veix: database error on {_safe_url(settings)}: {type(exc).__name__}: {message}",
            status=1,
        ) from None


def _demo_file(settings: Settings) -> Path:
    """Where the first seed's demo password is kept: beside the secrets file, git-ignored."""
    return settings.secrets_file.parent / DEMO_FILE_NAME


def _write_demo_file(settings: Settings, seed: Any) -> Path:
    path = _demo_file(settings)
    data = {
        "email": seed.email,
        "password": seed.password,
        "user_id": str(seed.user_id),
        "business_id": str(seed.business_id),
        "seeded_at": utcnow().isoformat(),
    }
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(json.dumps(data, indent=2) + "\n")
    os.chmod(path, 0o600)
    return path


def _refuse_demo_in_production(settings: Settings) -> None:
    if settings.env == "production":
        raise CliError(
            "veix: demo data is for development: refusing to seed with VEIX_ENV=production"
        )


def _host_for_url(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


# ------------------------------------------------------------------ migrate
async def _migrate_and_report(engine: AsyncEngine) -> tuple[str | None, str | None]:
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    from veix.persistence.migrate import alembic_config

    await migrate(engine)
    head = ScriptDirectory.from_config(
        alembic_config(engine.url.render_as_string(hide_password=False))
    ).get_current_head()
    async with engine.connect() as conn:
        current = await conn.run_sync(
            lambda sync_conn: MigrationContext.configure(sync_conn).get_current_revision()
        )
    return current, head


def cmd_migrate(args: argparse.Namespace) -> int:
    settings = _settings(with_secrets=False)
    current, head = _with_engine(settings, _migrate_and_report)
    if current != head:
        raise CliError(f"veix: database at revision {current}, expected head {head}", status=1)
    print(f"database {_safe_url(settings)} migrated to head revision {head}")
    return 0


# ------------------------------------------------------------------ demo
def _seed(settings: Settings, *, only_into_empty: bool) -> tuple[Any, Any]:
    """Migrate the embedded default, then seed the demo.

    Returns (DemoSeed, or None when nothing was seeded; the demo user's id, or
    None when there is no demo account). With ``only_into_empty`` a database
    that already has users is left alone.
    """
    from veix.app import Argon2Hasher
    from veix.persistence.demo import demo_user_id, has_users, seed_demo

    async def work(engine: AsyncEngine) -> tuple[Any, Any]:
        if settings.is_sqlite:
            await migrate(engine)
        seed = None
        if not only_into_empty or not await has_users(engine):
            seed = await seed_demo(engine, Argon2Hasher())
        return seed, (seed.user_id if seed else await demo_user_id(engine))

    return _with_engine(settings, work)


def _login_lines(settings: Settings, seed: Any) -> list[str]:
    from veix.persistence.demo import DEMO_EMAIL

    if seed is not None:
        path = _write_demo_file(settings, seed)
        return [
            f"  Demo login:    {seed.email}  password: {seed.password}",
            f"                 (shown once; also stored in {path})",
        ]
    path = _demo_file(settings)
    where = (f"stored in {path}" if path.exists()
             else f"{path} is missing: the demo was seeded with another secrets directory")
    return [
        f"  Demo login:    {DEMO_EMAIL}",
        f"                 (password printed at first seed; {where})",
    ]


def cmd_demo(args: argparse.Namespace) -> int:
    settings = _settings(with_secrets=True)
    _refuse_demo_in_production(settings)
    seed, _user_id = _seed(settings, only_into_empty=False)
    print("Demo data seeded:" if seed else "Demo data already seeded (nothing changed):")
    for line in _login_lines(settings, seed):
        print(line)
    if seed is not None:
        print(f"  Business:      Demo Coffee GmbH ({seed.business_id})")
    print("  Run `veix serve --demo` for a ready access token.")
    return 0


# ------------------------------------------------------------------ serve
def _refusals(settings: Settings, workers: int) -> list[str]:
    if workers <= 1:
        return []
    reasons = []
    if settings.is_memory_broadcast:
        reasons.append(
            "live events across processes need Redis: with VEIX_BROADCAST_URL=memory:// an event "
            "published in one worker never reaches subscribers connected to another. "
            "Set VEIX_BROADCAST_URL=redis://... to run several workers."
        )
    if settings.is_sqlite:
        reasons.append(
            "SQLite is a single file with a single writer: several server processes would only "
            "queue on its write lock, not scale. Use PostgreSQL "
            "(VEIX_DATABASE_URL=postgresql+asyncpg://...) to run several workers."
        )
    return [f"veix serve: refusing --workers {workers}: {r}" for r in reasons]


def _demo_banner(settings: Settings, host: str, port: int) -> None:
    from veix.security.tokens import TokenService

    seed, user_id = _seed(settings, only_into_empty=True)
    base = f"http://{_host_for_url(host)}:{port}"
    lines = [f"Veix demo on {base}", f"  GraphiQL:      {base}/graphql"]
    if user_id is None:
        lines.append(
            "  No demo data: it is seeded only into an empty database, and this one has users. "
            "Run `veix demo` to add the demo account anyway."
        )
    else:
        lines += _login_lines(settings, seed)
        assert settings.secret_key is not None
        tokens = TokenService(
            settings.secret_key, access_ttl=timedelta(minutes=settings.access_token_minutes)
        )
        token, expires = tokens.issue_access(user_id)
        lines += [
            f"  Access token:  {token}",
            f"                 expires {expires:%Y-%m-%d %H:%M:%S} UTC "
            f"(in {settings.access_token_minutes} min); for a fresh one run the logIn mutation "
            "with the demo login",
            "                 send it as the header  Authorization: Bearer <token>",
        ]
    print("\n".join(lines), flush=True)


def cmd_serve(args: argparse.Namespace) -> int:
    settings = _settings(with_secrets=True)
    if args.workers < 1:
        raise CliError("veix serve: --workers must be at least 1")
    refusals = _refusals(settings, args.workers)
    if refusals:
        raise CliError("\n".join(refusals))
    if args.demo:
        _refuse_demo_in_production(settings)
        _demo_banner(settings, args.host, args.port)  # migrates the embedded default first
    elif settings.is_sqlite:
        _with_engine(settings, migrate)

    import uvicorn

    uvicorn.run(
        "veix.app:app_factory",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        loop="uvloop",
        http="httptools",
        log_level=settings.log_level.lower(),
        proxy_headers=True,
        access_log=False,
    )
    return 0


# ------------------------------------------------------------------ worker
async def purge_expired_idempotency_keys(engine: AsyncEngine, now: datetime) -> int:
    """Delete idempotency keys past their retention; returns how many went."""
    async with engine.connect() as conn:
        conn = await conn.execution_options(**WRITE)
        async with conn.begin():
            result = await conn.execute(
                delete(idempotency_keys).where(idempotency_keys.c.expires_at < now)
            )
    return int(result.rowcount or 0)


async def _work(settings: Settings, interval: float) -> None:
    engine = make_engine(settings.database_url, pool_size=2)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    handled = (signal.SIGTERM, signal.SIGINT)
    for sig in handled:
        loop.add_signal_handler(sig, stop.set)
    try:
        if settings.is_sqlite:
            await migrate(engine)
        log.info("worker started: purging expired idempotency keys every %gs", interval)
        while not stop.is_set():
            try:
                purged = await purge_expired_idempotency_keys(engine, utcnow())
            except (SQLAlchemyError, OSError):
                log.exception("purging idempotency keys failed; retrying in %gs", interval)
            else:
                log.log(logging.INFO if purged else logging.DEBUG,
                        "purged %d expired idempotency key(s)", purged)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=interval)
    finally:
        for sig in handled:
            loop.remove_signal_handler(sig)
        await engine.dispose()
        log.info("worker stopped")


def cmd_worker(args: argparse.Namespace) -> int:
    settings = _settings(with_secrets=True)
    if not args.interval > 0:
        raise CliError("veix worker: --interval must be a positive number of seconds")
    try:
        asyncio.run(_work(settings, args.interval))
    except (SQLAlchemyError, OSError) as exc:
        raise CliError(f"veix worker: database error on {_safe_url(settings)}: {exc}", 1) from None
    return 0


# ------------------------------------------------------------------ verification
def cmd_audit_verify(args: argparse.Namespace) -> int:
    from veix.persistence.verify import verify_audit

    settings = _settings(with_secrets=False)
    count, broken = _with_engine(settings, verify_audit)
    if broken is not None:
        print(f"audit chain BROKEN at seq {broken.seq}: {broken.reason}")
        return 1
    print(f"audit chain OK ({count} records)")
    return 0


def cmd_ledger_verify(args: argparse.Namespace) -> int:
    from veix.persistence.verify import ledger_report

    settings = _settings(with_secrets=False)
    report = _with_engine(settings, ledger_report)
    if report.problems:
        for problem in report.problems:
            print(problem)
        print(f"ledger BROKEN: {len(report.problems)} problem(s) in {report.entries} entries, "
              f"{report.accounts} accounts")
        return 1
    print(f"ledger OK ({report.entries} entries, {report.accounts} accounts)")
    return 0


# ------------------------------------------------------------------ schema
def cmd_export_schema(args: argparse.Namespace) -> int:
    _settings(with_secrets=False)
    from veix.schema import build_schema

    sdl = str(build_schema()) + "\n"
    if args.output == "-":
        sys.stdout.write(sdl)
        return 0
    path = Path(args.output)
    try:
        path.write_text(sdl, encoding="utf-8")
    except OSError as exc:
        raise CliError(f"veix export-schema: cannot write {path}: {exc.strerror}", 1) from None
    print(f"schema written to {path}", file=sys.stderr)
    return 0


# ------------------------------------------------------------------ parser
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="veix", description="Veix payments API: server, worker and operations commands. "
        "Configuration comes from VEIX_* environment variables (and .env).",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser(
        "serve", help="run the API server (uvicorn)",
        description="Run the API server. On the embedded default (SQLite) the database is "
        "migrated first.",
    )
    serve.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="port to bind (default 8000)")
    serve.add_argument(
        "--workers", type=int, default=1,
        help="server processes (default 1; more need PostgreSQL and VEIX_BROADCAST_URL=redis://...)",
    )
    serve.add_argument(
        "--demo", action="store_true",
        help="seed demo data into an empty database and print a login and a ready access token",
    )
    serve.set_defaults(func=cmd_serve)

    worker = sub.add_parser(
        "worker", help="run background jobs (purge expired idempotency keys; outbox dispatcher to come)",
        description="Run background jobs until SIGTERM or SIGINT: every --interval seconds, purge "
        "expired idempotency keys. The outbox dispatcher (live events and outbound webhooks) "
        "will join this loop in a later issue.",
    )
    worker.add_argument("--interval", type=float, default=30.0,
                        help="seconds between runs (default 30)")
    worker.set_defaults(func=cmd_worker)

    mig = sub.add_parser("migrate", help="migrate the configured database to the head revision")
    mig.set_defaults(func=cmd_migrate)

    demo = sub.add_parser(
        "demo", help="seed demo data (idempotent) and print the demo login",
        description="Seed the demo owner demo@veix.dev, the business Demo Coffee GmbH, its team "
        "and funds. Does nothing if the demo account exists. Refused in production.",
    )
    demo.set_defaults(func=cmd_demo)

    audit = sub.add_parser("audit", help="audit log operations")
    audit_sub = audit.add_subparsers(dest="audit_command", required=True, metavar="COMMAND")
    audit_sub.add_parser(
        "verify", help="check the audit log's hash chain; exit 1 at the first broken link",
    ).set_defaults(func=cmd_audit_verify)

    ledger = sub.add_parser("ledger", help="ledger operations")
    ledger_sub = ledger.add_subparsers(dest="ledger_command", required=True, metavar="COMMAND")
    ledger_sub.add_parser(
        "verify", help="check that entries balance and cached balances match; exit 1 on problems",
    ).set_defaults(func=cmd_ledger_verify)

    export = sub.add_parser("export-schema", help="write the GraphQL SDL")
    export.add_argument("--output", "-o", default="schema.graphql",
                        help="file to write (default schema.graphql; '-' for stdout)")
    export.set_defaults(func=cmd_export_schema)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _configure_logging()
    try:
        status: int = args.func(args)
    except CliError as exc:
        print(str(exc), file=sys.stderr)
        return exc.status
    except KeyboardInterrupt:
        return 130
    return status


if __name__ == "__main__":
    raise SystemExit(main())
