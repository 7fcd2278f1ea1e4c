"""PostgreSQL through its Unix socket (``...?host=/var/run/postgresql``), which
the README recommends when the database runs on the service's host: the
engine, the authorization hot path's pool and the outbox dispatcher's own
connection all take that URL."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from tests.conftest import database_url
from tests.integration.network_helpers import AUTHORIZATIONS, auth_body, issue_card, new_business, post_signed
from veix.app import create_app
from veix.config import Settings
from veix.persistence.engine import make_engine
from veix.persistence.outbox_pg import connect

pytestmark = pytest.mark.postgres

SOCKET_DIR = Path("/var/run/postgresql")


def _socket_url() -> str:
    url = make_url(database_url())
    if url.host not in ("127.0.0.1", "localhost") or not (SOCKET_DIR / f".s.PGSQL.{url.port or 5432}").exists():
        pytest.skip("PostgreSQL has no Unix socket on this host")
    return url.set(host="").update_query_dict({"host": str(SOCKET_DIR)}).render_as_string(hide_password=False)


async def test_the_service_runs_on_postgresql_through_its_unix_socket(app, api, tmp_path) -> None:
    """``app`` (the TCP one) has migrated the test database; a second app on
    the socket URL issues nothing itself: it decides an authorization of a
    card the first one issued, and the dispatcher's connection opens."""
    url = _socket_url()
    assert not make_url(url).host and make_url(url).query["host"] == str(SOCKET_DIR)
    biz = await new_business(api, fund="100.00")
    card = await issue_card(app, biz.id)
    secrets = tmp_path / "secrets.json"
    secrets.write_text(app.state.settings.secrets_file.read_text())  # the same vault and network keys
    settings = Settings(database_url=url, secrets_file=secrets, run_dispatcher=False).with_secrets()
    other = create_app(settings)
    async with other.router.lifespan_context(other):
        assert other.state.services.fast_pool is not None
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=other), base_url="http://n.test") as client:
            r = await post_signed(client, AUTHORIZATIONS, auth_body(card, "12.00"),
                                  secret=other.state.services.network_secret)
        assert r.status_code == 200 and r.json()["response_code"] == "00", r.text
        probe = await connect(other.state.services.engine)
        try:
            assert await probe.fetchval("SELECT inet_server_addr()") is None  # a local socket: no address
        finally:
            await probe.close()
    engine = make_engine(database_url())
    try:
        async with engine.connect() as conn:
            held = (await conn.execute(text(
                "SELECT balance FROM ledger_accounts WHERE code = :c"),
                {"c": f"business:{biz.raw_id}:holds:EUR"})).scalar_one()
        assert held == Decimal("12.00")
    finally:
        await engine.dispose()
