"""Events on the wechat_agency.events exchange: one envelope, one data model per event type."""

import uuid
from datetime import UTC, date, datetime
from typing import Any, ClassVar, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from agency_shared.forms import ApplicationForm, EnquiryForm, Locale

# Event ids are derived (UUIDv5) wherever the same fact may be published twice,
# so consumers can recognise a repeat by its id alone.
EVENT_NAMESPACE = uuid.UUID("6f1c7d2a-4a0e-5f35-9d0c-2b7f0e5d9a41")


def derived_id(*parts: str) -> uuid.UUID:
    """A stable UUIDv5 for the given parts, e.g. ``derived_id("agreement.recorded", application_id)``."""
    return uuid.uuid5(EVENT_NAMESPACE, "\x1f".join(parts))


def utc_now() -> datetime:
    return datetime.now(UTC)


class Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class AcceptanceEvidence(Model):
    """What the server observed when the applicant accepted the agreement."""

    agreement_id: str
    agreement_version: str
    agreement_sha256: str
    accepted_at: AwareDatetime
    client_ip: str
    user_agent: str


# Which human check a submission passed at intake: "altcha" (a valid, unused ALTCHA proof-of-work
# solution), "none" (no valid solution: no JavaScript, an API client, a wrong, expired or reused one),
# "off" (intake ran with CAPTCHA=off). Intake always states it; a message from before the check
# existed does not (``None``: not recorded), and its staff were emailed at once, so it is never held.
HumanCheck = Literal["altcha", "none", "off"]


class ApplicationSubmittedData(Model):
    application_id: uuid.UUID
    application: ApplicationForm
    acceptance: AcceptanceEvidence
    locale: Locale
    human_check: HumanCheck | None = None  # None: not recorded (a message from before the check)


class PersonalData(Model):
    """The applicant's personal data, kept outside the hashed record (which holds each field's salted hash).

    ``salt`` is random per acceptance; see ``receipt_verifier.personal_sha256`` for the hash.
    """

    salt: str
    applicant_name: str
    applicant_email: str
    applicant_phone: str
    client_ip: str
    user_agent: str


class Checkpoint(Model):
    """Agreements' signed statement that link ``sequence`` of the ledger hashes to ``record_hash`` (as of ``time``).

    ``signature`` is the base64 Ed25519 signature, by the key named ``key_id``, of
    ``agency_shared.checkpoints.checkpoint_message`` over the other four fields.
    """

    sequence: int
    record_hash: str
    time: str
    key_id: str
    signature: str


class AgreementRecordedData(Model):
    application_id: uuid.UUID
    acceptance_id: uuid.UUID
    sequence: int
    prev_hash: str
    record_hash: str
    # The canonical record that record_hash covers (see agency_shared.chain).
    record: dict[str, Any]
    agreement_id: str
    agreement_version: str
    agreement_sha256: str
    accepted_at: AwareDatetime
    recorded_at: AwareDatetime
    applicant_name: str
    applicant_email: str
    account_name: str
    company_name: str
    locale: Locale
    # What the record's salted hashes were made from, so the client's receipt can be checked offline.
    personal_data: PersonalData
    # The human check the application passed at intake (from its application.submitted); None: not recorded.
    human_check: HumanCheck | None = None
    # The application as submitted and what intake observed of the acceptance: the staff's email about a new
    # application follows this event (application.submitted has one consumer, agreements; see topology).
    # None: published by an agreements from before this release, whose notifications emailed the staff from
    # application.submitted itself (optional for that one release, so no upgrade order loses an email).
    application: ApplicationForm | None = None
    acceptance: AcceptanceEvidence | None = None
    # The acceptance link signed by the ledger key (the receipt carries it); None: from before checkpoints.
    checkpoint: Checkpoint | None = None


