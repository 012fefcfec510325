"""The audit log (``casework_audit``): who did what to which record, when and from where. Append-only: this module
inserts and finds, and has no code path that updates or deletes an entry.

An entry records what was done, never the personal data itself (a case id, not a name). Tamper evidence against
someone who can write to the database but does not hold ``AUDIT_HMAC_KEY``: each entry takes the next number of
one counter (``casework_audit_counters``, shared by every replica) as its ``sequence``, and carries an HMAC-SHA256
of its canonical JSON, sequence included. An edited entry no longer matches its HMAC (``intact``); a deleted one
leaves a gap in the sequence (``AuditPage.missing``).
"""

import hashlib
import hmac
import json
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import ASCENDING, DESCENDING, AsyncMongoClient, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from agency_shared.events import utc_now

ACTIONS = (
    "login",
    "login_failed",
    "logout",
    "view_personal_data",
    "export",
    "status_change",
    "note",
    "assign_owner",
    "erase",
    "replay",
    "account_created",
    "account_changed",
    "password_changed",
    "webhook_endpoint_added",
    "webhook_endpoint_changed",
    "webhook_endpoint_deleted",
    "webhook_endpoint_disabled",
    "webhook_secret_rotated",
    "webhook_replayed",
    "portal_revoke",
    "request_documents",
    "accept_document",
    "ask_document_revision",
    "download_document",
    "download_document_refused",
)
MAX_FIELD_LENGTH = 512  # what an entry keeps of any one value: an audit entry is a record, not a document store
CSV_COLUMNS = ("sequence", "at", "actor", "action", "subject", "from_address", "detail", "hmac")
# A page names up to this many missing sequence numbers, and looks for them in a span of at most this many.
MAX_MISSING_SHOWN = 20
MAX_GAP_SPAN = 10_000
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _bounded(value: str | None) -> str | None:
    return None if value is None else value[:MAX_FIELD_LENGTH]


