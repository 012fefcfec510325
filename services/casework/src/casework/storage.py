"""The cases in MongoDB (``casework_cases``), and the timeline lines that arrive before their case
(``casework_orphan_history``). Only casework reads or writes these collections."""

import json
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from pymongo import ASCENDING, DESCENDING, AsyncMongoClient
from pymongo.errors import DuplicateKeyError

from casework.cases import ERASED, Case, HistoryEntry, email_key, from_document, searchable, to_document

CASES = "casework_cases"
ORPHANS = "casework_orphan_history"
# One document per erased applicant or enquirer: an event that arrives after the erasure (a retry, a replayed
# dead letter) opens no case with their data again.
ERASURES = "casework_erasures"
# The portal's re-acceptances (one per case and agreement version), with what the server observed.
REACCEPTANCES = "casework_reacceptances"
REMINDERS = "casework_reminders"  # casework/reminding.py's claims
# Statuses in which a case is over: the portal's "send me a new link" sends none for them.
CLOSED_STATUSES = frozenset({"withdrawn", "closed", "converted"})
# A line kept aside for a case that never opens (a submission never verified) goes after this long.
ORPHAN_DAYS = 30
# What the case list needs of a case: not its timeline, not the application as submitted.
LIST_PROJECTION = {"history": 0, "application": 0, "enquiry": 0, "acceptance": 0, "outbox": 0}
SortKey = Literal["opened_at", "status_since", "due_at", "company", "status"]
SORT_KEYS: tuple[SortKey, ...] = ("opened_at", "status_since", "due_at", "company", "status")


