"""Documents a client uploaded, as evidence in the ledger: a link of kind ``document:<file id>`` per file, naming
the application's acceptance link and holding what identifies the file (its SHA-256, size and type, when it was
received), never its name or content. One link per file: a redelivered document.received finds it."""

import logging
import uuid
from datetime import datetime
from typing import Any, Protocol

from agency_shared.chain import Head, next_link
from agency_shared.events import DocumentReceived, DocumentReceivedData
from agency_shared.receipt_verifier import timestamp
from agreements.recording import LedgerEntry

logger = logging.getLogger(__name__)
DOCUMENT_KIND = "document"


class AcceptanceNotRecorded(Exception):
    """The application has no acceptance link (yet): the document waits for it (retried)."""


def document_kind(document_id: str) -> str:
    """The link's kind: one per file, so a redelivery finds the link written the first time."""
    return f"{DOCUMENT_KIND}:{document_id}"


def document_record(data: DocumentReceivedData, acceptance: LedgerEntry, recorded_at: datetime) -> dict[str, Any]:
    return {
        "kind": document_kind(data.document_id),
        "application_id": str(data.application_id),
        "case_id": str(data.case_id),
        "document_id": data.document_id,
        "item": data.item,
        "sha256": data.sha256,
        "size": data.size,
        "content_type": data.content_type,
        "received_at": timestamp(data.received_at),
        "recorded_at": timestamp(recorded_at),
        "acceptance_sequence": acceptance.sequence,
        "acceptance_record_hash": acceptance.record_hash,
    }


def document_link(
    data: DocumentReceivedData, acceptance: LedgerEntry, recorded_at: datetime, after: Head
) -> LedgerEntry:
    return next_link(after, document_record(data, acceptance, recorded_at))


class DocumentLedger(Protocol):
    async def find(self, application_id: uuid.UUID | str) -> LedgerEntry | None:
        """The application's acceptance link."""
        ...

    async def append_document(
        self, data: DocumentReceivedData, acceptance: LedgerEntry, recorded_at: datetime
    ) -> LedgerEntry:
        """Add the document as the next link, or return its existing link: one per file."""
        ...


async def record_document(event: DocumentReceived, ledger: DocumentLedger, now: datetime) -> LedgerEntry:
    """The document's link (appended now, or found: a redelivery)."""
    acceptance = await ledger.find(event.data.application_id)
    if acceptance is None:
        raise AcceptanceNotRecorded(str(event.data.application_id))
    return await ledger.append_document(event.data, acceptance, now)
