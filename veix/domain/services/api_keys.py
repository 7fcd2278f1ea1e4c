"""Creating and revoking partners' API keys (the secret itself is made by security)."""

from __future__ import annotations

import uuid
from datetime import datetime

from veix.domain.api_keys import ApiKey
from veix.domain.errors import InvalidStateTransition, NotFound
from veix.domain.ports import UnitOfWork
from veix.domain.team import Role


async def create_api_key(
    uow: UnitOfWork, *, business_id: uuid.UUID, name: str, role: Role, prefix: str,
    key_hash: str, created_by: uuid.UUID | None, now: datetime,
) -> ApiKey:
    if await uow.businesses.get(business_id) is None:
        raise NotFound("Business not found", field=["businessId"])
    key = ApiKey(uuid.uuid4(), business_id, name, role, prefix, key_hash, created_by, now)
    await uow.api_keys.add(key)
    uow.audit("api_key.create", "ApiKey", key.id, business_id=business_id,
              after={"name": name, "role": role.value, "prefix": prefix})
    return key


async def revoke_api_key(uow: UnitOfWork, *, key: ApiKey, now: datetime) -> ApiKey:
    if key.revoked_at is not None:
        raise InvalidStateTransition("This API key is already revoked", field=["id"])
    key.revoked_at = now
    await uow.api_keys.save(key)
    uow.audit("api_key.revoke", "ApiKey", key.id, business_id=key.business_id,
              before={"revoked": False}, after={"revoked": True})
    return key


async def get_api_key(uow: UnitOfWork, key_id: uuid.UUID) -> ApiKey:
    key = await uow.api_keys.get(key_id)
    if key is None:
        raise NotFound("API key not found", field=["id"])
    return key