class EmailVerifiedData(Model):
    """A submitter confirmed their address through the link emailed to it (what intake observed).

    Exactly one of ``application_id`` (an applicant: agreements records it beside the acceptance)
    and ``enquiry_id`` (an enquirer: notifications releases the staff emails it held) is set.
    """

    application_id: uuid.UUID | None = None
    enquiry_id: uuid.UUID | None = None
    # The address the link was sent to (carried, signed, in the link).
    email: str
    verified_at: AwareDatetime
    # Evidence of the confirming request, as for the acceptance.
    client_ip: str
    user_agent: str

    @model_validator(mode="after")
    def _one_subject(self) -> "EmailVerifiedData":
        if (self.application_id is None) == (self.enquiry_id is None):
            raise ValueError("exactly one of application_id and enquiry_id")
        return self


class AcceptanceConfirmedData(AgreementRecordedData):
    """agreement.recorded's data once the applicant's address is verified: the receipt is owed now."""

    verified_at: AwareDatetime
    # The ledger link that records the verification as evidence beside the acceptance.
    verification_sequence: int
    verification_record_hash: str


class EnquiryConfirmedData(Model):
    """An enquirer confirmed their address (email.verified naming an enquiry, passed on by agreements)."""

    enquiry_id: uuid.UUID
    verified_at: AwareDatetime


class ApplicantErasedData(Model):
    """Whose personal data was erased: exactly one of ``application_id`` (an applicant) and ``enquiry_id`` (an
    enquirer)."""

    application_id: uuid.UUID | None = None
    enquiry_id: uuid.UUID | None = None
    # The events about this application or enquiry whose emails went to its submitter: their records forget
    # the address.
    event_ids: tuple[uuid.UUID, ...]
    erased_at: AwareDatetime

    @model_validator(mode="after")
    def _one_subject(self) -> "ApplicantErasedData":
        if (self.application_id is None) == (self.enquiry_id is None):
            raise ValueError("exactly one of application_id and enquiry_id")
        return self

    @property
    def subject_id(self) -> uuid.UUID:
        """The application's or the enquiry's id (UUIDs: the two never clash)."""
        subject = self.application_id or self.enquiry_id
        assert subject is not None  # the validator saw to it
        return subject


class NotificationSettledData(Model):
    """An email reached a final state: sent (the SMTP server accepted it) or failed for good."""

    notification_key: str
    source_event_id: uuid.UUID
    source_event_type: str
    application_id: uuid.UUID | None = None
    enquiry_id: uuid.UUID | None = None
    template: str
    recipient: str
    state: Literal["sent", "failed"]
    detail: str | None = None
    settled_at: AwareDatetime


class LedgerCheckpointedData(Model):
    """A checkpoint of the ledger's head, to be kept outside the system (the anchor mailbox)."""

    checkpoint: Checkpoint


class EnquiryReceivedData(Model):
    enquiry_id: uuid.UUID
    enquiry: EnquiryForm
    received_at: AwareDatetime
    locale: Locale
    human_check: HumanCheck | None = None  # None: not recorded (a message from before the check)


class EnquiryReleasedData(Model):
    """An enquiry reached the staff: at once (it passed the human check), or once its address was verified."""

    enquiry_id: uuid.UUID
    enquiry: EnquiryForm
    received_at: AwareDatetime
    locale: Locale
    verified_at: AwareDatetime | None = None  # None: released at once, not held for a verification


# Why Tencent rejected an application, as the client's email names it (fixed text per code, never staff's words).
RejectionReason = Literal[
    "illegible_seal", "missing_pages", "naming_rules", "inconsistent_details", "missing_statements", "other"
]


class CaseClient(Model):
    """Whom a case's client emails go to (the applicant or the enquirer); absent once their data is erased."""

    name: str
    email: str


