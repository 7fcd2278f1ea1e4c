"""The ``veix`` command: serve, worker, jobs, migrate, demo, audit/ledger verification,
schema export, vault key rotation, and the card network simulator and benchmark.

Exit status: 0 on success, 1 when a verification finds a problem (or the
database cannot be used, or a job or benchmark failed), 2 when the command
refuses to run (bad arguments, missing production secrets, an unsafe
configuration).

Only ``serve``, ``worker``, ``demo``, ``vault rotate`` and ``bench setup-cards``
need the application secrets (and so refuse to run in production without
them); ``migrate``, ``jobs run-once``, the verifications and ``export-schema``
use none, so a migration job or an operator's shell does not need the signing
and vault keys. ``network simulate`` and ``bench authorize`` need only the
network secret, which they never generate: a fresh one could not match the
server's.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import math
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Coroutine
from datetime import UTC, datetime, timedelta
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
        if seed is not None and settings.sandbox_enabled:
            from veix.app import build_gateways, build_payments, close_gateways
            from veix.domain.risk import RulesScorer
            from veix.persistence.demo import seed_demo_payments

            gateways = build_gateways(settings, engine)
            try:
                await seed_demo_payments(engine, build_payments(settings, engine, gateways, RulesScorer()),
                                         seed.business_id)
            finally:
                await close_gateways(gateways)
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

    if "VEIX_PUBLIC_URL" not in os.environ:
        # Links the service hands out (the sandbox's 3-D Secure page) point at where it listens;
        # the workers uvicorn starts inherit the environment.
        os.environ["VEIX_PUBLIC_URL"] = f"http://{_host_for_url(args.host)}:{args.port}"

    import uvicorn

    from veix.http.server import OneWriteHttpToolsProtocol, run_workers

    options: dict[str, Any] = dict(
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        loop="uvloop",
        http=OneWriteHttpToolsProtocol,  # httptools, one write per small response
        log_level=settings.log_level.lower(),
        proxy_headers=True,
        access_log=False,
    )
    if args.workers == 1:
        uvicorn.run("veix.app:app_factory", **options)
        return 0
    try:
        run_workers(uvicorn.Config("veix.app:app_factory", **options))  # a listening socket per worker
    except OSError as exc:  # the address is taken, or not ours
        raise CliError(f"veix serve: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}") from None
    except KeyboardInterrupt:
        pass
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


Job = Callable[[datetime], Awaitable[int]]
JOB_MESSAGES = {
    "idempotency": "purged {} expired idempotency key(s)",
    "holds": "released {} expired card hold(s)",
    "cards": "expired {} card(s) past their expiry date",
    "risk": "pruned {} risk history row(s) past their window (velocity: an hour, history: 90 days)",
    "outbox": "pruned {} dispatched event(s) past the replay window (7 days) from the outbox",
}


def background_jobs(engine: AsyncEngine, batch: int) -> dict[str, Job]:
    """The worker's jobs by name; each takes the current time and returns how many items it handled."""
    from veix.events.channels import DEFAULT_RETENTION
    from veix.persistence.jobs import expire_cards, expire_holds, prune_outbox, prune_risk_history

    return {
        "idempotency": lambda now: purge_expired_idempotency_keys(engine, now),
        "holds": lambda now: expire_holds(engine, now, batch),
        # Card expiry dates are compared with the UTC day, as the authorization path does.
        "cards": lambda now: expire_cards(engine, now.astimezone(UTC).date(), now=now, batch=batch),
        "risk": lambda now: prune_risk_history(engine, now, batch),
        "outbox": lambda now: prune_outbox(engine, now - DEFAULT_RETENTION, batch),
    }


