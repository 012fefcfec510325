"""The notification ledger in MongoDB: one entry per (event, template, recipient), so no email goes out twice."""

import contextlib
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from pymongo import ASCENDING, AsyncMongoClient, UpdateOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError, DuplicateKeyError

from agency_chassis.batching import Batcher
from agency_chassis.mongo import duplicate_keys
from agency_shared.events import utc_now

Document = dict[str, Any]
# What a forgotten recipient's address becomes, in the entry and in its key.
ERASED = "[erased]"


def forgotten_key(event_id: str, template: str) -> str:
    """The key of an email whose recipient was erased (the usual key ends with the address)."""
    return f"{event_id}/{template}/{ERASED}"


class Claim(StrEnum):
    CLAIMED = "claimed"  # this worker sends it now
    SENT = "sent"  # sent before: skip
    FAILED = "failed"  # failed for good before: skip
    REFUSED = "refused"  # held back for good before (the daily cap): skip
    BUSY = "busy"  # another worker is sending it right now: look again later


# The states a claim finds an email in for good.
FINAL_CLAIMS = {"sent": Claim.SENT, "failed": Claim.FAILED, "refused": Claim.REFUSED}
# At most this many claims, "sent" marks or erasure look-ups of concurrent handlers go in one command.
COALESCED = 128


@dataclass(frozen=True)
class ClaimRequest:
    key: str
    details: Document
    retry_failed: bool


