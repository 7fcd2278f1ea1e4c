"""Creating, updating and verifying businesses."""

from __future__ import annotations

import uuid
from datetime import datetime

from veix.domain import business as rules
from veix.domain.business import Business, BusinessType
from veix.domain.errors import NotFound
from veix.domain.ports import UnitOfWork
from veix.domain.team import Membership, Role
from veix.domain.validation import Address, ContactInfo


async def create_business(
    uow: UnitOfWork,
    *,
    owner_id: uuid.UUID,
    name: str,
    type: BusinessType,
    tax_id: str | None,
    legal_address: Address,
    contact_info: ContactInfo,
    default_currency: str,
    timezone: str,
    now: datetime,
) -> Business:
    business = rules.new_business(
        name=name, type=type, tax_id=tax_id, legal_address=legal_address,
        contact_info=contact_info, default_currency=default_currency, timezone=timezone, now=now,
    )
    await uow.businesses.add(business)
    owner = Membership(uuid.uuid4(), business.id, owner_id, Role.OWNER, now, now, owner_id)
    await uow.memberships.add(owner)
    uow.audit("business.create", "Business", business.id, business_id=business.id,
              after=business.snapshot())
    return business


async def _locked(uow: UnitOfWork, business_id: uuid.UUID) -> Business:
    business = await uow.businesses.get(business_id, for_update=True)
    if business is None:
        raise NotFound("Business not found", field=["businessId"])
    return business


async def update_business(
    uow: UnitOfWork,
    business_id: uuid.UUID,
    *,
    name: str | None,
    legal_address: Address | None,
    contact_info: ContactInfo | None,
    timezone: str | None,
    now: datetime,
) -> Business:
    business = await _locked(uow, business_id)
    before = business.snapshot()
    updated = rules.update_business(
        business, name=name, legal_address=legal_address, contact_info=contact_info,
        timezone=timezone, now=now,
    )
    await uow.businesses.save(updated)
    uow.audit("business.update", "Business", business.id, business_id=business.id,
              before=before, after=updated.snapshot())
    return updated


async def submit_verification(uow: UnitOfWork, business_id: uuid.UUID, *, now: datetime) -> Business:
    business = await _locked(uow, business_id)
    before = business.snapshot()
    rules.submit_verification(business, now=now)
    await uow.businesses.save(business)
    after = business.snapshot()
    after["checks"] = {c.name: c.status for c in business.compliance_checks}
    uow.audit("business.submit_verification", "Business", business.id,
              business_id=business.id, before=before, after=after)
    return business
