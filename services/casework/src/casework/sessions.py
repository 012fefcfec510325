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
from typing import Any

from pymongo import ASCENDING, AsyncMongoClient, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection

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


class LoginThrottle:
    """Two limits on password sign-in: attempts a minute from one address, and failures in a row for one email
    (then that email is locked for a while, whether or not an account has it, so the lock reveals nothing)."""

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
        document = await self.collection.find_one_and_update(
            {"_id": f"address:{address or '-'}:{minute}"},
            {"$inc": {"attempts": 1}, "$setOnInsert": {"expires_at": window_ends + timedelta(minutes=1)}},
            upsert=True,
            return_document=ReturnDocument.AFTER,
        )
        assert document is not None  # an upsert returning the document after it
        if document["attempts"] <= self._per_minute:
            return None
        return max(1, math.ceil((window_ends - now).total_seconds()))

    @staticmethod
    def _key(email: str) -> str:
        return f"email:{_hash(email)}"

    async def locked(self, email: str) -> bool:
        document = await self.collection.find_one({"_id": self._key(email)})
        locked_until = document.get("locked_until") if document else None
        return locked_until is not None and aware(locked_until) > self._clock()

    async def failed(self, email: str) -> bool:
        """Counts a failed password for ``email``; True when that locks it."""
        now, key = self._clock(), self._key(email)
        await self.collection.delete_one({"_id": key, "expires_at": {"$lte": now}})  # a stale count starts again
        document = await self.collection.find_one_and_update(
            {"_id": key},
            {"$inc": {"failures": 1}, "$set": {"expires_at": now + self._lockout}},
            upsert=True,
            return_document=ReturnDocument.AFTER,
        )
        assert document is not None  # an upsert returning the document after it
        if document["failures"] < self._max_failures:
            return False
        until = now + self._lockout
        await self.collection.update_one(
            {"_id": key}, {"$set": {"failures": 0, "locked_until": until, "expires_at": until}}
        )
        return True

    async def succeeded(self, email: str) -> None:
        await self.collection.delete_one({"_id": self._key(email)})