class CaseStatusChangedData(Model):
    """A staff member moved a case (casework). Exactly one of ``application_id`` and ``enquiry_id`` is set.

    On the wire the two statuses are ``from`` and ``to``. What the client is told is fixed text chosen by
    ``to`` (and ``rejection_reason``, ``tencent_deadline``, ``fee``, ``expires_at``), never ``reason``: that is the
    staff's note.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", validate_by_name=True, serialize_by_alias=True)

    case_id: uuid.UUID
    application_id: uuid.UUID | None = None
    enquiry_id: uuid.UUID | None = None
    previous: str = Field(alias="from")
    current: str = Field(alias="to")
    action: str
    reason: str
    staff_member: str
    changed_at: AwareDatetime
    locale: Locale
    client: CaseClient | None = None
    # The case owner's display name, for "your consultant N" (None: no owner yet).
    consultant: str | None = None
    account_name: str | None = None
    # The deadline of Tencent's latest request for information (not the verification's expiry).
    tencent_deadline: date | None = None
    rejection_reason: RejectionReason | None = None
    fee: str | None = None  # e.g. "USD 99", from casework's settings when the fee is asked for
    # The verification's expiry, for renewal news (None: not verified yet, or a producer that does not say).
    expires_at: date | None = None
    # The case's current portal-link generation, for the client's personal link in the email: set when the event
    # names a client (None: no client, or a producer from before links were put in the case's news).
    portal_generation: int | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _one_subject(self) -> "CaseStatusChangedData":
        if (self.application_id is None) == (self.enquiry_id is None):
            raise ValueError("exactly one of application_id and enquiry_id")
        return self


# What a case reminder is about (casework's ``reminders.ReminderKind``): the client's chasers and renewal reminder,
# the owner's deadline warning, overdue and lapse alerts.
CaseReminderKind = Literal["documents_chaser", "fee_chaser", "renewal", "tencent_deadline", "overdue", "lapse"]


class CaseReminderDueData(Model):
    """A reminder casework's scheduler owes, to the client or to the case's owner (``recipient``); sent once: its
    event id is derived from ``reminder_key``. Exactly one of ``application_id`` and ``enquiry_id`` is set.

    The client's name and address are in ``client`` only for a client's reminder, the owner's address in
    ``owner_email`` only for the owner's (None: the case has no owner with an account; the staff addresses get it).
    What anyone is told is fixed text chosen by ``kind`` and ``status`` with the dates here; no staff note travels.
    """

    reminder_key: str
    case_id: uuid.UUID
    application_id: uuid.UUID | None = None
    enquiry_id: uuid.UUID | None = None
    reference: str
    kind: CaseReminderKind
    recipient: Literal["client", "owner"]
    due_at: AwareDatetime  # when the reminder fell due
    days: int  # days after the status began (chasers), before the deadline or expiry (warnings, renewal)
    locale: Locale  # the client's language
    status: str
    status_since: AwareDatetime
    client: CaseClient | None = None
    owner_email: str | None = None
    consultant: str | None = None  # the owner's display name
    account_name: str | None = None
    tencent_deadline: date | None = None
    expires_at: date | None = None
    time_limit: AwareDatetime | None = None  # the status's time limit that passed (overdue)
    fee: str | None = None
    console_link: str | None = None  # the case in the console (owner's reminders)
    # The case's current portal-link generation, for the client's personal link in a client's reminder (None: an
    # owner's reminder, which never carries the client's link, or a producer from before links were put in them).
    portal_generation: int | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _consistent(self) -> "CaseReminderDueData":
        if (self.application_id is None) == (self.enquiry_id is None):
            raise ValueError("exactly one of application_id and enquiry_id")
        if self.recipient == "owner" and self.client is not None:
            raise ValueError("an owner's reminder carries no client")
        if self.recipient == "owner" and self.portal_generation is not None:
            raise ValueError("an owner's reminder carries no portal link")
        if self.recipient == "client" and self.owner_email is not None:
            raise ValueError("a client's reminder carries no owner address")
        return self


class DocumentReceivedData(Model):
    """A client's file passed the portal's checks and is stored (casework): what identifies it, for the evidence
    ledger. No name and no content: the hash, the size and the type."""

    application_id: uuid.UUID
    case_id: uuid.UUID
    document_id: str  # the file's id in casework's GridFS bucket
    item: str  # the checklist item, e.g. ``certificate_of_incorporation``
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size: int = Field(ge=0)
    content_type: Literal["application/pdf", "image/jpeg", "image/png"]
    received_at: AwareDatetime


class Event(Model):
    """The envelope every message carries; subclasses fix ``event_type`` and ``data``."""

    event_type: str
    schema_version: int = 1
    event_id: uuid.UUID
    occurred_at: AwareDatetime = Field(default_factory=utc_now)
    correlation_id: str

    routing_key: ClassVar[str]

    def about_application(self) -> uuid.UUID | None:
        """The application this event is about, if it names one (log lines carry it)."""
        return None


class ApplicationSubmitted(Event):
    """An applicant submitted the Official Account application and accepted the Service Agreement (intake)."""

    routing_key: ClassVar[str] = "application.submitted"
    event_type: Literal["application.submitted"] = "application.submitted"
    data: ApplicationSubmittedData

    def about_application(self) -> uuid.UUID | None:
        return self.data.application_id


class AgreementRecorded(Event):
    """An application and its acceptance were stored as the next link of the acceptance ledger (agreements)."""

    routing_key: ClassVar[str] = "agreement.recorded"
    event_type: Literal["agreement.recorded"] = "agreement.recorded"
    data: AgreementRecordedData

    def about_application(self) -> uuid.UUID | None:
        return self.data.application_id


class EmailVerified(Event):
    """An applicant or an enquirer confirmed their email address by the link sent to it (intake); the id is
    derived from the application or enquiry, so a double click is one event."""

    routing_key: ClassVar[str] = "email.verified"
    event_type: Literal["email.verified"] = "email.verified"
    data: EmailVerifiedData

    def about_application(self) -> uuid.UUID | None:
        return self.data.application_id


class AcceptanceConfirmed(Event):
    """The verification is recorded in the ledger beside the acceptance: the client gets the receipt (agreements)."""

    routing_key: ClassVar[str] = "acceptance.confirmed"
    event_type: Literal["acceptance.confirmed"] = "acceptance.confirmed"
    data: AcceptanceConfirmedData

    def about_application(self) -> uuid.UUID | None:
        return self.data.application_id


class EnquiryReceived(Event):
    """Someone sent the "Get in touch" enquiry form (intake)."""

    routing_key: ClassVar[str] = "enquiry.received"
    event_type: Literal["enquiry.received"] = "enquiry.received"
    data: EnquiryReceivedData


class EnquiryConfirmed(Event):
    """An enquirer's address is verified: notifications releases the enquiry it held (agreements, the one consumer
    of intake's email.verified, passes an enquirer's verification on as this event)."""

    routing_key: ClassVar[str] = "enquiry.confirmed"
    event_type: Literal["enquiry.confirmed"] = "enquiry.confirmed"
    data: EnquiryConfirmedData


class NotificationSettled(Event):
    """An email reached its final state, sent or failed for good (notifications)."""

    routing_key: ClassVar[str] = "notification.settled"
    event_type: Literal["notification.settled"] = "notification.settled"
    data: NotificationSettledData

    def about_application(self) -> uuid.UUID | None:
        return self.data.application_id


class ApplicantErased(Event):
    """Staff erased an applicant's or an enquirer's personal data; every service forgets what it kept of it
    (agreements)."""

    routing_key: ClassVar[str] = "applicant.erased"
    event_type: Literal["applicant.erased"] = "applicant.erased"
    data: ApplicantErasedData

    def about_application(self) -> uuid.UUID | None:
        return self.data.application_id


class LedgerCheckpointed(Event):
    """Agreements signed a checkpoint of the acceptance ledger; it is sent out of the system (agreements)."""

    routing_key: ClassVar[str] = "ledger.checkpointed"
    event_type: Literal["ledger.checkpointed"] = "ledger.checkpointed"
    data: LedgerCheckpointedData


class EnquiryReleased(Event):
    """An enquiry reached the staff (notifications, the one consumer of enquiry.received): casework opens its case.
    The id is derived from the enquiry, so a repeat is one event."""

    routing_key: ClassVar[str] = "enquiry.released"
    event_type: Literal["enquiry.released"] = "enquiry.released"
    data: EnquiryReleasedData


class CaseStatusChanged(Event):
    """A staff member moved an application's or an enquiry's case to another status (casework)."""

    routing_key: ClassVar[str] = "case.status-changed"
    event_type: Literal["case.status-changed"] = "case.status-changed"
    data: CaseStatusChangedData

    def about_application(self) -> uuid.UUID | None:
        return self.data.application_id


class CaseReminderDue(Event):
    """casework's scheduler owes a case reminder (a chaser, a deadline warning, a renewal reminder, an alert)."""

    routing_key: ClassVar[str] = "case.reminder-due"
    event_type: Literal["case.reminder-due"] = "case.reminder-due"
    data: CaseReminderDueData


