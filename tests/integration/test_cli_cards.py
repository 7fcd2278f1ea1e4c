"""The card commands of ``veix``, run for real as subprocesses over a temporary SQLite file:
``bench setup-cards``, ``vault rotate``, ``jobs run-once``, ``network simulate`` and
``bench authorize`` against a real ``veix serve``."""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.integration.test_cli import TIMEOUT, Workspace, _free_port, stop_process, veix_command
from veix.app import build_services
from veix.config import Settings
from veix.domain.cards import luhn_valid
from veix.resolvers.network import parse_authorization, run_authorization
from veix.security.card_vault import VaultCardStore
from veix.security.vault import Vault

CARDS = 6
BUSINESSES = 2


def _key(key_id: str) -> str:
    return f"{key_id}:{base64.b64encode(secrets.token_bytes(32)).decode()}"


OLD_KEY = _key("v1")
NEW_KEY = _key("v2")


class CardWorkspace(Workspace):
    """A workspace whose vault key is set explicitly (so a test can rotate it)."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.env["VEIX_VAULT_KEY"] = OLD_KEY

    @property
    def cards_file(self) -> Path:
        return self.root / "cards.json"

    def cards(self) -> list[dict[str, str]]:
        cards: list[dict[str, str]] = json.loads(self.cards_file.read_text())
        return cards

    def copy_to(self, root: Path) -> CardWorkspace:
        other = CardWorkspace(root)
        super().copy_to(root)
        other.cards_file.write_bytes(self.cards_file.read_bytes())
        os.chmod(other.cards_file, 0o600)
        return other

    def settings(self, **overrides: object) -> Settings:
        return Settings(database_url=self.env["VEIX_DATABASE_URL"], secrets_file=self.secrets,
                        vault_key=self.env["VEIX_VAULT_KEY"], **overrides).with_secrets()  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def carded(tmp_path_factory: pytest.TempPathFactory) -> tuple[CardWorkspace, subprocess.CompletedProcess[str]]:
    """Cards made once for the module; tests that change them work on copies."""
    ws = CardWorkspace(tmp_path_factory.mktemp("carded"))
    result = ws.run("bench", "setup-cards", "--cards", str(CARDS), "--businesses", str(BUSINESSES),
                    "--output", "cards.json")
    assert result.returncode == 0, (result.stdout, result.stderr)
    return ws, result


@pytest.fixture
def cards_copy(carded: tuple[CardWorkspace, subprocess.CompletedProcess[str]], tmp_path: Path) -> CardWorkspace:
    return carded[0].copy_to(tmp_path)


def test_setup_cards_writes_a_private_file_of_usable_cards(
    carded: tuple[CardWorkspace, subprocess.CompletedProcess[str]],
) -> None:
    ws, result = carded
    assert f"issued {CARDS} STANDARD card(s) over {BUSINESSES} business(es)" in result.stdout
    assert "test card numbers" in result.stderr and "Traceback" not in result.stderr
    assert ws.cards_file.stat().st_mode & 0o777 == 0o600
    cards = ws.cards()
    assert len(cards) == CARDS
    for card in cards:
        assert luhn_valid(card["pan"]) and len(card["pan"]) == 16
        assert re.fullmatch(r"\d{4}-\d{2}", card["expiry"]) and re.fullmatch(r"\d{3}", card["cvv"])
    # The PANs never reach the database or the output in clear.
    assert all(card["pan"] not in result.stdout + result.stderr for card in cards)
    rows = ws.sql("SELECT id, business_id, card_type, status, vault_key_id FROM virtual_cards")
    assert {(uuid.UUID(r[0]), uuid.UUID(r[1])) for r in rows} == {
        (uuid.UUID(c["card_id"]), uuid.UUID(c["business_id"])) for c in cards}
    assert {(r[2], r[3], r[4]) for r in rows} == {("standard", "active", "v1")}
    assert len({c["business_id"] for c in cards}) == BUSINESSES
    balances = ws.sql("SELECT balance FROM ledger_accounts WHERE kind = 'business_available'")
    assert balances == [("1000000.000000",)] * BUSINESSES
    assert ws.sql("SELECT email FROM users") == [("bench-owner@veix.dev",)]
    assert "ledger OK" in ws.ok("ledger", "verify")


def test_vault_rotate_reencrypts_every_card_once(cards_copy: CardWorkspace) -> None:
    ws = cards_copy
    old = Vault.from_setting(OLD_KEY)
    [(owner_hex,)] = ws.sql("SELECT id FROM users")
    owner = uuid.UUID(owner_hex)
    totp_secret = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
    key_id, blob = old.encrypt(totp_secret, aad=b"totp:" + owner.bytes)
    ws.sql("UPDATE users SET step_up_secret = ?", (f"{key_id}:{base64.b64encode(blob).decode()}",))
    ws.sql("INSERT INTO users (id, email, name, failed_logins, step_up_secret, created_at, updated_at) "
           "VALUES (?, 'plain@example.com', 'Plain', 0, 'KRSXG5CTMVRXEZLUKN2XAZLSKNSWC4TF', "
           "'2026-01-01 00:00:00', '2026-01-01 00:00:00')", (uuid.uuid4().hex,))

    rotating = {**ws.env, "VEIX_VAULT_KEY": f"{NEW_KEY},{OLD_KEY}"}
    ws.env = rotating
    out = ws.ok("vault", "rotate", "--batch", "4")  # several batches
    assert f"re-encrypted {CARDS} card(s) and 1 step-up secret(s)" in out
    assert "1 step-up secret(s) skipped" in out
    assert ws.sql("SELECT DISTINCT vault_key_id FROM virtual_cards") == [("v2",)]

    # The new ciphertexts open under the new key (the old key is no longer needed to read them).
    store = VaultCardStore(Vault.from_setting(f"{NEW_KEY},{OLD_KEY}"))
    only_new = Vault.from_setting(NEW_KEY)
    by_id = {uuid.UUID(c["card_id"]): c for c in ws.cards()}
    for card_hex, key, pan_blob, cvv_blob in ws.sql(
            "SELECT id, vault_key_id, card_number_encrypted, cvv_encrypted FROM virtual_cards"):
        card_id = uuid.UUID(card_hex)
        assert store.open(card_id, key, pan_blob, cvv_blob) == (by_id[card_id]["pan"], by_id[card_id]["cvv"])
        assert only_new.decrypt(key, pan_blob, aad=b"pan:" + card_id.bytes) == by_id[card_id]["pan"]
    [(sealed,)] = ws.sql("SELECT step_up_secret FROM users WHERE email = 'bench-owner@veix.dev'")
    new_id, _, encoded = sealed.partition(":")
    assert new_id == "v2"
    assert only_new.decrypt("v2", base64.b64decode(encoded), aad=b"totp:" + owner.bytes) == totp_secret
    assert ws.sql("SELECT step_up_secret FROM users WHERE email = 'plain@example.com'") == [
        ("KRSXG5CTMVRXEZLUKN2XAZLSKNSWC4TF",)]

    again = ws.ok("vault", "rotate")
    assert "re-encrypted 0 card(s) and 0 step-up secret(s)" in again


async def test_jobs_run_once_releases_an_expired_hold_and_expires_cards(cards_copy: CardWorkspace) -> None:
    ws = cards_copy
    card = ws.cards()[0]
    services = build_services(ws.settings(hold_days=1))
    try:
        request = parse_authorization({
            "id": "auth_hold_to_expire", "pan": card["pan"], "expiry": card["expiry"], "cvv": card["cvv"],
            "amount": "42.50", "currency": "EUR", "kind": "purchase",
            "merchant": {"name": "Café Einstein", "mcc": "5812", "country": "DE", "id": "m_cafe"}})
        result = await run_authorization(services, request)
    finally:
        await services.engine.dispose()
    assert result.approved, result
    holds = "SELECT balance FROM ledger_accounts WHERE kind = 'business_holds'"
    assert ws.sql(holds) == [("42.500000",)]

    history = ("SELECT (SELECT count(*) FROM card_risk_minutes), (SELECT count(*) FROM card_risk_days), "
               "(SELECT count(*) FROM card_merchants)")
    assert ws.sql(history) == [(1, 1, 1)]  # the approval's minute, day and merchant, for the fraud score

    now = ws.ok("jobs", "run-once")  # nothing is due yet
    assert "released 0 expired card hold(s)" in now and "expired 0 card(s)" in now
    assert "pruned 0 risk history row(s)" in now and ws.sql(history) == [(1, 1, 1)]

    later = ws.ok("jobs", "run-once", "--now", "2099-01-01T00:00:00Z")
    assert "released 1 expired card hold(s)" in later
    assert f"expired {CARDS} card(s) past their expiry date" in later
    assert "pruned 3 risk history row(s) past their window (velocity: an hour, history: 90 days)" in later
    # every event is past the window by then, but no dispatcher has published one here: all kept
    assert "pruned 0 dispatched event(s) past the replay window (7 days) from the outbox" in later
    assert ws.sql("SELECT count(*) FROM outbox") != [(0,)]
    assert ws.sql(history) == [(0, 0, 0)]
    assert ws.sql("SELECT status, held_amount, released_amount FROM card_transactions") == [
        ("expired", "0.000000", "42.500000")]
    assert ws.sql(holds) == [("0.000000",)]
    available = ws.sql("SELECT balance FROM ledger_accounts WHERE kind = 'business_available' "
                       "AND business_id = ?", (uuid.UUID(card["business_id"]).hex,))
    assert available == [("1000000.000000",)]
    assert ws.sql("SELECT DISTINCT status FROM virtual_cards") == [("expired",)]
    assert ws.sql("SELECT count(*) FROM card_spend WHERE amount != '0.000000'") == [(0,)]
    assert "ledger OK" in ws.ok("ledger", "verify")
    assert "audit chain OK" in ws.ok("audit", "verify")

    again = ws.ok("jobs", "run-once", "--now", "2099-01-01T00:00:00Z")
    assert "released 0 expired card hold(s)" in again and "expired 0 card(s)" in again


def test_jobs_run_once_refuses_a_time_without_zone(cards_copy: CardWorkspace) -> None:
    result = cards_copy.run("jobs", "run-once", "--now", "2099-01-01T00:00:00")
    assert result.returncode == 2 and "needs a time zone" in result.stderr


@pytest.fixture
def running(cards_copy: CardWorkspace) -> Iterator[tuple[CardWorkspace, str]]:
    """``veix serve`` on a free port over the copied cards."""
    ws = cards_copy
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    log = (ws.root / "server.log").open("wb")
    proc = subprocess.Popen([*veix_command(), "serve", "--port", str(port)], cwd=ws.root, env=ws.env,
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + TIMEOUT
        while True:
            assert proc.poll() is None, (ws.root / "server.log").read_text()
            assert time.monotonic() < deadline, "server did not become healthy"
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        yield ws, base
    finally:
        stop_process(proc)
        log.close()


def test_network_simulate_and_bench_authorize_against_a_running_server(
    running: tuple[CardWorkspace, str],
) -> None:
    ws, base = running
    simulated = ws.run("network", "simulate", "--url", base, "--count", "5", "--seed", "3",
                       "--cards-file", "cards.json")
    assert simulated.returncode == 0, (simulated.stdout, simulated.stderr)
    lines = simulated.stdout.strip().splitlines()
    assert len(lines) == 6
    assert all(re.search(r" \d+(\.\d+)? [A-Z]{3}  \d\d \w+$", line) for line in lines[:5]), lines
    assert re.match(r"5 authorization\(s\): \d+ approved, \d+ declined", lines[5]), lines
    assert ws.sql("SELECT count(*) FROM card_transactions") == [(5,)]

    bench = ws.run("bench", "authorize", "--url", base, "--concurrency", "4", "--duration", "2",
                   "--warmup", "0.5", "--cards-file", "cards.json", "--interval", "0.5", "--timeline")
    assert bench.returncode == 0, (bench.stdout, bench.stderr)
    out = bench.stdout
    assert "req/s" in out and "p99" in out and "p50" in out, out
    throughput = re.search(r"throughput:\s+([\d.]+) req/s \((\d+) answers\)", out)
    assert throughput and float(throughput.group(1)) > 0 and int(throughput.group(2)) > 0, out
    assert "0 non-200, 0 timeouts, 0 connection errors" in out, out
    assert re.search(r"^\s+00\s+\d+", out, re.MULTILINE), out  # approvals among the answers
    assert re.search(r"worst 0.5 s:  from [\d.]+ s, p99 [\d.]+ ms", out), out
    slices = re.findall(r"^\s+(0|0.5|1|1.5)\s+(\d+)\s+[\d.]+\s+[\d.]+\s+[\d.]+$", out, re.MULTILINE)
    assert [t for t, _ in slices] == ["0", "0.5", "1", "1.5"], out  # the 2 s window in four slices
    assert sum(int(n) for _, n in slices) == int(throughput.group(2)), out
    # Nothing was decided twice or lost: every answer is a card transaction.
    [(count,)] = ws.sql("SELECT count(*) FROM card_transactions")
    assert count >= 5 + int(throughput.group(2))
    assert "ledger OK" in ws.ok("ledger", "verify")


def test_bench_authorize_with_a_wrong_secret_counts_401s_and_fails(running: tuple[CardWorkspace, str]) -> None:
    ws, base = running
    wrong = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    result = ws.run("bench", "authorize", "--url", base, "--concurrency", "2", "--duration", "0.5",
                    "--warmup", "0", "--secret", wrong)
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert re.search(r"\d+ non-200 \(401: \d+\)", result.stdout), result.stdout
    assert ws.sql("SELECT count(*) FROM card_transactions") == [(0,)]


def test_bench_authorize_refuses_a_rate_that_is_not_positive(cards_copy: CardWorkspace) -> None:
    result = cards_copy.run("bench", "authorize", "--url", "http://127.0.0.1:9", "--rate", "0",
                            "--cards-file", "cards.json")
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "--rate is a positive number" in result.stderr and "Traceback" not in result.stderr


def test_bench_authorize_refuses_an_interval_that_is_not_positive(cards_copy: CardWorkspace) -> None:
    result = cards_copy.run("bench", "authorize", "--url", "http://127.0.0.1:9", "--interval", "0",
                            "--cards-file", "cards.json")
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "--interval is a positive number" in result.stderr and "Traceback" not in result.stderr
