"""A cap on the emails one client address gets per UTC day, kept in MongoDB so it holds across replicas.

One document per (address, day) lists the keys of the emails admitted to the address that day,
in the order they asked (``$addToSet`` appends a key once), and never more than ``limit`` of
them: a key is added only while there is room, so a flood at one address leaves the document
as it is. An email may go if its key is in the list: a retry of the same email asks with the
same key and gets the same answer, so it never counts twice (delivery asks only for an email
not settled yet, so a redelivery after midnight does not count a sent email again). The address is stored only as its
SHA-256 (the keys too: a notification key ends with the address), and the documents expire
(TTL index) two days after their day.
"""

import hashlib
from collections.abc import Collection, Sequence
from datetime import UTC, datetime, time, timedelta
from typing import Any, Protocol

from pymongo import AsyncMongoClient, InsertOne, UpdateOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError

from agency_chassis.batching import Batcher
from agency_chassis.mongo import duplicate_keys

Document = dict[str, Any]
# Long enough that a day's document outlives every retry of its emails.
KEPT_FOR = timedelta(days=2)
# Rounds of admission before an ask still undecided (its day raced by other writers each time) is refused.
ROUNDS = 4


class DailyCap(Protocol):
    limit: int  # emails a day to one address

    def covers(self, template: str) -> bool:
        """Whether emails of ``template`` count against the cap (client emails do; staff emails do not)."""
        ...

    async def admit(self, recipient: str, key: str, now: datetime) -> bool:
        """Whether the email ``key`` may go to ``recipient`` today; the same key always gets the same answer."""
        ...


def cap_document_id(recipient: str, now: datetime) -> str:
    address = hashlib.sha256(recipient.strip().lower().encode()).hexdigest()
    return f"{now.astimezone(UTC).date().isoformat()}/{address}"


def refusal(limit: int) -> str:
    """What the ledger, the timeline and the log say about an email the cap held back."""
    return f"not sent: the address already had {limit} emails from us today (CLIENT_EMAILS_PER_DAY)"


class MongoDailyCap:
    def __init__(
        self, client: AsyncMongoClient[Document], database: str, limit: int, templates: Collection[str]
    ) -> None:
        self._days: AsyncCollection[Document] = client[database]["notifications_daily_cap"]
        self.limit = limit
        self._templates = frozenset(templates)
        self._admissions = Batcher(self._admit_many, 128, name="daily cap admissions")

    async def ensure_indexes(self) -> None:
        await self._days.create_index("expires_at", expireAfterSeconds=0, name="expires_at_ttl")

    def covers(self, template: str) -> bool:
        return template in self._templates

    async def admit(self, recipient: str, key: str, now: datetime) -> bool:
        """The admissions of concurrent handlers are decided together (a few commands for all of them)."""
        return await self._admissions.submit((cap_document_id(recipient, now), _hashed(key), now))

    async def _admit_many(self, asks: Sequence[tuple[str, str, datetime]]) -> list[bool]:
        """Each ask (day document, hashed key, time) admitted or not, in rounds of: read the days, write the
        admissions that have room (one bulk write), read them back.

        Only ``_id`` look-ups and conditional updates by ``_id`` (never ``$or`` or findAndModify, which a
        database may answer by scanning the collection). A day with room takes each key only while it still
        has room, so however many ask at once it never holds more than ``limit``; a new day is created by
        one ask, the others follow in the next round, as does one whose day another writer created
        meanwhile. After ``ROUNDS`` an ask still undecided is refused (the day is busy far beyond any use).
        """
        answers: dict[int, bool] = {}
        pending = list(range(len(asks)))
        for _ in range(ROUNDS):
            if not pending:
                break
            days = await self._days_of({asks[index][0] for index in pending})
            writes: dict[int, InsertOne[Document] | UpdateOne] = {}
            created: set[str] = set()
            for index in pending:
                day_id, key, now = asks[index]
                keys = days.get(day_id)
                if keys is not None and key in keys:
                    answers[index] = key in keys[: self.limit]  # asked before: the same answer
                elif keys is not None and len(keys) >= self.limit:
                    answers[index] = False  # full: refused, and the day does not grow
                elif keys is not None:
                    writes[index] = self._admission(day_id, key, now, exists=True)
                elif day_id not in created:  # the others for a new day wait for the next round
                    created.add(day_id)
                    writes[index] = self._admission(day_id, key, now, exists=False)
            if writes:
                try:
                    await self._days.bulk_write(list(writes.values()), ordered=False)
                except BulkWriteError as exc:
                    duplicate_keys(exc)  # a day created meanwhile: decided next round; anything else fails
                written = await self._days_of({asks[index][0] for index in writes})
                for index in writes:
                    day_id, key, _ = asks[index]
                    keys = written.get(day_id, [])
                    if key in keys:
                        answers[index] = key in keys[: self.limit]
                    elif len(keys) >= self.limit:
                        answers[index] = False
            pending = [index for index in pending if index not in answers]
        return [answers.get(index, False) for index in range(len(asks))]

    def _admission(self, day_id: str, key: str, now: datetime, exists: bool) -> "InsertOne[Document] | UpdateOne":
        if not exists:  # refused as a duplicate if another writer made the day first: decided next round
            expires_at = datetime.combine(now.astimezone(UTC).date(), time(), UTC) + KEPT_FOR
            return InsertOne({"_id": day_id, "keys": [key], "expires_at": expires_at})
        # Added only while there is room: the document never holds more than ``limit`` keys.
        return UpdateOne({"_id": day_id, f"keys.{self.limit - 1}": {"$exists": False}}, {"$addToSet": {"keys": key}})

    async def _days_of(self, day_ids: set[str]) -> dict[str, list[str]]:
        found = self._days.find({"_id": {"$in": sorted(day_ids)}}, {"keys": 1})
        return {day["_id"]: list(day.get("keys", [])) async for day in found}


def _hashed(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()  # a notification key ends with the address