async def _work(settings: Settings, interval: float, batch: int) -> None:
    engine = make_engine(settings.database_url, pool_size=2)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    handled = (signal.SIGTERM, signal.SIGINT)
    for sig in handled:
        loop.add_signal_handler(sig, stop.set)
    jobs = background_jobs(engine, batch)
    dispatching: asyncio.Task[None] | None = None
    delivering: asyncio.Task[None] | None = None
    upkeep: asyncio.Task[None] | None = None
    gateways: dict[Any, Any] = {}
    broadcast: Any = None
    try:
        if settings.is_sqlite:
            await migrate(engine)
        if settings.is_memory_broadcast:
            # In-process channels reach no server: the servers' own dispatchers publish.
            log.info("outbox dispatcher not started: VEIX_BROADCAST_URL is memory://")
        else:
            from broadcaster import Broadcast

            from veix.events.dispatcher import OutboxDispatcher

            broadcast = Broadcast(settings.broadcast_url)
            await broadcast.connect()
            dispatching = asyncio.create_task(OutboxDispatcher(engine, broadcast).run_forever(stop))
            log.info("outbox dispatcher started on %s", settings.broadcast_url.split("@")[-1])
        from veix.events.webhooks import WebhookDeliverer
        from veix.security.vault import Vault

        assert settings.vault_key is not None
        delivering = asyncio.create_task(
            WebhookDeliverer(engine, Vault.from_setting(settings.vault_key)).run_forever(stop))
        log.info("webhook deliverer started")
        from veix.app import build_gateways, build_payments, close_gateways, payments_maintenance
        from veix.domain.risk import RulesScorer

        gateways = build_gateways(settings, engine)
        upkeep = asyncio.create_task(payments_maintenance(
            engine, build_payments(settings, engine, gateways, RulesScorer()), gateways,
            settings.crypto_poll_seconds, stop))
        log.info("payments upkeep started (late gateway events%s)",
                 ", crypto deposits" if "crypto" in {g.value for g in gateways} else "")
        log.info("worker started: every %gs purging expired idempotency keys, releasing expired "
                 "card holds, expiring cards, pruning the risk history and the dispatched outbox", interval)
        while not stop.is_set():
            for name, job in jobs.items():
                if stop.is_set():
                    break
                try:
                    count = await job(utcnow())
                except (SQLAlchemyError, OSError):
                    # One failing job (e.g. the database away) must not stop the others or the loop.
                    log.exception("job %s failed; retrying in %gs", name, interval)
                else:
                    log.log(logging.INFO if count else logging.DEBUG, JOB_MESSAGES[name].format(count))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=interval)
    finally:
        stop.set()
        if dispatching is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(dispatching, timeout=10)
        if delivering is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(delivering, timeout=15)
        if upkeep is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(upkeep, timeout=10)
            await close_gateways(gateways)
        if broadcast is not None:
            with contextlib.suppress(Exception):
                await broadcast.disconnect()
        for sig in handled:
            loop.remove_signal_handler(sig)
        await engine.dispose()
        log.info("worker stopped")


def cmd_worker(args: argparse.Namespace) -> int:
    settings = _settings(with_secrets=True)
    if not args.interval > 0:
        raise CliError("veix worker: --interval must be a positive number of seconds")
    if args.batch < 1:
        raise CliError("veix worker: --batch must be at least 1")
    try:
        asyncio.run(_work(settings, args.interval, args.batch))
    except (SQLAlchemyError, OSError) as exc:
        raise CliError(f"veix worker: database error on {_safe_url(settings)}: {exc}", 1) from None
    return 0


# ------------------------------------------------------------------ jobs
def _aware_time(text: str) -> datetime:
    """``--now``: an ISO 8601 time with a zone (``2099-01-01T00:00:00Z``)."""
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO 8601 time") from None
    if moment.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} needs a time zone, e.g. a trailing Z")
    return moment.astimezone(UTC)


def cmd_jobs_run_once(args: argparse.Namespace) -> int:
    settings = _settings(with_secrets=False)
    if args.batch < 1:
        raise CliError("veix jobs run-once: --batch must be at least 1")
    now = args.now or utcnow()

    async def work(engine: AsyncEngine) -> dict[str, int]:
        if settings.is_sqlite:
            await migrate(engine)
        return {name: await job(now) for name, job in background_jobs(engine, args.batch).items()}

    counts = _with_engine(settings, work)
    for name, count in counts.items():
        print(JOB_MESSAGES[name].format(count))
    return 0


def cmd_payments_upkeep(args: argparse.Namespace) -> int:
    """One round of what the worker does for payments: late gateway events, crypto deposits."""
    from veix.app import build_gateways, build_payments, close_gateways, payments_round
    from veix.domain.risk import RulesScorer

    settings = _settings(with_secrets=True)

    async def work(engine: AsyncEngine) -> dict[str, int]:
        if settings.is_sqlite:
            await migrate(engine)
        gateways = build_gateways(settings, engine)
        try:
            return await payments_round(engine, build_payments(settings, engine, gateways, RulesScorer()), gateways)
        finally:
            await close_gateways(gateways)

    for name, count in _with_engine(settings, work).items():
        print(f"{name}: {count}")
    return 0


