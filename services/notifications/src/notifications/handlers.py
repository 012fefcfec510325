"""The notifications service's use cases: which emails each event causes, sending them, and deciding the outcome.

Each email that reaches a final state is announced as notification.settled (again on every
delivery: the receiver drops repeats), so no outcome is lost if a publish fails.

A submission that passed no human check (``human_check == "none"``) is held (``notifications.holding``):
its staff emails go only once its address is verified, an application's on acceptance.confirmed,
an enquiry's on enquiry.confirmed; the enquirer gets a verification link instead of the autoresponse.
"""

import json
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from functools import partial
from typing import Literal, Protocol, TypeVar

from faststream.rabbit import RabbitRouter
from pymongo.errors import ConnectionFailure

from agency_chassis.consuming import Runner
from agency_chassis.email_verification import VerificationTokens
from agency_chassis.outcomes import Attempt, Done, GiveUp, Outcome, RetryLater
from agency_chassis.portal_links import PortalLinks
from agency_shared.cases import case_id_of
from agency_shared.events import (
    AcceptanceConfirmed,
    AgreementRecorded,
    ApplicationSubmitted,
    CaseReminderDue,
    CaseReminderDueData,
    CaseStatusChanged,
    CaseStatusChangedData,
    EnquiryConfirmed,
    EnquiryReceived,
    EnquiryReleased,
    EnquiryReleasedData,
    Event,
    LedgerCheckpointed,
    NotificationSettled,
    NotificationSettledData,
    PortalLinkRequested,
    derived_id,
    utc_now,
)
from agency_shared.forms import Locale
from agency_shared.topology import (
    NOTIFICATIONS_ACCEPTANCE_CONFIRMED,
    NOTIFICATIONS_AGREEMENT_RECORDED,
    NOTIFICATIONS_CASE_REMINDER_DUE,
    NOTIFICATIONS_CASE_STATUS_CHANGED,
    NOTIFICATIONS_ENQUIRY_CONFIRMED,
    NOTIFICATIONS_ENQUIRY_RECEIVED,
    NOTIFICATIONS_LEDGER_CHECKPOINTED,
    NOTIFICATIONS_PORTAL_LINK_REQUESTED,
)
from notifications.case_reminders import CLIENT_KINDS, client_reminder, owner_reminder
from notifications.case_status import client_update
from notifications.daily_cap import DailyCap
from notifications.delivery import DeliveryReport, Ledger, OutgoingEmail, count_outcomes, deliver, settled_outcomes
from notifications.emails import (
    case_reminder,
    case_status,
    client_confirmation,
    email_verification,
    enquiry_autoresponse,
    enquiry_verification,
    ledger_checkpoint,
    portal_link,
    staff_case_reminder,
    staff_client_unreachable,
    staff_new_application,
    staff_new_enquiry,
)
from notifications.holding import HeldSubmissions
from notifications.mailer import Mailer
from notifications.settings import NotificationsSettings

logger = logging.getLogger(__name__)
E = TypeVar("E", bound=Event)
Clock = Callable[[], datetime]
# Composes one staff address's email about an event: (event, staff address, sender, staff language,
# when the address was verified if the submission was held until then).
StaffEmail = Callable[[E, str, str, Locale, datetime | None], EmailMessage]

# What the staff's email about a new application is made from: agreement.recorded (a document held by an
# earlier version may hold the application.submitted it was made from then).
Submission = AgreementRecorded | ApplicationSubmitted

# Emails to clients: when one fails for good, the staff are told (a lead must not be lost silently).
CLIENT_TEMPLATES = frozenset(
    {"email_verification", "client_confirmation", "enquiry_autoresponse", "enquiry_verification", "case_status",
     "case_reminder",
     "portal_link"}
)  # fmt: skip
# The client emails that count against the address's daily cap: those anyone who types an address into a form
# can make us send. Not the confirmation with the receipt: it goes only after the address's owner clicked the
# verification link. Nor a case's news: only a staff member moving the case sends it, and a busy day on a case
# must not silence it (nor use up the day's verification links). A new portal link counts: anyone can ask for one.
# A case's reminders do not: casework's scheduler sends each once, on a fixed schedule.
CAPPED_TEMPLATES = CLIENT_TEMPLATES - {"client_confirmation", "case_status", "case_reminder"}


