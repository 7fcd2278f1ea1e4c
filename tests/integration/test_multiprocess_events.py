"""Live events across processes, for real: PostgreSQL + Redis, two ``veix serve``
processes (VEIX_RUN_DISPATCHER=false) and one ``veix worker`` running the outbox
dispatcher, all subprocesses over a throw-away database created for this module.

A subscriber on server A sees an authorization sent to server B; killing the
worker (SIGKILL) mid-stream and starting it again loses nothing and shows
nothing twice. ``veix bench fanout`` runs against the same processes. Every wait
is bounded and every process is stopped in ``finally``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import re
import secrets
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import make_url

from tests.conftest import TEST_DB_URL, TEST_REDIS_URL
from tests.integration.test_cli import TIMEOUT, Workspace, _free_port, veix_command
from veix.resolvers.ids import to_global_id
from veix.security.signatures import signed_headers

CARDS = 4
WAIT = 20.0  # seconds for one event to arrive
CARD_TXNS = """subscription($b: ID!, $after: String){ cardTransactions(businessId:$b, after:$after){
  cursor kind cardTransaction{ id } } }"""


def _pg_dsn(url: str, database: str) -> str:
    """An asyncpg DSN for ``database`` on the server of the SQLAlchemy ``url``."""
    return make_url(url).set(drivername="postgresql", database=database).render_as_string(hide_password=False)


def _admin(statement: str) -> None:
    import asyncpg

    async def run() -> None:
        conn = await asyncpg.connect(_pg_dsn(TEST_DB_URL, make_url(TEST_DB_URL).database or "postgres"),
                                     timeout=10)
        try:
            await conn.execute(statement, timeout=30)
        finally:
            await conn.close()

    asyncio.run(run())


def _seq(cursor: str) -> int:
    text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    assert text.startswith("evt:"), cursor
    return int(text[4:])


class Cluster:
    """Two servers and a worker over one database, Redis and secrets file."""

    def __init__(self, ws: Workspace) -> None:
        self.ws = ws
        self.ports = [_free_port(), _free_port()]
        self.servers: list[subprocess.Popen[bytes]] = []
        self.worker: subprocess.Popen[bytes] | None = None
        self.worker_runs = 0
        self.token = ""

    def url(self, n: int) -> str:
        return f"http://127.0.0.1:{self.ports[n]}"

    def log(self, name: str) -> str:
        path = self.ws.root / name
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def _spawn(self, args: list[str], log_name: str, **env: str) -> subprocess.Popen[bytes]:
        with (self.ws.root / log_name).open("ab") as log:
            return subprocess.Popen([*veix_command(), *args], cwd=self.ws.root, env={**self.ws.env, **env},
                                    stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def start_servers(self) -> None:
        for n, port in enumerate(self.ports):
            self.servers.append(self._spawn(["serve", "--port", str(port)], f"server{n}.log",
                                            VEIX_LOG_LEVEL="INFO"))
        deadline = time.monotonic() + TIMEOUT
        for n, proc in enumerate(self.servers):
            while True:
                assert proc.poll() is None, self.log(f"server{n}.log")
                assert time.monotonic() < deadline, f"server {n} did not become healthy"
                try:
                    if httpx.get(f"{self.url(n)}/healthz", timeout=1, trust_env=False).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.1)

    def start_worker(self) -> None:
        assert self.worker is None or self.worker.poll() is not None
        self.worker_runs += 1
        name = f"worker{self.worker_runs}.log"
        self.worker = self._spawn(["worker", "--interval", "30"], name, VEIX_LOG_LEVEL="INFO")
        deadline = time.monotonic() + TIMEOUT
        while "outbox dispatcher started" not in self.log(name):
            assert self.worker.poll() is None, self.log(name)
            assert time.monotonic() < deadline, "the worker's dispatcher did not start"
            time.sleep(0.05)

    def kill_worker(self) -> None:
        assert self.worker is not None and self.worker.poll() is None
        self.worker.send_signal(signal.SIGKILL)
        self.worker.wait(timeout=10)

    def stop(self) -> None:
        procs = [p for p in [*self.servers, self.worker] if p is not None]
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    name = f"veix_mp_{uuid.uuid4().hex[:12]}"
    _admin(f'CREATE DATABASE "{name}"')
    running: Cluster | None = None
    try:
        ws = Workspace(tmp_path_factory.mktemp("multiprocess"))
        ws.env.update(VEIX_DATABASE_URL=make_url(TEST_DB_URL).set(database=name).render_as_string(
                          hide_password=False),
                      VEIX_BROADCAST_URL=TEST_REDIS_URL, VEIX_RUN_DISPATCHER="false", VEIX_DB_POOL_SIZE="5")
        ws.ok("migrate")
        ws.ok("bench", "setup-cards", "--cards", str(CARDS), "--businesses", "1", "--output", "cards.json")
        running = Cluster(ws)
        running.token = _token(ws)
        running.start_servers()
        running.start_worker()
        yield running
    finally:
        if running is not None:
            running.stop()
        _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _cards(ws: Workspace) -> list[dict[str, str]]:
    cards: list[dict[str, str]] = json.loads((ws.root / "cards.json").read_text())
    return cards


def _network_secret(ws: Workspace) -> str:
    return str(json.loads(ws.secrets.read_text())["network_secret"])


def _token(ws: Workspace) -> str:
    """An access token of the bench owner, signed with the workspace's secret key."""
    import asyncpg

    from veix.security.tokens import TokenService

    async def owner() -> Any:
        conn = await asyncpg.connect(_pg_dsn(ws.env["VEIX_DATABASE_URL"], make_url(
            ws.env["VEIX_DATABASE_URL"]).database or ""), timeout=10)
        try:
            return await conn.fetchval("SELECT id FROM users WHERE email = 'bench-owner@veix.dev'")
        finally:
            await conn.close()

    user_id = asyncio.run(owner())
    key = json.loads(ws.secrets.read_text())["secret_key"]
    return TokenService(key).issue_access(user_id)[0]


