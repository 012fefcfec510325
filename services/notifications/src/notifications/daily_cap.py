"""A cap on the emails one client address gets per UTC day, kept in MongoDB so it holds across replicas.

One document per (address, day) lists the keys of the emails that asked to go to the address
that day, in the order they asked (``$addToSet`` appends a key once). An email may go if its
key is among the first ``limit``: a retry or a redelivery of the same email asks with the same
key and gets the same answer, so it never counts twice. The address is stored only as its
SHA-256 (the keys too: a notification key ends with the address), and the documents expire
(TTL index) two days after their day.
"""

import hashlib
from collections.abc import Collection
from datetime import UTC, datetime, time, timedelta
from typing import Any, Protocol

from pymongo import AsyncMongoClient, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

Document = dict[str, Any]
# Long enough that a day's document outlives every retry of its emails.
KEPT_FOR = timedelta(days=2)


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

    async def ensure_indexes(self) -> None:
        await self._days.create_index("expires_at", expireAfterSeconds=0, name="expires_at_ttl")

    def covers(self, template: str) -> bool:
        return template in self._templates

    async def admit(self, recipient: str, key: str, now: datetime) -> bool:
        day_id = cap_document_id(recipient, now)
        key = hashlib.sha256(key.encode()).hexdigest()  # a notification key ends with the address
        expires_at = datetime.combine(now.astimezone(UTC).date(), time(), UTC) + KEPT_FOR
        for _ in range(3):
            try:
                day = await self._days.find_one_and_update(
                    {"_id": day_id},
                    {"$addToSet": {"keys": key}, "$setOnInsert": {"expires_at": expires_at}},
                    upsert=True,
                    return_document=ReturnDocument.AFTER,
                )
            except DuplicateKeyError:
                continue  # two first emails of the day raced to create the document: add to the winner's
            return day is not None and key in day["keys"][: self.limit]
        raise DuplicateKeyError(f"the daily cap document {day_id} could not be written")