@dataclass(frozen=True, slots=True)
class Subject:
    """What an event's emails are about: an application, an enquiry, or a checkpoint of the ledger."""

    kind: Literal["application_id", "enquiry_id", "checkpoint"]
    id: uuid.UUID

    @property
    def application_id(self) -> uuid.UUID | None:
        return self.id if self.kind == "application_id" else None

    @property
    def enquiry_id(self) -> uuid.UUID | None:
        return self.id if self.kind == "enquiry_id" else None


@dataclass(frozen=True, slots=True)
class Notice:
    """The emails one event causes."""

    event: Event
    subject: Subject
    emails: tuple[OutgoingEmail, ...]
    # Whether a client email that fails for good alerts the staff: not for a held submission, which
    # the staff must not hear of before its address is verified (nor be flooded with by a bot).
    alerts: bool = True
    # Whether a client email the daily cap refused alerts the staff too: an application's verification
    # email, when the staff were told of the application (it passed a human check), so they can follow up.
    alerts_refused: bool = False


# The staff alerts owed for a client email that failed for good (with why it failed).
AlertFor = Callable[[Notice, OutgoingEmail, str], list[OutgoingEmail]]


async def send_notice(
    notice: Notice, attempt: Attempt, ledger: Ledger, mailer: Mailer, alert_for: AlertFor, cap: DailyCap | None = None
) -> Outcome:
    """Send the notice's emails (and the staff alerts a failed client email calls for); decide what comes next.

    A client email over its address's daily ``cap`` is settled as failed (recorded, not retried, and no
    alert unless the notice ``alerts_refused``).
    """
    event = notice.event
    try:
        if await ledger.is_erased(str(notice.subject.id)):
            # The applicant or enquirer asked to be forgotten: nothing about them goes out any more, not
            # even a staff alert (it would repeat their name and address). Done: acked, not dead-lettered.
            logger.info("%s %s: submitter erased, nothing sent", event.event_type, event.event_id)
            return Done()
        # An operator's replay means: try what failed for good again.
        report = await deliver(
            event,
            list(notice.emails),
            ledger,
            mailer,
            attempt.last,
            retry_failed=attempt.replayed,
            cap=cap,
            sent_before=attempt.memo,
        )
        if report.outage is not None:
            return outage(event, report)
        alerts = [
            alert
            for email, reason in (await client_failures(notice, report, ledger) if notice.alerts else [])
            for alert in alert_for(notice, email, reason)
        ]
        if alerts:
            report.merge(await deliver(event, alerts, ledger, mailer, attempt.last, sent_before=attempt.memo))
            if report.outage is not None:
                return outage(event, report)
    except ConnectionFailure as exc:
        return RetryLater(f"the notification ledger is unreachable: {exc!r}")
    count_outcomes(report)
    return decide(notice, report, attempt)


def outage(event: Event, report: DeliveryReport) -> RetryLater:
    """The ledger went away mid-delivery: retry, carrying what the SMTP server accepted meanwhile, so the
    next attempt records those emails as sent instead of sending them again."""
    memo = {email.key(event): reply for email, reply in report.unrecorded}
    if memo:
        logger.warning(
            "%s %s: %d email(s) sent but not yet recorded; the retry records them", event.event_type, event.event_id,
            len(memo),
        )  # fmt: skip
    return RetryLater(report.outage or "the notification ledger is unreachable", memo=memo)


async def client_failures(notice: Notice, report: DeliveryReport, ledger: Ledger) -> list[tuple[OutgoingEmail, str]]:
    """The client emails that failed for good, now or in an earlier delivery (their alert may still be owed);
    and those the daily cap refused, if the notice ``alerts_refused``."""
    failed = [(email, reason) for email, reason in report.failed if email.template in CLIENT_TEMPLATES]
    if notice.alerts_refused:
        failed += [(email, reason) for email, reason in report.refused if email.template in CLIENT_TEMPLATES]
    owed = ("failed", "refused") if notice.alerts_refused else ("failed",)
    for email, state in report.skipped:
        if state in owed and email.template in CLIENT_TEMPLATES:
            failed.append((email, await ledger.reason(email.key(notice.event)) or "unknown"))
    return failed


def decide(notice: Notice, report: DeliveryReport, attempt: Attempt) -> Outcome:
    """Announce every settled email; retry while some are unfinished; dead-letter the event if one failed for good."""
    event = notice.event
    settled = tuple(settled_event(notice, email, state, detail) for email, state, detail in settled_outcomes(report))
    if report.unfinished:
        return RetryLater(
            f"{len(report.unfinished)} email(s) of {event.event_type} {event.event_id} unfinished", settled
        )
    # Also an email that failed for good in an earlier delivery of this message (the retry was
    # for its staff alert): the event still belongs in the DLQ, where an operator can replay it.
    failed = len(report.failed) + sum(1 for _, state in report.skipped if state == "failed")
    if failed:
        return GiveUp(
            f"{failed} email(s) of {event.event_type} {event.event_id} failed for good after attempt {attempt.number}",
            settled,
        )
    logger.info(
        "%s %s: %d sent, %d already settled", event.event_type, event.event_id, len(report.sent), len(report.skipped)
    )
    return Done(settled)


