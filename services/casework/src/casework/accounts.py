"""Staff accounts in MongoDB (``casework_staff``): email, name, role, argon2id hash or single sign-on only, active,
and whether the password must be changed (one an admin handed over) before anything else."""

import unicodedata
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pymongo import ASCENDING, AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from casework.roles import Role

MAX_EMAIL_LENGTH = 254  # RFC 5321's limit for a path
MAX_NAME_LENGTH = 100


class AccountProblem(ValueError):
    """Input an account cannot take (a bad email, name or role), or an email already in use."""


class EmailTaken(AccountProblem):
    pass


def _has_control_or_space(value: str) -> bool:
    return any(ch.isspace() or unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp", "Cs", "Co") for ch in value)


def normalise_email(value: str) -> str:
    """A staff email as stored and compared: trimmed, NFC, lower case. International addresses are fine; CR/LF,
    other control characters, spaces, more than 254 characters or no ``local@domain`` shape are not."""
    email = unicodedata.normalize("NFC", value.strip()).lower()
    if not email or len(email) > MAX_EMAIL_LENGTH:
        raise AccountProblem("email")
    local, at, domain = email.rpartition("@")
    if not at or not local or not domain or domain.startswith(".") or domain.endswith("."):
        raise AccountProblem("email")
    if _has_control_or_space(email):
        raise AccountProblem("email")
    return email


def check_name(value: str) -> str:
    name = unicodedata.normalize("NFC", value.strip())
    if not name or len(name) > MAX_NAME_LENGTH or any(unicodedata.category(ch).startswith("C") for ch in name):
        raise AccountProblem("name")
    return name


def check_role(value: str) -> Role:
    try:
        return Role(value)
    except ValueError:
        raise AccountProblem("role") from None


@dataclass(frozen=True)
class Account:
    id: str
    email: str
    name: str
    role: Role
    password_hash: str | None
    active: bool
    created_at: datetime
    must_change_password: bool = False

    @classmethod
    def from_document(cls, document: dict[str, Any]) -> "Account":
        return cls(
            id=document["_id"],
            email=document["email"],
            name=document["name"],
            role=Role(document["role"]),
            password_hash=document.get("password_hash"),
            active=bool(document.get("active", True)),
            created_at=document["created_at"],
            must_change_password=bool(document.get("must_change_password", False)),
        )


class StaffAccounts:
    """The accounts: reads by id or email, creation (a unique email), and the few changes an admin makes."""

    def __init__(self, clock: Callable[[], datetime]) -> None:
        self._clock = clock
        self._collection: AsyncCollection[dict[str, Any]] | None = None

    @property
    def collection(self) -> AsyncCollection[dict[str, Any]]:
        if self._collection is None:
            raise RuntimeError("StaffAccess.open() was not awaited")
        return self._collection

    async def open(self, client: AsyncMongoClient[dict[str, Any]], db_name: str) -> None:
        self._collection = client[db_name]["casework_staff"]
        await self.collection.create_index([("email", ASCENDING)], unique=True, name="email_unique")

    async def create(
        self, *, email: str, name: str, role: Role, password_hash: str | None, must_change_password: bool = False
    ) -> Account:
        now = self._clock()
        document = {
            "_id": uuid.uuid4().hex,
            "email": normalise_email(email),
            "name": check_name(name),
            "role": role.value,
            "password_hash": password_hash,
            "active": True,
            "must_change_password": must_change_password,
            "created_at": now,
            "updated_at": now,
        }
        try:
            await self.collection.insert_one(document)
        except DuplicateKeyError:
            raise EmailTaken("email_taken") from None
        return Account.from_document(document)

    async def by_id(self, account_id: str) -> Account | None:
        document = await self.collection.find_one({"_id": account_id})
        return Account.from_document(document) if document else None

    async def by_email(self, email: str) -> Account | None:
        document = await self.collection.find_one({"email": email})
        return Account.from_document(document) if document else None

    async def any_exists(self) -> bool:
        return await self.collection.find_one({}, projection={"_id": 1}) is not None

    async def all(self) -> list[Account]:
        return [Account.from_document(d) async for d in self.collection.find({}).sort("email", ASCENDING)]

    async def change(self, account_id: str, *, only_if: dict[str, Any] | None = None, **fields: Any) -> bool:
        """Set ``role``, ``active``, ``password_hash`` or ``must_change_password``; False when no such account (or,
        with ``only_if``, when the account no longer has those values: another change came first)."""
        result = await self.collection.update_one(
            {"_id": account_id, **(only_if or {})}, {"$set": {**fields, "updated_at": self._clock()}}
        )
        return result.matched_count == 1

    async def active_admins(self) -> int:
        return await self.collection.count_documents({"role": Role.ADMIN.value, "active": True})
