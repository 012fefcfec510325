"""The notification ledger in MongoDB: one entry per (event, template, recipient), so no email goes out twice."""

from datetime import timedelta
from enum import StrEnum
from typing import Any

from pymongo import ASCENDING, AsyncMongoClient, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from agency_shared.events import utc_now

Document = dict[str, Any]


class Claim(StrEnum):
    CLAIMED = "claimed"  # this worker sends it now
    SENT = "sent"  # sent before: skip
    FAILED = "failed"  # failed for good before: skip
    BUSY = "busy"  # another worker is sending it right now: look again later


class NotificationLedger:
    def __init__(self, client: AsyncMongoClient[Document], database: str, lease_seconds: float) -> None:
        self._emails: AsyncCollection[Document] = client[database]["notifications"]
        self._lease = timedelta(seconds=lease_seconds)

    async def ensure_indexes(self) -> None:
        await self._emails.create_index([("event_id", ASCENDING)], name="event_id")
        await self._emails.create_index([("state", ASCENDING), ("updated_at", ASCENDING)], name="state_updated_at")

    async def claim(self, key: str, details: Document, retry_failed: bool = False) -> Claim:
        """Take the email for sending unless it was sent, failed for good, or is being sent elsewhere.

        ``retry_failed`` (an operator replayed the event) takes failed emails back too.
        """
        now = utc_now()
        try:
            await self._emails.insert_one(
                {"_id": key, **details, "state": "sending", "lease_until": now + self._lease, "attempts": 0,
                 "created_at": now, "updated_at": now}
            )  # fmt: skip
            return Claim.CLAIMED
        except DuplicateKeyError:
            pass
        # A retry after a temporary failure, or a worker that died mid-send (its lease ran out).
        retakeable: list[Document] = [{"state": "pending"}, {"state": "sending", "lease_until": {"$lt": now}}]
        if retry_failed:
            retakeable.append({"state": "failed"})
        taken = await self._emails.find_one_and_update(
            {"_id": key, "$or": retakeable},
            {"$set": {"state": "sending", "lease_until": now + self._lease, "updated_at": now}},
            return_document=ReturnDocument.AFTER,
        )
        if taken is not None:
            return Claim.CLAIMED
        existing = await self._emails.find_one({"_id": key}, {"state": 1})
        state = existing["state"] if existing else None
        return {"sent": Claim.SENT, "failed": Claim.FAILED}.get(str(state), Claim.BUSY)

    async def sent(self, key: str, reply: str) -> None:
        now = utc_now()
        await self._record(key, {"state": "sent", "smtp_reply": reply, "sent_at": now})

    async def retrying(self, key: str, error: str) -> None:
        await self._record(key, {"state": "pending", "last_error": error})

    async def failed(self, key: str, error: str) -> None:
        await self._record(key, {"state": "failed", "last_error": error})

    async def abandoned(self, key: str, error: str) -> None:
        """Failed for good without a further attempt (the retries are used up), unless another worker sent it."""
        await self._emails.update_one(
            {"_id": key, "state": {"$ne": "sent"}},
            {"$set": {"state": "failed", "last_error": error, "lease_until": None, "updated_at": utc_now()}},
        )

    async def _record(self, key: str, fields: Document) -> None:
        await self._emails.update_one(
            {"_id": key},
            {"$set": {**fields, "lease_until": None, "updated_at": utc_now()}, "$inc": {"attempts": 1}},
        )

    async def reason(self, key: str) -> str | None:
        """Why the email is not sent, as last recorded."""
        entry = await self._emails.find_one({"_id": key}, {"last_error": 1})
        return None if entry is None else entry.get("last_error")

    async def entries(self, event_id: str) -> list[Document]:
        return await self._emails.find({"event_id": event_id}).to_list()
