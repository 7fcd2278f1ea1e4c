"""Businesses: types, statuses and the verification (KYB) state machine."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import Enum

from veix.domain.errors import InvalidStateTransition
from veix.domain.events import DomainEvent
from veix.domain.validation import Address, ContactInfo
from veix.domain.verification import ComplianceCheck, compliance_summary, run_kyb_checks


class BusinessType(str, Enum):
    SOLE_PROPRIETORSHIP = "sole_proprietorship"
    PARTNERSHIP = "partnership"
    LLC = "llc"
    CORPORATION = "corporation"
    NON_PROFIT = "non_profit"


class BusinessStatus(str, Enum):
    ACTIVE = "active"
    SUSPENDED = "suspended"
    CLOSED = "closed"


class VerificationStatus(str, Enum):
    UNVERIFIED = "unverified"
    PENDING = "pending"
    VERIFIED = "verified"
    REJECTED = "rejected"


# A rejected business may fix its data and submit again; a verified one is final.
VERIFICATION_TRANSITIONS: dict[VerificationStatus, frozenset[VerificationStatus]] = {
    VerificationStatus.UNVERIFIED: frozenset({VerificationStatus.PENDING}),
    VerificationStatus.PENDING: frozenset(
        {VerificationStatus.VERIFIED, VerificationStatus.REJECTED}
    ),
    VerificationStatus.REJECTED: frozenset({VerificationStatus.PENDING}),
    VerificationStatus.VERIFIED: frozenset(),
}


@dataclass(slots=True)
class Business:
    id: uuid.UUID
    name: str
    type: BusinessType
    status: BusinessStatus
    tax_id: str | None
    registration_date: datetime
    legal_address: Address
    contact_info: ContactInfo
    verification_status: VerificationStatus
    compliance_checks: list[ComplianceCheck]
    kyb_verified: bool
    sanctions_clear: bool
    default_currency: str
    timezone: str
    created_at: datetime
    updated_at: datetime
    events: list[DomainEvent] = field(default_factory=list, compare=False, repr=False)

    def snapshot(self) -> dict[str, object]:
        """What the audit log records as before/after."""
        return {
            "name": self.name,
            "type": self.type.value,
            "status": self.status.value,
            "tax_id_last4": self.tax_id[-4:] if self.tax_id else None,
            "legal_address": {
                "line1": self.legal_address.line1,
                "line2": self.legal_address.line2,
                "city": self.legal_address.city,
                "region": self.legal_address.region,
                "postal_code": self.legal_address.postal_code,
                "country": self.legal_address.country,
            },
            "contact_email": self.contact_info.email,
            "verification_status": self.verification_status.value,
            "default_currency": self.default_currency,
            "timezone": self.timezone,
        }


def new_business(
    *,
    name: str,
    type: BusinessType,
    tax_id: str | None,
    legal_address: Address,
    contact_info: ContactInfo,
    default_currency: str,
    timezone: str,
    now: datetime,
) -> Business:
    business = Business(
        id=uuid.uuid4(),
        name=name,
        type=type,
        status=BusinessStatus.ACTIVE,
        tax_id=tax_id,
        registration_date=now,
        legal_address=legal_address,
        contact_info=contact_info,
        verification_status=VerificationStatus.UNVERIFIED,
        compliance_checks=[],
        kyb_verified=False,
        sanctions_clear=False,
        default_currency=default_currency,
        timezone=timezone,
        created_at=now,
        updated_at=now,
    )
    business.events.append(
        DomainEvent("business.created", business.id, {"business_id": str(business.id)})
    )
    return business


def transition_verification(business: Business, to: VerificationStatus) -> None:
    allowed = VERIFICATION_TRANSITIONS[business.verification_status]
    if to not in allowed:
        raise InvalidStateTransition(
            f"Verification cannot go from {business.verification_status.name} to {to.name}"
        )
    business.verification_status = to


def submit_verification(business: Business, *, now: datetime) -> Business:
    """Run the KYB checks: UNVERIFIED|REJECTED -> PENDING -> VERIFIED|REJECTED."""
    transition_verification(business, VerificationStatus.PENDING)
    checks = run_kyb_checks(
        name=business.name,
        tax_id=business.tax_id,
        address=business.legal_address,
        contact=business.contact_info,
        now=now,
    )
    kyb_verified, sanctions_clear = compliance_summary(checks)
    business.compliance_checks = checks
    business.kyb_verified = kyb_verified
    business.sanctions_clear = sanctions_clear
    outcome = VerificationStatus.VERIFIED if kyb_verified else VerificationStatus.REJECTED
    transition_verification(business, outcome)
    business.updated_at = now
    business.events.append(
        DomainEvent(
            "business.verification_completed",
            business.id,
            {"business_id": str(business.id), "status": outcome.name},
        )
    )
    return business


def update_business(
    business: Business,
    *,
    name: str | None,
    legal_address: Address | None,
    contact_info: ContactInfo | None,
    timezone: str | None,
    now: datetime,
) -> Business:
    """Apply changed details. A verified business that changes its legal identity
    (name or address) goes back to UNVERIFIED: its KYB no longer covers it."""
    updated = replace(business)
    updated.events = business.events
    identity_changed = (name is not None and name != business.name) or (
        legal_address is not None and legal_address != business.legal_address
    )
    if name is not None:
        updated.name = name
    if legal_address is not None:
        updated.legal_address = legal_address
    if contact_info is not None:
        updated.contact_info = contact_info
    if timezone is not None:
        updated.timezone = timezone
    if identity_changed and business.verification_status is not VerificationStatus.UNVERIFIED:
        updated.verification_status = VerificationStatus.UNVERIFIED
        updated.kyb_verified = False
    updated.updated_at = now
    updated.events.append(
        DomainEvent("business.updated", business.id, {"business_id": str(business.id)})
    )
    return updated
