"""Recording an applicant's email verification as evidence beside their acceptance, and announcing the confirmation.

The verification is a link of the hash chain of its own kind (``email_verified``) that
names the acceptance's link, so the ledger shows that the acceptance was confirmed from the
applicant's mailbox, and when. Like the acceptance, the link holds the address, IP and user
agent only as hashes salted with the acceptance's salt; the values stay in the application
document, where an erasure removes them while every link still verifies.
"""

import uuid
from datetime import datetime
from typing import Any, Protocol

from pydantic import AwareDatetime, BaseModel, ConfigDict

from agency_shared.chain import Head, next_link
from agency_shared.events import (
    AcceptanceConfirmed,
    AcceptanceConfirmedData,
    EmailVerified,
    EnquiryConfirmed,
    EnquiryConfirmedData,
    derived_id,
)
from agency_shared.receipt_verifier import personal_sha256, timestamp
from agreements.recording import (
    ApplicationRecord,
    LedgerEntry,
    LinkSigner,
    agreement_recorded,
    millisecond_precision,
    receipt_checkpoint,
)

# The kind of a verification link (an acceptance link names no kind: it came first).
EMAIL_VERIFIED = "email_verified"
# Its personal fields, hashed with the acceptance's salt as "<salt>:<field>:<value>".
VERIFICATION_FIELDS = ("verified_email", "verification_client_ip", "verification_user_agent")


class UnknownApplication(Exception):
    """No application has this id: a link we signed names it, so something is badly wrong (dead-lettered)."""


class NotRecordedYet(Exception):
    """The acceptance is not in the ledger yet: the verification waits for it (retried)."""


class AddressMismatch(Exception):
    """The verified address is not the applicant's: nothing is recorded (dead-lettered for an operator)."""


class VerificationEvidence(BaseModel):
    """What intake observed when the applicant confirmed the address; stored once, in the application document."""

    model_config = ConfigDict(frozen=True)

    event_id: uuid.UUID
    # The confirming request's: the follow-up event and emails carry it.
    correlation_id: str
    email: str
    verified_at: AwareDatetime
    client_ip: str
    user_agent: str
    recorded_at: AwareDatetime


class VerifiableApplications(Protocol):
    async def stored_application(self, application_id: uuid.UUID) -> ApplicationRecord | None:
        """The stored application; None if unknown. Raises ``ApplicationErased`` once its data was erased."""
        ...

    async def keep_verification(
        self, application_id: uuid.UUID, evidence: VerificationEvidence
    ) -> VerificationEvidence:
        """Store the evidence unless some is stored already; return the stored one (the first wins)."""
        ...

    async def mark_verified(self, application_id: uuid.UUID, entry: LedgerEntry, at: datetime) -> None: ...


class VerificationLedger(Protocol):
    async def find(self, application_id: uuid.UUID | str) -> LedgerEntry | None:
        """The application's acceptance link."""
        ...

    async def append_verification(
        self, application: ApplicationRecord, acceptance: LedgerEntry, evidence: VerificationEvidence
    ) -> LedgerEntry:
        """Add the verification as the next link, or return its existing link: one per application."""
        ...


def evidence_from_event(event: EmailVerified, now: datetime) -> VerificationEvidence:
    data = event.data
    return VerificationEvidence(
        event_id=event.event_id,
        correlation_id=event.correlation_id,
        email=data.email,
        verified_at=millisecond_precision(data.verified_at),
        client_ip=data.client_ip,
        user_agent=data.user_agent,
        recorded_at=millisecond_precision(now),
    )


def verification_record(
    application: ApplicationRecord, acceptance: LedgerEntry, evidence: VerificationEvidence
) -> dict[str, Any]:
    """What a verification link records: which acceptance it confirms, when, and salted hashes of by whom."""
    salt = application.personal_salt
    values = dict(zip(VERIFICATION_FIELDS, (evidence.email, evidence.client_ip, evidence.user_agent), strict=True))
    return {
        "kind": EMAIL_VERIFIED,
        "application_id": str(application.application_id),
        "acceptance_id": str(application.acceptance_id),
        "acceptance_sequence": acceptance.sequence,
        "acceptance_record_hash": acceptance.record_hash,
        "verified_at": timestamp(evidence.verified_at),
        "recorded_at": timestamp(evidence.recorded_at),
        **{f"{name}_sha256": personal_sha256(salt, name, value) for name, value in values.items()},
    }


def verification_link(
    application: ApplicationRecord, acceptance: LedgerEntry, evidence: VerificationEvidence, after: Head
) -> LedgerEntry:
    return next_link(after, verification_record(application, acceptance, evidence))


def enquiry_confirmed(event: EmailVerified, enquiry_id: uuid.UUID) -> EnquiryConfirmed:
    """An enquirer's verification, passed on for notifications (the same verification gives the same event id)."""
    return EnquiryConfirmed(
        event_id=derived_id(EnquiryConfirmed.routing_key, str(enquiry_id)),
        occurred_at=event.data.verified_at,
        correlation_id=event.correlation_id,
        data=EnquiryConfirmedData(enquiry_id=enquiry_id, verified_at=event.data.verified_at),
    )


def confirmed_event_id(application_id: uuid.UUID) -> uuid.UUID:
    return derived_id(AcceptanceConfirmed.routing_key, str(application_id))


def acceptance_confirmed(
    application: ApplicationRecord,
    acceptance: LedgerEntry,
    verification: LedgerEntry,
    evidence: VerificationEvidence,
    signer: LinkSigner | None = None,
) -> AcceptanceConfirmed:
    """The event for a recorded verification; the same verification always gives the same event (same id)."""
    recorded = agreement_recorded(application, acceptance, receipt_checkpoint(signer, acceptance)).data
    return AcceptanceConfirmed(
        event_id=confirmed_event_id(application.application_id),
        occurred_at=evidence.recorded_at,
        correlation_id=evidence.correlation_id,
        data=AcceptanceConfirmedData(
            **dict(recorded),
            verified_at=evidence.verified_at,
            verification_sequence=verification.sequence,
            verification_record_hash=verification.record_hash,
        ),
    )


async def record_verification(
    event: EmailVerified,
    applications: VerifiableApplications,
    ledger: VerificationLedger,
    now: datetime,
    signer: LinkSigner | None = None,
) -> AcceptanceConfirmed:
    """Store the evidence, append the verification link (once), move the status on; the event to announce."""
    application_id = event.data.application_id
    if application_id is None:
        raise UnknownApplication(f"email.verified {event.event_id} names an enquiry, not an application")
    application = await applications.stored_application(application_id)
    if application is None:
        raise UnknownApplication(str(application_id))
    if event.data.email.lower() != str(application.application.operator.email).lower():
        raise AddressMismatch(f"the address verified for {application_id} is not the applicant's")
    acceptance = await ledger.find(application_id)
    if acceptance is None:
        raise NotRecordedYet(str(application_id))
    evidence = await applications.keep_verification(application_id, evidence_from_event(event, now))
    verification = await ledger.append_verification(application, acceptance, evidence)
    await applications.mark_verified(application_id, verification, evidence.verified_at)
    return acceptance_confirmed(application, acceptance, verification, evidence, signer)