class CaseErased(Exception):
    """The case's subject was erased meanwhile: what was being kept for it is not."""


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
        self._erasures = client[db][ERASURES]
        self._reacceptances = client[db][REACCEPTANCES]
        self._reminders = client[db][REMINDERS]

    async def ensure_indexes(self) -> None:
        for keys in ("application_id", "enquiry_id", "status", "owner", "due_at", "opened_at", "status_since",
                     "client_email_key", "client_email"):  # fmt: skip
            await self._cases.create_index([(keys, ASCENDING)])
        # The outbox sweep looks only at cases with something to announce.
        await self._cases.create_index([("outbox.id", ASCENDING)], sparse=True)
        await self._orphans.create_index([("subject", ASCENDING)])
        await self._orphans.create_index([("created_at", ASCENDING)], expireAfterSeconds=ORPHAN_DAYS * 86_400)

    async def was_erased(self, subject_id: uuid.UUID) -> bool:
        return await self._erasures.find_one({"_id": str(subject_id)}, {"_id": 1}) is not None

    async def open(self, case: Case) -> bool:
        """Store a new case with the timeline lines that came before it; False if it was open already, or its
        subject was erased (then no case with their data is kept, whatever order things happen in)."""
        if await self.was_erased(case.subject_id):
            return False
        try:
            await self._cases.insert_one(to_document(case))
        except DuplicateKeyError:
            await self._adopt_orphans(case.id, case.subject_id)  # an earlier attempt may have died before
            return False
        if await self.was_erased(case.subject_id):  # the erasure landed between the look and the insert
            erasure = await self._erasures.find_one({"_id": str(case.subject_id)})
            await self.erase(case.subject_id, erasure["erased_at"] if erasure else case.opened_at)
            return False
        await self._adopt_orphans(case.id, case.subject_id)
        return True

    async def delete(self, case_id: uuid.UUID) -> None:
        """Remove a case nothing refers to yet (one a failed conversion opened)."""
        await self._cases.delete_one({"_id": str(case_id)})

    async def _adopt_orphans(self, case_id: uuid.UUID, subject_id: uuid.UUID) -> None:
        async for orphan in self._orphans.find({"subject": str(subject_id)}):
            await self._push_once({"_id": str(case_id)}, HistoryEntry.model_validate(orphan["entry"]))
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
        if "client_email" in fields:
            fields["client_email_key"] = email_key(fields["client_email"])
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
        """(case id, event id, event JSON) of announcements written but not yet confirmed by the broker, each
        case's in the order they were written."""
        found = []
        async for doc in self._cases.find({"outbox.id": {"$exists": True}}, {"outbox": 1}).limit(limit):
            found += [(uuid.UUID(doc["_id"]), item["id"], item["event"]) for item in doc["outbox"]]
        return found

    async def outbox_of(self, case_id: uuid.UUID) -> list[tuple[str, str]]:
        """(event id, event JSON) the case still owes, in the order they were written."""
        document = await self._cases.find_one({"_id": str(case_id)}, {"outbox": 1})
        return [(item["id"], item["event"]) for item in (document or {}).get("outbox", [])]

    async def add_to_subject(self, subject_id: uuid.UUID, entry: HistoryEntry) -> bool:
        """Add a system line (an email's outcome) to the cases about ``subject_id``, once; kept aside if no case
        is open yet (its case takes it when it opens). False if no case took it now."""
        if await self._push_to_subject(subject_id, entry):
            return True
        if await self.was_erased(subject_id):
            return False  # nothing about an erased subject is kept aside
        await self._orphans.update_one(
            {"_id": f"{subject_id}:{entry.key}"},
            {"$setOnInsert": {"subject": str(subject_id), "entry": entry.model_dump(mode="python"),
                              "created_at": entry.at}},
        upsert=True,
        )  # fmt: skip
        # The case may have opened (and adopted what was aside) between the look above and this line.
        for case in await self.of_subject(subject_id):
            await self._adopt_orphans(case.id, subject_id)
        return False

    async def _push_to_subject(self, subject_id: uuid.UUID, entry: HistoryEntry) -> bool:
        taken = False
        for query in _subject_filters(subject_id):
            async for doc in self._cases.find(query, {"_id": 1}):
                await self._push_once({"_id": doc["_id"]}, entry)
                taken = True
        return taken

    async def _push_once(self, where: dict[str, Any], entry: HistoryEntry) -> None:
        """Add ``entry`` unless the case has it; blanked if the case is erased (decided by the write itself, so an
        erasure between a read and this write cannot let the recipient's address in)."""
        for erased, line in ((None, entry), ({"$ne": None}, _erased_entry(entry))):
            result = await self._cases.update_one(
                {**where, "erased_at": erased, "history.key": {"$ne": line.key}},
                {"$push": {"history": line.model_dump(mode="python")}, "$set": {"updated_at": line.at}},
            )
            if result.matched_count:
                return

    async def add_line(self, case_id: uuid.UUID, entry: HistoryEntry) -> None:
        """Add a system line (a document received) to the case, once; blanked if the case is erased."""
        await self._push_once({"_id": str(case_id)}, entry)

    async def set_on_subject(self, subject_id: uuid.UUID, fields: Mapping[str, Any], entry: HistoryEntry) -> None:
        """Set ``fields`` on the cases about ``subject_id`` and add ``entry``, once (e.g. the address verified)."""
        for query in _subject_filters(subject_id):
            await self._cases.update_many(
                {**query, "history.key": {"$ne": entry.key}},
                {"$set": dict(fields), "$push": {"history": entry.model_dump(mode="python")}},
            )

    async def erase(self, subject_id: uuid.UUID, erased_at: datetime) -> int:
        """Blank the personal data of every case about ``subject_id`` (and the lines kept aside for it); the
        case itself, its statuses and its dates stay. Returns how many cases were erased now. The subject is
        remembered as erased first, so no case opens for it later."""
        await self._erasures.update_one(
            {"_id": str(subject_id)}, {"$setOnInsert": {"erased_at": erased_at}}, upsert=True
        )
        await self._orphans.delete_many({"subject": str(subject_id)})
        erased = 0
        for case in await self.of_subject(subject_id):
            # A reminder claimed but not yet confirmed by the broker keeps its event (the client's name and
            # address) for the sweep: it is not sent any more.
            await self._reminders.update_many(
                {"case_id": str(case.id), "pending": True},
                {"$unset": {"pending": "", "event": ""}, "$set": {"erased_at": erased_at}},
            )
            for _ in range(5):
                document = await self._cases.find_one({"_id": str(case.id)})
                if document is None or document.get("erased_at") is not None:
                    break
                current = from_document(document)
                blanked = erased_case(current, erased_at)
                # The outbox stays (a status change made before the erasure is still announced) without the client.
                replacement = {**to_document(blanked), "version": current.version + 1}
                replacement["outbox"] = [_without_client(item) for item in document.get("outbox", [])]
                # Only the document as read: a line pushed meanwhile (an email's outcome) makes it read again.
                unchanged = {"_id": str(current.id), "version": current.version,
                             f"history.{len(current.history)}": {"$exists": False}}  # fmt: skip
                result = await self._cases.replace_one(unchanged, replacement)
                if result.matched_count:
                    erased += 1
                    break
            else:
                raise CaseChanged(str(case.id))
            # The portal's re-acceptances hold the client's address and browser (the ledger keeps their hashes):
            # deleted last, so one kept while the case was being blanked goes too (``keep_reacceptance``).
            await self._reacceptances.delete_many({"case_id": str(case.id)})
        return erased

    async def open_cases_of(self, email: str) -> list[Case]:
        """The open cases (not erased, not over) whose client has this address, however it is capitalised."""
        key = email_key(email)
        if not key:
            return []
        found: dict[uuid.UUID, Case] = {}
        # By the folded address; cases stored before it was kept, by the address as typed or in lower case.
        queries: list[dict[str, Any]] = [
            {"client_email_key": key},
            {"client_email": {"$in": sorted({email.strip(), key})}},
        ]
        for query in queries:
            async for document in self._cases.find({**query, "erased_at": None}, {"outbox": 0, "history": 0}):
                case = from_document(document)
                if case.status not in CLOSED_STATUSES:
                    found[case.id] = case
        return sorted(found.values(), key=lambda case: case.opened_at)

    async def revoke_portal_links(self, case: Case, entry: HistoryEntry) -> bool:
        """End every portal link and session of the case: its link generation moves on, in one write conditional on
        the generation read (False: someone else revoked them meanwhile, or the case changed)."""
        generation = case.portal_generation
        current: Any = generation if generation else {"$in": [0, None]}  # before any revocation: 0 or unset
        result = await self._cases.update_one(
            {"_id": str(case.id), "portal_generation": current},
            {"$set": {"portal_generation": generation + 1, "updated_at": entry.at}, "$inc": {"version": 1},
             "$push": {"history": entry.model_dump(mode="python")}},
        )  # fmt: skip
        return result.matched_count == 1

    async def reacceptance(self, case_id: uuid.UUID, version: str) -> dict[str, Any] | None:
        return await self._reacceptances.find_one({"_id": f"{case_id}:{version}"})

    async def keep_reacceptance(self, case: Case, record: Mapping[str, Any], entry: HistoryEntry) -> dict[str, Any]:
        """Store the client's re-acceptance of ``record["version"]`` unless one is stored (the first wins), with a
        line on the case's timeline; the stored one. ``CaseErased`` if the case's subject was erased: one whose
        portal request passed the session check just before an erasure keeps nothing (``erase`` marks the
        subject first and deletes the re-acceptances last, so one of the two always sees the other)."""
        key = f"{case.id}:{record['version']}"
        await self._reacceptances.update_one(
            {"_id": key}, {"$setOnInsert": {**record, "case_id": str(case.id)}}, upsert=True
        )
        if await self.was_erased(case.subject_id):
            await self._reacceptances.delete_many({"case_id": str(case.id)})
            raise CaseErased(str(case.id))
        await self._push_once({"_id": str(case.id), "erased_at": None}, entry)
        stored = await self._reacceptances.find_one({"_id": key})
        if stored is None:  # the erasure deleted it meanwhile
            raise CaseErased(str(case.id))
        return stored

    async def unpublished_reacceptances(self, accepted_before: datetime, limit: int = 100) -> list[dict[str, Any]]:
        """Re-acceptances kept before ``accepted_before`` whose announcement the broker never confirmed."""
        query = {"published_at": None, "accepted_at": {"$lt": accepted_before}}
        return [stored async for stored in self._reacceptances.find(query).limit(limit)]

    async def reacceptance_published(self, case_id: uuid.UUID, version: str, at: datetime) -> None:
        await self._reacceptances.update_one(
            {"_id": f"{case_id}:{version}", "published_at": None}, {"$set": {"published_at": at}}
        )

    async def ping(self) -> None:
        await self._cases.find_one({}, {"_id": 1})


def _erased_entry(entry: HistoryEntry) -> HistoryEntry:
    """A timeline line without personal data: no recipient, no staff free text (notes, reasons, an owner's
    name stays: it is staff's)."""
    blank_text = entry.text and entry.kind in (
        "note",
        "email",
        "status_changed",
        "documents_requested",
        "document_revision",
    )
    return entry.model_copy(
        update={"recipient": ERASED if entry.recipient else None, "text": ERASED if blank_text else entry.text,
                "detail": None, "file_name": ERASED if entry.file_name else None}
    )  # fmt: skip


def _without_client(item: dict[str, Any]) -> dict[str, Any]:
    """An outbox item's event without the client (and the staff's reason): nobody is emailed about an erased
    case, and its document keeps nothing of them."""
    event = json.loads(item["event"])
    event["data"]["client"] = None
    event["data"]["reason"] = ERASED
    return {**item, "event": json.dumps(event)}


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
