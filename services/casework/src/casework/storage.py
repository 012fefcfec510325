"""The cases in MongoDB (``casework_cases``), and the timeline lines that arrive before their case
(``casework_orphan_history``). Only casework reads or writes these collections."""

import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from pymongo import ASCENDING, DESCENDING, AsyncMongoClient
from pymongo.errors import DuplicateKeyError

from casework.cases import ERASED, Case, HistoryEntry, from_document, searchable, to_document

CASES = "casework_cases"
ORPHANS = "casework_orphan_history"
# What the case list needs of a case: not its timeline, not the application as submitted.
LIST_PROJECTION = {"history": 0, "application": 0, "enquiry": 0, "acceptance": 0, "outbox": 0}
SortKey = Literal["opened_at", "status_since", "due_at", "company", "status"]
SORT_KEYS: tuple[SortKey, ...] = ("opened_at", "status_since", "due_at", "company", "status")


class CaseChanged(Exception):
    """Someone else changed the case since it was read (its version moved): read it again and retry."""


@dataclass(frozen=True)
class CaseQuery:
    """The case list's search, filters, sort and page."""

    search: str | None = None
    statuses: Sequence[str] = ()
    kind: str | None = None
    owner: str | None = None  # a staff account id, or "" for cases nobody owns
    overdue_at: datetime | None = None  # only cases overdue at this moment
    sort: SortKey = "opened_at"
    descending: bool = True
    page: int = 1
    per_page: int = 25

    def filter(self) -> dict[str, Any]:
        query: dict[str, Any] = {}
        if self.search:
            query["search"] = {"$regex": re.escape(self.search.casefold())}
        if self.statuses:
            query["status"] = {"$in": list(self.statuses)}
        if self.kind:
            query["kind"] = self.kind
        if self.owner is not None:
            query["owner"] = self.owner or None
        if self.overdue_at is not None:
            query["due_at"] = {"$lt": self.overdue_at}
        return query


@dataclass(frozen=True)
class CasePage:
    cases: list[Case]
    total: int
    query: CaseQuery = field(default_factory=CaseQuery)

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.query.per_page))


def _subject_filters(subject_id: uuid.UUID) -> list[dict[str, str]]:
    # Two lookups rather than one $or: an $or is not served by an index on every server (SecantusDB scans).
    return [{"application_id": str(subject_id)}, {"enquiry_id": str(subject_id)}]


