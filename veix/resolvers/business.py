"""Businesses, teams and funding: from GraphQL arguments to the use cases."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from veix.domain.api_keys import ApiKey
from veix.domain.business import Business, BusinessType
from veix.domain.errors import InvalidInput, NotFound
from veix.domain.events import utcnow
from veix.domain.money import parse_currency, positive_money
from veix.domain.services import businesses as svc
from veix.domain.services import funding
from veix.domain.services import team as team_svc
from veix.domain.team import Membership, Role
from veix.domain.transactions import Transaction
from veix.domain.validation import (
    Address,
    ContactInfo,
    optional_text,
    parse_address,
    parse_contact,
    parse_email,
    parse_timezone,
    require_text,
)
from veix.persistence import queries as q
from veix.resolvers.context import Context
from veix.resolvers.ids import from_global_id
from veix.resolvers.pagination import PageArgs


def _address(raw: Any, field: list[str]) -> Address:
    return parse_address(
        {"line1": raw.line1, "line2": raw.line2, "city": raw.city, "region": raw.region,
         "postal_code": raw.postal_code, "country": raw.country}, field=field)


def _contact(raw: Any, field: list[str]) -> ContactInfo:
    return parse_contact({"email": raw.email, "phone": raw.phone, "website": raw.website},
                         field=field)


async def create_business(ctx: Context, data: Any) -> Business:
    user = ctx.require_user()
    name = require_text(data.name, field=["input", "name"], max_len=200)
    tax_id = optional_text(data.tax_id, field=["input", "taxId"], max_len=64)
    address = _address(data.legal_address, ["input", "legalAddress"])
    contact = _contact(data.contact_info, ["input", "contactInfo"])
    try:
        currency = parse_currency(data.default_currency)
    except InvalidInput as exc:
        exc.field = ["input", "defaultCurrency"]
        raise
    tz = parse_timezone(data.timezone or "UTC", field=["input", "timezone"])
    async with ctx.uow() as uow:
        business = await svc.create_business(
            uow, owner_id=user.id, name=name, type=BusinessType(data.type), tax_id=tax_id,
            legal_address=address, contact_info=contact, default_currency=currency,
            timezone=tz, now=utcnow())
        await uow.commit()
    ctx.forget_roles()
    return business


async def update_business(ctx: Context, data: Any) -> Business:
    business_id = from_global_id(data.business_id, "Business", field=["input", "businessId"])
    await ctx.require(business_id, "business:update", field=["input", "businessId"])
    name = (require_text(data.name, field=["input", "name"], max_len=200)
            if data.name is not None else None)
    address = (_address(data.legal_address, ["input", "legalAddress"])
               if data.legal_address is not None else None)
    contact = (_contact(data.contact_info, ["input", "contactInfo"])
               if data.contact_info is not None else None)
    tz = (parse_timezone(data.timezone, field=["input", "timezone"])
          if data.timezone is not None else None)
    async with ctx.uow() as uow:
        business = await svc.update_business(uow, business_id, name=name, legal_address=address,
                                             contact_info=contact, timezone=tz, now=utcnow())
        await uow.commit()
    return business


async def submit_verification(ctx: Context, business_gid: str) -> Business:
    business_id = from_global_id(business_gid, "Business", field=["businessId"])
    await ctx.require(business_id, "business:verify", field=["businessId"])
    async with ctx.uow() as uow:
        business = await svc.submit_verification(uow, business_id, now=utcnow())
        await uow.commit()
    return business


async def invite_member(ctx: Context, data: Any) -> Membership:
    p = ctx.require_principal()
    business_id = from_global_id(data.business_id, "Business", field=["input", "businessId"])
    await ctx.require(business_id, "members:invite", field=["input", "businessId"])
    email = parse_email(data.email, field=["input", "email"])
    async with ctx.uow() as uow:
        member = await team_svc.invite_member(
            uow, business_id=business_id, email=email, role=Role(data.role),
            invited_by=p.id if p.kind == "user" else None,
            may_manage_owners=await ctx.can(business_id, "owners:manage"), now=utcnow())
        await uow.commit()
    return member


async def _member_business(ctx: Context, member_id: uuid.UUID) -> uuid.UUID:
    found = await ctx.read(lambda c: q.memberships_by_ids(c, [member_id]))
    member = found.get(member_id)
    if member is None or await ctx.role_in(member.business_id) is None:
        raise NotFound("Member not found", field=["memberId"])
    return member.business_id


async def change_member_role(ctx: Context, member_gid: str, role: Role) -> Membership:
    member_id = from_global_id(member_gid, "Member", field=["memberId"])
    business_id = await _member_business(ctx, member_id)
    await ctx.require(business_id, "members:manage", field=["memberId"])
    async with ctx.uow() as uow:
        member = await team_svc.change_member_role(
            uow, member_id=member_id, role=Role(role),
            may_manage_owners=await ctx.can(business_id, "owners:manage"))
        await uow.commit()
    return member


async def remove_member(ctx: Context, member_gid: str) -> Membership:
    member_id = from_global_id(member_gid, "Member", field=["memberId"])
    business_id = await _member_business(ctx, member_id)
    await ctx.require(business_id, "members:manage", field=["memberId"])
    async with ctx.uow() as uow:
        member = await team_svc.remove_member(
            uow, member_id=member_id,
            may_manage_owners=await ctx.can(business_id, "owners:manage"))
        await uow.commit()
    return member


async def fund_business(ctx: Context, data: Any) -> Transaction:
    business_id = from_global_id(data.business_id, "Business", field=["input", "businessId"])
    await ctx.require(business_id, "funds:create", field=["input", "businessId"])
    try:
        currency = parse_currency(data.amount.currency)
    except InvalidInput as exc:
        exc.field = ["input", "amount", "currency"]
        raise
    try:
        money = positive_money(data.amount.amount, currency)
    except InvalidInput as exc:
        exc.field = ["input", "amount", "amount"]
        raise
    async with ctx.uow() as uow:
        txn, _new = await funding.fund_business(
            uow, business_id=business_id, money=money,
            idempotency_key=data.idempotency_key, now=utcnow())
        await uow.commit()
    return txn


async def get_business(ctx: Context, business_gid: str) -> Business | None:
    try:
        business_id = from_global_id(business_gid, "Business", field=["id"])
    except NotFound:
        return None
    return await business_by_id(ctx, business_id)


async def business_by_id(ctx: Context, business_id: uuid.UUID) -> Business | None:
    from veix.resolvers import loaders

    if await ctx.role_in(business_id) is None:
        return None
    await ctx.require(business_id, "business:read", field=["id"])
    return await loaders.businesses(ctx).load(business_id)


async def list_businesses(
    ctx: Context, first: int | None, after: str | None
) -> tuple[list[Business], bool, int]:
    args = PageArgs.of(first, after)
    roles = await ctx.roles()
    ids = list(roles)
    items, has_next = await ctx.read(lambda c: q.businesses_page(c, ids, args.first, args.after))
    return items, has_next, len(ids)


async def transactions_page(
    ctx: Context, business_id: uuid.UUID, first: int | None, after: str | None, flt: Any
) -> tuple[list[Transaction], bool, Callable[[], Awaitable[int]]]:
    """A page, whether more follow, and the filtered count (run when called)."""
    args = PageArgs.of(first, after)
    kwargs: dict[str, Any] = {}
    if flt is not None:
        kwargs = {
            "types": [t.value for t in flt.types] if flt.types else None,
            "statuses": [s.value for s in flt.statuses] if flt.statuses else None,
            "since": flt.from_, "until": flt.to,
            "currency": parse_currency(flt.currency, field="filter.currency")
            if flt.currency else None,
            "min_amount": flt.min_amount, "max_amount": flt.max_amount,
        }
    items, has_next = await ctx.read(
        lambda c: q.transactions_page(c, business_id, args.first, args.after, **kwargs))

    async def count() -> int:
        total: int = await ctx.read(lambda c: q.count_transactions(c, business_id, **kwargs))
        return total

    return items, has_next, count


async def _visible(ctx: Context, gid: str, type_name: str, fetch: Any, permission: str) -> Any:
    """The object behind a global ID if the caller's business owns it and their
    role grants ``permission``; None for a missing or foreign object alike."""
    try:
        raw_id = from_global_id(gid, type_name, field=["id"])
    except NotFound:
        return None
    obj = (await ctx.read(lambda c: fetch(c, [raw_id]))).get(raw_id)
    if obj is None or await ctx.role_in(obj.business_id) is None:
        return None
    await ctx.require(obj.business_id, permission, field=["id"])
    return obj


async def get_transaction(ctx: Context, txn_gid: str) -> Transaction | None:
    txn: Transaction | None = await _visible(ctx, txn_gid, "Transaction", q.transactions_by_ids,
                                             "transactions:read")
    return txn


async def get_member(ctx: Context, member_gid: str) -> Membership | None:
    member: Membership | None = await _visible(ctx, member_gid, "Member", q.memberships_by_ids, "members:read")
    return member


async def get_api_key(ctx: Context, key_gid: str) -> ApiKey | None:
    key: ApiKey | None = await _visible(ctx, key_gid, "ApiKey", q.api_keys_by_ids, "api_keys:read")
    return key


async def list_api_keys(ctx: Context, business_id: uuid.UUID) -> list[ApiKey]:
    await ctx.require(business_id, "api_keys:read", field=["apiKeys"])
    return await ctx.read(lambda c: q.api_keys_of_business(c, business_id))
