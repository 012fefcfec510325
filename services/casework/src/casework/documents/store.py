"""The documents of the cases in MongoDB: what each case asked its client for and where each item stands
(``casework_documents``, one document per case and item), and the files themselves in GridFS (the
``casework_files`` bucket), which an erasure deletes, keeping only their hashes."""

import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from bson import Binary, ObjectId
from bson.errors import InvalidId
from gridfs import AsyncGridFSBucket, NoFile
from gridfs.asynchronous.grid_file import AsyncGridOut
from pydantic import BaseModel, ConfigDict, Field
from pymongo import ASCENDING, AsyncMongoClient

from agency_shared.events import DocumentReceived, DocumentReceivedData, Event, derived_id, utc_now
from casework.cases import ERASED, Case
from casework.documents.checklists import ChecklistItem

logger = logging.getLogger(__name__)
DOCUMENTS = "casework_documents"
# The GridFS bucket ``casework_files``: its two collections.
FILES = "casework_files.files"
CHUNKS = "casework_files.chunks"
BUCKET = FILES.removesuffix(".files")
# GridFS's chunk: what one upload holds in memory at most before it is written (255 KiB, GridFS's default).
CHUNK_BYTES = 255 * 1024
ItemState = Literal["requested", "received", "accepted", "revision_requested"]
# The items still waiting on the client.
OUTSTANDING: frozenset[str] = frozenset({"requested", "revision_requested"})
# Chunks this old without a files document are an upload's remains (a crash mid-upload): the sweep deletes them.
ORPHAN_AGE = timedelta(hours=1)


class ChunkWriter:
    """Writes one file into the bucket as the GridFS specification lays it out (``<bucket>.chunks`` documents of
    ``CHUNK_BYTES``, then the ``<bucket>.files`` document), one chunk per insert, so the GridFS bucket reads,
    streams and deletes it. PyMongo's own upload stream (4.9+) buffers up to 16 MB of chunks for one bulk insert:
    a whole 10 MB upload in memory, twice over while it is encoded (measured: 174 MB traced for 20 uploads of
    5 MB). Here one upload holds at most a chunk. Each chunk also names its case (``case_id``, which GridFS readers
    ignore), so an erasure finds the chunks of an upload that never got its files document."""

    def __init__(self, files: Any, chunks: Any, name: str, metadata: dict[str, Any]) -> None:
        self._files = files
        self._chunks = chunks
        self._name = name
        self._metadata = metadata
        self._id = ObjectId()
        self._buffer = bytearray()
        self._n = 0
        self._length = 0

    @property
    def file_id(self) -> ObjectId:
        return self._id

    async def write(self, data: bytes) -> None:
        self._buffer.extend(data)
        self._length += len(data)
        while len(self._buffer) >= CHUNK_BYTES:
            await self._flush(bytes(self._buffer[:CHUNK_BYTES]))
            del self._buffer[:CHUNK_BYTES]

    async def _flush(self, data: bytes) -> None:
        await self._chunks.insert_one(
            {"_id": ObjectId(), "files_id": self._id, "n": self._n, "data": Binary(data),
             "case_id": self._metadata["case_id"]}
        )  # fmt: skip
        self._n += 1

    async def close(self) -> None:
        """The last chunk, then the files document: until then no reader sees the file."""
        if self._buffer:
            await self._flush(bytes(self._buffer))
            self._buffer.clear()
        await self._files.insert_one(
            {"_id": self._id, "length": self._length, "chunkSize": CHUNK_BYTES, "uploadDate": utc_now(),
             "filename": self._name, "metadata": self._metadata}
        )  # fmt: skip

    async def abort(self) -> None:
        """Delete the chunks written so far (no files document was)."""
        self._buffer.clear()
        await self._chunks.delete_many({"files_id": self._id})


class StoredFile(BaseModel):
    """A file a client uploaded and the portal kept: what identifies it."""

    model_config = ConfigDict(extra="ignore")

    file_id: str
    sha256: str
    size: int
    content_type: str
    name: str
    received_at: datetime
    announced: bool = False


