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
        # A key is added only while the list is shorter than the limit (or is there already: a retry),
        # so the document never holds more than ``limit`` keys, however many emails ask.
        room = {"_id": day_id, "$or": [{"keys": key}, {f"keys.{self.limit - 1}": {"$exists": False}}]}
        for _ in range(2):
            day = await self._days.find_one_and_update(
                room, {"$addToSet": {"keys": key}}, return_document=ReturnDocument.AFTER
            )
            if day is not None:
                # A document written before the limit applied may hold more keys: only the first ``limit`` go.
                return key in day["keys"][: self.limit]
            try:
                await self._days.insert_one({"_id": day_id, "keys": [key], "expires_at": expires_at})
            except DuplicateKeyError:
                continue  # the day's document exists: it is full (the next look says so), or another raced to create it
            return True
        return False  # the day's document exists and is full without this key: refused, and it does not grow
