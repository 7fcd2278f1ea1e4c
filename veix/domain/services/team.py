"""Inviting members, changing roles, removing members."""

from __future__ import annotations

import uuid
from datetime import datetime

from veix.domain.errors import Conflict, Forbidden, NotFound
from veix.domain.events import DomainEvent
from veix.domain.ports import UnitOfWork
from veix.domain.team import Membership, Role, ensure_owner_remains
from veix.domain.users import User


def _needs_owner_rights(*roles: Role) -> bool:
    return Role.OWNER in roles


async def invite_member(
    uow: UnitOfWork,
    *,
    business_id: uuid.UUID,
    email: str,
    role: Role,
    invited_by: uuid.UUID | None,
    may_manage_owners: bool,
    now: datetime,
) -> Membership:
    """An email that has an account joins at once; any other joins when it signs up."""
    if _needs_owner_rights(role) and not may_manage_owners:
        raise Forbidden("Only an owner can add an owner", field=["input", "role"])
    business = await uow.businesses.get(business_id, for_update=True)
    if business is None:
        raise NotFound("Business not found", field=["input", "businessId"])
    user = await uow.users.get_by_email(email, for_update=True)
    if user is None:
        user = User(uuid.uuid4(), email, "", None, now)
        await uow.users.add(user)
    elif await uow.memberships.get_for(business_id, user.id) is not None:
        raise Conflict("This person is already a member", field=["input", "email"])
    joined = now if user.has_signed_up else None
    member = Membership(uuid.uuid4(), business_id, user.id, role, now, joined, invited_by)
    await uow.memberships.add(member)
    uow.emit(DomainEvent("member.invited", business_id,
                         {"member_id": str(member.id), "role": role.name}))
    uow.audit("member.invite", "Member", member.id, business_id=business_id,
              after=member.snapshot() | {"email": email})
    return member


async def _member_with_lock(uow: UnitOfWork, member_id: uuid.UUID) -> Membership:
    member = await uow.memberships.get(member_id)
    if member is None:
        raise NotFound("Member not found", field=["memberId"])
    # Lock the business so two owners cannot demote each other at the same time.
    await uow.businesses.get(member.business_id, for_update=True)
    fresh = await uow.memberships.get(member_id)
    if fresh is None:
        raise NotFound("Member not found", field=["memberId"])
    return fresh


async def change_member_role(
    uow: UnitOfWork, *, member_id: uuid.UUID, role: Role, may_manage_owners: bool,
) -> Membership:
    member = await _member_with_lock(uow, member_id)
    if _needs_owner_rights(role, member.role) and not may_manage_owners:
        raise Forbidden("Only an owner can grant or change the owner role", field=["role"])
    ensure_owner_remains(await uow.memberships.count_owners(member.business_id), member, role)
    before = member.snapshot()
    member.role = role
    await uow.memberships.save(member)
    uow.emit(DomainEvent("member.role_changed", member.business_id,
                         {"member_id": str(member.id), "role": role.name}))
    uow.audit("member.change_role", "Member", member.id, business_id=member.business_id,
              before=before, after=member.snapshot())
    return member


async def remove_member(
    uow: UnitOfWork, *, member_id: uuid.UUID, may_manage_owners: bool
) -> Membership:
    member = await _member_with_lock(uow, member_id)
    if _needs_owner_rights(member.role) and not may_manage_owners:
        raise Forbidden("Only an owner can remove an owner", field=["memberId"])
    ensure_owner_remains(await uow.memberships.count_owners(member.business_id), member, None)
    await uow.memberships.delete(member)
    uow.emit(DomainEvent("member.removed", member.business_id, {"member_id": str(member.id),
                                                                "user_id": str(member.user_id)}))
    uow.audit("member.remove", "Member", member.id, business_id=member.business_id,
              before=member.snapshot())
    return member
