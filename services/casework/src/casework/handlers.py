"""casework's use cases for its queues: open a case per application and per enquiry, keep the emails' outcomes
on the timeline, forget the erased; each decides an outcome, the chassis's runner acts on it."""

import hashlib
import logging
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Protocol

from faststream.rabbit import RabbitRouter
from pymongo.errors import ConnectionFailure

from agency_chassis.consuming import Runner
from agency_chassis.metrics import CASES_OPENED
from agency_chassis.outcomes import Attempt, Done, Outcome, RetryLater
from agency_shared.events import (
    AcceptanceConfirmed,
    AgreementRecorded,
    AgreementRecordedData,
    ApplicantErased,
    CaseStatusChanged,
    EnquiryReleased,
    NotificationSettled,
    utc_now,
)
from agency_shared.topology import (
    CASEWORK_ACCEPTANCE_CONFIRMED,
    CASEWORK_AGREEMENT_RECORDED,
    CASEWORK_APPLICANT_ERASED,
    CASEWORK_CASE_STATUS_CHANGED,
    CASEWORK_ENQUIRY_RELEASED,
    CASEWORK_NOTIFICATION_SETTLED,
)
from casework.cases import Case, HistoryEntry, case_id_for, new_case
from casework.chat import Alert, case_alert
from casework.documents.store import CaseDocuments
from casework.storage import CaseChanged, MongoCases
from casework.webhooks.sources import announce_opening, announce_status_change
from casework.webhooks.store import MongoWebhooks
from casework.workflow import CaseKind

logger = logging.getLogger(__name__)
Clock = Callable[[], datetime]
OUTAGES = (ConnectionFailure, CaseChanged)


class Alerts(Protocol):
    """Where staff alerts go (casework.chat.ChatAlerts)."""

    @property
    def enabled(self) -> bool: ...

    async def raise_alert(self, alert: Alert) -> None: ...


def application_case(data: AgreementRecordedData, limits: Mapping[str, int], now: datetime) -> Case:
    """A new application's case, in triage: the application as submitted and the evidence of its acceptance."""
    acceptance = {
        "acceptance_id": str(data.acceptance_id),
        "sequence": data.sequence,
        "record_hash": data.record_hash,
        "agreement_id": data.agreement_id,
        "agreement_version": data.agreement_version,
        "agreement_sha256": data.agreement_sha256,
        "accepted_at": data.accepted_at,
        "recorded_at": data.recorded_at,
        "human_check": data.human_check,
        "applicant_name": data.applicant_name,
        "applicant_email": data.applicant_email,
        "client_ip": data.acceptance.client_ip if data.acceptance else data.personal_data.client_ip,
        "user_agent": data.acceptance.user_agent if data.acceptance else data.personal_data.user_agent,
        "checkpoint_key": data.checkpoint.key_id if data.checkpoint else None,
    }
    opened = HistoryEntry(key="opened", kind="opened", at=now, text=f"ledger link {data.sequence}")
    return new_case(
        CaseKind.APPLICATION,
        data.application_id,
        now,
        limits,
        opened,
        locale=data.locale,
        application_id=data.application_id,
        company=data.company_name,
        account_name=data.account_name,
        client_name=data.applicant_name,
        client_email=data.applicant_email,
        application=data.application.model_dump(mode="json") if data.application else None,
        acceptance=acceptance,
    )


def enquiry_case(event: EnquiryReleased, limits: Mapping[str, int], now: datetime) -> Case:
    data = event.data
    return new_case(
        CaseKind.ENQUIRY,
        data.enquiry_id,
        now,
        limits,
        HistoryEntry(key="opened", kind="opened", at=now),
        locale=data.locale,
        enquiry_id=data.enquiry_id,
        company=data.enquiry.company,
        client_name=data.enquiry.name,
        client_email=str(data.enquiry.email),
        enquiry=data.enquiry.model_dump(mode="json"),
        email_verified_at=data.verified_at,
    )


