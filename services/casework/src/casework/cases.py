"""Cases as casework keeps them: one document per case, its timeline inside it, so a status change, its history
entry and the event that announces it are one atomic write (``casework_cases``)."""

import base64
import uuid
from collections.abc import Mapping
from datetime import UTC, date, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from agency_shared.cases import case_id_of
from casework.workflow import CaseKind, due_at, initial_status

HistoryKind = Literal[
    "opened",
    "status_changed",
    "note",
    "owner_assigned",
    "email",
    "email_verified",
    "converted",
    "erased",
    # The documents' lines (casework/documents): a request, a file received, a file accepted, a revision asked.
    "documents_requested",
    "document_received",
    "document_accepted",
    "document_revision",
    "portal_revoked",
    "reaccepted",
]
ERASED = "[erased]"


class HistoryEntry(BaseModel):
    """One line of a case's timeline. ``key`` makes a repeat (a redelivered event) recognisable."""

    model_config = ConfigDict(extra="ignore")

    key: str
    kind: HistoryKind
    at: datetime
    staff: str | None = None  # the staff member's email; None: the system (an event)
    text: str | None = None  # a note, or a status change's reason
    action: str | None = None
    previous: str | None = None
    current: str | None = None
    template: str | None = None  # an email's
    recipient: str | None = None
    state: str | None = None
    detail: str | None = None
    # A document's line: its checklist item and, for a file, what identifies it (the hash stays after an erasure;
    # the client's file name goes).
    item: str | None = None
    file_id: str | None = None
    sha256: str | None = None
    size: int | None = None
    content_type: str | None = None
    file_name: str | None = None


class Case(BaseModel):
    """An application's or an enquiry's case. Personal data: ``client_*``, ``application.operator``,
    ``enquiry``, the acceptance's address and browser, notes (blanked by an erasure)."""

    model_config = ConfigDict(extra="ignore")

    id: uuid.UUID
    kind: CaseKind
    reference: str
    status: str
    status_since: datetime
    due_at: datetime | None = None
    owner: str | None = None  # the owner's staff account id
    owner_name: str | None = None
    opened_at: datetime
    updated_at: datetime
    version: int = 0
    locale: Literal["en", "zh-CN"] = "en"
    application_id: uuid.UUID | None = None
    enquiry_id: uuid.UUID | None = None
    origin_enquiry: uuid.UUID | None = None  # an application case opened by converting this enquiry
    converted_to: uuid.UUID | None = None  # the application case this enquiry became
    company: str | None = None
    account_name: str | None = None
    client_name: str | None = None
    client_email: str | None = None
    application: dict[str, Any] | None = None
    acceptance: dict[str, Any] | None = None
    enquiry: dict[str, Any] | None = None
    email_verified_at: datetime | None = None
    tencent_deadline: date | None = None
    tencent_attempts: int = 0
    rejection_reason: str | None = None
    held_from: str | None = None
    submitted_at: datetime | None = None
    verified_at: datetime | None = None
    expires_at: datetime | None = None
    erased_at: datetime | None = None
    # The generation of the client's valid portal links: staff revoking them moves it on (casework/portal).
    portal_generation: int = 0
    history: list[HistoryEntry] = Field(default_factory=list)

    @property
    def subject_id(self) -> uuid.UUID:
        subject = self.application_id or self.enquiry_id
        assert subject is not None  # every case has one
        return subject

    def overdue(self, now: datetime) -> bool:
        return self.due_at is not None and self.due_at < now


def case_id_for(subject_id: uuid.UUID, kind: CaseKind = CaseKind.APPLICATION) -> uuid.UUID:
    """A case's id follows from what it is about, so opening it twice (a redelivery, two replicas) is one case."""
    return case_id_of(subject_id, kind.value)


def new_case(
    kind: CaseKind,
    subject_id: uuid.UUID,
    now: datetime,
    limits: Mapping[str, int],
    opened: HistoryEntry,
    **fields: Any,
) -> Case:
    """A case as it opens: its id and reference from its subject, its kind's first status and that status's due time,
    ``opened`` as its first timeline line, and ``fields`` (the client, the application...)."""
    case_id = case_id_for(subject_id, kind)
    status = initial_status(kind)
    return Case(
        id=case_id,
        kind=kind,
        reference=reference_of(case_id, kind),
        status=status,
        status_since=now,
        due_at=due_at(status, now, limits),
        opened_at=now,
        updated_at=now,
        history=[opened],
        **fields,
    )


def reference_of(case_id: uuid.UUID, kind: CaseKind) -> str:
    """A short reference staff can say on the phone and clients can quote: ``A-7KQ2M4XD`` (from the id)."""
    code = base64.b32encode(case_id.bytes[:5]).decode().rstrip("=")
    return f"{'A' if kind is CaseKind.APPLICATION else 'E'}-{code}"


def search_text(*parts: str | None) -> str:
    """What the case list's search matches: company, account name, client name and email, reference, ids."""
    return " ".join(part.casefold() for part in parts if part)


def to_document(case: Case) -> dict[str, Any]:
    document = case.model_dump(mode="python", exclude={"id"})
    document["_id"] = str(case.id)
    for field in ("application_id", "enquiry_id", "origin_enquiry", "converted_to"):
        if document[field] is not None:
            document[field] = str(document[field])
    if case.tencent_deadline is not None:
        document["tencent_deadline"] = case.tencent_deadline.isoformat()
    document["search"] = searchable(case)
    document["client_email_key"] = email_key(case.client_email)
    return document


def email_key(email: str | None) -> str | None:
    """How the portal's "send me a new link" finds a client's cases: the address as typed, case-folded."""
    return email.strip().casefold() if email else None


def searchable(case: Case) -> str:
    return search_text(
        case.company,
        case.account_name,
        case.client_name,
        case.client_email,
        case.reference,
        str(case.id),
        str(case.application_id or ""),
        str(case.enquiry_id or ""),
    )


def from_document(document: Mapping[str, Any]) -> Case:
    fields = dict(document)
    fields["id"] = fields.pop("_id")
    case = Case.model_validate(fields)
    return _aware(case)


def _aware(case: Case) -> Case:
    """PyMongo returns naive UTC datetimes unless the client is tz_aware; the model's are always aware."""
    updates: dict[str, Any] = {}
    for name in ("status_since", "due_at", "opened_at", "updated_at", "email_verified_at", "submitted_at",
                 "verified_at", "expires_at", "erased_at"):  # fmt: skip
        value = getattr(case, name)
        if isinstance(value, datetime) and value.tzinfo is None:
            updates[name] = value.replace(tzinfo=UTC)
    return case.model_copy(update=updates) if updates else case
