"""The audit log (``casework_audit``): who did what to which record, when and from where. Append-only: this module
inserts and finds, and has no code path that updates or deletes an entry.

An entry records what was done, never the personal data itself (a case id, not a name). Each entry carries the
SHA-256 of its canonical JSON, so an entry edited in the database no longer matches its hash (``intact``).
"""

import hashlib
import json
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from bson import ObjectId
from pymongo import ASCENDING, DESCENDING, AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection

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
)
MAX_FIELD_LENGTH = 512  # what an entry keeps of any one value: an audit entry is a record, not a document store
CSV_COLUMNS = ("at", "actor", "action", "subject", "from_address", "detail", "sha256")


def _bounded(value: str | None) -> str | None:
    return None if value is None else value[:MAX_FIELD_LENGTH]


def _milliseconds(moment: datetime) -> datetime:
    """MongoDB keeps milliseconds: the hashed time is the stored time."""
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).replace(microsecond=moment.microsecond // 1000 * 1000)


def canonical_json(entry: Mapping[str, Any]) -> bytes:
    """The bytes an entry's hash covers: its fields (not ``_id`` or the hash), sorted keys, no spaces, UTC ISO time."""
    at = _milliseconds(entry["at"])
    body = {
        "at": at.isoformat(timespec="milliseconds"),
        "actor": entry.get("actor"),
        "action": entry["action"],
        "subject": entry.get("subject"),
        "from_address": entry.get("from_address"),
        "detail": dict(sorted((entry.get("detail") or {}).items())),
    }
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def entry_hash(entry: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical_json(entry)).hexdigest()


@dataclass(frozen=True)
class AuditEntry:
    id: str
    at: datetime
    actor: str | None
    action: str
    subject: str | None
    from_address: str | None
    detail: Mapping[str, str]
    sha256: str
    # False when the stored fields no longer hash to the stored hash: the entry was changed after it was written.
    intact: bool

    @classmethod
    def from_document(cls, document: Mapping[str, Any]) -> "AuditEntry":
        at = _milliseconds(document["at"])
        return cls(
            id=str(document["_id"]),
            at=at,
            actor=document.get("actor"),
            action=document["action"],
            subject=document.get("subject"),
            from_address=document.get("from_address"),
            detail=dict(document.get("detail") or {}),
            sha256=document.get("sha256", ""),
            intact=document.get("sha256") == entry_hash(document),
        )

    def csv_cells(self) -> list[str]:
        detail = json.dumps(dict(self.detail), sort_keys=True, ensure_ascii=False) if self.detail else ""
        cells = [self.at.isoformat(), self.actor, self.action, self.subject, self.from_address, detail, self.sha256]
        return ["" if cell is None else cell for cell in cells]


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


class AuditLog:
    def __init__(self, clock: Callable[[], datetime] = utc_now) -> None:
        self._clock = clock
        self._collection: AsyncCollection[dict[str, Any]] | None = None

    @property
    def _entries(self) -> AsyncCollection[dict[str, Any]]:
        if self._collection is None:
            raise RuntimeError("StaffAccess.open() was not awaited")
        return self._collection

    async def open(self, client: AsyncMongoClient[dict[str, Any]], db_name: str) -> None:
        self._collection = client[db_name]["casework_audit"]
        for name in ("actor", "action", "subject"):
            await self._entries.create_index([(name, ASCENDING), ("at", DESCENDING)], name=f"{name}_at")
        await self._entries.create_index([("at", DESCENDING)], name="at")

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
            "at": _milliseconds(self._clock()),
            "actor": _bounded(actor),
            "action": action[:64],
            "subject": _bounded(subject),
            "from_address": _bounded(from_address),
            "detail": {key[:64]: _bounded(str(value)) for key, value in (detail or {}).items()},
        }
        entry["sha256"] = entry_hash(entry)
        await self._entries.insert_one(entry)

    async def find(self, query: AuditQuery = AuditQuery(), *, before: str | None = None, limit: int = 50) -> AuditPage:
        """Newest first; ``before`` (an entry id from the previous page) continues after it."""
        mongo_filter = query.filter()
        if before and ObjectId.is_valid(before):
            mongo_filter["_id"] = {"$lt": ObjectId(before)}
        cursor = self._entries.find(mongo_filter).sort("_id", DESCENDING).limit(limit + 1)
        entries = [AuditEntry.from_document(document) async for document in cursor]
        next_before = entries[limit - 1].id if len(entries) > limit else None
        return AuditPage(entries[:limit], next_before, query)

    async def all(self, query: AuditQuery = AuditQuery()) -> AsyncIterator[AuditEntry]:
        """Every matching entry, newest first, as the cursor yields them (the CSV export streams this)."""
        async for document in self._entries.find(query.filter()).sort("_id", DESCENDING):
            yield AuditEntry.from_document(document)
