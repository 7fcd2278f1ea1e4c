"""Rows to domain dataclasses and back: one place for each table's shape."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Row

from veix.domain.api_keys import ApiKey, RefreshToken
from veix.domain.business import Business, BusinessStatus, BusinessType, VerificationStatus
from veix.domain.team import Membership, Role
from veix.domain.transactions import Gateway, Transaction, TransactionStatus, TransactionType
from veix.domain.users import User
from veix.domain.validation import Address, ContactInfo
from veix.domain.verification import ComplianceCheck


def user_from_row(r: Row[Any]) -> User:
    return User(
        id=r.id, email=r.email, name=r.name, password_hash=r.password_hash,
        created_at=r.created_at, failed_logins=r.failed_logins, locked_until=r.locked_until,
        step_up_secret=r.step_up_secret,
    )


def user_values(u: User, now: datetime) -> dict[str, Any]:
    return {
        "id": u.id, "email": u.email, "name": u.name, "password_hash": u.password_hash,
        "failed_logins": u.failed_logins, "locked_until": u.locked_until,
        "step_up_secret": u.step_up_secret, "created_at": u.created_at, "updated_at": now,
    }


def _address_json(a: Address) -> dict[str, Any]:
    return {"line1": a.line1, "line2": a.line2, "city": a.city, "region": a.region,
            "postal_code": a.postal_code, "country": a.country}


def _contact_json(c: ContactInfo) -> dict[str, Any]:
    return {"email": c.email, "phone": c.phone, "website": c.website}


def _compliance_json(b: Business) -> dict[str, Any]:
    return {
        "kyb_verified": b.kyb_verified,
        "sanctions_clear": b.sanctions_clear,
        "checks": [
            {"name": c.name, "status": c.status, "checked_at": c.checked_at.isoformat(),
             "detail": c.detail}
            for c in b.compliance_checks
        ],
    }


def business_from_row(r: Row[Any]) -> Business:
    comp = r.compliance_status or {}
    return Business(
        id=r.id, name=r.name, type=BusinessType(r.type), status=BusinessStatus(r.status),
        tax_id=r.tax_id, registration_date=r.registration_date,
        legal_address=Address(**r.legal_address), contact_info=ContactInfo(**r.contact_info),
        verification_status=VerificationStatus(r.verification_status),
        compliance_checks=[
            ComplianceCheck(c["name"], c["status"], datetime.fromisoformat(c["checked_at"]),
                            c.get("detail"))
            for c in comp.get("checks", [])
        ],
        kyb_verified=bool(comp.get("kyb_verified")),
        sanctions_clear=bool(comp.get("sanctions_clear")),
        default_currency=r.default_currency, timezone=r.timezone,
        created_at=r.created_at, updated_at=r.updated_at,
    )


def business_values(b: Business) -> dict[str, Any]:
    return {
        "id": b.id, "name": b.name, "type": b.type.value, "status": b.status.value,
        "tax_id": b.tax_id, "registration_date": b.registration_date,
        "legal_address": _address_json(b.legal_address),
        "contact_info": _contact_json(b.contact_info),
        "verification_status": b.verification_status.value,
        "compliance_status": _compliance_json(b),
        "default_currency": b.default_currency, "timezone": b.timezone,
        "created_at": b.created_at, "updated_at": b.updated_at,
    }


def membership_from_row(r: Row[Any]) -> Membership:
    return Membership(
        id=r.id, business_id=r.business_id, user_id=r.user_id, role=Role(r.role),
        invited_at=r.invited_at, joined_at=r.joined_at, invited_by=r.invited_by,
    )


def membership_values(m: Membership) -> dict[str, Any]:
    return {
        "id": m.id, "business_id": m.business_id, "user_id": m.user_id, "role": m.role.value,
        "invited_at": m.invited_at, "joined_at": m.joined_at, "invited_by": m.invited_by,
    }


def api_key_from_row(r: Row[Any]) -> ApiKey:
    return ApiKey(
        id=r.id, business_id=r.business_id, name=r.name, role=Role(r.role), prefix=r.prefix,
        key_hash=r.key_hash, created_by=r.created_by, created_at=r.created_at,
        last_used_at=r.last_used_at, revoked_at=r.revoked_at,
    )


def api_key_values(k: ApiKey) -> dict[str, Any]:
    return {
        "id": k.id, "business_id": k.business_id, "name": k.name, "role": k.role.value,
        "prefix": k.prefix, "key_hash": k.key_hash, "created_by": k.created_by,
        "created_at": k.created_at, "last_used_at": k.last_used_at, "revoked_at": k.revoked_at,
    }


def refresh_from_row(r: Row[Any]) -> RefreshToken:
    return RefreshToken(
        id=r.id, user_id=r.user_id, family_id=r.family_id, token_hash=r.token_hash,
        issued_at=r.issued_at, expires_at=r.expires_at, rotated_at=r.rotated_at,
        revoked_at=r.revoked_at,
    )


def transaction_from_row(r: Row[Any]) -> Transaction:
    return Transaction(
        id=r.id, business_id=r.business_id, type=TransactionType(r.type),
        status=TransactionStatus(r.status), amount=r.amount, currency=r.currency,
        created_at=r.created_at, updated_at=r.updated_at, payment_method=r.payment_method,
        gateway=Gateway(r.gateway) if r.gateway else None,
        gateway_reference=r.gateway_reference, customer_id=r.customer_id,
        risk_score=r.risk_score, processing_fee=r.processing_fee,
        refunded_amount=r.refunded_amount, error_code=r.error_code,
        error_message=r.error_message, idempotency_key=r.idempotency_key,
        metadata=r.metadata or {}, next_action=r.next_action,
        parent_id=r.parent_id, payment_method_id=r.payment_method_id,
        captured_amount=r.captured_amount, description=r.description, routing=r.routing,
        gateway_data=r.gateway_data or {},
    )


def transaction_values(t: Transaction) -> dict[str, Any]:
    return {
        "id": t.id, "business_id": t.business_id, "type": t.type.value,
        "status": t.status.value, "amount": t.amount, "currency": t.currency,
        "payment_method": t.payment_method, "gateway": t.gateway.value if t.gateway else None,
        "gateway_reference": t.gateway_reference, "customer_id": t.customer_id,
        "risk_score": t.risk_score, "processing_fee": t.processing_fee,
        "refunded_amount": t.refunded_amount, "error_code": t.error_code,
        "error_message": t.error_message, "idempotency_key": t.idempotency_key,
        "metadata": t.metadata, "next_action": t.next_action,
        "parent_id": t.parent_id, "payment_method_id": t.payment_method_id,
        "captured_amount": t.captured_amount, "description": t.description, "routing": t.routing,
        "gateway_data": t.gateway_data or None,
        "created_at": t.created_at, "updated_at": t.updated_at,
    }