# ------------------------------------------------------------------ vault
def cmd_vault_rotate(args: argparse.Namespace) -> int:
    from veix.persistence.jobs import rotate_vault
    from veix.security.card_vault import VaultCardStore
    from veix.security.vault import Vault

    settings = _settings(with_secrets=True)
    if args.batch < 1:
        raise CliError("veix vault rotate: --batch must be at least 1")
    assert settings.vault_key is not None
    try:
        store = VaultCardStore(Vault.from_setting(settings.vault_key))
    except ValueError as exc:
        raise CliError(f"veix vault rotate: VEIX_VAULT_KEY is invalid: {exc}") from None
    report = _with_engine(settings, lambda engine: rotate_vault(engine, store, batch=args.batch))
    current = store.vault.current_key_id
    print(f"vault key {current}: re-encrypted {report.cards} card(s) and "
          f"{report.step_up_secrets} step-up secret(s)")
    if report.skipped_step_up:
        print(f"note: {report.skipped_step_up} step-up secret(s) skipped: not stored as "
              "\"<key id>:<base64>\" under a configured vault key, so not vault-encrypted here")
    for failure in report.failed:
        print(f"failed: {failure}")
    if report.remaining:
        print(f"{report.remaining} row(s) still under an old key (locked during every pass): run again")
    return 1 if report.failed or report.remaining else 0


# ------------------------------------------------------------------ network simulator and benchmark
BENCH_EMAIL = "bench-owner@veix.dev"
BENCH_ADDRESS = {"line1": "Benchstraße 1", "city": "Berlin", "postal_code": "10115", "country": "DE"}
BENCH_CONTACT = {"email": "ops@bench.veix.dev", "phone": "+493012345678"}


def _network_secret(args: argparse.Namespace) -> str:
    """``--secret``, else VEIX_NETWORK_SECRET, else the one in the secrets file; never a new one."""
    from veix.security.signatures import sign

    secret = args.secret
    if not secret:
        settings = _settings(with_secrets=False)
        secret = settings.network_secret
        if not secret and settings.secrets_file.exists():
            with contextlib.suppress(OSError, ValueError, AttributeError):
                secret = json.loads(settings.secrets_file.read_text()).get("network_secret")
    if not secret:
        raise CliError("veix: no network secret: set VEIX_NETWORK_SECRET (or --secret), or run where "
                       "the server's secrets file is (VEIX_SECRETS_FILE)")
    try:
        sign(secret, "probe", 0, b"")
    except ValueError as exc:
        raise CliError(f"veix: the network secret is invalid: {exc}") from None
    return str(secret)


def _load_cards(path: Path) -> list[Any]:
    from veix.simulator import CardRef

    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CliError(f"veix: no cards file {path}: create one with `veix bench setup-cards`") from None
    except (OSError, ValueError) as exc:
        raise CliError(f"veix: cannot read cards from {path}: {exc}") from None
    try:
        if not isinstance(raw, list) or not raw:
            raise ValueError("expected a non-empty JSON list")
        return [CardRef.from_json(entry) for entry in raw]
    except (ValueError, TypeError, AttributeError) as exc:
        raise CliError(f"veix: {path} is not a cards file: {exc}") from None


def _quiet_http_client() -> None:
    """httpx logs every request at INFO: noise, and CPU taken from the server under test."""
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.WARNING)