class DocumentReceived(Event):
    """A client uploaded a document through the portal and casework kept it; agreements adds its hash to the
    evidence ledger. The id is derived from the file, so a repeat is one event."""

    routing_key: ClassVar[str] = "document.received"
    event_type: Literal["document.received"] = "document.received"
    data: DocumentReceivedData


class PortalLinkRequestedData(Model):
    """A client asked for a new link to their case's portal page (casework).

    ``portal_generation`` is the case's current link generation: notifications signs the link when it composes
    the email, so no working link sits in the broker's queues (or their dead letters). Events of an earlier
    casework carry the signed ``link`` and its ``expires_at`` instead; exactly one of ``link`` and
    ``portal_generation`` is set. Exactly one of ``application_id`` and ``enquiry_id`` is set (what the case is
    about: an erasure of it stops the email)."""

    case_id: uuid.UUID
    application_id: uuid.UUID | None = None
    enquiry_id: uuid.UUID | None = None
    reference: str
    email: str
    name: str
    locale: Locale
    portal_generation: int | None = Field(default=None, ge=0)
    link: str | None = None
    expires_at: AwareDatetime | None = None
    requested_at: AwareDatetime

    @model_validator(mode="after")
    def _one_subject(self) -> "PortalLinkRequestedData":
        if (self.application_id is None) == (self.enquiry_id is None):
            raise ValueError("exactly one of application_id and enquiry_id")
        if (self.link is None) == (self.portal_generation is None):
            raise ValueError("exactly one of link and portal_generation")
        if (self.link is None) != (self.expires_at is None):
            raise ValueError("expires_at comes with link, and only with it")
        return self


class PortalLinkRequested(Event):
    """A client who lost their portal link asked for a new one, for one of their open cases (casework)."""

    routing_key: ClassVar[str] = "portal.link-requested"
    event_type: Literal["portal.link-requested"] = "portal.link-requested"
    data: PortalLinkRequestedData


class AgreementReacceptedData(Model):
    """A client accepted the current agreement version in the portal, replacing an older acceptance: what the
    server observed, like the first acceptance's evidence."""

    application_id: uuid.UUID
    case_id: uuid.UUID
    agreement_id: str
    agreement_version: str
    # The SHA-256 of the exact text the portal showed (agreements checks it is the version's).
    agreement_sha256: str
    accepted_at: AwareDatetime
    client_ip: str
    user_agent: str
    locale: Locale


class AgreementReaccepted(Event):
    """A client re-accepted the agreement in its current version (casework); agreements records it in the ledger.
    The id is derived from the application and the version, so a repeat is one event."""

    routing_key: ClassVar[str] = "agreement.reaccepted"
    event_type: Literal["agreement.reaccepted"] = "agreement.reaccepted"
    data: AgreementReacceptedData

    def about_application(self) -> uuid.UUID | None:
        return self.data.application_id