class MongoCases:
    def __init__(self, client: AsyncMongoClient[dict[str, Any]], db: str) -> None:
        self._cases = client[db][CASES]
        self._orphans = client[db][ORPHANS]

    async def ensure_indexes(self) -> None:
        for keys in ("application_id", "enquiry_id", "status", "owner", "due_at", "opened_at", "status_since"):
            await self._cases.create_index([(keys, ASCENDING)])
        await self._orphans.create_index([("subject", ASCENDING)])

    async def open(self, case: Case) -> bool:
        """Store a new case with the timeline lines that came before it; False if it was open already."""
        try:
            await self._cases.insert_one(to_document(case))
        except DuplicateKeyError:
            return False
        await self._adopt_orphans(case)
        return True

    async def _adopt_orphans(self, case: Case) -> None:
        orphans = [doc async for doc in self._orphans.find({"subject": str(case.subject_id)})]
        for orphan in orphans:
            await self._push_once(
                {"_id": str(case.id)}, HistoryEntry.model_validate(orphan["entry"]), erased=case.erased_at is not None
            )
            await self._orphans.delete_one({"_id": orphan["_id"]})

    async def get(self, case_id: uuid.UUID) -> Case | None:
        document = await self._cases.find_one({"_id": str(case_id)}, {"outbox": 0})
        return from_document(document) if document else None

    async def of_subject(self, subject_id: uuid.UUID) -> list[Case]:
        """The cases about an application or an enquiry (an enquiry's, and the application case it became)."""
        found = []
        for query in _subject_filters(subject_id):
            found += [from_document(doc) async for doc in self._cases.find(query, {"outbox": 0})]
        return found

    async def find(self, query: CaseQuery) -> CasePage:
        direction = DESCENDING if query.descending else ASCENDING
        cursor = (
            self._cases.find(query.filter(), LIST_PROJECTION)
            .sort([(query.sort, direction), ("_id", direction)])
            .skip((query.page - 1) * query.per_page)
            .limit(query.per_page)
        )
        cases = [from_document(doc) async for doc in cursor]
        return CasePage(cases, await self._cases.count_documents(query.filter()), query)

    async def change(
        self, case: Case, updates: Mapping[str, Any], entry: HistoryEntry, event: tuple[str, str] | None = None
    ) -> None:
        """Apply ``updates`` and add ``entry`` if the case is still at the version read; ``event`` (id, JSON) goes
        into the case's outbox in the same write, so it is published even if this process dies right after.
        ``CaseChanged`` if someone else wrote first."""
        fields = {**updates, "updated_at": entry.at}
        if fields.get("tencent_deadline") is not None:
            fields["tencent_deadline"] = fields["tencent_deadline"].isoformat()
        if any(key in fields for key in ("client_name", "client_email", "company", "account_name")):
            fields["search"] = searchable(case.model_copy(update=fields))
        push: dict[str, Any] = {"history": entry.model_dump(mode="python")}
        if event is not None:
            push["outbox"] = {"id": event[0], "event": event[1]}
        result = await self._cases.update_one(
            {"_id": str(case.id), "version": case.version},
            {"$set": fields, "$inc": {"version": 1}, "$push": push},
        )
        if result.matched_count == 0:
            raise CaseChanged(str(case.id))

    async def published(self, case_id: uuid.UUID, event_id: str) -> None:
        await self._cases.update_one({"_id": str(case_id)}, {"$pull": {"outbox": {"id": event_id}}})

    async def unpublished(self, limit: int = 100) -> list[tuple[uuid.UUID, str, str]]:
        """(case id, event id, event JSON) of announcements written but not yet confirmed by the broker."""
        found = []
        async for doc in self._cases.find({"outbox.0": {"$exists": True}}, {"outbox": 1}).limit(limit):
            found += [(uuid.UUID(doc["_id"]), item["id"], item["event"]) for item in doc["outbox"]]
        return found

    async def add_to_subject(self, subject_id: uuid.UUID, entry: HistoryEntry) -> bool:
        """Add a system line (an email's outcome) to the cases about ``subject_id``, once; kept aside if no case
        is open yet (its case takes it when it opens). False if no case took it now."""
        taken = False
        for query in _subject_filters(subject_id):
            async for doc in self._cases.find(query, {"_id": 1, "erased_at": 1}):
                await self._push_once({"_id": doc["_id"]}, entry, erased=doc.get("erased_at") is not None)
                taken = True
        if not taken:
            await self._orphans.update_one(
                {"_id": f"{subject_id}:{entry.key}"},
                {"$setOnInsert": {"subject": str(subject_id), "entry": entry.model_dump(mode="python")}},
                upsert=True,
            )
        return taken

    async def _push_once(self, where: dict[str, Any], entry: HistoryEntry, *, erased: bool) -> None:
        if erased:
            entry = _erased_entry(entry)
        await self._cases.update_one(
            {**where, "history.key": {"$ne": entry.key}},
            {"$push": {"history": entry.model_dump(mode="python")}, "$set": {"updated_at": entry.at}},
        )

    async def set_on_subject(self, subject_id: uuid.UUID, fields: Mapping[str, Any], entry: HistoryEntry) -> None:
        """Set ``fields`` on the cases about ``subject_id`` and add ``entry``, once (e.g. the address verified)."""
        for query in _subject_filters(subject_id):
            await self._cases.update_many(
                {**query, "history.key": {"$ne": entry.key}},
                {"$set": dict(fields), "$push": {"history": entry.model_dump(mode="python")}},
            )

    async def erase(self, subject_id: uuid.UUID, erased_at: datetime) -> int:
        """Blank the personal data of every case about ``subject_id`` (and the lines kept aside for it); the
        case itself, its statuses and its dates stay. Returns how many cases were erased now."""
        await self._orphans.delete_many({"subject": str(subject_id)})
        erased = 0
        for case in await self.of_subject(subject_id):
            for _ in range(5):
                document = await self._cases.find_one({"_id": str(case.id)})
                if document is None or document.get("erased_at") is not None:
                    break
                current = from_document(document)
                blanked = erased_case(current, erased_at)
                # The outbox stays: a status change announced before the erasure is still owed.
                replacement = {**to_document(blanked), "version": current.version + 1}
                replacement["outbox"] = document.get("outbox", [])
                result = await self._cases.replace_one(
                    {"_id": str(current.id), "version": current.version}, replacement
                )
                if result.matched_count:
                    erased += 1
                    break
            else:
                raise CaseChanged(str(case.id))
        return erased

    async def ping(self) -> None:
        await self._cases.find_one({}, {"_id": 1})


def _erased_entry(entry: HistoryEntry) -> HistoryEntry:
    return entry.model_copy(
        update={
            "recipient": ERASED if entry.recipient else None,
            "text": ERASED if entry.text and entry.kind in ("note", "email") else entry.text,
            "detail": None,
        }
    )


def erased_case(case: Case, erased_at: datetime) -> Case:
    """The case without the client's personal data: names, addresses, phone, the form's free text, notes."""
    application = dict(case.application or {}) or None
    if application is not None:
        application["operator"] = None
        application["notes"] = None
    acceptance = dict(case.acceptance or {}) or None
    if acceptance is not None:
        for key in ("client_ip", "user_agent", "applicant_name", "applicant_email"):
            acceptance.pop(key, None)
    entry = HistoryEntry(key=f"erased:{erased_at.isoformat()}", kind="erased", at=erased_at)
    return case.model_copy(
        update={
            "client_name": None,
            "client_email": None,
            "application": application,
            "acceptance": acceptance,
            "enquiry": None,
            "erased_at": erased_at,
            "updated_at": erased_at,
            "history": [_erased_entry(line) for line in case.history] + [entry],
        }
    )