def _run_fast(coro: Coroutine[Any, Any, T]) -> T:
    """Run on uvloop when installed (it is with uvicorn[standard]): less client CPU per request."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


def cmd_network_simulate(args: argparse.Namespace) -> int:
    import time

    import httpx

    from veix.bench import AUTHORIZATIONS_PATH
    from veix.security.signatures import signed_headers
    from veix.simulator import Simulator

    if args.count < 1:
        raise CliError("veix network simulate: --count must be at least 1")
    if args.rate is not None and not args.rate > 0:
        raise CliError("veix network simulate: --rate must be a positive number per second")
    if not 0 <= args.fraud_share <= 1:
        raise CliError("veix network simulate: --fraud-share lies between 0 and 1")
    secret = _network_secret(args)
    cards = _load_cards(Path(args.cards_file))
    _quiet_http_client()
    sim = Simulator(args.seed, fraud_share=args.fraud_share)
    codes: dict[str, int] = {}
    failures: dict[str, int] = {}
    start = time.monotonic()
    with httpx.Client(base_url=args.url, timeout=args.timeout, trust_env=False) as client:
        for i in range(args.count):
            if args.rate is not None:
                delay = start + i / args.rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            body = sim.next_request(sim.pick_card(cards), datetime.now(UTC))
            raw = json.dumps(body, separators=(",", ":")).encode()
            headers = {"content-type": "application/json", **signed_headers(secret, body["id"], raw)}
            merchant = body["merchant"]
            what = (f"{merchant['name'][:26]:<26} {merchant['mcc']} {merchant['country']} "
                    f"{body['amount']:>10} {body['currency']}")
            try:
                response = client.post(AUTHORIZATIONS_PATH, content=raw, headers=headers)
            except httpx.TimeoutException:
                failures["timeout"] = failures.get("timeout", 0) + 1
                print(f"{what}  timeout", flush=True)
                continue
            except httpx.TransportError as exc:
                raise CliError(f"veix network simulate: cannot reach {args.url}: {exc}", 1) from None
            if response.status_code != 200:
                key = f"HTTP {response.status_code}"
                failures[key] = failures.get(key, 0) + 1
                print(f"{what}  {key} {response.text[:120]}", flush=True)
                continue
            answer = response.json()
            code = answer.get("response_code", "??")
            codes[code] = codes.get(code, 0) + 1
            print(f"{what}  {code} {answer.get('reason', '')}", flush=True)
    approved = codes.get("00", 0)
    declined = sum(codes.values()) - approved
    by_code = ", ".join(f"{code}: {n}" for code, n in sorted(codes.items()) if code != "00")
    print(f"{args.count} authorization(s): {approved} approved, {declined} declined"
          + (f" ({by_code})" if by_code else "")
          + (f"; failed: {', '.join(f'{k}: {n}' for k, n in sorted(failures.items()))}" if failures else ""))
    return 1 if failures else 0


def cmd_bench_authorize(args: argparse.Namespace) -> int:
    from veix.bench import format_result, run_authorize_bench

    if args.concurrency < 1:
        raise CliError("veix bench authorize: --concurrency must be at least 1")
    if not args.duration > 0 or args.warmup < 0:
        raise CliError("veix bench authorize: --duration must be positive and --warmup not negative")
    if not 0 <= args.fraud_share <= 1:
        raise CliError("veix bench authorize: --fraud-share lies between 0 and 1")
    if args.rate is not None and not (args.rate > 0 and math.isfinite(args.rate)):
        raise CliError("veix bench authorize: --rate is a positive number of authorizations per second")
    if not (args.interval > 0 and math.isfinite(args.interval)):
        raise CliError("veix bench authorize: --interval is a positive number of seconds")
    secret = _network_secret(args)
    cards = _load_cards(Path(args.cards_file))
    _quiet_http_client()
    try:
        result = _run_fast(run_authorize_bench(
            args.url, secret, cards, args.concurrency, args.duration, warmup=args.warmup,
            seed=args.seed, fraud_share=args.fraud_share, request_timeout=args.timeout,
            client=args.client, rate=args.rate, interval=args.interval))
    except ValueError as exc:
        raise CliError(f"veix bench authorize: {exc}") from None
    print(json.dumps(result.to_json(), indent=2) if args.json
          else format_result(result, show_timeline=args.timeline))
    if not result.completed:
        print(f"veix bench authorize: no authorization was answered by {args.url}", file=sys.stderr)
        return 1
    return 0


def _bench_token(settings: Settings) -> str:
    """An access token of the bench owner (``bench setup-cards``), signed with the local secret key."""
    from sqlalchemy import select

    from veix.persistence.tables import users
    from veix.security.tokens import TokenService

    async def owner(engine: AsyncEngine) -> Any:
        async with engine.connect() as conn:
            return (await conn.execute(select(users.c.id).where(users.c.email == BENCH_EMAIL))).scalar()

    user_id = _with_engine(settings, owner)
    if user_id is None:
        raise CliError(f"veix bench fanout: no {BENCH_EMAIL} in the database: run `veix bench setup-cards` "
                       "first, or pass --token")
    assert settings.secret_key is not None
    tokens = TokenService(settings.secret_key, access_ttl=timedelta(minutes=settings.access_token_minutes))
    return str(tokens.issue_access(user_id)[0])


def cmd_bench_fanout(args: argparse.Namespace) -> int:
    import uuid

    from veix.bench_fanout import format_fanout, run_fanout_bench
    from veix.resolvers.ids import to_global_id

    if args.subscribers < 1 or args.authorizations < 1:
        raise CliError("veix bench fanout: --subscribers and --authorizations must be at least 1")
    if args.rate is not None and not args.rate > 0:
        raise CliError("veix bench fanout: --rate must be a positive number per second")
    if not args.wait > 0:
        raise CliError("veix bench fanout: --wait must be a positive number of seconds")
    if args.client == "websockets":
        try:
            import websockets  # noqa: F401
        except ImportError:
            raise CliError("veix bench fanout: --client websockets needs the websockets package: "
                           "pip install websockets") from None
    secret = _network_secret(args)
    cards = _load_cards(Path(args.cards_file))
    business = args.business_id or cards[0].business_id
    if not business:
        raise CliError("veix bench fanout: the cards file names no business: pass --business-id")
    try:
        raw_business = uuid.UUID(business)
    except ValueError:
        from veix.domain.errors import VeixError
        from veix.resolvers.ids import parse_global_id

        try:
            raw_business = parse_global_id(business)[1]
        except VeixError:
            raise CliError(f"veix bench fanout: --business-id {business!r} is not a business id") from None
    mine = [card for card in cards if card.business_id in (None, str(raw_business))]
    if not mine:
        raise CliError(f"veix bench fanout: no card of business {raw_business} in {args.cards_file}")
    token = args.token or os.environ.get("VEIX_BENCH_TOKEN") or _bench_token(_settings(with_secrets=True))
    try:
        result = _run_fast(run_fanout_bench(
            args.url or ["http://127.0.0.1:8000"], token, to_global_id("Business", raw_business), mine, secret,
            subscribers=args.subscribers, authorizations=args.authorizations,
            auth_urls=args.auth_url or None, rate=args.rate, wait=args.wait, seed=args.seed,
            connect_timeout=args.timeout, request_timeout=args.timeout, client=args.client,
            progress=lambda text: print(text, file=sys.stderr, flush=True)))
    except ValueError as exc:
        raise CliError(f"veix bench fanout: {exc}") from None
    print(json.dumps(result.to_json(), indent=2) if args.json else format_fanout(result))
    if not result.connected or not result.expected:
        print("veix bench fanout: no subscriber was live or no authorization made a card transaction",
              file=sys.stderr)
        return 1
    return 0


async def _setup_cards(engine: AsyncEngine, parts: dict[str, Any], hasher: Any, *, cards: int,
                       businesses: int, fund: Any, currency: str, daily_limit: Any) -> list[dict[str, str]]:
    """Owner, funded businesses and STANDARD cards, through the domain use cases."""
    import secrets
    import uuid

    from veix.domain.business import BusinessType
    from veix.domain.card_controls import CardControls
    from veix.domain.cards import CardNetwork, CardType, expiry_text
    from veix.domain.money import Money
    from veix.domain.services import access, funding
    from veix.domain.services import businesses as business_svc
    from veix.domain.services import cards as card_svc
    from veix.domain.validation import parse_address, parse_contact, parse_timezone
    from veix.persistence.uow import Actor, SqlUnitOfWork

    actor = Actor("system", "veix bench setup-cards")
    vault, issuing = parts["vault"], parts["issuing"]
    now = utcnow()
    async with SqlUnitOfWork(engine, actor=actor) as uow:
        owner = await uow.users.get_by_email(BENCH_EMAIL, for_update=True)
        if owner is None or not owner.has_signed_up:
            owner = await access.sign_up(uow, hasher, email=BENCH_EMAIL, name="Bench Owner",
                                         password=secrets.token_urlsafe(18), now=now)
        await uow.commit()
    controls = CardControls(daily_limit=daily_limit, monthly_limit=None) if daily_limit else CardControls()
    address = parse_address(BENCH_ADDRESS, field=["legalAddress"])
    contact = parse_contact(BENCH_CONTACT, field=["contactInfo"])
    timezone = parse_timezone("Europe/Berlin", field=["timezone"])
    out: list[dict[str, str]] = []
    for b in range(businesses):
        async with SqlUnitOfWork(engine, actor=actor) as uow:
            business = await business_svc.create_business(
                uow, owner_id=owner.id, name=f"Bench Business {b + 1:03d}", type=BusinessType.LLC,
                tax_id="DE136695976", legal_address=address, contact_info=contact,
                default_currency=currency, timezone=timezone, now=now)
            await business_svc.submit_verification(uow, business.id, now=now)
            await funding.fund_business(uow, business_id=business.id, money=Money.of(fund, currency),
                                        idempotency_key=f"bench-fund-{business.id}", now=now)
            await uow.commit()
        share = cards // businesses + (1 if b < cards % businesses else 0)
        for first in range(0, share, 200):  # short transactions of at most 200 cards
            async with SqlUnitOfWork(engine, actor=actor) as uow:
                for n in range(first, min(share, first + 200)):
                    card, _ = await card_svc.issue_card(
                        uow, vault, issuing, business_id=business.id, cardholder_id=None,
                        type=CardType.STANDARD, network=CardNetwork.VISA if n % 2 == 0 else CardNetwork.MASTERCARD,
                        currency=currency, spending_limit=None, controls=controls, merchant_lock=None,
                        metadata={"purpose": "benchmark"}, idempotency_key=f"bench-card-{uuid.uuid4()}",
                        now=now)
                    pan, cvv = vault.open(card.id, *await uow.cards.sealed(card.id))
                    out.append({"pan": pan, "expiry": expiry_text(card.expiry_date), "cvv": cvv,
                                "card_token": card.public_token, "card_id": str(card.id),
                                "business_id": str(business.id)})
                await uow.commit()
    return out


def cmd_bench_setup_cards(args: argparse.Namespace) -> int:
    from decimal import Decimal, InvalidOperation

    from veix.app import Argon2Hasher, build_card_parts
    from veix.domain.errors import VeixError
    from veix.domain.money import parse_amount, parse_currency

    settings = _settings(with_secrets=True)
    if settings.env == "production":
        raise CliError("veix bench setup-cards: test cards are for development: refusing with "
                       "VEIX_ENV=production")
    if args.cards < 1 or args.businesses < 1 or args.businesses > args.cards:
        raise CliError("veix bench setup-cards: need 1 <= --businesses <= --cards")
    try:
        currency = parse_currency(args.currency)
        fund = parse_amount(args.fund, currency, field="fund")
        limit = parse_amount(args.daily_limit, currency, field="daily-limit") if args.with_limits else None
    except (VeixError, InvalidOperation) as exc:
        raise CliError(f"veix bench setup-cards: {exc}") from None
    if fund <= 0 or (limit is not None and limit <= Decimal(0)):
        raise CliError("veix bench setup-cards: --fund and --daily-limit must be positive")
    output = Path(args.output)

    # The vault and issuing configuration the server builds (veix.app), so the cards match it.
    try:
        parts = build_card_parts(settings)
    except (VeixError, ValueError) as exc:
        raise CliError(f"veix bench setup-cards: invalid card settings: {exc}") from None

    async def work(engine: AsyncEngine) -> list[dict[str, str]]:
        if settings.is_sqlite:
            await migrate(engine)
        return await _setup_cards(engine, parts, Argon2Hasher(), cards=args.cards,
                                  businesses=args.businesses, fund=fund, currency=currency,
                                  daily_limit=limit)

    created = _with_engine(settings, work)
    try:
        fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(created, indent=1) + "\n")
        os.chmod(output, 0o600)
    except OSError as exc:
        raise CliError(f"veix bench setup-cards: cannot write {output}: {exc.strerror}", 1) from None
    print(f"issued {len(created)} STANDARD card(s) over {args.businesses} business(es) funded with "
          f"{fund} {currency} each (owner {BENCH_EMAIL})"
          + (f", daily limit {limit} {currency}" if limit is not None else ", no spending limits"))
    print(f"cards written to {output}")
    print(f"warning: {output} holds test card numbers and CVVs in clear: keep it local (mode 0600) "
          "and delete it after the benchmark", file=sys.stderr)
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
        "worker", help="run background jobs (idempotency purge, hold and card expiry, outbox dispatch)",
        description="Run background jobs until SIGTERM or SIGINT: every --interval seconds, purge "
        "expired idempotency keys, release card holds past their expiry and mark cards past their "
        "expiry date EXPIRED. With a redis:// VEIX_BROADCAST_URL it also runs the outbox "
        "dispatcher continuously (live events; several workers take turns safely); set "
        "VEIX_RUN_DISPATCHER=false on the servers to leave it to the workers.",
    )
    worker.add_argument("--interval", type=float, default=30.0,
                        help="seconds between runs (default 30)")
    worker.add_argument("--batch", type=int, default=500,
                        help="rows read per page by the expiry jobs (default 500)")
    worker.set_defaults(func=cmd_worker)

    jobs = sub.add_parser("jobs", help="run the worker's background jobs by hand")
    jobs_sub = jobs.add_subparsers(dest="jobs_command", required=True, metavar="COMMAND")
    run_once = jobs_sub.add_parser(
        "run-once", help="run every background job once and print what each did (for cron and tests)",
        description="Purge expired idempotency keys, release card holds past their expiry "
        "(VEIX_HOLD_DAYS after the authorization) and mark cards past their expiry date EXPIRED "
        "(returning a prepaid balance), once. Each item is its own short transaction.",
    )
    run_once.add_argument("--now", type=_aware_time, default=None,
                          help="the time the jobs take as now, ISO 8601 with a zone "
                          "(e.g. 2099-01-01T00:00:00Z; default: the real time)")
    run_once.add_argument("--batch", type=int, default=500, help="rows read per page (default 500)")
    run_once.set_defaults(func=cmd_jobs_run_once)

    payments = sub.add_parser("payments", help="payment upkeep by hand")
    payments_sub = payments.add_subparsers(dest="payments_command", required=True, metavar="COMMAND")
    upkeep = payments_sub.add_parser(
        "upkeep", help="apply gateway events that arrived before their payment and check crypto deposits, once",
        description="What the worker (and veix serve) does every VEIX_CRYPTO_POLL_SECONDS: events kept as "
        "unmatched are applied once their payment is known; with VEIX_CRYPTO_RPC_URL and VEIX_CRYPTO_XPUB set, "
        "open crypto deposits are read on the chain and settled, marked underpaid/overpaid, or expired.")
    upkeep.set_defaults(func=cmd_payments_upkeep)

    vault = sub.add_parser("vault", help="card vault operations")
    vault_sub = vault.add_subparsers(dest="vault_command", required=True, metavar="COMMAND")
    rotate = vault_sub.add_parser(
        "rotate", help="re-encrypt card data under the current vault key (idempotent, no downtime)",
        description="Re-encrypt every card's PAN and CVV (and every step-up secret stored as "
        "\"<key id>:<base64>\") that is not under the current vault key, the first of "
        "VEIX_VAULT_KEY=\"v2:<new>,v1:<old>\". Deploy that setting to every server first (they then "
        "encrypt with v2 and still decrypt v1), then run this; each batch is one short transaction "
        "(SKIP LOCKED on PostgreSQL), so authorizations go on. Keep the oldest key listed: the PAN "
        "lookup hash derives from it. Exit 1 if a row could not be decrypted or stayed locked.",
    )
    rotate.add_argument("--batch", type=int, default=500, help="rows per transaction (default 500)")
    rotate.set_defaults(func=cmd_vault_rotate)

    secret_help = ("the network's whsec_ secret (default: VEIX_NETWORK_SECRET, else the secrets "
                   "file's; prefer those: a command line is visible to other local users)")
    network = sub.add_parser("network", help="card network tools")
    network_sub = network.add_subparsers(dest="network_command", required=True, metavar="COMMAND")
    simulate = network_sub.add_parser(
        "simulate", help="send realistic signed authorizations to a running server and show each decision",
        description="Send --count signed authorizations (NETWORK.md) from the traffic simulator: "
        "everyday merchants in their countries and currencies, and a share of fraud-like bursts "
        "(high-risk categories abroad, at night, large amounts). Prints each decision and a summary. "
        "Exit 1 if any request failed (non-200 or timeout).",
    )
    bench = sub.add_parser("bench", help="load benchmark of the authorization path")
    bench_sub = bench.add_subparsers(dest="bench_command", required=True, metavar="COMMAND")
    authorize = bench_sub.add_parser(
        "authorize", help="drive signed authorizations at a running server and report throughput and latency",
        description="Starts no server: drives signed authorizations at --url with --concurrency "
        "workers (one keep-alive connection each) for --duration seconds after --warmup, over the "
        "cards of --cards-file, then prints throughput, p50/p95/p99/max latency, the approve/decline "
        "mix by response code and error counts. With --rate the load is open (N per second "
        "offered: the way to check a sustained rate and its p99). Use many cards: a card allows "
        "VEIX_MAX_AUTHORIZATIONS_PER_HOUR authorizations (default 60), then answers 65.",
    )
    for command in (simulate, authorize):
        command.add_argument("--url", default="http://127.0.0.1:8000",
                             help="the server's base URL (default http://127.0.0.1:8000)")
        command.add_argument("--cards-file", default="cards.json",
                             help="cards from `veix bench setup-cards` (default cards.json)")
        command.add_argument("--secret", default=None, help=secret_help)
        command.add_argument("--seed", type=int, default=None,
                             help="random seed: the same seed gives the same merchants, amounts and "
                             "cards (network ids stay fresh)")
        command.add_argument("--fraud-share", type=float, default=0.05,
                             help="share of fraud-like bursts (default 0.05)")
        command.add_argument("--timeout", type=float, default=10.0,
                             help="seconds to wait for one answer (default 10)")
    simulate.add_argument("--count", type=int, default=20, help="authorizations to send (default 20)")
    simulate.add_argument("--rate", type=float, default=None,
                          help="authorizations per second (default: as fast as answers come)")
    simulate.set_defaults(func=cmd_network_simulate)
    authorize.add_argument("--concurrency", type=int, default=32,
                           help="concurrent workers and connections (default 32)")
    authorize.add_argument("--duration", type=float, default=30.0,
                           help="measured seconds (default 30)")
    authorize.add_argument("--warmup", type=float, default=3.0,
                           help="seconds of load before measuring (default 3)")
    authorize.add_argument("--rate", type=float, default=None,
                           help="offered authorizations per second, whatever the answers do (open loop: "
                           "each latency counts from the request's due time, waiting for a free "
                           "connection included; give enough --concurrency). Default: closed loop, "
                           "each worker sends its next request when its answer came")
    authorize.add_argument("--interval", type=float, default=1.0,
                           help="seconds per slice of the timeline (default 1): the worst slice is "
                           "printed, every slice with --timeline or --json")
    authorize.add_argument("--timeline", action="store_true",
                           help="print answers, p50, p99 and max of every slice, by due time")
    authorize.add_argument("--json", action="store_true", help="print the result as JSON (with the timeline)")
    authorize.add_argument("--client", choices=("raw", "httpx"), default="raw",
                           help="HTTP client: raw (minimal HTTP/1.1 on asyncio, default: ~15x less "
                           "client CPU) or httpx (to cross-check)")
    authorize.set_defaults(func=cmd_bench_authorize)

    fanout = bench_sub.add_parser(
        "fanout", help="N websocket subscribers on one business, M authorizations: delivery latency, "
        "lost and duplicated events",
        description="Starts no server: opens --subscribers graphql-transport-ws subscriptions to "
        "cardTransactions of one business on the --url servers (round-robin), proves them live with "
        "a few probe authorizations, then sends --authorizations signed authorizations over that "
        "business's cards (to the --auth-url servers, round-robin, default the --url ones) at --rate "
        "per second and prints the delivery latency from each authorization's HTTP answer (sent after "
        "its commit) to its receipt at each subscriber (p50/p90/p99/max), and the lost (not received "
        "within --wait seconds) and duplicated events per subscriber. --client websockets needs the "
        "websockets package. Exit 1 if no subscriber was live or nothing was expected.",
    )
    fanout.add_argument("--url", action="append", default=None,
                        help="a server the subscribers connect to (repeatable: spread round-robin; "
                        "default http://127.0.0.1:8000)")
    fanout.add_argument("--auth-url", action="append", default=None,
                        help="a server to send the authorizations to (repeatable: round-robin; "
                        "default the --url servers)")
    fanout.add_argument("--subscribers", type=int, default=100, help="websocket subscribers (default 100)")
    fanout.add_argument("--authorizations", type=int, default=100,
                        help="measured authorizations (default 100)")
    fanout.add_argument("--rate", type=float, default=10.0,
                        help="authorizations per second (default 10)")
    fanout.add_argument("--cards-file", default="cards.json",
                        help="cards from `veix bench setup-cards` (default cards.json); only those of "
                        "the business are used")
    fanout.add_argument("--business-id", default=None,
                        help="the business (UUID or global ID; default: the first card's)")
    fanout.add_argument("--token", default=None,
                        help="access token or API key for the subscribers (default: VEIX_BENCH_TOKEN, "
                        "else an access token of the bench owner made with the local secret key)")
    fanout.add_argument("--secret", default=None, help=secret_help)
    fanout.add_argument("--seed", type=int, default=None, help="random seed for merchants and amounts")
    fanout.add_argument("--wait", type=float, default=10.0,
                        help="seconds to wait for deliveries after the last answer (default 10)")
    fanout.add_argument("--timeout", type=float, default=30.0,
                        help="seconds for one connection, subscription or answer (default 30)")
    fanout.add_argument("--client", choices=("raw", "websockets"), default="raw",
                        help="subscriber client: raw (default; a minimal asyncio protocol, ws:// only, "
                        "the least load-generator CPU) or websockets (the websockets package; the "
                        "figures before this option existed)")
    fanout.add_argument("--json", action="store_true", help="print the result as JSON")
    fanout.set_defaults(func=cmd_bench_fanout)

    setup = bench_sub.add_parser(
        "setup-cards", help="create funded businesses and test cards for the benchmark (development only)",
        description="Create the owner bench-owner@veix.dev, --businesses funded businesses and "
        "--cards STANDARD cards spread over them, through the domain use cases on the configured "
        "database (VEIX_DATABASE_URL), and write their PANs, expiries and CVVs to --output "
        "(mode 0600; test data, keep it local). No spending limits unless --with-limits. "
        "Refused with VEIX_ENV=production.",
    )
    setup.add_argument("--cards", type=int, default=1000, help="cards to issue (default 1000)")
    setup.add_argument("--businesses", type=int, default=10, help="businesses to create (default 10)")
    setup.add_argument("--fund", default="1000000", help="funding per business (default 1000000)")
    setup.add_argument("--currency", default="EUR", help="business and card currency (default EUR)")
    setup.add_argument("--with-limits", action="store_true",
                       help="give every card a daily limit (--daily-limit)")
    setup.add_argument("--daily-limit", default="2000", help="the daily limit with --with-limits "
                       "(default 2000)")
    setup.add_argument("--output", "-o", default="cards.json", help="file to write (default cards.json)")
    setup.set_defaults(func=cmd_bench_setup_cards)

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