def settled_event(
    notice: Notice, email: OutgoingEmail, state: Literal["sent", "failed"], detail: str | None
) -> NotificationSettled:
    event = notice.event
    key = email.key(event)
    return NotificationSettled(
        event_id=derived_id(NotificationSettled.routing_key, key, state),
        correlation_id=event.correlation_id,
        data=NotificationSettledData(
            notification_key=key,
            source_event_id=event.event_id,
            source_event_type=event.event_type,
            application_id=notice.subject.application_id,
            enquiry_id=notice.subject.enquiry_id,
            template=email.template,
            recipient=email.recipient.lower(),
            state=state,
            detail=detail,
            settled_at=utc_now(),
        ),
    )


def composed(event: Event, template: str, recipient: str, compose: Callable[[], EmailMessage]) -> OutgoingEmail:
    """The email, or, when composing it fails, an email that delivery records as failed for good.

    One email that cannot be built (an address no header can hold, a template error) must not
    stop the event's other emails, nor make the event crash and retry until dead-lettered.
    """
    try:
        return OutgoingEmail(template, recipient, compose())
    except Exception as exc:  # whatever it was, it is this one email's failure
        logger.warning(
            "%s of %s %s could not be composed (%s)", template, event.event_type, event.event_id, type(exc).__name__
        )
        return OutgoingEmail(template, recipient, None, f"{type(exc).__name__}: {exc}"[:500])


def failed_client(failed: OutgoingEmail) -> tuple[tuple[str, str], str]:
    """(name, address) of the client a failed email was for, and what it was (its subject, else its template)."""
    if failed.message is None:
        return ("", failed.recipient), failed.template
    client = failed.message["To"].addresses[0]
    return (client.display_name, client.addr_spec), str(failed.message["Subject"])


def staff_alerts(settings: NotificationsSettings) -> AlertFor:
    def alert_for(notice: Notice, failed: OutgoingEmail, reason: str) -> list[OutgoingEmail]:
        subject = (notice.subject.kind, str(notice.subject.id))
        client, failed_subject = failed_client(failed)
        return [
            composed(
                notice.event,
                "staff_client_unreachable",
                staff,
                lambda staff=staff: staff_client_unreachable(  # type: ignore[misc]
                    notice.event,
                    subject,
                    client,
                    failed_subject,
                    reason,
                    staff,
                    settings.mail_from,
                    settings.staff_language,
                ),
            )
            for staff in settings.staff_emails
        ]

    return alert_for


