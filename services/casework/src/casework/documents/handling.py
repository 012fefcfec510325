"""What happens to a case's documents: staff ask for checklist items, a client's file arrives, staff accept it or
ask for a revision with a reason. Each lands on the case's timeline; the workflow moves where it fits (through
CaseHandling, so its case.status-changed is announced as every status change is)."""

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from casework.cases import Case, HistoryEntry, HistoryKind
from casework.documents.checklists import ChecklistItem, checklist_for, known_items
from casework.documents.store import CaseDocuments, ItemState, RequestedItem, StoredFile
from casework.handling import Actor, CaseHandling, Publish
from casework.storage import CaseChanged
from casework.workflow import A, ActionRequest, CaseKind, InvalidDetail, NotAllowed

logger = logging.getLogger(__name__)
MAX_TEXT_LENGTH = 1000
# Who moves a case when the client's last outstanding file arrives.
CLIENT = Actor(id="client", email="client (portal)", name="client")
# Where asking for documents moves a case (the workflow's request_documents), and where it moves once the
# client uploaded every outstanding item (documents_received).
REQUEST_FROM = frozenset({A.TRIAGE, A.REJECTED})
RECEIVED_FROM = frozenset({A.AWAITING_DOCUMENTS, A.DOCUMENTS_NEED_REVISION})


class UnknownItem(LookupError):
    """The case never asked for this item (HTTP 404)."""


class ItemNotWaiting(Exception):
    """The item is not in a state this step applies to (HTTP 409): ``state`` is where it is."""

    def __init__(self, key: str, state: str) -> None:
        super().__init__(f"{key} is {state}")
        self.key = key
        self.state = state


def country_of(case: Case) -> str | None:
    company = (case.application or {}).get("company")
    country = company.get("country") if isinstance(company, dict) else None
    return country if isinstance(country, str) else None


def offered_items(case: Case) -> list[ChecklistItem]:
    """The checklist the request form offers for the case: its company's jurisdiction's (else the default)."""
    return checklist_for(country_of(case))


def checked_text(field: str, text: str, required: bool) -> str | None:
    text = text.replace("\r\n", "\n").strip()
    if not text:
        if required:
            raise InvalidDetail(field, "required")
        return None
    if len(text) > MAX_TEXT_LENGTH:
        raise InvalidDetail(field, f"at most {MAX_TEXT_LENGTH} characters")
    if any(ord(char) < 32 and char not in "\n\t" for char in text):
        raise InvalidDetail(field, "control characters are not allowed")
    return text


def decision_line(
    item: RequestedItem, kind: HistoryKind, key: str, actor: Actor, at: datetime, text: str | None = None
) -> HistoryEntry:
    """The timeline's line of a staff decision on ``item`` (with the reason the client sees), naming the file it
    was about: the item's latest."""
    latest = item.latest
    return HistoryEntry(
        key=key,
        kind=kind,
        at=at,
        staff=actor.email,
        text=text,
        item=item.key,
        file_id=latest.file_id if latest else None,
        sha256=latest.sha256 if latest else None,
    )


