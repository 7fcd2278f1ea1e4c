"""API keys: a partner's credential, scoped to one business and one role."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from veix.domain.team import Role


@dataclass(slots=True)
class ApiKey:
    id: uuid.UUID
    business_id: uuid.UUID
    name: str
    role: Role
    prefix: str
    key_hash: str
    created_by: uuid.UUID | None
    created_at: datetime
    last_used_at: datetime | None = None
    revoked_at: datetime | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


@dataclass(slots=True)
class RefreshToken:
    """One link of a rotation family: using a rotated token revokes the family."""

    id: uuid.UUID
    user_id: uuid.UUID
    family_id: uuid.UUID
    token_hash: str
    issued_at: datetime
    expires_at: datetime
    rotated_at: datetime | None = None
    revoked_at: datetime | None = None