def _milliseconds(moment: datetime) -> datetime:
    """MongoDB keeps milliseconds: the hashed time is the stored time."""
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).replace(microsecond=moment.microsecond // 1000 * 1000)


def canonical_json(entry: Mapping[str, Any]) -> bytes:
    """The bytes an entry's HMAC covers: its fields (not ``_id`` or the HMAC), sorted keys, no spaces, UTC ISO time."""
    at = _milliseconds(entry["at"])
    body = {
        "sequence": entry.get("sequence"),
        "at": at.isoformat(timespec="milliseconds"),
        "actor": entry.get("actor"),
        "action": entry["action"],
        "subject": entry.get("subject"),
        "from_address": entry.get("from_address"),
        "detail": dict(sorted((entry.get("detail") or {}).items())),
    }
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def entry_mac(key: bytes, entry: Mapping[str, Any]) -> str:
    return hmac.new(key, canonical_json(entry), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class AuditEntry:
    id: str
    sequence: int | None
    at: datetime
    actor: str | None
    action: str
    subject: str | None
    from_address: str | None
    detail: Mapping[str, str]
    hmac: str
    # False when the stored fields no longer match the stored HMAC: the entry was changed after it was written.
    intact: bool

    @classmethod
    def from_document(cls, document: Mapping[str, Any], key: bytes) -> "AuditEntry":
        at = _milliseconds(document["at"])
        stored_mac = str(document.get("hmac", ""))
        sequence = document.get("sequence")
        return cls(
            id=str(document["_id"]),
            sequence=sequence if isinstance(sequence, int) else None,
            at=at,
            actor=document.get("actor"),
            action=document["action"],
            subject=document.get("subject"),
            from_address=document.get("from_address"),
            detail=dict(document.get("detail") or {}),
            hmac=stored_mac,
            intact=hmac.compare_digest(stored_mac.encode(), entry_mac(key, document).encode()),
        )

    def csv_cells(self) -> list[str]:
        detail = json.dumps(dict(self.detail), sort_keys=True, ensure_ascii=False) if self.detail else ""
        sequence = "" if self.sequence is None else str(self.sequence)
        cells = [sequence, self.at.isoformat(), self.actor, self.action, self.subject, self.from_address, detail]
        return ["" if cell is None else cell for cell in [*cells, self.hmac]]


@dataclass(frozen=True)
class AuditQuery:
    actor: str | None = None
    action: str | None = None
    subject: str | None = None
    since: datetime | None = None
    until: datetime | None = None  # exclusive

    def filter(self) -> dict[str, Any]:
        query: dict[str, Any] = {}
        for name in ("actor", "action", "subject"):
            if value := getattr(self, name):
                query[name] = value
        moment: dict[str, datetime] = {}
        if self.since:
            moment["$gte"] = self.since
        if self.until:
            moment["$lt"] = self.until
        if moment:
            query["at"] = moment
        return query


@dataclass(frozen=True)
class AuditPage:
    entries: Sequence[AuditEntry]
    # Pass as ``before`` for the next (older) page; None on the last page.
    next_before: str | None = None
    filters: AuditQuery = field(default_factory=AuditQuery)
    # Sequence numbers between the page's oldest entry and its newest (on the first page: the last number given)
    # that no entry has: deleted entries, or (for an instant) ones still being written. Up to MAX_MISSING_SHOWN.
    missing: Sequence[int] = ()
    missing_count: int = 0


def page_key(entry: AuditEntry) -> str:
    """The ``before`` of the page after ``entry``: its place in the order (time, then sequence), newest first."""
    return f"{(entry.at - EPOCH) // timedelta(milliseconds=1)}:{entry.sequence or 0}"


def _after_key(before: str) -> dict[str, Any] | None:
    """The filter of the entries older than ``before`` (a ``page_key``); None when it is not one."""
    milliseconds, _, sequence = before.partition(":")
    if not (milliseconds.isdigit() and sequence.isdigit()) or len(milliseconds) > 15 or len(sequence) > 18:
        return None
    at = EPOCH + timedelta(milliseconds=int(milliseconds))
    return {"$or": [{"at": {"$lt": at}}, {"at": at, "sequence": {"$lt": int(sequence)}}]}


# Newest first: the order every page and the export use, and the last fields of every index.
ORDER = [("at", DESCENDING), ("sequence", DESCENDING)]


class AuditLog:
    def __init__(self, key: bytes, clock: Callable[[], datetime] = utc_now) -> None:
        self._key = key
        self._clock = clock
        self._collection: AsyncCollection[dict[str, Any]] | None = None
        self._counters: AsyncCollection[dict[str, Any]] | None = None

    @property
    def _entries(self) -> AsyncCollection[dict[str, Any]]:
        if self._collection is None:
            raise RuntimeError("StaffAccess.open() was not awaited")
        return self._collection

    async def open(self, client: AsyncMongoClient[dict[str, Any]], db_name: str) -> None:
        self._collection = client[db_name]["casework_audit"]
        self._counters = client[db_name]["casework_audit_counters"]
        # Each filter (equality on one field, a range of ``at``) and the sort after it, served by one index.
        for name in ("actor", "action", "subject"):
            await self._entries.create_index([(name, ASCENDING), *ORDER], name=f"{name}_at_sequence")
        await self._entries.create_index(ORDER, name="at_sequence")
        await self._entries.create_index([("sequence", ASCENDING)], name="sequence")

    async def _next_sequence(self) -> int:
        counters = self._counters
        if counters is None:
            raise RuntimeError("StaffAccess.open() was not awaited")
        for _ in range(3):
            try:
                document = await counters.find_one_and_update(
                    {"_id": "audit"}, {"$inc": {"sequence": 1}}, upsert=True, return_document=ReturnDocument.AFTER
                )
            except DuplicateKeyError:
                document = None  # a parallel first entry made the counter: the next try counts on it
            if document is not None:
                return int(document["sequence"])
        raise RuntimeError("could not number an audit entry")

    async def _last_sequence(self) -> int:
        document = await self._counters.find_one({"_id": "audit"}) if self._counters is not None else None
        return int(document["sequence"]) if document else 0

    async def record(
        self,
        *,
        actor: str | None,
        action: str,
        subject: str | None,
        from_address: str | None,
        detail: Mapping[str, str] | None = None,
    ) -> None:
        entry: dict[str, Any] = {
            "sequence": await self._next_sequence(),
            "at": _milliseconds(self._clock()),
            "actor": _bounded(actor),
            "action": action[:64],
            "subject": _bounded(subject),
            "from_address": _bounded(from_address),
            "detail": {key[:64]: _bounded(str(value)) for key, value in (detail or {}).items()},
        }
        entry["hmac"] = entry_mac(self._key, entry)
        await self._entries.insert_one(entry)

    async def find(self, query: AuditQuery = AuditQuery(), *, before: str | None = None, limit: int = 50) -> AuditPage:
        """Newest first; ``before`` (the previous page's ``next_before``) continues after it."""
        mongo_filter = query.filter()
        older = _after_key(before) if before else None
        if older is not None:
            mongo_filter = {"$and": [mongo_filter, older]} if mongo_filter else older
        cursor = self._entries.find(mongo_filter).sort(ORDER).limit(limit + 1)
        entries = [AuditEntry.from_document(document, self._key) async for document in cursor]
        next_before = page_key(entries[limit - 1]) if len(entries) > limit else None
        missing, count = await self._missing(entries[:limit], newest=older is None)
        return AuditPage(entries[:limit], next_before, query, missing, count)

    async def _missing(self, entries: Sequence[AuditEntry], *, newest: bool) -> tuple[list[int], int]:
        """The sequence numbers no entry has from the page's oldest to its newest (or to the last number given,
        on the first page, where a deleted newest entry would otherwise leave no trace), and how many. A span of
        more than MAX_GAP_SPAN numbers (a filter matching few entries) is not checked: every unfiltered page is."""
        numbers = [entry.sequence for entry in entries if entry.sequence is not None]
        if not numbers:
            return [], 0
        low, high = min(numbers), max(numbers)
        if newest:
            high = max(high, await self._last_sequence())
        if high - low >= MAX_GAP_SPAN:
            return [], 0
        span = {"sequence": {"$gte": low, "$lte": high}}
        count = high - low + 1 - await self._entries.count_documents(span)
        if count <= 0:
            return [], 0
        present = {d["sequence"] async for d in self._entries.find(span, projection={"sequence": 1, "_id": 0})}
        missing = [n for n in range(high, low - 1, -1) if n not in present]
        return missing[:MAX_MISSING_SHOWN], count

    async def all(self, query: AuditQuery = AuditQuery()) -> AsyncIterator[AuditEntry]:
        """Every matching entry, newest first, as the cursor yields them (the CSV export streams this)."""
        async for document in self._entries.find(query.filter()).sort(ORDER):
            yield AuditEntry.from_document(document, self._key)