class Emails:
    """Which emails each event causes, composed for the configured sender, staff and language."""

    def __init__(self, settings: NotificationsSettings, now: Callable[[], datetime] = utc_now) -> None:
        self._mail_from = settings.mail_from
        self._staff = settings.staff_emails
        self._staff_locale = settings.staff_language
        self._anchors = settings.ledger_anchor_emails
        self._verify_base = f"{str(settings.intake_base_url).rstrip('/')}/verify/"
        self._verification_days = settings.email_verification_days
        self._tokens = VerificationTokens(
            settings.email_verification_secret.get_secret_value(), timedelta(days=settings.email_verification_days)
        )
        self._now = now
        self._portal = PortalLinks(
            settings.portal_link_secret.get_secret_value(), timedelta(days=settings.portal_link_days)
        )
        self._portal_url = settings.portal_url.rstrip("/")

    def of_submission(self, event: Submission, verified_at: datetime | None = None) -> Notice:
        """The application to every staff address (``verified_at``: held until its address was verified then)."""
        emails = self._to_staff(event, "staff_new_application", staff_new_application, verified_at)
        return Notice(event, Subject("application_id", event.data.application_id), emails)

    def of_recording(self, event: AgreementRecorded) -> Notice:
        """The applicant's address is not verified yet: it gets only the fixed text with the link that verifies it."""
        data = event.data
        email = composed(
            event,
            "email_verification",
            data.applicant_email,
            lambda: email_verification(
                event, self.verification_link(event), self._verification_days, self._mail_from, self._staff
            ),
        )
        # Refused by the daily cap, it alerts the staff if they were told of the application (it passed a
        # human check, or came before the check was recorded); a held one's refusal stays silent.
        told = data.human_check != "none"
        return Notice(event, Subject("application_id", data.application_id), (email,), alerts_refused=told)

    def verification_link(self, event: AgreementRecorded) -> str:
        """A fresh signed token each time the email is composed; every one of them works until it expires."""
        data = event.data
        return self._verify_base + self._tokens.issue(
            data.application_id, data.applicant_email, data.locale, self._now()
        )

    def of_confirmation(self, event: AcceptanceConfirmed) -> Notice:
        email = composed(
            event,
            "client_confirmation",
            event.data.applicant_email,
            lambda: client_confirmation(event, self._mail_from, self._staff, self.portal_link(event)),
        )
        return Notice(event, Subject("application_id", event.data.application_id), (email,))

    def portal_link(self, event: AcceptanceConfirmed) -> str:
        """The client's personal portal link (its first generation) to the case casework opens for the application:
        signed afresh each time the email is composed, each valid for PORTAL_LINK_DAYS."""
        data = event.data
        return self._portal_link(case_id_of(data.application_id), 0, data.locale)

    def case_portal_link(self, data: CaseStatusChangedData | CaseReminderDueData) -> str | None:
        """The client's personal link to the case of their news or reminder, of the generation casework says is
        current (None: the event names none, e.g. one from before links were put in these emails)."""
        if data.portal_generation is None:
            return None
        return self._portal_link(data.case_id, data.portal_generation, data.locale)

    def _portal_link(self, case_id: uuid.UUID, generation: int, locale: Locale, now: datetime | None = None) -> str:
        token = self._portal.issue(case_id, generation, locale, now or self._now())
        return f"{self._portal_url}/portal/open?t={token}"

    def of_portal_link(self, event: PortalLinkRequested) -> Notice:
        """The new link a client asked for, to their case's address, signed now for the case's current generation
        (an earlier casework's event carries its signed link); a failure alerts nobody (anyone can ask)."""
        data = event.data

        def email_with_link() -> EmailMessage:
            if data.link is not None and data.expires_at is not None:
                return portal_link(event, data.link, data.expires_at, self._mail_from, self._staff)
            now = self._now()
            link = self._portal_link(data.case_id, data.portal_generation or 0, data.locale, now)
            return portal_link(event, link, now + self._portal.valid_for, self._mail_from, self._staff)

        email = composed(event, "portal_link", data.email, email_with_link)
        subject = (
            Subject("application_id", data.application_id)
            if data.application_id is not None
            else Subject("enquiry_id", data.case_id if data.enquiry_id is None else data.enquiry_id)
        )
        return Notice(event, subject, (email,), alerts=False)

    def of_enquiry(self, event: EnquiryReceived) -> Notice:
        staff_emails = self._to_staff(event, "staff_new_enquiry", staff_new_enquiry, None)
        autoresponse = composed(
            event,
            "enquiry_autoresponse",
            str(event.data.enquiry.email),
            lambda: enquiry_autoresponse(event, self._mail_from, self._staff),
        )
        return Notice(event, Subject("enquiry_id", event.data.enquiry_id), (*staff_emails, autoresponse))

    def of_held_enquiry(self, event: EnquiryReceived, verified_at: datetime | None = None) -> Notice:
        """A held enquiry: the enquirer gets fixed text with a verification link instead of the autoresponse;
        the staff get the enquiry only if its address is verified already (``verified_at``)."""
        verification = composed(
            event,
            "enquiry_verification",
            str(event.data.enquiry.email),
            lambda: enquiry_verification(
                event, self.enquiry_verification_link(event), self._verification_days, self._mail_from, self._staff
            ),
        )
        staff_emails = () if verified_at is None else self.of_released_enquiry(event, verified_at).emails
        return Notice(event, Subject("enquiry_id", event.data.enquiry_id), (verification, *staff_emails), alerts=False)

    def of_released_enquiry(self, event: EnquiryReceived, verified_at: datetime) -> Notice:
        """A held enquiry whose address was verified: the staff emails it would have caused at once."""
        emails = self._to_staff(event, "staff_new_enquiry", staff_new_enquiry, verified_at)
        return Notice(event, Subject("enquiry_id", event.data.enquiry_id), emails)

    def of_case_status(self, event: CaseStatusChanged) -> Notice | None:
        """The client's news of their case's new status; None when there is none to give (a status the client is
        not told of, or no client: not known, or erased)."""
        data = event.data
        update = client_update(data)
        if data.client is None or update is None:
            return None
        email = composed(
            event,
            "case_status",
            data.client.email,
            lambda: case_status(event, update, self._mail_from, self._staff, self.case_portal_link(data)),
        )
        # The settled email names the case's application or enquiry, so casework puts it on the case's timeline.
        if data.application_id is not None:
            return Notice(event, Subject("application_id", data.application_id), (email,))
        assert data.enquiry_id is not None  # CaseStatusChangedData names exactly one of the two
        return Notice(event, Subject("enquiry_id", data.enquiry_id), (email,))

    def of_case_reminder(self, event: CaseReminderDue) -> Notice | None:
        """A case reminder: to the client (in their language; None if the event names none), or to the case's owner
        (in the staff's language; every staff address when the case has no owner with an account)."""
        data = event.data
        if data.recipient == "client" or data.kind in CLIENT_KINDS:
            if data.client is None or data.kind not in CLIENT_KINDS:
                return None
            text = client_reminder(data)
            emails: tuple[OutgoingEmail, ...] = (
                composed(event, "case_reminder", data.client.email,
                         lambda: case_reminder(event, text, self._mail_from, self._staff, self.case_portal_link(data))),
            )  # fmt: skip
        else:
            text = owner_reminder(data, self._staff_locale)
            owners = (data.owner_email,) if data.owner_email else self._staff
            emails = tuple(
                composed(event, "staff_case_reminder", owner,
                         partial(staff_case_reminder, event, text, owner, self._mail_from, self._staff_locale))
                for owner in owners
            )  # fmt: skip
        # The settled email names the case's application or enquiry, so casework puts it on the case's timeline.
        if data.application_id is not None:
            return Notice(event, Subject("application_id", data.application_id), emails)
        assert data.enquiry_id is not None  # CaseReminderDueData names exactly one of the two
        return Notice(event, Subject("enquiry_id", data.enquiry_id), emails)

    def of_checkpoint(self, event: LedgerCheckpointed) -> Notice:
        """The signed checkpoint to each archive mailbox (LEDGER_ANCHOR_EMAILS), where no database writer reaches."""
        emails = tuple(
            composed(event, "ledger_checkpoint", archive, partial(ledger_checkpoint, event, archive, self._mail_from))
            for archive in self._anchors
        )
        if not emails:
            logger.warning("ledger checkpoint %d: no LEDGER_ANCHOR_EMAILS to keep it", event.data.checkpoint.sequence)
        return Notice(event, Subject("checkpoint", event.event_id), emails, alerts=False)

    def enquiry_verification_link(self, event: EnquiryReceived) -> str:
        data = event.data
        return self._verify_base + self._tokens.issue(
            data.enquiry_id, str(data.enquiry.email), data.locale, self._now(), kind="enquiry"
        )

    def _to_staff(
        self, event: E, template: str, compose: StaffEmail[E], verified_at: datetime | None
    ) -> tuple[OutgoingEmail, ...]:
        """One email per staff address, each composed (or failed) on its own."""
        return tuple(
            composed(
                event,
                template,
                staff,
                partial(compose, event, staff, self._mail_from, self._staff_locale, verified_at),
            )
            for staff in self._staff
        )


