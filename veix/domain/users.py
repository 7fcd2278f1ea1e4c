"""People who log in. An invited email that has not signed up yet is a user
without a password; signing up with that email claims it."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from veix.domain.errors import RateLimited

MAX_FAILED_LOGINS = 5
LOCKOUT = timedelta(minutes=15)


@dataclass(slots=True)
class User:
    id: uuid.UUID
    email: str
    name: str
    password_hash: str | None
    created_at: datetime
    failed_logins: int = 0
    locked_until: datetime | None = None
    step_up_secret: str | None = None

    @property
    def has_signed_up(self) -> bool:
        return self.password_hash is not None


def ensure_not_locked(user: User, now: datetime) -> None:
    if user.locked_until is not None and user.locked_until > now:
        seconds = int((user.locked_until - now).total_seconds()) + 1
        raise RateLimited(f"Too many failed log-ins: try again in {seconds} s")


def record_failed_login(user: User, now: datetime) -> None:
    """After MAX_FAILED_LOGINS failures in a row the account is locked for LOCKOUT."""
    user.failed_logins += 1
    if user.failed_logins >= MAX_FAILED_LOGINS:
        user.locked_until = now + LOCKOUT
        user.failed_logins = 0


def record_successful_login(user: User) -> None:
    user.failed_logins = 0
    user.locked_until = None