@dataclass
class DocumentHandling:
    handling: CaseHandling
    documents: CaseDocuments
    publish: Publish

    async def request(self, case_id: uuid.UUID, keys: Sequence[str], note: str, actor: Actor) -> Case:
        """Ask the client for the checklist items ``keys`` with an optional ``note`` (shown to them); a case in
        triage (or rejected) moves to awaiting_documents."""
        case = await self.handling.case(case_id)
        if case.kind is not CaseKind.APPLICATION:
            raise InvalidDetail("items", "only an application's case asks for documents")
        known = known_items() | {item.key: item for item in offered_items(case)}
        chosen = list(dict.fromkeys(key.strip() for key in keys if key.strip()))
        if not chosen:
            raise InvalidDetail("items", "choose at least one document")
        unknown = [key for key in chosen if key not in known]
        if unknown:
            raise InvalidDetail("items", f"not a checklist item: {unknown[0][:60]!r}")
        text = checked_text("note", note, required=False)
        now = self.handling.now()
        await self.documents.request(case.id, [known[key] for key in chosen], text, actor.email, now)
        entry = HistoryEntry(
            key=f"documents_requested:{case.version}:{now.isoformat()}",
            kind="documents_requested",
            at=now,
            staff=actor.email,
            text=text,
            item=", ".join(chosen),
        )
        await self.handling.cases.add_line(case.id, entry)
        if case.status in REQUEST_FROM:
            reason = text or f"documents requested: {', '.join(chosen)}"
            await self.handling.change_status(case.id, ActionRequest("request_documents", reason), actor)
        return await self.handling.case(case_id)

    async def accept(self, case_id: uuid.UUID, key: str, actor: Actor) -> Case:
        case = await self.handling.case(case_id)
        item = await self._move_item(case, key, "accepted", None, ("received",))
        now = self.handling.now()
        latest = item.latest
        line_key = f"document_accepted:{key}:{latest.file_id if latest else ''}:{now.isoformat()}"
        await self.handling.cases.add_line(case.id, decision_line(item, "document_accepted", line_key, actor, now))
        return await self.handling.case(case_id)

    async def ask_revision(self, case_id: uuid.UUID, key: str, reason: str, actor: Actor) -> Case:
        """Ask the client to upload the item again, saying why (they see the reason); a case in review moves to
        documents_need_revision."""
        case = await self.handling.case(case_id)
        text = checked_text("reason", reason, required=True)
        item = await self._move_item(case, key, "revision_requested", text, ("received", "accepted"))
        now = self.handling.now()
        line_key = f"document_revision:{key}:{now.isoformat()}"
        line = decision_line(item, "document_revision", line_key, actor, now, text)
        await self.handling.cases.add_line(case.id, line)
        if case.status == A.DOCUMENTS_IN_REVIEW:
            assert text is not None
            await self.handling.change_status(case.id, ActionRequest("request_revision", text), actor)
        return await self.handling.case(case_id)

    async def _move_item(
        self, case: Case, key: str, state: ItemState, text: str | None, only_from: tuple[str, ...]
    ) -> RequestedItem:
        """The case's item ``key``, moved to ``state`` (with the staff's ``text``) from one of ``only_from``."""
        item = await self.documents.item(case.id, key)
        if item is None:
            raise UnknownItem(key)
        if not await self.documents.set_state(case.id, key, state, text, only_from):
            raise ItemNotWaiting(key, item.state)
        return item

    async def received(self, case: Case, key: str, stored: StoredFile) -> bool:
        """A client's file passed the checks and is stored: onto its item, the timeline and the ledger (by
        document.received); the case moves to review once nothing is outstanding. False if the item was not
        waiting for a file (the caller deletes it)."""
        if not await self.documents.received(case.id, key, stored):
            return False
        await self.handling.cases.add_line(
            case.id,
            HistoryEntry(
                key=f"document_received:{stored.file_id}",
                kind="document_received",
                at=stored.received_at,
                item=key,
                file_id=stored.file_id,
                sha256=stored.sha256,
                size=stored.size,
                content_type=stored.content_type,
                file_name=stored.name,
            ),
        )
        await self._announce(case, key, stored)
        await self._to_review(case.id)
        return True

    async def _announce(self, case: Case, key: str, stored: StoredFile) -> None:
        event = self.documents.announcement(case, key, stored)
        try:
            if event is not None:
                await self.publish(event)
        except Exception as exc:  # the file is kept: the outbox sweep announces it
            logger.warning("document.received for %s not confirmed now (%r): the sweep sends it", stored.file_id, exc)
            return
        await self.documents.announced(case.id, key, stored.file_id)

    async def _to_review(self, case_id: uuid.UUID) -> None:
        for _ in range(5):
            case = await self.handling.case(case_id)
            items = await self.documents.items_of(case_id)
            if case.status not in RECEIVED_FROM or any(item.outstanding for item in items):
                return
            reason = "every requested document was uploaded"
            try:
                await self.handling.change_status(case_id, ActionRequest("documents_received", reason), CLIENT)
                return
            except CaseChanged:
                continue
            except NotAllowed:  # another upload moved it first
                return
        logger.warning("case %s: documents all received, but the case kept changing; staff move it", case_id)