@dataclass(frozen=True)
class Sender:
    """``send_notice`` with its ports: what the use cases call to send a notice."""

    ledger: Ledger
    mailer: Mailer
    alert_for: AlertFor
    cap: DailyCap | None = None

    async def __call__(self, notice: Notice, attempt: Attempt) -> Outcome:
        return await send_notice(notice, attempt, self.ledger, self.mailer, self.alert_for, self.cap)


def combined(*outcomes: Outcome) -> Outcome:
    """One outcome for several notices of one message: retry if any must, else give up if any must; publish all."""
    publish = tuple(event for outcome in outcomes for event in outcome.publish)
    retries = [outcome for outcome in outcomes if isinstance(outcome, RetryLater)]
    if retries:
        memo = {key: value for outcome in retries for key, value in outcome.memo.items()}
        return RetryLater("; ".join(outcome.reason for outcome in retries), publish, memo)
    failures = [outcome.reason for outcome in outcomes if isinstance(outcome, GiveUp)]
    if failures:
        return GiveUp("; ".join(failures), publish)
    return Done(publish)


def _aware(moment: datetime | None) -> datetime | None:
    return moment.replace(tzinfo=UTC) if moment is not None and moment.tzinfo is None else moment


async def _release(
    notice: Notice, subject_id: str, send: Sender, held: HeldSubmissions, attempt: Attempt, now: Clock
) -> Outcome:
    """Send a held submission's staff emails; once they are settled, the held document need not stay long."""
    outcome = await send(notice, attempt)
    if isinstance(outcome, Done):
        try:
            await held.released(subject_id, now())
        except ConnectionFailure as exc:
            return RetryLater(f"the held submissions are unreachable: {exc!r}", outcome.publish)
        logger.info("%s %s released to the staff: its address is verified", notice.subject.kind, subject_id)
    return outcome


