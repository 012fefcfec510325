"""Recording a client's re-acceptance of a newer agreement version (casework's portal announces it) as a link of the
hash chain, like the first acceptance.

The link's kind is ``reacceptance:<version>``: one per application and version, so a redelivery finds the link
instead of adding one. It names the acceptance it follows, the version and the SHA-256 of the text shown, and holds
the client's address and browser only as hashes salted with the acceptance's salt (the values stay in the
application document, where an erasure removes them while every link still verifies). The application then counts
as having accepted that version: it leaves the staff's re-acceptance list.
"""

import uuid
from datetime import datetime
from typing import Any, Protocol

from agency_shared.agreement_documents import AgreementCatalog
from agency_shared.chain import Head, next_link
from agency_shared.events import AgreementReaccepted
from agency_shared.receipt_verifier import personal_sha256, timestamp
from agreements.recording import ApplicationRecord, LedgerEntry, millisecond_precision

REACCEPTANCE = "reacceptance"
# Its personal fields, hashed with the acceptance's salt as "<salt>:<field>:<value>".
REACCEPTANCE_FIELDS = ("reacceptance_client_ip", "reacceptance_user_agent")


class UnknownVersion(Exception):
    """The version is not in the catalog, or its text does not hash to what the client was shown."""


class ReacceptingApplications(Protocol):
    async def stored_application(self, application_id: uuid.UUID) -> ApplicationRecord | None: ...

    async def mark_reaccepted(self, application_id: uuid.UUID, evidence: dict[str, Any], entry: LedgerEntry) -> None:
        """Keep the evidence, note the link on the timeline and count the version as accepted (once)."""
        ...


class ReacceptanceLedger(Protocol):
    async def find(self, application_id: uuid.UUID | str) -> LedgerEntry | None: ...

    async def append_reacceptance(self, application_id: uuid.UUID, kind: str, build: Any) -> LedgerEntry:
        """Add the link ``build`` makes as the next link, or return the application's link of ``kind``."""
        ...


def link_kind(version: str) -> str:
    return f"{REACCEPTANCE}:{version}"


def reacceptance_record(
    application: ApplicationRecord, acceptance: LedgerEntry, event: AgreementReaccepted, recorded_at: datetime
) -> dict[str, Any]:
    data = event.data
    salt = application.personal_salt
    values = dict(zip(REACCEPTANCE_FIELDS, (data.client_ip, data.user_agent), strict=True))
    return {
        "kind": REACCEPTANCE,
        "application_id": str(application.application_id),
        "acceptance_id": str(application.acceptance_id),
        "acceptance_sequence": acceptance.sequence,
        "acceptance_record_hash": acceptance.record_hash,
        "agreement_id": data.agreement_id,
        "agreement_version": data.agreement_version,
        "agreement_sha256": data.agreement_sha256,
        "accepted_at": timestamp(millisecond_precision(data.accepted_at)),
        "recorded_at": timestamp(recorded_at),
        "locale": data.locale,
        **{f"{name}_sha256": personal_sha256(salt, name, value) for name, value in values.items()},
    }


def checked_version(event: AgreementReaccepted, catalog: AgreementCatalog) -> None:
    data = event.data
    document = catalog.find(data.agreement_version)
    if document is None:
        raise UnknownVersion(f"version {data.agreement_version!r} is not in the catalog")
    if document.sha256 != data.agreement_sha256 or (data.agreement_id and document.id != data.agreement_id):
        raise UnknownVersion(f"the text shown for version {data.agreement_version!r} is not the catalog's")


async def record_reacceptance(
    event: AgreementReaccepted,
    applications: ReacceptingApplications,
    ledger: ReacceptanceLedger,
    catalog: AgreementCatalog,
    now: datetime,
) -> LedgerEntry | None:
    """Append the re-acceptance link (once) and count the version as accepted; None: the application has no
    acceptance link yet. ``UnknownVersion``, ``ApplicationErased`` or ``LookupError`` (no such application)."""
    checked_version(event, catalog)
    application_id = event.data.application_id
    application = await applications.stored_application(application_id)
    if application is None:
        raise LookupError(str(application_id))
    acceptance = await ledger.find(application_id)
    if acceptance is None:
        return None
    recorded_at = millisecond_precision(now)

    def build(after: Head) -> LedgerEntry:
        return next_link(after, reacceptance_record(application, acceptance, event, recorded_at))

    entry = await ledger.append_reacceptance(application_id, link_kind(event.data.agreement_version), build)
    evidence = {
        "version": event.data.agreement_version,
        "agreement_sha256": event.data.agreement_sha256,
        "accepted_at": event.data.accepted_at,
        "client_ip": event.data.client_ip,
        "user_agent": event.data.user_agent,
        "event_id": str(event.event_id),
        "sequence": entry.sequence,
    }
    await applications.mark_reaccepted(application_id, evidence, entry)
    return entry
