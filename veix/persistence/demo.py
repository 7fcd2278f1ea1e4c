"""Demo data for the embedded default (``veix demo``, ``veix serve --demo``).

Everything is created through the domain use cases in one unit of work, so the
demo data obeys the same rules, writes the same outbox events and audit records
and posts the same balanced ledger entries as data made through the API.
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from veix.domain.business import BusinessType
from veix.domain.errors import Conflict
from veix.domain.events import utcnow
from veix.domain.gateway import CardDetails, PaymentMethodType
from veix.domain.money import Money, parse_currency
from veix.domain.ports import PasswordHasher
from veix.domain.services import access, businesses, funding, team
from veix.domain.services.payments import NewPayment, PaymentProcessor
from veix.domain.team import Role
from veix.domain.validation import parse_address, parse_contact, parse_email, parse_timezone
from veix.persistence.tables import users
from veix.persistence.uow import Actor, SqlUnitOfWork

DEMO_EMAIL = "demo@veix.dev"
DEMO_NAME = "Demo Owner"
DEMO_BUSINESS = "Demo Coffee GmbH"
DEMO_INVITES = (("finance@veix.dev", Role.FINANCE), ("viewer@veix.dev", Role.VIEWER))
DEMO_FUNDING = (
    (Decimal("25000.00"), "EUR", "demo-seed-eur"),
    (Decimal("5000.00"), "USD", "demo-seed-usd"),
)
# Audit records of the seed name the command that wrote them.
DEMO_ACTOR = Actor("system", "veix demo")


@dataclass(frozen=True, slots=True)
class DemoSeed:
    email: str
    password: str
    user_id: uuid.UUID
    business_id: uuid.UUID


async def demo_user_id(engine: AsyncEngine) -> uuid.UUID | None:
    """The demo owner's id, if the demo account has signed up (invited placeholders do not count)."""
    async with engine.connect() as conn:
        return (
            await conn.execute(
                select(users.c.id).where(
                    users.c.email == DEMO_EMAIL, users.c.password_hash.is_not(None)
                )
            )
        ).scalar()


async def has_users(engine: AsyncEngine) -> bool:
    async with engine.connect() as conn:
        return (await conn.execute(select(users.c.id).limit(1))).first() is not None


async def seed_demo(engine: AsyncEngine, hasher: PasswordHasher) -> DemoSeed | None:
    """Create the demo owner, business, team and funds; ``None`` if already seeded.

    The check and the writes share one write transaction, so two concurrent
    seeds create one demo account: the second finds it (or loses the sign-up
    race with ``Conflict``) and returns ``None``.
    """
    password = secrets.token_urlsafe(12)
    now = utcnow()
    email = parse_email(DEMO_EMAIL, field=["email"])
    address = parse_address(
        {"line1": "Hauptstraße 1", "city": "Berlin", "postal_code": "10115", "country": "DE"},
        field=["legalAddress"],
    )
    contact = parse_contact(
        {"email": "ops@demo-coffee.example", "phone": "+493012345678"}, field=["contactInfo"]
    )
    async with SqlUnitOfWork(engine, actor=DEMO_ACTOR) as uow:
        existing = await uow.users.get_by_email(email, for_update=True)
        if existing is not None and existing.has_signed_up:
            return None
        try:
            user = await access.sign_up(
                uow, hasher, email=email, password=password, name=DEMO_NAME, now=now
            )
        except Conflict:
            return None
        business = await businesses.create_business(
            uow, owner_id=user.id, name=DEMO_BUSINESS, type=BusinessType.LLC,
            tax_id="DE136695976", legal_address=address, contact_info=contact,
            default_currency=parse_currency("EUR"),
            timezone=parse_timezone("Europe/Berlin", field=["timezone"]), now=now,
        )
        for invitee, role in DEMO_INVITES:
            await team.invite_member(
                uow, business_id=business.id, email=parse_email(invitee, field=["email"]),
                role=role, invited_by=user.id, may_manage_owners=True, now=now,
            )
        await businesses.submit_verification(uow, business.id, now=now)
        for amount, currency, key in DEMO_FUNDING:
            await funding.fund_business(
                uow, business_id=business.id, money=Money.of(amount, currency),
                idempotency_key=key, now=now,
            )
        await uow.commit()
    return DemoSeed(email=email, password=password, user_id=user.id, business_id=business.id)


# Payments on the sandbox so a fresh dashboard has some history: (amount, test card, refund).
DEMO_PAYMENTS = (
    ("129.00", "4242424242424242", None),
    ("48.50", "5555555555554444", "12.00"),
    ("310.00", "4000000000009995", None),  # declined: insufficient funds
    ("75.00", "4242424242424242", "75.00"),
)


async def seed_demo_payments(engine: AsyncEngine, processor: PaymentProcessor, business_id: uuid.UUID) -> int:
    """A few sandbox card payments (one declined, two refunded); returns how many succeeded."""

    def new_uow() -> SqlUnitOfWork:
        return SqlUnitOfWork(engine, actor=DEMO_ACTOR)

    now = utcnow()
    succeeded = 0
    for n, (amount, number, refund) in enumerate(DEMO_PAYMENTS):
        outcome = await processor.create(new_uow, NewPayment(
            business_id=business_id, money=Money.of(amount, "EUR"), method=PaymentMethodType.CARD, capture=True,
            idempotency_key=f"demo-payment-{n}", card=CardDetails(number, 12, now.year + 3, "123"),
            customer_id=f"demo-customer-{n % 2}", description=f"Demo order #{1001 + n}"))
        if outcome.error is None:
            succeeded += 1
        if refund is not None and outcome.error is None:
            await processor.refund(new_uow, outcome.transaction.id, Money.of(refund, "EUR"), "demo refund",
                                   f"demo-refund-{n}")
    return succeeded
