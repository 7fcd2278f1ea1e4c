"""The ports the domain's use cases need; persistence and security implement them."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Protocol

from veix.domain.api_keys import ApiKey, RefreshToken
from veix.domain.business import Business
from veix.domain.events import DomainEvent
from veix.domain.ledger import JournalEntry
from veix.domain.money import Money
from veix.domain.team import Membership
from veix.domain.transactions import Transaction
from veix.domain.users import User


class UserRepository(Protocol):
    async def get(self, user_id: uuid.UUID) -> User | None: ...
    async def get_by_email(self, email: str, *, for_update: bool = False) -> User | None: ...
    async def add(self, user: User) -> None: ...
    async def save(self, user: User) -> None: ...


class BusinessRepository(Protocol):
    async def get(self, business_id: uuid.UUID, *, for_update: bool = False) -> Business | None: ...
    async def add(self, business: Business) -> None: ...
    async def save(self, business: Business) -> None: ...


class MembershipRepository(Protocol):
    async def get(self, membership_id: uuid.UUID) -> Membership | None: ...
    async def get_for(self, business_id: uuid.UUID, user_id: uuid.UUID) -> Membership | None: ...
    async def add(self, membership: Membership) -> None: ...
    async def save(self, membership: Membership) -> None: ...
    async def delete(self, membership: Membership) -> None: ...
    async def count_owners(self, business_id: uuid.UUID) -> int: ...
    async def claim_invitations(self, user_id: uuid.UUID, now: datetime) -> int: ...


class ApiKeyRepository(Protocol):
    async def get(self, key_id: uuid.UUID) -> ApiKey | None: ...
    async def add(self, key: ApiKey) -> None: ...
    async def save(self, key: ApiKey) -> None: ...


class RefreshTokenRepository(Protocol):
    async def get_by_hash(self, token_hash: str) -> RefreshToken | None: ...
    async def add(self, token: RefreshToken) -> None: ...
    async def mark_rotated(self, token_id: uuid.UUID, now: datetime) -> bool: ...
    async def revoke_family(self, family_id: uuid.UUID, now: datetime) -> None: ...


class LedgerRepository(Protocol):
    async def post(self, entry: JournalEntry) -> None: ...
    async def balances(self, business_id: uuid.UUID) -> list[Money]: ...


class TransactionRepository(Protocol):
    async def get(self, transaction_id: uuid.UUID) -> Transaction | None: ...
    async def add(self, transaction: Transaction) -> None: ...


class IdempotencyStore(Protocol):
    async def claim(
        self, scope: str, key: str, request_hash: str, now: datetime
    ) -> tuple[str, uuid.UUID | None] | None:
        """None when this call claimed the key; else ``(stored_hash, result_id)``."""
        ...

    async def complete(self, scope: str, key: str, result_type: str, result_id: uuid.UUID) -> None: ...


class UnitOfWork(Protocol):
    """One database transaction; events and audit records commit with it."""

    users: UserRepository
    businesses: BusinessRepository
    memberships: MembershipRepository
    api_keys: ApiKeyRepository
    refresh_tokens: RefreshTokenRepository
    ledger: LedgerRepository
    transactions: TransactionRepository
    idempotency: IdempotencyStore

    def emit(self, event: DomainEvent) -> None: ...

    def audit(
        self,
        action: str,
        object_type: str,
        object_id: uuid.UUID | str | None,
        *,
        business_id: uuid.UUID | None,
        before: dict[str, Any] | None = None,
        after: dict[str, Any] | None = None,
    ) -> None: ...

    async def commit(self) -> None: ...


class PasswordHasher(Protocol):
    def hash(self, plain: str) -> str: ...
    def verify(self, stored_hash: str, plain: str) -> bool: ...
    def dummy_verify(self, plain: str) -> None: ...


class Clock(Protocol):
    def now(self) -> datetime: ...


# ---------------------------------------------------------------- cards

class SealedCard(Protocol):
    key_id: str
    pan_blob: bytes
    cvv_blob: bytes
    lookup_hash: str
    masked_number: str
    last4: str


class CardVault(Protocol):
    """Keeps PAN and CVV encrypted; the only way back is ``open``, used by the
    audited reveal path and by the network authorization (to check a CVV)."""

    def seal(self, card_id: uuid.UUID, pan: str, cvv: str) -> SealedCard: ...
    def open(self, card_id: uuid.UUID, key_id: str, pan_blob: bytes, cvv_blob: bytes) -> tuple[str, str]: ...
    def lookup_hash(self, pan: str) -> str: ...