def held_submission(document: str) -> Submission:
    """The application a held document keeps: agreement.recorded, or an earlier version's application.submitted."""
    if json.loads(document).get("event_type") == ApplicationSubmitted.routing_key:
        return ApplicationSubmitted.model_validate_json(document)
    return AgreementRecorded.model_validate_json(document)


async def notify_recording(
    event: AgreementRecorded,
    attempt: Attempt,
    emails: Emails,
    send: Sender,
    held: HeldSubmissions,
    now: Clock = utc_now,
) -> Outcome:
    """The staff's email about the new application (or its hold), and the applicant's verification link."""
    if event.data.application is None:
        # Published by an earlier agreements: that version's notifications emailed the staff from
        # application.submitted (see the README's "Upgrading").
        return await send(emails.of_recording(event), attempt)
    staff = await notify_submission(event, attempt, emails, send, held, now)
    applicant = await send(emails.of_recording(event), attempt)
    return combined(staff, applicant)


async def notify_submission(
    event: AgreementRecorded,
    attempt: Attempt,
    emails: Emails,
    send: Sender,
    held: HeldSubmissions,
    now: Clock = utc_now,
) -> Outcome:
    """Email every staff address the application at once, unless it passed no human check: then hold it
    until its address is verified (acceptance.confirmed), unless that happened already."""
    if event.data.human_check != "none":
        return await send(emails.of_submission(event), attempt)
    application_id = str(event.data.application_id)
    try:
        if await send.ledger.is_erased(application_id):
            return Done()  # a replay after an erasure: keep nothing of the applicant
        state = await held.hold("application", application_id, event.model_dump_json(), now())
        # An erasure may have landed between the look and the hold (its deletion of the held
        # application came first): look again, so no personal data stays held for it.
        if await send.ledger.is_erased(application_id):
            await held.forget(application_id)
            return Done()
    except ConnectionFailure as exc:
        return RetryLater(f"the held submissions are unreachable: {exc!r}")
    if state.verified_at is None:
        logger.info("application %s held: no human check passed; the staff get it once it is verified", application_id)
        return Done()
    # The event held first names the emails (an earlier version held application.submitted): their keys.
    first = held_submission(state.event) if state.event is not None else event
    notice = emails.of_submission(first, _aware(state.verified_at))
    return await _release(notice, application_id, send, held, attempt, now)


async def confirm_acceptance(
    event: AcceptanceConfirmed,
    attempt: Attempt,
    emails: Emails,
    send: Sender,
    held: HeldSubmissions,
    now: Clock = utc_now,
) -> Outcome:
    """Send the applicant the confirmation with the receipt; if the application was held, the staff get it now.

    Without a held application (not held, or expired) it is the confirmation alone. The verification
    is noted either way, so an application.submitted that arrives later is not held in vain.
    """
    application_id = str(event.data.application_id)
    try:
        state = await held.verified("application", application_id, event.data.verified_at, now())
    except ConnectionFailure as exc:
        return RetryLater(f"the held submissions are unreachable: {exc!r}")
    outcomes: list[Outcome] = []
    if state.event is not None:
        notice = emails.of_submission(held_submission(state.event), _aware(state.verified_at) or event.data.verified_at)
        outcomes.append(await _release(notice, application_id, send, held, attempt, now))
    outcomes.append(await send(emails.of_confirmation(event), attempt))
    return combined(*outcomes)


def enquiry_released(enquiry: EnquiryReceived, correlation_id: str, verified_at: datetime | None) -> EnquiryReleased:
    """The enquiry reached the staff (``verified_at``: once its address was verified then); casework opens its case.

    Its id is derived from the enquiry alone, and its time from the enquiry's, so every delivery and every path
    that releases it is one event, the same to the byte.
    """
    data = enquiry.data
    return EnquiryReleased(
        event_id=derived_id(EnquiryReleased.routing_key, str(data.enquiry_id)),
        occurred_at=verified_at or data.received_at,
        correlation_id=correlation_id,
        data=EnquiryReleasedData(
            enquiry_id=data.enquiry_id,
            enquiry=data.enquiry,
            received_at=data.received_at,
            locale=data.locale,
            verified_at=verified_at,
        ),
    )


