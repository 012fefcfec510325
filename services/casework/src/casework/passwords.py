"""Staff passwords: argon2id hashes (argon2-cffi), length bounds, and one-time generated passwords."""

import asyncio
import contextlib
import secrets
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

MIN_PASSWORD_LENGTH = 12
# Hashing cost grows with the input: a bound stops a megabyte "password" from being a cheap denial of service.
MAX_PASSWORD_LENGTH = 1024

_hasher = PasswordHasher()  # argon2id with argon2-cffi's current recommended parameters
# Verified against when the email matches no account, so an unknown email takes as long as a wrong password.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


class PasswordProblem(ValueError):
    """A password that may not be set: too short or too long (the message says which, for the form)."""


@dataclass(frozen=True)
class PasswordCheck:
    matches: bool
    # A new hash of the same password when the stored one used older parameters (store it), else None.
    rehashed: str | None = None


def check_new_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise PasswordProblem(f"at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise PasswordProblem(f"at most {MAX_PASSWORD_LENGTH} characters")


def hash_password(password: str) -> str:
    check_new_password(password)
    return _hasher.hash(password)


def verify_password(stored_hash: str | None, password: str, hasher: PasswordHasher = _hasher) -> PasswordCheck:
    """Whether ``password`` matches; an account without a password (single sign-on only) matches nothing, after
    the same work as a real check."""
    if stored_hash is None or len(password) > MAX_PASSWORD_LENGTH:
        spend_equal_time(password[:MAX_PASSWORD_LENGTH], hasher)
        return PasswordCheck(matches=False)
    try:
        hasher.verify(stored_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return PasswordCheck(matches=False)
    rehashed = hasher.hash(password) if hasher.check_needs_rehash(stored_hash) else None
    return PasswordCheck(matches=True, rehashed=rehashed)


def spend_equal_time(password: str, hasher: PasswordHasher = _hasher) -> None:
    """A verification that always fails, so a sign-in with an unknown email costs what a real one does."""
    with contextlib.suppress(VerificationError):
        hasher.verify(_DUMMY_HASH, password[:MAX_PASSWORD_LENGTH])


# Each argon2 computation takes ~0.2 s of CPU and 64 MiB: four at once bounds a replica's memory for them.
ARGON2_AT_ONCE = 4


class PasswordWork:
    """argon2 off the event loop: each hash or verification in a worker thread, at most ``at_once`` together, so
    the console keeps answering while sign-ins are checked (and a burst of them cannot take all the memory)."""

    def __init__(self, hasher: PasswordHasher = _hasher, at_once: int = ARGON2_AT_ONCE) -> None:
        self._hasher = hasher
        self._slots = asyncio.Semaphore(at_once)  # bound to a loop at first contended use, not here

    async def verify(self, stored_hash: str | None, password: str) -> PasswordCheck:
        async with self._slots:
            return await asyncio.to_thread(verify_password, stored_hash, password, self._hasher)

    async def hash(self, password: str) -> str:
        """Raises PasswordProblem (before any work) for a password that may not be set."""
        check_new_password(password)
        async with self._slots:
            return await asyncio.to_thread(self._hasher.hash, password)


def generate_password() -> str:
    """A one-time password for a new account or a reset: 20 URL-safe characters (120 bits)."""
    return secrets.token_urlsafe(15)
