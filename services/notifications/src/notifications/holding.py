"""Submissions held back from the staff until their address is verified, kept in MongoDB across replicas.

A submission that passed no human check (``human_check == "none"``: no JavaScript, an API
client, a bot) is accepted, but the staff hear of it only once its address is verified. One
document per application or enquiry (``_id`` its id) keeps the submitted event as JSON
(``event``) and, once known, when the address was verified (``verified_at``). Either half may
come first (the staff email's consumer can lag behind a fast click): each write is an upsert
that returns the whole document, so whichever comes second sees both and the staff emails go.
Composed from the held event, those emails have exactly the notification keys and Message-IDs
they would have had at submission, so the notification ledger sends each once, whoever
releases it and however often.

The documents expire (TTL index on ``expires_at``) a day after the verification link would:
an unverified submission then vanishes, with the personal data it holds. A released one is
kept a day longer (redeliveries find it), an erased applicant's is deleted at once.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, Protocol

from pymongo import AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

Document = dict[str, Any]
Kind = Literal["application", "enquiry"]
COLLECTION = "held_submissions"
# How much longer than the verification link a held submission is kept; and a released one.
MARGIN = timedelta(days=1)
KEPT_AFTER_RELEASE = timedelta(days=1)


@dataclass(frozen=True, slots=True)
class Held:
    """What is known of a held submission: its event (JSON) if it was held, when its address was verified if it was."""

    event: str | None = None
    verified_at: datetime | None = None


class HeldSubmissions(Protocol):
    async def hold(self, kind: Kind, subject_id: str, event: str, now: datetime) -> Held:
        """Keep the submitted ``event`` (idempotent); what is known now (``verified_at`` if verified first)."""
        ...

    async def verified(self, kind: Kind, subject_id: str, verified_at: datetime, now: datetime) -> Held:
        """Note the verification (the earliest time wins); what is known now (``event`` if one is held)."""
        ...

    async def released(self, subject_id: str, now: datetime) -> None:
        """The staff emails are settled: keep the document only a little longer."""
        ...

    async def forget(self, subject_id: str) -> None:
        """Delete what is held (an erasure)."""
        ...


def _held(document: Document | None) -> Held:
    if document is None:
        return Held()
    return Held(event=document.get("event"), verified_at=document.get("verified_at"))


class MongoHeldSubmissions:
    def __init__(self, client: AsyncMongoClient[Document], database: str, link_lifetime: timedelta) -> None:
        self._held: AsyncCollection[Document] = client[database][COLLECTION]
        self._kept_for = link_lifetime + MARGIN

    async def ensure_indexes(self) -> None:
        await self._held.create_index("expires_at", expireAfterSeconds=0, name="expires_at_ttl")

    async def hold(self, kind: Kind, subject_id: str, event: str, now: datetime) -> Held:
        # The first event held stays: a redelivery, or a later event about the same submission (an earlier
        # version held application.submitted, this one agreement.recorded), must not change the emails'
        # keys, or a released submission would go to the staff a second time under new keys.
        update = {
            "$set": {"event": event},
            "$setOnInsert": {"kind": kind, "held_at": now, "expires_at": now + self._kept_for},
        }
        # An update by ``_id`` then a read (not one findAndModify, which SecantusDB answers by scanning).
        for _ in range(2):
            try:
                await self._held.update_one({"_id": subject_id, "event": {"$exists": False}}, update, upsert=True)
            except DuplicateKeyError:
                continue  # held already (the upsert found no document without an event), or a racing first write
            break
        return _held(await self._held.find_one({"_id": subject_id}))

    async def verified(self, kind: Kind, subject_id: str, verified_at: datetime, now: datetime) -> Held:
        return await self._upsert(
            subject_id,
            {"$min": {"verified_at": verified_at}, "$setOnInsert": {"kind": kind, "expires_at": now + self._kept_for}},
        )

    async def _upsert(self, subject_id: str, update: Document) -> Held:
        for _ in range(2):
            try:
                await self._held.update_one({"_id": subject_id}, update, upsert=True)
            except DuplicateKeyError:
                continue  # two first writes raced to insert: the second updates the winner's document
            return _held(await self._held.find_one({"_id": subject_id}))
        raise DuplicateKeyError(f"the held submission {subject_id} could not be written")

    async def released(self, subject_id: str, now: datetime) -> None:
        await self._held.update_one(
            {"_id": subject_id, "released_at": {"$exists": False}},
            {"$set": {"released_at": now, "expires_at": now + KEPT_AFTER_RELEASE}},
        )

    async def forget(self, subject_id: str) -> None:
        await self._held.delete_one({"_id": subject_id})