def announcing(outcome: Outcome, released: EnquiryReleased) -> Outcome:
    """The outcome, also publishing ``released``: whatever became of the staff emails, the enquiry is theirs now
    (a retry publishes it again under the same id)."""
    return combined(outcome, Done((released,)))


async def announcing_unless_erased(outcome: Outcome, released: EnquiryReleased, send: Sender) -> Outcome:
    """``announcing``, unless the enquirer was erased: looked at after the emails, so an erasure that landed
    while they were sent opens no case (send_notice sent nothing if it landed before them)."""
    try:
        if await send.ledger.is_erased(str(released.data.enquiry_id)):
            return outcome
    except ConnectionFailure as exc:
        return combined(outcome, RetryLater(f"the notification ledger is unreachable: {exc!r}"))
    return announcing(outcome, released)


async def notify_enquiry(
    event: EnquiryReceived,
    attempt: Attempt,
    emails: Emails,
    send: Sender,
    held: HeldSubmissions,
    now: Clock = utc_now,
) -> Outcome:
    """Email the staff the enquiry and the enquirer a fixed autoresponse; unless it passed no human check:
    then hold it, and send the enquirer fixed text with a verification link instead.

    An enquiry the staff get (at once, or here because its address was verified before it arrived) is announced
    as enquiry.released; a held one is not, nor one whose enquirer was erased.
    """
    enquiry_id = str(event.data.enquiry_id)
    if event.data.human_check != "none":
        outcome = await send(emails.of_enquiry(event), attempt)
        return await announcing_unless_erased(outcome, enquiry_released(event, event.correlation_id, None), send)
    try:
        if await send.ledger.is_erased(enquiry_id):
            return Done()  # a replay after an erasure: keep nothing of the enquirer
        state = await held.hold("enquiry", enquiry_id, event.model_dump_json(), now())
        # An erasure may have landed between the look and the hold: look again (as for an application).
        if await send.ledger.is_erased(enquiry_id):
            await held.forget(enquiry_id)
            return Done()
    except ConnectionFailure as exc:
        return RetryLater(f"the held submissions are unreachable: {exc!r}")
    verified_at = _aware(state.verified_at)
    notice = emails.of_held_enquiry(event, verified_at)
    if verified_at is None:
        return await send(notice, attempt)
    outcome = await _release(notice, enquiry_id, send, held, attempt, now)
    return await announcing_unless_erased(outcome, enquiry_released(event, event.correlation_id, verified_at), send)


async def release_enquiry(
    event: EnquiryConfirmed,
    attempt: Attempt,
    emails: Emails,
    send: Sender,
    held: HeldSubmissions,
    now: Clock = utc_now,
) -> Outcome:
    """An enquirer confirmed their address: the staff get the held enquiry (if it is still held), announced as
    enquiry.released."""
    enquiry_id = str(event.data.enquiry_id)
    try:
        if await send.ledger.is_erased(enquiry_id):
            return Done()  # its enquirer was erased: nothing to release, nothing to note
        state = await held.verified("enquiry", enquiry_id, event.data.verified_at, now())
    except ConnectionFailure as exc:
        return RetryLater(f"the held submissions are unreachable: {exc!r}")
    if state.event is None:
        logger.info("enquiry %s verified: nothing held yet (the enquiry comes later, or expired)", enquiry_id)
        return Done()
    enquiry = EnquiryReceived.model_validate_json(state.event)
    verified_at = _aware(state.verified_at) or event.data.verified_at
    outcome = await _release(emails.of_released_enquiry(enquiry, verified_at), enquiry_id, send, held, attempt, now)
    return await announcing_unless_erased(outcome, enquiry_released(enquiry, event.correlation_id, verified_at), send)


async def notify_case_status(event: CaseStatusChanged, attempt: Attempt, emails: Emails, send: Sender) -> Outcome:
    """Tell the client their case's new status in fixed text, if it is one they hear of; once per event (the
    notification key holds its id), nothing to an erased client (``send_notice`` looks), never the staff's reason.
    """
    notice = emails.of_case_status(event)
    if notice is None:
        data = event.data
        logger.info(
            "case %s moved to %s: %s", data.case_id, data.current, "no client to tell" if data.client is None
            else "not a status the client is emailed about",
        )  # fmt: skip
        return Done()
    return await send(notice, attempt)