async def open_application_case(
    event: AgreementRecorded,
    cases: MongoCases,
    limits: Mapping[str, int],
    now: Clock = utc_now,
    alerts: Alerts | None = None,
) -> Outcome:
    """Open the case of an application recorded in the ledger; one that passed no human check waits for its
    address to be verified (acceptance.confirmed), so bots open no cases."""
    if event.data.human_check == "none":
        logger.info("application %s passed no human check: its case opens once its address is verified",
                    event.data.application_id)  # fmt: skip
        return Done()
    case = application_case(event.data, limits, now())
    outcome = await _open(case, cases)
    return await alert_new_application(case, cases, alerts) if isinstance(outcome, Done) else outcome


async def confirm_application(
    event: AcceptanceConfirmed,
    cases: MongoCases,
    limits: Mapping[str, int],
    now: Clock = utc_now,
    alerts: Alerts | None = None,
) -> Outcome:
    """The applicant verified their address: note it on the case, opening the case first if it waited for this."""
    moment = now()
    case = application_case(event.data, limits, moment)
    outcome = await _open(case, cases)
    if isinstance(outcome, Done):
        outcome = await alert_new_application(case, cases, alerts)
    if not isinstance(outcome, Done):
        return outcome
    entry = HistoryEntry(key="email_verified", kind="email_verified", at=event.data.verified_at)
    try:
        await cases.set_on_subject(event.data.application_id, {"email_verified_at": event.data.verified_at}, entry)
    except OUTAGES as exc:
        return RetryLater(f"noting the verification of {event.data.application_id} failed: {exc!r}")
    return Done()


async def open_enquiry_case(
    event: EnquiryReleased, cases: MongoCases, limits: Mapping[str, int], now: Clock = utc_now
) -> Outcome:
    """Open the case of an enquiry the staff got."""
    return await _open(enquiry_case(event, limits, now()), cases)


async def _open(case: Case, cases: MongoCases) -> Outcome:
    try:
        opened = await cases.open(case)  # not for an erased subject
    except OUTAGES as exc:
        return RetryLater(f"opening the case of {case.subject_id} failed: {exc!r}")
    if opened:
        CASES_OPENED.labels(case.kind.value).inc()
        logger.info("case %s opened for %s %s", case.reference, case.kind.value, case.subject_id)
    return Done()


async def alert_new_application(case: Case, cases: MongoCases, alerts: Alerts | None) -> Outcome:
    """Tell staff in chat that an application case opened (again on a redelivery: the alert's key makes it one)."""
    if alerts is None or not alerts.enabled:  # no chat robot configured: not even a read
        return Done()
    try:
        opened = await cases.get(case.id)
        if opened is None or opened.erased_at is not None:
            return Done()  # its subject was erased
        await alerts.raise_alert(case_alert("new_application", f"new_application:{opened.id}", opened))
    except OUTAGES as exc:
        return RetryLater(f"raising the new-application alert of {case.reference} failed: {exc!r}")
    return Done()


async def alert_failed_email(event: NotificationSettled, cases: MongoCases, alerts: Alerts | None) -> Outcome:
    """Tell staff in chat that an email to a case's client failed for good (a case not open yet: nobody to tell)."""
    data = event.data
    subject = data.application_id or data.enquiry_id
    if alerts is None or not alerts.enabled or subject is None or data.state != "failed":
        return Done()
    key = f"email_failed:{hashlib.sha256(data.notification_key.encode()).hexdigest()[:32]}"
    try:
        found = [case for case in await cases.of_subject(subject) if case.erased_at is None]
        found.sort(key=lambda case: case.kind is not CaseKind.APPLICATION)  # the application's case first
        if found:
            await alerts.raise_alert(case_alert("email_failed", key, found[0]))
    except OUTAGES as exc:
        return RetryLater(f"raising the failed-email alert of {data.source_event_id} failed: {exc!r}")
    return Done()


