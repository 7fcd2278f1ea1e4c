"""The ``veix`` command, run for real as a subprocess over a temporary SQLite file."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

TIMEOUT = 60
VEIX_SCRIPT = Path(sys.executable).with_name("veix")


def veix_command() -> list[str]:
    """The installed console script beside this interpreter, else ``python -m veix.cli``."""
    if VEIX_SCRIPT.exists():
        return [str(VEIX_SCRIPT)]
    found = shutil.which("veix")
    return [found] if found else [sys.executable, "-m", "veix.cli"]


class Workspace:
    """A directory with its own database, secrets file and VEIX_* environment."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.db = root / "veix.db"
        self.secrets = root / "secrets" / ".veix-secrets.json"
        self.secrets.parent.mkdir(parents=True, exist_ok=True)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("VEIX_")}
        self.env.update(
            VEIX_DATABASE_URL=f"sqlite+aiosqlite:///{self.db}",
            VEIX_SECRETS_FILE=str(self.secrets),
            VEIX_LOG_LEVEL="WARNING",
        )

    def run(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*veix_command(), *args], cwd=self.root, env={**self.env, **env},
            capture_output=True, text=True, timeout=TIMEOUT,
        )

    def ok(self, *args: str) -> str:
        result = self.run(*args)
        assert result.returncode == 0, (result.stdout, result.stderr)
        return result.stdout

    def sql(self, statement: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
        with sqlite3.connect(self.db) as conn:
            rows = conn.execute(statement, params).fetchall()
        conn.close()
        return rows

    def copy_to(self, root: Path) -> Workspace:
        other = Workspace(root)
        for name in ("veix.db", "veix.db-wal", "veix.db-shm"):
            if (self.root / name).exists():
                shutil.copy(self.root / name, root / name)
        shutil.copytree(self.secrets.parent, other.secrets.parent, dirs_exist_ok=True)
        return other


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL if it has not exited within 15 s."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Workspace, str]:
    """One demo seed shared by the module; tests that tamper with it work on copies."""
    ws = Workspace(tmp_path_factory.mktemp("seeded"))
    return ws, ws.ok("demo")


@pytest.fixture
def demo_copy(seeded: tuple[Workspace, str], tmp_path: Path) -> Workspace:
    return seeded[0].copy_to(tmp_path)


def test_migrate_creates_the_schema_and_reports_the_head(tmp_path: Path) -> None:
    ws = Workspace(tmp_path)
    out = ws.ok("migrate")
    assert re.search(r"head revision \d{4}", out), out
    tables = {r[0] for r in ws.sql("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"users", "businesses", "ledger_accounts", "postings", "audit_log", "outbox"} <= tables
    head = re.search(r"head revision (\d{4})", out).group(1)
    assert ws.sql("SELECT version_num FROM alembic_version") == [(head,)]
    assert f"head revision {head}" in ws.ok("migrate")  # again: nothing to do, same answer


def test_demo_seeds_once_and_is_idempotent(seeded: tuple[Workspace, str], tmp_path: Path) -> None:
    first_ws, first = seeded
    password = re.search(r"password: (\S+)", first)
    assert "Demo data seeded" in first and "demo@veix.dev" in first and password
    stored = json.loads((first_ws.secrets.parent / ".veix-demo.json").read_text())
    assert stored["email"] == "demo@veix.dev" and stored["password"] == password.group(1)
    assert (first_ws.secrets.parent / ".veix-demo.json").stat().st_mode & 0o077 == 0

    ws = first_ws.copy_to(tmp_path)
    counts = "SELECT (SELECT count(*) FROM users), (SELECT count(*) FROM businesses), " \
             "(SELECT count(*) FROM memberships), (SELECT count(*) FROM transactions)"
    assert ws.sql(counts) == [(3, 1, 3, 8)]  # 2 fundings, 4 sandbox payments, 2 refunds
    again = ws.ok("demo")
    assert "already seeded" in again and password.group(1) not in again
    assert ".veix-demo.json" in again
    assert ws.sql(counts) == [(3, 1, 3, 8)]  # 2 fundings, 4 sandbox payments, 2 refunds
    assert ws.sql("SELECT name, verification_status FROM businesses") == [
        ("Demo Coffee GmbH", "verified")]
    assert sorted(ws.sql("SELECT currency, balance FROM ledger_accounts WHERE kind = "
                         "'business_available'")) == [("EUR", "25157.270000"), ("USD", "5000.000000")]
    # 25,000 funded + 129 + 48.50 + 75 captured - 8.23 fees - 87 refunded


def test_ledger_verify_is_ok_after_the_demo(demo_copy: Workspace) -> None:
    assert demo_copy.ok("ledger", "verify").strip() == "ledger OK (9 entries, 7 accounts)"


def test_ledger_verify_fails_on_a_tampered_balance(demo_copy: Workspace) -> None:
    demo_copy.sql("UPDATE ledger_accounts SET balance = '99999.000000' "
                  "WHERE kind = 'business_available' AND currency = 'EUR'")
    result = demo_copy.run("ledger", "verify")
    assert result.returncode == 1, result
    assert re.search(r"account business:\S+:available:EUR: cached balance 99999\.000000 EUR "
                     r"differs from the sum of its postings 25157\.27", result.stdout), result.stdout
    assert "ledger OK" not in result.stdout


def test_audit_verify_is_ok_after_the_demo_and_catches_tampering(demo_copy: Workspace) -> None:
    assert demo_copy.ok("audit", "verify").strip() == "audit chain OK (16 records)"
    [(seq, after)] = demo_copy.sql(
        "SELECT seq, after FROM audit_log WHERE action = 'business.fund' ORDER BY seq LIMIT 1")
    forged = json.loads(str(after)) | {"amount": "1.00"}
    demo_copy.sql("UPDATE audit_log SET after = ? WHERE seq = ?", (json.dumps(forged), seq))
    result = demo_copy.run("audit", "verify")
    assert result.returncode == 1, result
    assert result.stdout.strip() == \
        f"audit chain BROKEN at seq {seq}: record content does not match its hash"


def test_export_schema_writes_the_sdl(tmp_path: Path) -> None:
    ws = Workspace(tmp_path)
    ws.ok("export-schema")
    sdl = (tmp_path / "schema.graphql").read_text()
    assert "type Query" in sdl and sdl.endswith("}\n")
    assert ws.ok("export-schema", "--output", "-") == sdl


def test_serve_refuses_several_workers_without_redis(tmp_path: Path) -> None:
    result = Workspace(tmp_path).run("serve", "--workers", "2")
    assert result.returncode == 2
    assert "live events across processes need Redis" in result.stderr
    assert "VEIX_BROADCAST_URL=redis://" in result.stderr
    assert "SQLite is a single file with a single writer" in result.stderr
    assert "Traceback" not in result.stderr


def test_production_without_secrets_refuses_and_names_them(tmp_path: Path) -> None:
    ws = Workspace(tmp_path)
    for command in (["serve"], ["worker"]):
        result = ws.run(*command, VEIX_ENV="production")
        assert result.returncode == 2, (command, result)
        for name in ("VEIX_SECRET_KEY", "VEIX_VAULT_KEY", "VEIX_NETWORK_SECRET"):
            assert name in result.stderr, (command, result.stderr)
        assert "Traceback" not in result.stderr
    assert not ws.secrets.exists()
    # Migrations use no secrets: a migration job needs no signing or vault keys.
    assert ws.run("migrate", VEIX_ENV="production").returncode == 0


def test_worker_purges_expired_idempotency_keys_and_stops_on_sigterm(tmp_path: Path) -> None:
    ws = Workspace(tmp_path)
    ws.ok("migrate")
    now = datetime.now(UTC).replace(tzinfo=None)
    for key, expires in (("old", now - timedelta(hours=1)), ("fresh", now + timedelta(hours=1))):
        ws.sql("INSERT INTO idempotency_keys (scope, key, request_hash, created_at, expires_at) "
               "VALUES ('fund:x', ?, 'h', ?, ?)", (key, str(now), str(expires)))
    proc = subprocess.Popen([*veix_command(), "worker", "--interval", "0.2"], cwd=tmp_path,
                            env={**ws.env, "VEIX_LOG_LEVEL": "INFO"},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + TIMEOUT
        while ws.sql("SELECT key FROM idempotency_keys ORDER BY key") != [("fresh",)]:
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "purged 1 expired idempotency key(s)" in err
    assert "worker stopped" in err


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], Path, int]]:
    ws = Workspace(tmp_path)
    port = _free_port()
    out, err = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        proc = subprocess.Popen(
            [*veix_command(), "serve", "--demo", "--port", str(port)], cwd=tmp_path,
            env={**ws.env, "VEIX_LOG_LEVEL": "INFO"},
            stdout=stdout, stderr=stderr,
        )
    try:
        yield proc, out, port
    finally:
        stop_process(proc)


def test_serve_demo_answers_with_the_printed_token(
    server: tuple[subprocess.Popen[bytes], Path, int],
) -> None:
    proc, out, port = server
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + TIMEOUT
    while True:
        assert proc.poll() is None, (out.read_text(), out.with_name("stderr.txt").read_text())
        assert time.monotonic() < deadline, "server did not become healthy"
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    printed = out.read_text()
    assert f"{base}/graphql" in printed and "demo@veix.dev" in printed
    assert "expires" in printed and "logIn" in printed
    token = re.search(r"Access token:\s+(\S+)", printed)
    assert token, printed
    r = httpx.post(f"{base}/graphql", json={"query": "{ me { email } }"},
                   headers={"authorization": f"Bearer {token.group(1)}"}, timeout=10)
    assert r.status_code == 200, r.text
    assert r.json() == {"data": {"me": {"email": "demo@veix.dev"}}}
    # The sandbox's 3-D Secure link points at the port the server listens on.
    headers = {"authorization": f"Bearer {token.group(1)}"}
    business = httpx.post(f"{base}/graphql", json={"query": "{ businesses(first: 1) { edges { node { id } } } }"},
                          headers=headers, timeout=10).json()["data"]["businesses"]["edges"][0]["node"]["id"]
    pay = httpx.post(f"{base}/graphql", headers=headers, timeout=10, json={
        "query": "mutation($i: CreatePaymentInput!){ createPayment(input:$i){ transaction{ status nextAction } } }",
        "variables": {"i": {"businessId": business, "amount": {"amount": "10.00", "currency": "EUR"},
                            "method": "CARD", "idempotencyKey": "cli-3ds",
                            "card": {"number": "4000002500003155", "expMonth": 12, "expYear": 2034, "cvc": "123"}}},
    }).json()["data"]["createPayment"]["transaction"]
    assert pay["status"] == "REQUIRES_ACTION" and pay["nextAction"]["url"].startswith(f"{base}/v1/sandbox/3ds/")
    assert httpx.post(pay["nextAction"]["url"], timeout=10).json()["status"] == "SUCCEEDED"
    proc.terminate()
    # uvicorn shuts down gracefully, then re-raises the signal it caught.
    assert proc.wait(timeout=15) in (0, -signal.SIGTERM)
    assert "Application shutdown complete" in out.with_name("stderr.txt").read_text()


def test_payments_upkeep_runs_one_round_and_reports_what_it_did(demo_copy: Workspace) -> None:
    out = demo_copy.ok("payments", "upkeep")
    assert out.strip().splitlines() == ["late_events: 0"]
    bad = demo_copy.run("payments", "upkeep", VEIX_PAYMENT_ROUTES="card=visa")
    assert bad.returncode != 0 and "Traceback" not in bad.stderr
