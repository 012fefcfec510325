"""Signed checkpoints of the ledger: one at every N-th link and one of the head every interval; stored, logged,
and announced (``ledger.checkpointed``) so that notifications emails them out of the system."""

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from pymongo import ASCENDING, DESCENDING, AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError, PyMongoError

from agency_chassis.publishing import PublishFailed
from agency_shared.chain import GENESIS, Head
from agency_shared.checkpoints import checkpoint_problems
from agency_shared.events import Checkpoint, LedgerCheckpointed, LedgerCheckpointedData, derived_id, utc_now
from agreements.signing import LedgerKey, parse_time

logger = logging.getLogger(__name__)
Document = dict[str, Any]
Publish = Callable[[LedgerCheckpointed], Awaitable[None]]
# How often a replica looks whether a checkpoint is due (and re-announces one whose announcement failed).
CHECK_SECONDS = 5.0


class UnsignableChain(Exception):
    """The links since the last checkpoint do not verify: nothing is signed (verify says where)."""


class CheckpointedLinks(Protocol):
    async def head(self) -> Head | None: ...

    async def verified_through(self, start: Head, end: int) -> Head:
        """Check links ``start.sequence + 1`` … ``end`` follow ``start``; the head at ``end``.

        Raises ``UnsignableChain`` when one does not.
        """
        ...


class MongoCheckpoints:
    """Collection ``ledger_checkpoints``: one document per checkpoint, ``_id`` its sequence; the first kept wins."""

    def __init__(self, client: AsyncMongoClient[Document], database: str) -> None:
        self.collection: AsyncCollection[Document] = client[database]["ledger_checkpoints"]

    async def keep(self, checkpoint: Checkpoint) -> Checkpoint:
        """Store ``checkpoint`` unless one of its sequence is stored already (another replica's); the stored one."""
        document = {"_id": checkpoint.sequence, **checkpoint.model_dump(), "announced": False}
        try:
            await self.collection.insert_one(document)
        except DuplicateKeyError:
            stored = await self.collection.find_one({"_id": checkpoint.sequence})
            if stored is not None:
                return _checkpoint(stored)
        return checkpoint

    async def latest(self) -> Checkpoint | None:
        found = await self.collection.find_one({}, sort=[("_id", DESCENDING)])
        return None if found is None else _checkpoint(found)

    async def unannounced(self) -> list[Checkpoint]:
        found = self.collection.find({"announced": False}).sort("_id", ASCENDING)
        return [_checkpoint(document) async for document in found]

    async def mark_announced(self, sequence: int) -> None:
        await self.collection.update_one({"_id": sequence}, {"$set": {"announced": True}})

    async def every(self) -> AsyncIterator[Checkpoint]:
        async for document in self.collection.find({}).sort("_id", ASCENDING):
            yield _checkpoint(document)


def _checkpoint(document: Document) -> Checkpoint:
    return Checkpoint.model_validate({name: document[name] for name in Checkpoint.model_fields})


class CheckpointStore(Protocol):
    async def keep(self, checkpoint: Checkpoint) -> Checkpoint: ...

    async def latest(self) -> Checkpoint | None: ...

    async def unannounced(self) -> list[Checkpoint]: ...

    async def mark_announced(self, sequence: int) -> None: ...


def due_sequences(latest: Checkpoint | None, head: Head, every: int, interval: timedelta, now: datetime) -> list[int]:
    """Which links to sign now: each multiple of ``every`` past the latest checkpoint, and the head once
    ``interval`` has passed since the latest (if the chain grew)."""
    after = latest.sequence if latest else 0
    due = list(range((after // every + 1) * every, head.sequence + 1, every))
    stale = latest is None or now - parse_time(latest.time) >= interval
    if head.sequence > after and head.sequence not in due and stale:
        due.append(head.sequence)
    return due


@dataclass(frozen=True)
class Checkpointer:
    """Makes the checkpoints that are due and announces those not announced yet; any replica may, at any time."""

    links: CheckpointedLinks
    store: CheckpointStore
    key: LedgerKey
    every: int
    interval: timedelta

    async def make_due(self, now: datetime) -> list[Checkpoint]:
        """Sign every due link, after checking the links since the latest checkpoint follow it."""
        head = await self.links.head()
        if head is None:
            return []
        latest = await self.store.latest()
        if latest is not None and (problems := checkpoint_problems(latest.model_dump(), self.key.public_keys())):
            # Built on, a checkpoint planted in the database would have the key vouch for a rewritten chain.
            raise UnsignableChain(
                f"the latest stored checkpoint ({latest.sequence}) is not the ledger's: {problems[0]}"
            )
        start = Head(latest.sequence, latest.record_hash) if latest else GENESIS
        made = []
        for sequence in due_sequences(latest, head, self.every, self.interval, now):
            start = await self.links.verified_through(start, sequence)
            checkpoint = await self.store.keep(self.key.checkpoint(start.sequence, start.record_hash, now))
            # The log is one more copy outside the database.
            logger.info("ledger checkpoint %s", json.dumps(checkpoint.model_dump(), sort_keys=True))
            made.append(checkpoint)
        return made

    async def announce(self, publish: Publish) -> int:
        """Publish ``ledger.checkpointed`` for each stored checkpoint not announced yet; how many were."""
        announced = 0
        for checkpoint in await self.store.unannounced():
            await publish(checkpointed(checkpoint))
            await self.store.mark_announced(checkpoint.sequence)
            announced += 1
        return announced

    async def run(self, publish: Publish, now: Callable[[], datetime] = utc_now) -> None:
        """Every CHECK_SECONDS until cancelled: make what is due, announce what is not announced (even while
        nothing can be signed: what was signed before still goes out)."""
        while True:
            await asyncio.sleep(CHECK_SECONDS)
            await self._attempt("made", self.make_due(now()))
            await self._attempt("announced", self.announce(publish))

    @staticmethod
    async def _attempt(what: str, step: Awaitable[object]) -> None:
        try:
            await step
        except UnsignableChain as exc:
            logger.error("ledger checkpoint refused: %s", exc)
        except (PyMongoError, PublishFailed) as exc:
            logger.warning("ledger checkpoints not %s now: %r", what, exc)
        except Exception:
            # A defect must not end the loop for the life of the process: logged, tried again next look.
            logger.exception("ledger checkpoints not %s", what)


def checkpointed(checkpoint: Checkpoint) -> LedgerCheckpointed:
    """The announcement of ``checkpoint``; one id per sequence, so a repeat is recognised."""
    return LedgerCheckpointed(
        event_id=derived_id(LedgerCheckpointed.routing_key, str(checkpoint.sequence)),
        correlation_id=f"ledger-checkpoint-{checkpoint.sequence}",
        data=LedgerCheckpointedData(checkpoint=checkpoint),
    )