class RequestedItem(BaseModel):
    """One checklist item a case asked its client for, and where it stands."""

    model_config = ConfigDict(extra="ignore")

    case_id: str
    key: str
    label: dict[str, str]
    sensitive: bool
    state: ItemState
    requested_at: datetime
    requested_by: str
    note: str | None = None  # the staff's note to the client with the request
    reason: str | None = None  # why a revision was asked (the client sees it)
    files: list[StoredFile] = Field(default_factory=list)

    @property
    def outstanding(self) -> bool:
        return self.state in OUTSTANDING

    @property
    def latest(self) -> StoredFile | None:
        return self.files[-1] if self.files else None

    def label_in(self, locale: str) -> str:
        return self.label.get(locale) or self.label.get("en") or self.key


@dataclass(frozen=True)
class FileAbout:
    """Whose a stored file is (its GridFS metadata)."""

    case_id: uuid.UUID
    item: str
    content_type: str


def _id(case_id: uuid.UUID | str, key: str) -> str:
    return f"{case_id}:{key}"


def _item(document: dict[str, Any]) -> RequestedItem:
    return RequestedItem.model_validate(document)


class CaseDocuments:
    """The requested items and the stored files of every case."""

    def __init__(self, client: AsyncMongoClient[dict[str, Any]], db: str) -> None:
        self._database = client[db]
        self._items = client[db][DOCUMENTS]
        self._chunks = client[db][CHUNKS]
        self.bucket = AsyncGridFSBucket(client[db], bucket_name=BUCKET, chunk_size_bytes=CHUNK_BYTES)
        self._swept_to: ObjectId | None = None  # where the last sweep of unfinished uploads' chunks ended

    async def ensure_indexes(self) -> None:
        await self._items.create_index([("case_id", ASCENDING)])
        await self._items.create_index([("files.announced", ASCENDING)], sparse=True)
        await self._database[FILES].create_index([("metadata.case_id", ASCENDING)])
        # The index GridFS's own writer would make: a file's chunks in order.
        await self._chunks.create_index([("files_id", ASCENDING), ("n", ASCENDING)], unique=True)
        await self._chunks.create_index([("case_id", ASCENDING)], sparse=True)

    async def items_of(self, case_id: uuid.UUID) -> list[RequestedItem]:
        found = [_item(document) async for document in self._items.find({"case_id": str(case_id)})]
        return sorted(found, key=lambda item: item.requested_at)

    async def item(self, case_id: uuid.UUID, key: str) -> RequestedItem | None:
        document = await self._items.find_one({"_id": _id(case_id, key)})
        return _item(document) if document else None

    async def request(
        self, case_id: uuid.UUID, items: Sequence[ChecklistItem], note: str | None, staff: str, now: datetime
    ) -> None:
        """Ask for ``items`` (again: an accepted item asked for again is outstanding once more)."""
        for checklist_item in items:
            await self._items.update_one(
                {"_id": _id(case_id, checklist_item.key)},
                {
                    "$set": {
                        "case_id": str(case_id),
                        "key": checklist_item.key,
                        "label": checklist_item.label,
                        "sensitive": checklist_item.sensitive,
                        "state": "requested",
                        "requested_at": now,
                        "requested_by": staff,
                        "note": note,
                        "reason": None,
                    },
                    "$setOnInsert": {"files": []},
                },
                upsert=True,
            )

    async def set_state(
        self, case_id: uuid.UUID, key: str, state: ItemState, reason: str | None, only_from: Sequence[str]
    ) -> bool:
        """Move an item to ``state`` if it is in one of ``only_from``; False if it is not (or does not exist)."""
        result = await self._items.update_one(
            {"_id": _id(case_id, key), "state": {"$in": list(only_from)}},
            {"$set": {"state": state, "reason": reason}},
        )
        return result.matched_count == 1

    # The files.

    async def open_upload(self, name: str, about: FileAbout) -> ChunkWriter:
        metadata = {"case_id": str(about.case_id), "item": about.item, "content_type": about.content_type}
        return ChunkWriter(self._database[FILES], self._chunks, name, metadata)

    async def read(self, file_id: str) -> AsyncGridOut | None:
        """The stored file to stream (None if there is none by that id)."""
        try:
            return await self.bucket.open_download_stream(_object_id(file_id))
        except (NoFile, ValueError):
            return None

    async def chunks(self, file_id: Any) -> AsyncIterator[bytes]:
        """The stored file's bytes, a GridFS chunk at a time. A query of its own, two chunks a batch: GridFS's
        reader fetches a first batch of up to 101 chunks (the whole file) at once."""
        cursor = self._chunks.find({"files_id": file_id}, {"data": 1}).sort("n", ASCENDING).batch_size(2)
        async for chunk in cursor:
            yield bytes(chunk["data"])

    async def delete_file(self, file_id: str | ObjectId) -> None:
        """Delete a file and its chunks (one already gone is no error); ``file_id`` as ``StoredFile`` has it or as
        GridFS does."""
        with contextlib.suppress(NoFile):
            await self.bucket.delete(_object_id(file_id) if isinstance(file_id, str) else file_id)

    async def delete_unless_recorded(self, case_id: uuid.UUID, key: str, file_id: str) -> None:
        """After a failure between storing a file and the end of recording it: delete the file unless its item
        lists it (then it is the client's document, whatever failed after). When that cannot be told (the database
        is away), the file stays: a file without a record is only stored bytes, a record without its file a loss."""
        try:
            recorded = await self._items.find_one({"_id": _id(case_id, key), "files.file_id": file_id}, {"_id": 1})
            if recorded is None:
                await self.delete_file(file_id)
        except Exception as exc:
            logger.warning("file %s of case %s kept: whether it was recorded is unknown (%r)", file_id, case_id, exc)

    async def received(self, case_id: uuid.UUID, key: str, stored: StoredFile) -> bool:
        """Add a kept file to its item, which is then received (awaiting staff); False if the item is no longer
        waiting for one (staff accepted it meanwhile, or it was never asked for) or its case was erased: an upload
        that passed the portal's checks before an erasure and ends after it. Its file is then deleted here."""
        result = await self._items.update_one(
            {"_id": _id(case_id, key), "state": {"$in": sorted(OUTSTANDING)}, "erased": {"$ne": True}},
            {"$set": {"state": "received", "reason": None}, "$push": {"files": stored.model_dump(mode="python")}},
        )
        erased = await self._erased(case_id, key)
        if result.matched_count == 1 and not erased:
            return True
        if erased:  # erased meanwhile: nothing of the upload stays
            await self.delete_file(stored.file_id)
            await self._items.update_one(
                {"_id": _id(case_id, key), "files.file_id": stored.file_id}, {"$set": {"files.$.name": ERASED}}
            )
        return False

    async def _erased(self, case_id: uuid.UUID, key: str) -> bool:
        document = await self._items.find_one({"_id": _id(case_id, key)}, {"erased": 1})
        return bool(document and document.get("erased"))

    def announcement(self, case: Case, key: str, stored: StoredFile) -> DocumentReceived | None:
        """document.received for a kept file; None for a case without an application in the ledger (an enquiry's
        converted case): the ledger links evidence to an application's acceptance."""
        if case.application_id is None:
            return None
        return DocumentReceived(
            event_id=derived_id(DocumentReceived.routing_key, stored.file_id),
            occurred_at=stored.received_at,
            correlation_id=f"case-{case.reference}",
            data=DocumentReceivedData(
                application_id=case.application_id,
                case_id=case.id,
                document_id=stored.file_id,
                item=key,
                sha256=stored.sha256,
                size=stored.size,
                content_type=stored.content_type,  # type: ignore[arg-type]  # inspection allowed only these
                received_at=stored.received_at,
            ),
        )

    async def announced(self, case_id: uuid.UUID | str, key: str, file_id: str) -> None:
        await self._items.update_one(
            {"_id": _id(case_id, key), "files.file_id": file_id}, {"$set": {"files.$.announced": True}}
        )

    async def unannounced(self, limit: int = 100) -> list[tuple[str, str, StoredFile]]:
        """(case id, item, file) of files kept but whose document.received the broker has not confirmed."""
        found = []
        cursor = self._items.find({"files.announced": False}).limit(limit)
        async for document in cursor:
            item = _item(document)
            found += [(item.case_id, item.key, stored) for stored in item.files if not stored.announced]
        return found

    async def erase_case(self, case_id: uuid.UUID) -> int:
        """Delete the case's files and chunks and the client's file names and notes; the hashes, sizes and types
        stay (the ledger holds them too). The items are marked erased first, so no upload still under way is
        received after it (``received``); then the files, and the chunks of uploads never finished (a crash), go.
        Returns how many files were deleted."""
        await self._items.update_many({"case_id": str(case_id)}, {"$set": {"erased": True}})
        deleted = 0
        async for stored in self._database[FILES].find({"metadata.case_id": str(case_id)}, {"_id": 1}):
            await self.delete_file(stored["_id"])
            deleted += 1
        await self._chunks.delete_many({"case_id": str(case_id)})
        async for document in self._items.find({"case_id": str(case_id)}):
            files = [{**stored, "name": ERASED} for stored in document.get("files", [])]
            await self._items.update_one(
                {"_id": document["_id"]}, {"$set": {"files": files, "note": None, "reason": None, "erased": True}}
            )
        return deleted

    async def sweep_orphan_chunks(self, now: datetime | None = None) -> int:
        """Delete the chunks of uploads that never got their files document (a crash mid-upload) once their last
        chunk is ``ORPHAN_AGE`` old; how many uploads' chunks went. Each sweep looks only at uploads begun since
        the last one swept up to (an upload's files id holds when it began), so it does not read every chunk."""
        cutoff = ObjectId.from_datetime((now or utc_now()) - ORPHAN_AGE)
        begun: dict[str, Any] = {"$lt": cutoff}
        if self._swept_to is not None:
            begun["$gte"] = self._swept_to
        still_written: list[ObjectId] = []
        swept = 0
        try:
            async for first in self._chunks.find({"files_id": begun, "n": 0}, {"files_id": 1}):
                file_id = first["files_id"]
                if await self._database[FILES].find_one({"_id": file_id}, {"_id": 1}) is not None:
                    continue
                if await self._chunks.find_one({"files_id": file_id, "_id": {"$gte": cutoff}}, {"_id": 1}):
                    still_written.append(file_id)  # a slow upload still writing: a later sweep looks again
                    continue
                await self._chunks.delete_many({"files_id": file_id})
                swept += 1
        except Exception as exc:  # a database outage: the next sweep tries again from where this one began
            logger.warning("sweeping unfinished uploads' chunks failed (%r): the next sweep tries again", exc)
            return swept
        self._swept_to = min([cutoff, *still_written])
        if swept:
            logger.info("deleted the chunks of %d unfinished upload(s)", swept)
        return swept


def _object_id(file_id: str) -> ObjectId:
    try:
        return ObjectId(file_id)
    except (InvalidId, TypeError):
        raise ValueError(file_id) from None


async def publish_unannounced(documents: CaseDocuments, cases: Any, publish: Any) -> int:
    """Announce the kept files whose document.received was not confirmed (a broker outage at upload time)."""
    published = 0
    try:
        for case_id, key, stored in await documents.unannounced():
            case = await cases.get(uuid.UUID(case_id))
            event: Event | None = documents.announcement(case, key, stored) if case is not None else None
            if event is not None:
                await publish(event)
            await documents.announced(case_id, key, stored.file_id)
            published += 1
    except Exception as exc:  # a database or broker outage: the next sweep tries again
        logger.warning("announcing kept documents failed (%r): the next sweep tries again", exc)
    return published
