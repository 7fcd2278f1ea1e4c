"""Teams: members with a role per business, invitations, the last-owner rule."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import Enum

from veix.domain.errors import Conflict


class Role(str, Enum):
    OWNER = "owner"
    ADMIN = "admin"
    FINANCE = "finance"
    DEVELOPER = "developer"
    CARDHOLDER = "cardholder"
    VIEWER = "viewer"


@dataclass(slots=True)
class Membership:
    id: uuid.UUID
    business_id: uuid.UUID
    user_id: uuid.UUID
    role: Role
    invited_at: datetime
    joined_at: datetime | None
    invited_by: uuid.UUID | None

    def snapshot(self) -> dict[str, object]:
        return {"user_id": str(self.user_id), "role": self.role.value,
                "joined": self.joined_at is not None}


def ensure_owner_remains(current_owner_count: int, member: Membership, new_role: Role | None) -> None:
    """Refuse removing or demoting the last owner of a business.

    ``current_owner_count`` counts owners who joined (a pending invitation
    cannot run the business). ``new_role`` None means the member is being
    removed. The caller holds a
    lock on the business so that two owners cannot demote each other at once.
    """
    joined_owner = member.role is Role.OWNER and member.joined_at is not None
    if joined_owner and new_role is not Role.OWNER and current_owner_count <= 1:
        raise Conflict(
            "A business must keep at least one owner: add another owner first",
            field=["role"] if new_role is not None else ["memberId"],
        )
