"""The app under test over a real database, and factories that go through the API."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from alembic import command
from sqlalchemy import text

from tests.conftest import database_url, is_postgres
from veix.app import create_app
from veix.config import Settings
from veix.persistence.engine import make_engine
from veix.persistence.migrate import alembic_config
from veix.persistence.verify import verify_ledger

BUSINESS_INPUT = {
    "name": "Acme GmbH",
    "type": "LLC",
    "taxId": "DE136695976",
    "legalAddress": {"line1": "Hauptstraße 1", "city": "Berlin", "postalCode": "10115",
                     "country": "DE"},
    "contactInfo": {"email": "ops@acme.example", "phone": "+4930123456"},
    "defaultCurrency": "EUR",
    "timezone": "Europe/Berlin",
}
PASSWORD = "correct horse battery staple"


async def _reset_postgres(url: str) -> None:
    engine = make_engine(url)
    async with engine.begin() as conn:
        await conn.execute(text("DROP SCHEMA public CASCADE"))
        await conn.execute(text("CREATE SCHEMA public"))
    await engine.dispose()


@pytest.fixture(scope="session")
async def app(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Any]:
    url = database_url()
    if is_postgres(url):
        await _reset_postgres(url)
    secrets = tmp_path_factory.mktemp("secrets") / "secrets.json"
    # The outbox dispatcher is driven explicitly (tests/integration/test_outbox_dispatcher.py):
    # a background one would race tests that count statements or inspect the outbox.
    # The network's deadline (1.5 s by default) would answer 91 to a decision kept waiting
    # by a loaded test machine or by the concurrency tests' hundreds of requests at one card;
    # tests/integration/test_network_deadline.py sets its own.
    settings = Settings(database_url=url, secrets_file=Path(secrets), run_dispatcher=False,
                        network_deadline_ms=60_000).with_secrets()
    application = create_app(settings, migrate_on_start=True)
    async with application.router.lifespan_context(application):
        yield application


class Api:
    """A GraphQL client with factories that build data through the public API."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    async def gql(self, query: str, variables: dict[str, Any] | None = None,
                  token: str | None = None, *, status: int = 200) -> dict[str, Any]:
        headers = {"authorization": f"Bearer {token}"} if token else {}
        r = await self.client.post("/graphql", json={"query": query, "variables": variables},
                                   headers=headers)
        assert r.status_code == status, r.text
        body: dict[str, Any] = r.json()
        return body

    async def ok(self, query: str, variables: dict[str, Any] | None = None,
                 token: str | None = None) -> dict[str, Any]:
        """Data of a request that must have no errors and no userErrors."""
        body = await self.gql(query, variables, token)
        assert "errors" not in body, body
        for value in body["data"].values():
            if isinstance(value, dict) and "userErrors" in value:
                assert value["userErrors"] == [], value
        data: dict[str, Any] = body["data"]
        return data

    async def sign_up(self, name: str = "Test User", email: str | None = None) -> tuple[str, str]:
        email = email or f"user-{uuid.uuid4().hex[:10]}@example.com"
        data = await self.ok(
            "mutation($i: SignUpInput!){ signUp(input:$i){ accessToken user{ id } userErrors{ code } } }",
            {"i": {"email": email, "password": PASSWORD, "name": name}})
        return data["signUp"]["accessToken"], email

    async def create_business(self, token: str, **overrides: Any) -> str:
        data = await self.ok(
            "mutation($i: CreateBusinessInput!){ createBusiness(input:$i){ business{ id } userErrors{ code message field } } }",
            {"i": {**BUSINESS_INPUT, **overrides}}, token)
        return str(data["createBusiness"]["business"]["id"])

    async def member_token(self, owner_token: str, business_id: str, role: str) -> tuple[str, str]:
        """Invite a new person with ``role`` and sign them up; returns (token, member id)."""
        email = f"{role.lower()}-{uuid.uuid4().hex[:10]}@example.com"
        data = await self.ok(
            "mutation($i: InviteMemberInput!){ inviteMember(input:$i){ member{ id } userErrors{ code message } } }",
            {"i": {"businessId": business_id, "email": email, "role": role}}, owner_token)
        token, _ = await self.sign_up(email=email)
        return token, str(data["inviteMember"]["member"]["id"])

    async def fund(self, token: str, business_id: str, amount: str = "100.00",
                   currency: str = "EUR", key: str | None = None) -> dict[str, Any]:
        return await self.gql(
            "mutation($i: FundBusinessInput!){ fundBusiness(input:$i){ transaction{ id amount{ amount currency } } userErrors{ code message field } } }",
            {"i": {"businessId": business_id, "amount": {"amount": amount, "currency": currency},
                   "idempotencyKey": key or uuid.uuid4().hex}}, token)


@pytest.fixture
async def api(app: Any) -> AsyncIterator[Api]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://veix.test") as client:
        yield Api(client)
    problems = await verify_ledger(app.state.services.engine)
    assert problems == [], problems


@pytest.fixture
async def owner(api: Api) -> tuple[str, str]:
    """A fresh user owning a fresh business: (token, business id)."""
    token, _ = await api.sign_up("Owner")
    return token, await api.create_business(token)


# ------------------------------------------------------------------ migrations
@pytest.fixture
async def scratch_url(tmp_path: Path) -> AsyncIterator[str]:
    """A database of its own: the test migrates it down and up."""
    url = database_url()
    if not is_postgres(url):
        yield f"sqlite+aiosqlite:///{tmp_path / 'scratch.db'}"
        return
    name = f"veix_scratch_{uuid.uuid4().hex[:12]}"
    admin = make_engine(url).execution_options(isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        await conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield url.rsplit("/", 1)[0] + "/" + name
    finally:
        async with admin.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await admin.dispose()


async def migrate_to(url: str, revision: str, *, down: bool = False) -> None:
    """Alembic upgrade (or downgrade) of the database at ``url`` to ``revision``."""
    engine = make_engine(url)
    cfg = alembic_config(url)

    def run(connection: Any) -> None:
        cfg.attributes["connection"] = connection
        (command.downgrade if down else command.upgrade)(cfg, revision)

    async with engine.connect() as conn:
        await conn.run_sync(run)
        await conn.commit()
    await engine.dispose()
