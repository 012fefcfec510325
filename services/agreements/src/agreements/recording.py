"""Recording an application and its acceptance exactly once, as a link in the hash chain, and announcing it."""

import secrets
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol

from pydantic import AwareDatetime, BaseModel, ConfigDict

from agency_shared.chain import Head, Link, next_link
from agency_shared.events import (
    AcceptanceEvidence,
    AgreementRecorded,
    AgreementRecordedData,
    ApplicationSubmitted,
    Checkpoint,
    HumanCheck,
    NotificationSettledData,
    PersonalData,
    derived_id,
)
from agency_shared.forms import ApplicationForm, Locale
from agency_shared.receipt_verifier import personal_hashes, timestamp
from agreements.signing import parse_time


class ApplicationErased(Exception):
    """The application's personal data was erased: it is never recorded or announced again."""


class ApplicationRecord(BaseModel):
    """An application as stored: the form, the acceptance evidence, and how it arrived."""

    model_config = ConfigDict(frozen=True)

    application_id: uuid.UUID
    acceptance_id: uuid.UUID
    application: ApplicationForm
    acceptance: AcceptanceEvidence
    locale: Locale
    correlation_id: str
    submitted_event_id: uuid.UUID
    received_at: AwareDatetime
    recorded_at: AwareDatetime
    # Random per acceptance, so the record's hashes of personal fields cannot be matched against guesses.
    personal_salt: str
    # The human check the application passed at intake; None: not recorded (stored before it was).
    human_check: HumanCheck | None = None

    def personal_data(self) -> PersonalData:
        operator = self.application.operator
        return PersonalData(
            salt=self.personal_salt,
            applicant_name=operator.name,
            applicant_email=str(operator.email),
            applicant_phone=operator.phone,
            client_ip=self.acceptance.client_ip,
            user_agent=self.acceptance.user_agent,
        )


# An entry of the acceptance ledger is a link of the hash chain, which owns how links are built and checked.
LedgerEntry = Link


class ApplicationStore(Protocol):
    async def add_many(self, records: Sequence[ApplicationRecord]) -> list["ApplicationRecord | ApplicationErased"]:
        """Store each record unless its application is already stored; per record, the stored one either way,
        or ``ApplicationErased`` when the stored one's personal data was erased."""
        ...

    async def mark_recorded_many(self, recorded: Sequence[tuple[ApplicationRecord, LedgerEntry]]) -> None:
        """Each application is recorded as its link (from "received" only: a repeat changes nothing)."""
        ...

    async def note_notification(self, settled: NotificationSettledData) -> None:
        """Add an email's outcome to the application's timeline (a repeat changes nothing)."""
        ...


class AcceptanceLedger(Protocol):
    async def append_many(self, records: Sequence[ApplicationRecord]) -> list[LedgerEntry]:
        """Add each acceptance as the next link, in order, or return its existing link: one per application."""
        ...


class LinkSigner(Protocol):
    def checkpoint(self, sequence: int, record_hash: str, at: datetime) -> Checkpoint:
        """The signed statement that link ``sequence`` hashes to ``record_hash``, as of ``at``."""
        ...


def receipt_checkpoint(signer: LinkSigner | None, entry: LedgerEntry) -> Checkpoint | None:
    """The checkpoint made for a receipt: its own link, as of when it was recorded, so every copy of the
    receipt (the email's, the one served later) carries the same signature (Ed25519 is deterministic)."""
    if signer is None:
        return None
    return signer.checkpoint(entry.sequence, entry.record_hash, parse_time(entry.record["recorded_at"]))


def millisecond_precision(moment: datetime) -> datetime:
    # MongoDB keeps dates to the millisecond; trimming first means the record
    # we publish about is exactly the record a later read returns.
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def record_from_event(event: ApplicationSubmitted, now: datetime) -> ApplicationRecord:
    data = event.data
    return ApplicationRecord(
        application_id=data.application_id,
        acceptance_id=derived_id("acceptance", str(data.application_id)),
        application=data.application,
        acceptance=data.acceptance,
        locale=data.locale,
        correlation_id=event.correlation_id,
        submitted_event_id=event.event_id,
        received_at=millisecond_precision(event.occurred_at),
        recorded_at=millisecond_precision(now),
        personal_salt=secrets.token_hex(32),
        human_check=data.human_check,
    )