class Authorizer:
    """Signed authorizations to one server, over the workspace's cards in turn."""

    def __init__(self, ws: Workspace, base: str) -> None:
        self.cards = _cards(ws)
        self.secret = _network_secret(ws)
        self.client = httpx.AsyncClient(base_url=base, timeout=15, trust_env=False)
        self.n = 0

    async def send(self) -> str:
        """Authorize; returns the card transaction's global id."""
        card = self.cards[self.n % len(self.cards)]
        self.n += 1
        body = {"id": f"auth_mp_{secrets.token_hex(8)}", "pan": card["pan"], "expiry": card["expiry"],
                "cvv": card["cvv"], "amount": "12.50", "currency": "EUR", "kind": "purchase",
                "merchant": {"name": "Café Einstein", "mcc": "5812", "country": "DE", "id": "m_cafe"}}
        raw = json.dumps(body, separators=(",", ":")).encode()
        response = await self.client.post("/v1/network/authorizations", content=raw, headers={
            "content-type": "application/json", **signed_headers(self.secret, body["id"], raw)})
        assert response.status_code == 200, response.text
        answer = response.json()
        assert answer["card_transaction_id"], answer
        return to_global_id("CardTransaction", uuid.UUID(answer["card_transaction_id"]))


class Subscription:
    """A graphql-transport-ws subscriber collecting (cursor, kind, card transaction id)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, str]] = []
        self.ended: str | None = None
        self.ws: Any = None
        self.task: asyncio.Task[None] | None = None

    async def open(self, base: str, token: str, business_id: str) -> None:
        from websockets.asyncio.client import connect

        url = base.replace("http://", "ws://") + "/graphql"
        self.ws = await connect(url, subprotocols=["graphql-transport-ws"], open_timeout=10,  # type: ignore[list-item]
                                close_timeout=2)
        await self.ws.send(json.dumps({"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}}))
        ack = json.loads(await asyncio.wait_for(self.ws.recv(), timeout=10))
        assert ack["type"] == "connection_ack", ack
        await self.ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": {
            "query": CARD_TXNS, "variables": {"b": business_id}}}))
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                msg = json.loads(raw)
                if msg.get("type") == "ping":
                    await self.ws.send('{"type":"pong"}')
                    continue
                if msg.get("type") != "next" or "errors" in msg["payload"]:
                    self.ended = json.dumps(msg)[:500]
                    return
                event = msg["payload"]["data"]["cardTransactions"]
                self.events.append((event["cursor"], event["kind"], event["cardTransaction"]["id"]))
            self.ended = f"closed {self.ws.close_code} {self.ws.close_reason}"
        except Exception as exc:
            self.ended = repr(exc)

    def ids(self) -> list[str]:
        return [ct for _, kind, ct in self.events if kind == "card_transaction.created"]

    async def wait_for(self, wanted: set[str], within: float = WAIT) -> None:
        deadline = time.monotonic() + within
        while not wanted <= set(self.ids()):
            assert self.ended is None, self.ended
            assert time.monotonic() < deadline, (
                f"missing {len(wanted - set(self.ids()))} of {len(wanted)} event(s) after {within} s")
            await asyncio.sleep(0.02)

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(BaseException):
                await self.task
        if self.ws is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.ws.close(), timeout=5)


@pytest.mark.postgres
@pytest.mark.redis
async def test_event_reaches_the_other_server_and_survives_a_killed_dispatcher(cluster: Cluster) -> None:
    ws = cluster.ws
    business = to_global_id("Business", uuid.UUID(_cards(ws)[0]["business_id"]))
    to_b = Authorizer(ws, cluster.url(1))
    sub = Subscription()
    try:
        await sub.open(cluster.url(0), cluster.token, business)
        # Server B's authorization reaches the subscriber on server A. The subscription reaches
        # the broadcaster shortly after `subscribe` (no acknowledgement in the protocol): probe.
        first: str | None = None
        for _ in range(10):
            probe = await to_b.send()
            with contextlib.suppress(AssertionError):
                await sub.wait_for({probe}, within=2)
                first = probe
                break
        assert first is not None, f"no event reached server A: {sub.ended}; {cluster.log('worker1.log')}"
        expected = set(sub.ids())  # the probes that did arrive (all of them once the stream is live)

        before = [await to_b.send() for _ in range(4)]
        cluster.kill_worker()  # mid-stream: some of these may be published and not yet marked
        during = [await to_b.send() for _ in range(5)]
        await asyncio.sleep(0.3)
        cluster.start_worker()
        after = [await to_b.send() for _ in range(3)]
        expected |= {*before, *during, *after}
        await sub.wait_for(expected)
        await asyncio.sleep(1.0)  # a late re-published event would show up here

        ids = [ct for ct in sub.ids() if ct in expected]
        assert len(ids) == len(set(ids)), f"duplicates: {[ct for ct in set(ids) if ids.count(ct) > 1]}"
        assert set(ids) == expected
        seqs = [_seq(cursor) for cursor, _, _ in sub.events]
        assert seqs == sorted(set(seqs)), f"cursors not strictly increasing: {seqs}"
        # Each authorization's event came after the previous one's: per-business commit order.
        order = [ct for ct in ids if ct in {*before, *during, *after}]
        assert order == [*before, *during, *after]
        assert sub.ended is None, sub.ended
    finally:
        await sub.close()
        await to_b.client.aclose()


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.parametrize("client", ["raw", "websockets"])
def test_bench_fanout_counts_every_delivery_once(cluster: Cluster, client: str) -> None:
    ws = cluster.ws
    result = subprocess.run(
        [*veix_command(), "bench", "fanout", "--url", cluster.url(0), "--auth-url", cluster.url(1),
         "--subscribers", "20", "--authorizations", "10", "--rate", "20", "--wait", "20",
         "--cards-file", "cards.json", "--timeout", "20", "--client", client],
        cwd=ws.root, env=ws.env, capture_output=True, text=True, timeout=TIMEOUT * 2)
    assert result.returncode == 0, (result.stdout, result.stderr, cluster.log("server0.log"),
                                    cluster.log("server1.log"))
    out = result.stdout
    assert f"({client} client): 20 of 20 subscriber(s) live" in out, out
    assert re.search(r"10 sent in [\d.]+ s, 10 with a card transaction, 0 failed", out), out
    assert "deliveries:     200 of 200 expected" in out, out
    assert "lost: 0  duplicated: 0" in out, out
    assert re.search(r"p50 [\d.]+ .*p99 [\d.]+", out), out


def test_bench_fanout_refuses_bad_arguments(tmp_path: Path) -> None:
    ws = Workspace(tmp_path)
    result = ws.run("bench", "fanout", "--subscribers", "0")
    assert result.returncode == 2 and "--subscribers and --authorizations must be at least 1" in result.stderr