class NotificationLedger:
    def __init__(
        self,
        client: AsyncMongoClient[Document],
        database: str,
        lease_seconds: float,
        forgettable_templates: Collection[str] | None = None,
    ) -> None:
        self._emails: AsyncCollection[Document] = client[database]["notifications"]
        # Applications and enquiries whose submitter was erased (by id): nothing more is sent about them.
        self._erased: AsyncCollection[Document] = client[database]["notifications_erased_applications"]
        self._lease = timedelta(seconds=lease_seconds)
        # The templates whose recipient can ask to be forgotten (None: any). Only their claims
        # cost the extra look-up for a forgotten entry; staff emails skip it.
        self._forgettable = forgettable_templates
        # Group commit: what concurrent handlers ask at about the same time goes in one command each;
        # every caller still waits for its own answer (a "sent" mark is durable when ``sent`` returns).
        self._claims = Batcher(self._claim_many, COALESCED, name="notification claims")
        self._sent_marks = Batcher(self._sent_many, COALESCED, name="notification sent marks")
        self._erasures = Batcher(self._erased_many, COALESCED, name="erasure look-ups")

    async def ensure_indexes(self) -> None:
        await self._emails.create_index([("event_id", ASCENDING)], name="event_id")
        await self._emails.create_index([("state", ASCENDING), ("updated_at", ASCENDING)], name="state_updated_at")
        await self._emails.create_index([("updated_at", ASCENDING)], name="updated_at")
        await self._emails.create_index([("subject_id", ASCENDING)], name="subject_id", sparse=True)

    async def claim(self, key: str, details: Document, retry_failed: bool = False) -> Claim:
        """Take the email for sending unless it was sent, failed for good, or is being sent elsewhere.

        ``retry_failed`` (an operator replayed the event) takes failed emails back too. The claims of
        concurrent handlers are made together: one look-up of forgotten recipients, one insert.
        """
        return await self._claims.submit(ClaimRequest(key, details, retry_failed))

    async def _claim_many(self, requests: Sequence[ClaimRequest]) -> list[Claim]:
        now = utc_now()
        claims: dict[int, Claim] = {}
        # A replayed event must not email an applicant who asked to be forgotten.
        forgettable = {
            index: forgotten_key(str(request.details.get("event_id")), str(request.details.get("template")))
            for index, request in enumerate(requests)
            if self._forgettable is None or request.details.get("template") in self._forgettable
        }
        if forgettable:
            found = self._emails.find({"_id": {"$in": sorted(set(forgettable.values()))}}, {"state": 1})
            forgotten = {entry["_id"]: str(entry["state"]) async for entry in found}
            for index, key in forgettable.items():
                if key in forgotten:
                    claims[index] = FINAL_CLAIMS.get(forgotten[key], Claim.FAILED)
        new = [index for index in range(len(requests)) if index not in claims]
        entries = [
            {"_id": requests[index].key, **requests[index].details, "state": "sending",
             "lease_until": now + self._lease, "attempts": 0, "created_at": now, "updated_at": now}
            for index in new
        ]  # fmt: skip
        taken: set[int] = set()
        if entries:
            try:
                await self._emails.insert_many(entries, ordered=False)
            except BulkWriteError as exc:
                taken = {new[index] for index in duplicate_keys(exc)}
        for index in new:
            # Known already (a retry, a redelivery, the same email twice at once): look closer, one by one.
            claims[index] = await self._retake(requests[index], now) if index in taken else Claim.CLAIMED
        return [claims[index] for index in range(len(requests))]

    async def _retake(self, request: ClaimRequest, now: datetime) -> Claim:
        """A retry after a temporary failure, or a worker that died mid-send (its lease ran out), takes it back.

        Conditional updates by ``_id`` (not one findAndModify with ``$or``, which SecantusDB answers by
        scanning the collection)."""
        lease = {"$set": {"state": "sending", "lease_until": now + self._lease, "updated_at": now}}
        states = ["pending", "failed"] if request.retry_failed else ["pending"]
        for condition in ({"state": {"$in": states}}, {"state": "sending", "lease_until": {"$lt": now}}):
            if (await self._emails.update_one({"_id": request.key, **condition}, lease)).modified_count:
                return Claim.CLAIMED
        existing = await self._emails.find_one({"_id": request.key}, {"state": 1})
        state = existing["state"] if existing else None
        return FINAL_CLAIMS.get(str(state), Claim.BUSY)

    async def sent(self, key: str, reply: str) -> None:
        """Record the email as sent; returns once that is durable (marks of concurrent handlers go together)."""
        await self._sent_marks.submit((key, reply))

    async def _sent_many(self, marks: Sequence[tuple[str, str]]) -> list[None]:
        now = utc_now()
        fields = {"state": "sent", "sent_at": now, "lease_until": None, "updated_at": now}
        updates = [
            UpdateOne({"_id": key}, {"$set": {**fields, "smtp_reply": reply}, "$inc": {"attempts": 1}})
            for key, reply in marks
        ]
        await self._emails.bulk_write(updates, ordered=False)
        return [None] * len(marks)

    async def retrying(self, key: str, error: str) -> None:
        await self._record(key, {"state": "pending", "last_error": error})

    async def failed(self, key: str, error: str) -> None:
        await self._record(key, {"state": "failed", "last_error": error})

    async def refused(self, key: str, reason: str) -> None:
        """Held back for good without an attempt (the daily cap): settled, but no failure to alert about."""
        await self._emails.update_one(
            {"_id": key},
            {"$set": {"state": "refused", "last_error": reason, "lease_until": None, "updated_at": utc_now()}},
        )

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

    async def purge(self, changed_before: datetime) -> int:
        """Delete the entries last changed before ``changed_before`` (``notifications.retention``); how many."""
        deleted = await self._emails.delete_many({"updated_at": {"$lt": changed_before}})
        return deleted.deleted_count

    async def forget_application(self, subject_id: str, erased_at: datetime) -> None:
        """Remember that the submitter of the application or enquiry ``subject_id`` was erased (idempotent)."""
        await self._erased.update_one({"_id": subject_id}, {"$setOnInsert": {"erased_at": erased_at}}, upsert=True)

    async def is_erased(self, subject_id: str) -> bool:
        """Whether the submitter of the application or enquiry ``subject_id`` was erased (the ids are UUIDs).

        The look-ups of concurrent handlers go in one query."""
        return await self._erasures.submit(subject_id)

    async def _erased_many(self, subject_ids: Sequence[str]) -> list[bool]:
        found = self._erased.find({"_id": {"$in": sorted(set(subject_ids))}}, {"_id": 1})
        erased = {entry["_id"] async for entry in found}
        return [subject_id in erased for subject_id in subject_ids]

    async def forget_recipients(
        self, event_ids: Collection[str], templates: Collection[str], subject_id: str | None = None
    ) -> int:
        """Erase the address from these events' emails of ``templates`` (those to the applicant), and from every
        email of ``templates`` about ``subject_id`` (the application or enquiry); a repeat is a no-op.

        The entry is re-keyed (its key ends with the address) and loses the SMTP reply or error and
        the Message-ID, which may name or be derived from the address. An email not sent by now never
        will be: it becomes failed.
        """
        unerased = {"template": {"$in": list(templates)}, "recipient": {"$ne": ERASED}}
        # Two look-ups rather than an $or, which not every server serves from its indexes.
        queries = [{"event_id": {"$in": list(event_ids)}, **unerased}]
        if subject_id is not None:
            queries.append({"subject_id": subject_id, **unerased})
        forgotten = 0
        for query in queries:
            forgotten += await self._forget_matching(query)
        return forgotten

    async def _forget_matching(self, query: dict[str, object]) -> int:
        forgotten = 0
        async for entry in self._emails.find(query):
            kept = {key: value for key, value in entry.items() if key not in ("smtp_reply", "last_error", "message_id")}
            state = entry.get("state") if entry.get("state") in ("sent", "refused") else "failed"
            erased = {**kept, "_id": forgotten_key(entry["event_id"], entry["template"]), "recipient": ERASED,
                      "state": state, "lease_until": None, "updated_at": utc_now()}  # fmt: skip
            # Insert before delete: an interrupted run leaves both, and its repeat removes the original.
            with contextlib.suppress(DuplicateKeyError):
                await self._emails.insert_one(erased)
            await self._emails.delete_one({"_id": entry["_id"]})
            forgotten += 1
        return forgotten