async def note_email(event: NotificationSettled, cases: MongoCases, alerts: Alerts | None = None) -> Outcome:
    """Put an email's outcome on its case's timeline (kept aside until the case opens)."""
    data = event.data
    subject = data.application_id or data.enquiry_id
    if subject is None:
        return Done()  # a checkpoint or a staff alert: no case
    entry = HistoryEntry(
        # The notification key names the recipient: the timeline keeps only its hash, which an erasure can leave.
        key=f"email:{hashlib.sha256(data.notification_key.encode()).hexdigest()[:32]}:{data.state}",
        kind="email",
        at=data.settled_at,
        template=data.template,
        recipient=data.recipient,
        state=data.state,
        detail=data.detail,
    )
    try:
        await cases.add_to_subject(subject, entry)
    except OUTAGES as exc:
        # Not the notification key: it ends with the recipient's address, and a reason is logged and kept.
        return RetryLater(f"noting the email of {data.source_event_id} ({data.template}) failed: {exc!r}")
    return await alert_failed_email(event, cases, alerts)


async def forget_applicant(
    event: ApplicantErased, cases: MongoCases, documents: CaseDocuments | None = None
) -> Outcome:
    """Blank the personal data of the erased applicant's or enquirer's cases and delete their documents' files
    (their hashes stay)."""
    try:
        erased = await cases.erase(event.data.subject_id, event.data.erased_at)
        if documents is not None:
            for case in await cases.of_subject(event.data.subject_id):
                await documents.erase_case(case.id)
    except OUTAGES as exc:
        return RetryLater(f"erasing the cases of {event.data.subject_id} failed: {exc!r}")
    logger.info("personal data of %s erased from %d case(s)", event.data.subject_id, erased)
    return Done()


class Ports(Protocol):
    @property
    def cases(self) -> MongoCases: ...

    @property
    def chat(self) -> Alerts: ...

    @property
    def documents(self) -> CaseDocuments: ...

    @property
    def webhooks(self) -> MongoWebhooks: ...


def build_router(runner: Runner, ports: Ports, limits: Mapping[str, int], now: Clock = utc_now) -> RabbitRouter:
    router = RabbitRouter()

    async def on_agreement_recorded(event: AgreementRecorded, attempt: Attempt) -> Outcome:
        """Open the case of a recorded application (one that passed no human check: once it is verified)."""
        outcome = await open_application_case(event, ports.cases, limits, now, ports.chat)
        return await announce_opening(outcome, case_id_for(event.data.application_id), ports.cases, ports.webhooks)

    async def on_acceptance_confirmed(event: AcceptanceConfirmed, attempt: Attempt) -> Outcome:
        """Note the verified address on the application's case (opening it if it waited for this)."""
        outcome = await confirm_application(event, ports.cases, limits, now, ports.chat)
        return await announce_opening(outcome, case_id_for(event.data.application_id), ports.cases, ports.webhooks)

    async def on_enquiry_released(event: EnquiryReleased, attempt: Attempt) -> Outcome:
        """Open the case of an enquiry the staff got."""
        outcome = await open_enquiry_case(event, ports.cases, limits, now)
        enquiry_case_id = case_id_for(event.data.enquiry_id, CaseKind.ENQUIRY)
        return await announce_opening(outcome, enquiry_case_id, ports.cases, ports.webhooks)

    async def on_notification_settled(event: NotificationSettled, attempt: Attempt) -> Outcome:
        """Put an email's outcome on its case's timeline."""
        return await note_email(event, ports.cases, ports.chat)

    async def on_applicant_erased(event: ApplicantErased, attempt: Attempt) -> Outcome:
        """Blank the erased applicant's or enquirer's personal data in their cases."""
        return await forget_applicant(event, ports.cases, ports.documents)

    async def on_case_status_changed(event: CaseStatusChanged, attempt: Attempt) -> Outcome:
        """Record a signed webhook delivery of the status change to each CRM endpoint that takes it."""
        return await announce_status_change(event, ports.webhooks)

    runner.consume(router, CASEWORK_AGREEMENT_RECORDED, on_agreement_recorded)
    runner.consume(router, CASEWORK_ACCEPTANCE_CONFIRMED, on_acceptance_confirmed)
    runner.consume(router, CASEWORK_ENQUIRY_RELEASED, on_enquiry_released)
    runner.consume(router, CASEWORK_NOTIFICATION_SETTLED, on_notification_settled)
    runner.consume(router, CASEWORK_APPLICANT_ERASED, on_applicant_erased)
    runner.consume(router, CASEWORK_CASE_STATUS_CHANGED, on_case_status_changed)
    return router
