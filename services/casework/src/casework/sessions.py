"""Console sessions (``casework_sessions``) and sign-in throttling (``casework_login_attempts``), both in MongoDB so
every replica sees the same ones.

A session is stored under the SHA-256 of its token: the cookie holds the token, so a read of the collection gives
nobody a session. Idle and absolute expiry are checked here, on every request, not left to the TTL reaper (which
only tidies up).
"""

import hashlib
import math
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from ipaddress import IPv6Address, ip_address, ip_network
from typing import Any

from pymongo import ASCENDING, AsyncMongoClient, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

Clock = Callable[[], datetime]


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def aware(moment: datetime) -> datetime:
    """A stored time as UTC-aware, whether the client was opened with ``tz_aware`` or not."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Session:
    staff_id: str
    csrf_token: str
    created_at: datetime
    expires_at: datetime


class Sessions:
    def __init__(self, clock: Clock, idle: timedelta, lifetime: timedelta) -> None:
        self._clock, self._idle, self._lifetime = clock, idle, lifetime
        self._collection: AsyncCollection[dict[str, Any]] | None = None

    @property
    def collection(self) -> AsyncCollection[dict[str, Any]]:
        if self._collection is None:
            raise RuntimeError("StaffAccess.open() was not awaited")
        return self._collection

    async def open(self, client: AsyncMongoClient[dict[str, Any]], db_name: str) -> None:
        self._collection = client[db_name]["casework_sessions"]
        await self.collection.create_index([("staff_id", ASCENDING)], name="staff_id")
        await self.collection.create_index([("purge_at", ASCENDING)], expireAfterSeconds=0, name="purge_at_ttl")

    async def start(self, staff_id: str, address: str | None) -> tuple[str, Session]:
        """A new session (a new token at every sign-in: no fixation); returns the cookie's token and the session."""
        token = secrets.token_urlsafe(32)
        now = self._clock()
        expires_at = now + self._lifetime
        idle_until = min(now + self._idle, expires_at)
        session = Session(staff_id, secrets.token_urlsafe(32), now, expires_at)
        await self.collection.insert_one(
            {
                "_id": _hash(token),
                "staff_id": staff_id,
                "csrf_token": session.csrf_token,
                "created_at": now,
                "expires_at": expires_at,
                "idle_until": idle_until,
                "purge_at": idle_until,
                "address": address,
            }
        )
        return token, session

    async def resume(self, token: str) -> Session | None:
        """The live session for ``token``, its idle expiry pushed back; None when unknown, idle or too old."""
        now = self._clock()
        idle_until_ceiling = now + self._idle
        document = await self.collection.find_one_and_update(
            {"_id": _hash(token), "expires_at": {"$gt": now}, "idle_until": {"$gt": now}},
            {"$set": {"idle_until": idle_until_ceiling, "purge_at": idle_until_ceiling}},
            return_document=ReturnDocument.AFTER,
        )
        if document is None:
            await self.collection.delete_one({"_id": _hash(token)})  # expired: gone now, not when the reaper runs
            return None
        return Session(
            document["staff_id"], document["csrf_token"], aware(document["created_at"]), aware(document["expires_at"])
        )

    async def end(self, token: str) -> None:
        await self.collection.delete_one({"_id": _hash(token)})

    async def end_all(self, staff_id: str) -> int:
        result = await self.collection.delete_many({"staff_id": staff_id})
        return result.deleted_count


def address_key(address: str | None) -> str:
    """What the per-address limit counts by: an IPv4 address as is, an IPv6 one by its /64 (one host commonly has
    the whole /64, so counting single addresses would give it 2**64 tries)."""
    try:
        ip = ip_address(address or "")
    except ValueError:
        return address or "-"
    if isinstance(ip, IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ip_network(f"{ip}/64", strict=False))
    return str(ip)


@dataclass(frozen=True)
class Attempt:
    """A password attempt for one email, counted before the password is checked."""

    allowed: bool  # False: over the limit or locked, refuse without checking the password
    count: int