async def notify_case_reminder(event: CaseReminderDue, attempt: Attempt, emails: Emails, send: Sender) -> Outcome:
    """Send a case reminder once per event (the notification key holds its id, derived by casework from the
    reminder's key, so a re-published reminder is one email); nothing to an erased client (``send_notice`` looks).
    """
    notice = emails.of_case_reminder(event)
    if notice is None:
        logger.info("case %s: reminder %s has nobody to send to", event.data.case_id, event.data.kind)
        return Done()
    return await send(notice, attempt)


class Ports(Protocol):
    """The adapters the use cases run with (opened by the service's lifespan)."""

    @property
    def ledger(self) -> Ledger: ...

    @property
    def mailer(self) -> Mailer: ...

    @property
    def cap(self) -> DailyCap: ...

    @property
    def held(self) -> HeldSubmissions: ...


def build_router(runner: Runner, ports: Ports, settings: NotificationsSettings) -> RabbitRouter:
    router = RabbitRouter()
    emails = Emails(settings)
    alert_for = staff_alerts(settings)

    def sender() -> Sender:
        return Sender(ports.ledger, ports.mailer, alert_for, ports.cap)

    async def send(notice: Notice, attempt: Attempt) -> Outcome:
        return await sender()(notice, attempt)

    async def on_agreement_recorded(event: AgreementRecorded, attempt: Attempt) -> Outcome:
        """Email every staff address the full application (one that passed no human check is held until its
        address is verified) and send the applicant the fixed-text email with the link that verifies it."""
        return await notify_recording(event, attempt, emails, sender(), ports.held)

    async def on_acceptance_confirmed(event: AcceptanceConfirmed, attempt: Attempt) -> Outcome:
        """Send the applicant, whose address is verified, the confirmation with the acceptance receipt (and the
        staff a held application)."""
        return await confirm_acceptance(event, attempt, emails, sender(), ports.held)

    async def on_enquiry_received(event: EnquiryReceived, attempt: Attempt) -> Outcome:
        """Email the staff the enquiry and send the enquirer a fixed-text autoresponse in their language (one
        that passed no human check: held, and the enquirer gets a verification link instead)."""
        return await notify_enquiry(event, attempt, emails, sender(), ports.held)

    async def on_enquiry_confirmed(event: EnquiryConfirmed, attempt: Attempt) -> Outcome:
        """Release a held enquiry to the staff once its address is verified."""
        return await release_enquiry(event, attempt, emails, sender(), ports.held)

    async def on_ledger_checkpointed(event: LedgerCheckpointed, attempt: Attempt) -> Outcome:
        """Email the signed checkpoint of the acceptance ledger to the archive mailbox (LEDGER_ANCHOR_EMAILS)."""
        return await send(emails.of_checkpoint(event), attempt)

    runner.consume(router, NOTIFICATIONS_AGREEMENT_RECORDED, on_agreement_recorded)
    runner.consume(router, NOTIFICATIONS_ACCEPTANCE_CONFIRMED, on_acceptance_confirmed)
    runner.consume(router, NOTIFICATIONS_ENQUIRY_RECEIVED, on_enquiry_received)
    runner.consume(router, NOTIFICATIONS_ENQUIRY_CONFIRMED, on_enquiry_confirmed)

    async def on_case_status_changed(event: CaseStatusChanged, attempt: Attempt) -> Outcome:
        """Email the client fixed text, in their language, about their case's new status (only the statuses a client
        is told of; never the staff's reason)."""
        return await notify_case_status(event, attempt, emails, sender())

    async def on_portal_link_requested(event: PortalLinkRequested, attempt: Attempt) -> Outcome:
        """Email the client the new portal link they asked for, in their language (once per request; within the
        address's daily cap)."""
        return await send(emails.of_portal_link(event), attempt)

    runner.consume(router, NOTIFICATIONS_PORTAL_LINK_REQUESTED, on_portal_link_requested)
    runner.consume(router, NOTIFICATIONS_LEDGER_CHECKPOINTED, on_ledger_checkpointed)
    runner.consume(router, NOTIFICATIONS_CASE_STATUS_CHANGED, on_case_status_changed)

    async def on_case_reminder_due(event: CaseReminderDue, attempt: Attempt) -> Outcome:
        """Email a case reminder: the client's chaser or renewal reminder in their language, or the owner's alert
        (Tencent's deadline, overdue, a lapse) with a console link and no client's data."""
        return await notify_case_reminder(event, attempt, emails, sender())

    runner.consume(router, NOTIFICATIONS_CASE_REMINDER_DUE, on_case_reminder_due)
    return router
