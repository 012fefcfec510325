"""Idempotency keys remembered across replicas (IETF Idempotency-Key draft): one key, one submission's data.

A key is claimed by inserting ``{_id: "<kind>:<key>", fingerprint, submission_id, created_at}``
into ``idempotency_keys``. The unique ``_id`` settles every race: of two requests with one key,
exactly one insert succeeds; the other reads the winner's fingerprint. The same fingerprint is a
retry of the same submission (it gets the same id and publishes again; consumers drop the repeat
by its event id); another fingerprint is a reuse of the key for other data, refused before
anything is published. A TTL index forgets a key ``IDEMPOTENCY_KEY_TTL_SECONDS`` after its
first use (MongoDB's TTL monitor runs once a minute, so a little later at most).

The submission's id is derived from the key and the fingerprint together (``submission.id_for``),
never from the key alone: once a claim has expired, the key claimed again for other data names a
new submission with a new id (and event id), which consumers record rather than drop as a repeat.

A claim is kept when the broker then refuses the event (503): an unconfirmed event may still
have been delivered, so the key keeps naming that one submission. The retry with the same data
works (same id); other data needs a new key.
"""

import uuid
from typing import Any, Protocol

from pymongo import ASCENDING
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError, OperationFailure, PyMongoError

from agency_chassis.mongo import MongoConnection
from agency_shared.events import utc_now
from intake.submission import fingerprint as fingerprint  # the claim's fingerprint, re-exported

COLLECTION = "idempotency_keys"
TTL_INDEX = "created_at_ttl"
# A document deleted by the TTL monitor between our failed insert and our read: try again, a few times.
CLAIM_ATTEMPTS = 3
INDEX_OPTIONS_CONFLICT = (85, 86)


class KeyReused(Exception):
    """The idempotency key was first used for other data: nothing of this request is accepted."""

    def __init__(self, kind: str) -> None:
        super().__init__(f"this Idempotency-Key was first used for a different {kind}; use a new key for new data")
        self.kind = kind


class KeysUnavailable(Exception):
    """The database that remembers idempotency keys did not answer: nothing was accepted."""


class IdempotencyKeys(Protocol):
    async def claim(self, kind: str, key: str, fingerprint: str, submission_id: uuid.UUID) -> None:
        """Take ``key`` for this data, or find it taken for the same data; ``KeyReused`` if for other data."""
        ...


class MongoIdempotencyKeys:
    def __init__(self, connection: MongoConnection, database: str, ttl_seconds: int) -> None:
        self._connection, self._database, self._ttl = connection, database, ttl_seconds

    @property
    def _keys(self) -> AsyncCollection[dict[str, Any]]:
        return self._connection.client[self._database][COLLECTION]

    async def ensure_indexes(self) -> None:
        """The TTL index, with the configured lifetime (a changed setting replaces the old index)."""
        try:
            await self._keys.create_index([("created_at", ASCENDING)], expireAfterSeconds=self._ttl, name=TTL_INDEX)
        except OperationFailure as exc:
            if exc.code not in INDEX_OPTIONS_CONFLICT:
                raise
            await self._keys.drop_index(TTL_INDEX)
            await self._keys.create_index([("created_at", ASCENDING)], expireAfterSeconds=self._ttl, name=TTL_INDEX)

    async def claim(self, kind: str, key: str, fingerprint: str, submission_id: uuid.UUID) -> None:
        document_id = f"{kind}:{key}"
        try:
            for _ in range(CLAIM_ATTEMPTS):
                try:
                    await self._keys.insert_one(
                        {"_id": document_id, "fingerprint": fingerprint, "submission_id": str(submission_id),
                         "created_at": utc_now()}
                    )  # fmt: skip
                    return
                except DuplicateKeyError:
                    first = await self._keys.find_one({"_id": document_id}, {"fingerprint": 1})
                if first is None:
                    continue
                if first["fingerprint"] != fingerprint:
                    raise KeyReused(kind)
                return
        except PyMongoError as exc:
            raise KeysUnavailable(str(exc)) from exc
        raise KeysUnavailable(f"the key {document_id!r} kept disappearing while claimed")