class LoginThrottle:
    """Two limits on password sign-in: attempts a minute from one address (an IPv6 /64), and attempts in a row for
    one email (then that email is locked for a while, whether or not an account has it, so the lock reveals
    nothing). An attempt is counted, atomically, before its password is checked: parallel attempts cannot all
    slip in under the limit."""

    def __init__(self, clock: Clock, attempts_per_minute: int, max_failures: int, lockout: timedelta) -> None:
        self._clock = clock
        self._per_minute, self._max_failures, self._lockout = attempts_per_minute, max_failures, lockout
        self._collection: AsyncCollection[dict[str, Any]] | None = None

    @property
    def collection(self) -> AsyncCollection[dict[str, Any]]:
        if self._collection is None:
            raise RuntimeError("StaffAccess.open() was not awaited")
        return self._collection

    async def open(self, client: AsyncMongoClient[dict[str, Any]], db_name: str) -> None:
        self._collection = client[db_name]["casework_login_attempts"]
        await self.collection.create_index([("expires_at", ASCENDING)], expireAfterSeconds=0, name="expires_at_ttl")

    async def over_limit(self, address: str | None) -> int | None:
        """Counts an attempt from ``address``; the seconds until it may try again when over the limit, else None."""
        now = self._clock()
        minute = math.floor(now.timestamp() / 60)
        window_ends = datetime.fromtimestamp((minute + 1) * 60, UTC)
        document = await self._count(
            f"address:{address_key(address)}:{minute}",
            {"$inc": {"attempts": 1}, "$setOnInsert": {"expires_at": window_ends + timedelta(minutes=1)}},
        )
        if document["attempts"] <= self._per_minute:
            return None
        return max(1, math.ceil((window_ends - now).total_seconds()))

    async def _count(self, key: str, update: dict[str, Any]) -> dict[str, Any]:
        """``update`` (an ``$inc``) applied to ``key``'s document, made if missing; the document after it."""
        for _ in range(3):
            try:
                document = await self.collection.find_one_and_update(
                    {"_id": key}, update, upsert=True, return_document=ReturnDocument.AFTER
                )
            except DuplicateKeyError:
                document = None  # a parallel attempt inserted it first: the next try updates it
            if document is not None:
                return document
        raise RuntimeError(f"could not count a sign-in attempt ({key.split(':', 1)[0]})")

    @staticmethod
    def _key(email: str) -> str:
        return f"email:{_hash(email)}"

    async def attempt(self, email: str) -> Attempt:
        """Counts an attempt for ``email``; not allowed while it is locked or past the limit (which locks it)."""
        now, key = self._clock(), self._key(email)
        # A lock that has run out, or a count nobody added to for a lockout's length, starts again.
        await self.collection.delete_one(
            {"_id": key, "$or": [{"locked_until": {"$lte": now}}, {"expires_at": {"$lte": now}}]}
        )
        document = await self._count(key, {"$inc": {"attempts": 1}, "$max": {"expires_at": now + self._lockout}})
        count: int = document["attempts"]
        locked_until = document.get("locked_until")
        if locked_until is not None and aware(locked_until) > now:
            return Attempt(allowed=False, count=count)
        if count > self._max_failures:
            await self._lock(key, now)
            return Attempt(allowed=False, count=count)
        return Attempt(allowed=True, count=count)

    async def failed(self, email: str, attempt: Attempt) -> bool:
        """A counted attempt's password was wrong; True when that locks ``email`` (its count reached the limit)."""
        if attempt.count < self._max_failures:
            return False
        await self._lock(self._key(email), self._clock())
        return True

    async def _lock(self, key: str, now: datetime) -> None:
        until = now + self._lockout
        await self.collection.update_one(
            {"_id": key, "locked_until": None}, {"$set": {"locked_until": until}, "$max": {"expires_at": until}}
        )

    async def locked_among(self, emails: list[str]) -> set[str]:
        """Those of ``emails`` locked now."""
        keys = {self._key(email): email for email in emails}
        found = self.collection.find(
            {"_id": {"$in": list(keys)}, "locked_until": {"$gt": self._clock()}}, projection={"_id": 1}
        )
        return {keys[document["_id"]] async for document in found}

    async def succeeded(self, email: str) -> None:
        """A right password, or an admin's reset or unlock: the count and any lock are gone."""
        await self.collection.delete_one({"_id": self._key(email)})
