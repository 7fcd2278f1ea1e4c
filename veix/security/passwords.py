"""Password hashing for people who log in with an email and a password.

Why argon2id: it is memory-hard, so a stolen hash table is expensive to crack on GPUs, and it is
the OWASP first choice. The parameters below (t=2, m=19 MiB, p=1) are the OWASP minimum that keeps
a login around tens of milliseconds. They live in the hash string itself, so raising them later
only needs :func:`needs_rehash` at the next successful login, never a migration.

Wrong passwords are an expected outcome, not an error: :func:`verify_password` returns ``False``
and never raises. :func:`dummy_verify` lets the login path spend the same time for an unknown
email as for a known one, so response time does not reveal which emails have an account.
"""

from __future__ import annotations

from functools import cache

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError

from veix.domain.errors import InvalidInput

MIN_PASSWORD_LENGTH = 10
MAX_PASSWORD_LENGTH = 256

_PASSWORD_FIELD = ("input", "password")

_hasher = PasswordHasher(
    time_cost=2,
    memory_cost=19_456,  # KiB, i.e. 19 MiB
    parallelism=1,
    hash_len=32,
    salt_len=16,
    type=Type.ID,
)


def hash_password(plain: str) -> str:
    """Return the argon2id PHC string (``$argon2id$v=19$m=19456,t=2,p=1$...``) for ``plain``."""
    return _hasher.hash(plain)


def verify_password(stored_hash: str, plain: str) -> bool:
    """Tell whether ``plain`` matches ``stored_hash``; ``False`` also for a malformed hash."""
    try:
        return _hasher.verify(stored_hash, plain)
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(stored_hash: str) -> bool:
    """Tell whether ``stored_hash`` was made with other parameters than the current ones.

    Call it after a successful :func:`verify_password` and store a fresh :func:`hash_password`
    when it says ``True``. A hash that cannot be parsed at all also needs replacing.
    """
    try:
        return _hasher.check_needs_rehash(stored_hash)
    except InvalidHashError:
        return True


def validate_new_password(plain: str) -> None:
    """Reject a new password that is too short to resist guessing or absurdly long.

    Length is the only rule (NIST SP 800-63B): composition rules make passwords worse.
    """
    if len(plain) < MIN_PASSWORD_LENGTH:
        raise InvalidInput(
            f"Password must be at least {MIN_PASSWORD_LENGTH} characters long.",
            field=_PASSWORD_FIELD,
        )
    if len(plain) > MAX_PASSWORD_LENGTH:
        raise InvalidInput(
            f"Password must be at most {MAX_PASSWORD_LENGTH} characters long.",
            field=_PASSWORD_FIELD,
        )


@cache
def _dummy_hash() -> str:
    # Made lazily once per process with the current parameters, so a dummy verify costs
    # exactly what a real one costs.
    return _hasher.hash("veix-dummy-password-for-timing")


def dummy_verify(plain: str) -> None:
    """Spend the time of one :func:`verify_password` and discard the result.

    Used when the email is unknown, so "no such account" and "wrong password" take equally long.
    """
    verify_password(_dummy_hash(), plain)