def acceptance_record(application: ApplicationRecord) -> dict[str, Any]:
    """What a link records of an acceptance: flat, strings only, times in one fixed format.

    The chain adds ``sequence`` and ``prev_hash``. Personal fields appear only as salted
    hashes, so erasing them leaves every link verifiable.
    """
    evidence = application.acceptance
    form = application.application
    return {
        "acceptance_id": str(application.acceptance_id),
        "application_id": str(application.application_id),
        "agreement_id": evidence.agreement_id,
        "agreement_version": evidence.agreement_version,
        "agreement_sha256": evidence.agreement_sha256,
        "accepted_at": timestamp(evidence.accepted_at),
        "recorded_at": timestamp(application.recorded_at),
        **personal_hashes(application.personal_data().model_dump()),
        "account_name": form.account.name,
        "company_name": form.company.legal_name,
        "company_registration_number": form.company.registration_number,
        "company_country": form.company.country,
        "locale": application.locale,
    }


def acceptance_link(application: ApplicationRecord, after: Head) -> LedgerEntry:
    """The link that records ``application``'s acceptance right after ``after``."""
    return next_link(after, acceptance_record(application))


def recorded_event_id(application_id: uuid.UUID) -> uuid.UUID:
    return derived_id(AgreementRecorded.routing_key, str(application_id))


def agreement_recorded(
    application: ApplicationRecord, entry: LedgerEntry, checkpoint: Checkpoint | None = None
) -> AgreementRecorded:
    """The event for a stored acceptance; the same acceptance always gives the same event (same id)."""
    acceptance = application.acceptance
    return AgreementRecorded(
        event_id=recorded_event_id(application.application_id),
        occurred_at=application.recorded_at,
        correlation_id=application.correlation_id,
        data=AgreementRecordedData(
            application_id=application.application_id,
            acceptance_id=application.acceptance_id,
            sequence=entry.sequence,
            prev_hash=entry.prev_hash,
            record_hash=entry.record_hash,
            record=entry.record,
            agreement_id=acceptance.agreement_id,
            agreement_version=acceptance.agreement_version,
            agreement_sha256=acceptance.agreement_sha256,
            accepted_at=acceptance.accepted_at,
            recorded_at=application.recorded_at,
            applicant_name=application.application.operator.name,
            applicant_email=application.application.operator.email,
            account_name=application.application.account.name,
            company_name=application.application.company.legal_name,
            locale=application.locale,
            personal_data=application.personal_data(),
            human_check=application.human_check,
            application=application.application,
            acceptance=acceptance,
            checkpoint=checkpoint,
        ),
    )


async def record_applications(
    events: Sequence[ApplicationSubmitted],
    store: ApplicationStore,
    ledger: AcceptanceLedger,
    now: datetime,
    signer: LinkSigner | None = None,
) -> list[AgreementRecorded | ApplicationErased]:
    """Record the applications together (group commit: a few database commands for the whole batch), in
    order; per event, its announcement, or ``ApplicationErased`` for one whose applicant was erased.

    Stored first, then linked, then marked recorded: a failure in between leaves each application
    "received", and the retry finds what was stored and links it (or finds its link)."""
    stored = await store.add_many([record_from_event(event, now) for event in events])
    kept = [record for record in stored if isinstance(record, ApplicationRecord)]
    entries = await ledger.append_many(kept)
    await store.mark_recorded_many(list(zip(kept, entries, strict=True)))
    announced = iter(
        agreement_recorded(record, entry, receipt_checkpoint(signer, entry))
        for record, entry in zip(kept, entries, strict=True)
    )
    return [outcome if isinstance(outcome, ApplicationErased) else next(announced) for outcome in stored]
