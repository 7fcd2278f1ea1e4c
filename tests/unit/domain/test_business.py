"""The verification state machine and the last-owner rule."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from veix.domain import business as b
from veix.domain.errors import Conflict, InvalidStateTransition
from veix.domain.team import Membership, Role, ensure_owner_remains
from veix.domain.validation import Address, ContactInfo

NOW = datetime(2026, 11, 26, 12, tzinfo=UTC)


def _business(tax_id: str | None = "DE136695976") -> b.Business:
    return b.new_business(
        name="Acme GmbH", type=b.BusinessType.LLC, tax_id=tax_id,
        legal_address=Address("Hauptstraße 1", None, "Berlin", None, "10115", "DE"),
        contact_info=ContactInfo("ops@acme.example", "+4930123456", None),
        default_currency="EUR", timezone="Europe/Berlin", now=NOW)


def test_a_new_business_is_unverified_and_raises_a_created_event():
    biz = _business()
    assert biz.verification_status is b.VerificationStatus.UNVERIFIED
    assert [e.type for e in biz.events] == ["business.created"]


def test_complete_valid_data_verifies():
    biz = b.submit_verification(_business(), now=NOW)
    assert biz.verification_status is b.VerificationStatus.VERIFIED
    assert biz.kyb_verified and biz.sanctions_clear
    assert {c.name for c in biz.compliance_checks} == {"tax_id", "legal_address", "contact",
                                                       "sanctions"}


def test_an_invalid_tax_id_rejects_and_records_the_failed_check():
    biz = b.submit_verification(_business("DE000000000"), now=NOW)
    assert biz.verification_status is b.VerificationStatus.REJECTED
    failed = [c.name for c in biz.compliance_checks if c.status == "failed"]
    assert failed == ["tax_id"]


def test_a_rejected_business_may_submit_again_but_a_verified_one_may_not():
    rejected = b.submit_verification(_business(None), now=NOW)
    rejected.tax_id = "DE136695976"
    assert b.submit_verification(rejected, now=NOW).verification_status is b.VerificationStatus.VERIFIED
    with pytest.raises(InvalidStateTransition):
        b.submit_verification(rejected, now=NOW)


def test_changing_the_legal_name_of_a_verified_business_needs_verification_again():
    verified = b.submit_verification(_business(), now=NOW)
    changed = b.update_business(verified, name="Acme Holding GmbH", legal_address=None,
                                contact_info=None, timezone=None, now=NOW)
    assert changed.verification_status is b.VerificationStatus.UNVERIFIED


def _member(role: Role) -> Membership:
    return Membership(uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), role, NOW, NOW, None)


def test_the_last_owner_can_be_neither_demoted_nor_removed():
    owner = _member(Role.OWNER)
    with pytest.raises(Conflict):
        ensure_owner_remains(1, owner, Role.ADMIN)
    with pytest.raises(Conflict):
        ensure_owner_remains(1, owner, None)


def test_an_owner_can_be_demoted_when_another_owner_remains():
    ensure_owner_remains(2, _member(Role.OWNER), Role.ADMIN)
    ensure_owner_remains(1, _member(Role.ADMIN), None)


def test_a_pending_owner_invitation_can_be_withdrawn_by_the_only_owner():
    pending = Membership(uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), Role.OWNER, NOW, None, None)
    ensure_owner_remains(1, pending, None)
