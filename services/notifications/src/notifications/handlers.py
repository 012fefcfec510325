"""Message handlers of the notifications service: which emails each event causes, and settling the message."""

import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Literal

from faststream.exceptions import RejectMessage
from faststream.rabbit import RabbitRouter
from faststream.rabbit.annotations import RabbitMessage

from agency_chassis.dead_letters import REPLAYED_HEADER
from agency_chassis.retries import RetryScheduler, attempt_of
from agency_shared.events import (
    AgreementRecorded,
    ApplicationSubmitted,
    EnquiryReceived,
    Event,
    NotificationSettled,
    NotificationSettledData,
    derived_id,
    utc_now,
)
from agency_shared.topology import (
    NOTIFICATIONS_AGREEMENT_RECORDED,
    NOTIFICATIONS_APPLICATION_SUBMITTED,
    NOTIFICATIONS_ENQUIRY_RECEIVED,
    ConsumerQueue,
    subscribe,
)
from notifications.delivery import (
    DeliveryReport,
    Ledger,
    OutgoingEmail,
    count_outcomes,
    deliver,
    give_up,
    settled_outcomes,
)
from notifications.emails import (
    client_confirmation,
    enquiry_autoresponse,
    staff_client_unreachable,
    staff_new_application,
    staff_new_enquiry,
)
from notifications.mailer import Mailer
from notifications.settings import NotificationsSettings

logger = logging.getLogger(__name__)
Publish = Callable[[Event], Awaitable[None]]


Subject = dict[str, uuid.UUID]  # {"application_id": ...} or {"enquiry_id": ...}
# Emails to clients: when one fails for good, the staff are told (a lead must not be lost silently).
CLIENT_TEMPLATES = frozenset({"client_confirmation", "enquiry_autoresponse"})
AlertFor = Callable[[Event, tuple[str, str], OutgoingEmail, str], list[OutgoingEmail]]


class Notifier:
    """Sends an event's emails, then acks (all done), parks a retry (some temporarily failed) or dead-letters.

    Each email that reaches a final state is announced as notification.settled (again on every
    redelivery: the receiver drops repeats), so no outcome is lost if a publish fails.
    """

    def __init__(
        self, ledger: Ledger, mailer: Mailer, retries: dict[str, RetryScheduler], publish: Publish, alert_for: AlertFor
    ) -> None:
        self._ledger = ledger
        self._mailer = mailer
        self._retries = retries
        self._publish = publish
        self._alert_for = alert_for

    async def settle(
        self, queue: ConsumerQueue, event: Event, subject: Subject, emails: list[OutgoingEmail], message: RabbitMessage
    ) -> None:
        log = {"correlation_id": event.correlation_id}
        application_id = subject.get("application_id")
        if application_id is not None and await self._ledger.is_erased(str(application_id)):
            # The applicant asked to be forgotten: nothing about them goes out any more, not even
            # a staff alert (it would repeat their name and address). Settled: acked, not dead-lettered.
            logger.info("%s %s: applicant erased, nothing sent", event.event_type, event.event_id, extra=log)
            return
        retries = self._retries[queue.name]
        exhausted = retries.exhausted(message)
        # An operator's replay means: try what failed for good again.
        replayed = REPLAYED_HEADER in message.headers
        report = await self._deliver(event, emails, exhausted, retry_failed=replayed)
        alerts = await self._alerts(event, subject, report)
        if alerts:
            report.merge(await self._deliver(event, alerts, exhausted))
        count_outcomes(report)
        for email, state, detail in settled_outcomes(report):
            await self._publish(settled(event, subject, email, state, detail))
        if report.unfinished:
            delay_ms = await retries.schedule(message)
            logger.info(
                "%s %s: %d email(s) retried in %d ms",
                event.event_type, event.event_id, len(report.unfinished), delay_ms, extra=log,
            )  # fmt: skip
            return
        # Also an email that failed for good in an earlier delivery of this message (the retry was
        # for its staff alert): the event still belongs in the DLQ, where an operator can replay it.
        failed = len(report.failed) + sum(1 for _, state in report.skipped if state == "failed")
        if failed:
            logger.error(
                "%s %s: %d email(s) failed for good after attempt %d",
                event.event_type, event.event_id, failed, attempt_of(message), extra=log,
            )  # fmt: skip
            raise RejectMessage()
        logger.info(
            "%s %s: %d sent, %d already settled",
            event.event_type, event.event_id, len(report.sent), len(report.skipped), extra=log,
        )  # fmt: skip

    async def _deliver(
        self, event: Event, emails: list[OutgoingEmail], last_attempt: bool, retry_failed: bool = False
    ) -> DeliveryReport:
        report = await deliver(event, emails, self._ledger, self._mailer, retry_failed)
        if last_attempt and report.unfinished:
            await give_up(event, report, self._ledger)
            report.failed += [(email, f"retries exhausted: {reason}") for email, reason in report.unfinished]
            report.unfinished = []
        return report

    async def _alerts(self, event: Event, subject: Subject, report: DeliveryReport) -> list[OutgoingEmail]:
        failed = [(email, reason) for email, reason in report.failed if email.template in CLIENT_TEMPLATES]
        for email, state in report.skipped:  # failed in an earlier delivery: its alert may still be owed
            if state == "failed" and email.template in CLIENT_TEMPLATES:
                failed.append((email, await self._ledger.reason(email.key(event)) or "unknown"))
        [(kind, subject_id)] = subject.items()
        return [
            alert
            for email, reason in failed
            for alert in self._alert_for(event, (kind, str(subject_id)), email, reason)
        ]


def settled(
    event: Event, subject: Subject, email: OutgoingEmail, state: Literal["sent", "failed"], detail: str | None
) -> NotificationSettled:
    key = email.key(event)
    return NotificationSettled(
        event_id=derived_id(NotificationSettled.routing_key, key, state),
        correlation_id=event.correlation_id,
        data=NotificationSettledData(
            notification_key=key,
            source_event_id=event.event_id,
            source_event_type=event.event_type,
            template=email.template,
            recipient=email.recipient.lower(),
            state=state,
            detail=detail,
            settled_at=utc_now(),
            **subject,
        ),
    )


def staff_alerts(settings: NotificationsSettings) -> AlertFor:
    def alert_for(event: Event, subject: tuple[str, str], failed: OutgoingEmail, reason: str) -> list[OutgoingEmail]:
        return [
            OutgoingEmail(
                "staff_client_unreachable",
                staff,
                staff_client_unreachable(
                    event, subject, failed.message, reason, staff, settings.mail_from, settings.staff_language
                ),
            )
            for staff in settings.staff_emails
        ]

    return alert_for


def build_router(notifier: Notifier, settings: NotificationsSettings) -> RabbitRouter:
    router = RabbitRouter()
    staff_locale = settings.staff_language
    max_length = settings.queue_max_length

    @subscribe(router, NOTIFICATIONS_APPLICATION_SUBMITTED, max_length)
    async def on_application_submitted(event: ApplicationSubmitted, message: RabbitMessage) -> None:
        """Email every staff address the full application."""
        emails = [
            OutgoingEmail(
                "staff_new_application", staff, staff_new_application(event, staff, settings.mail_from, staff_locale)
            )
            for staff in settings.staff_emails
        ]
        subject = {"application_id": event.data.application_id}
        await notifier.settle(NOTIFICATIONS_APPLICATION_SUBMITTED, event, subject, emails, message)

    @subscribe(router, NOTIFICATIONS_AGREEMENT_RECORDED, max_length)
    async def on_agreement_recorded(event: AgreementRecorded, message: RabbitMessage) -> None:
        """Send the client the confirmation of their application and agreement acceptance."""
        email = OutgoingEmail(
            "client_confirmation",
            event.data.applicant_email,
            client_confirmation(event, settings.mail_from, settings.staff_emails),
        )
        subject = {"application_id": event.data.application_id}
        await notifier.settle(NOTIFICATIONS_AGREEMENT_RECORDED, event, subject, [email], message)

    @subscribe(router, NOTIFICATIONS_ENQUIRY_RECEIVED, max_length)
    async def on_enquiry_received(event: EnquiryReceived, message: RabbitMessage) -> None:
        """Email the staff the enquiry and send the enquirer an autoresponse in their language."""
        emails = [
            OutgoingEmail("staff_new_enquiry", staff, staff_new_enquiry(event, staff, settings.mail_from, staff_locale))
            for staff in settings.staff_emails
        ]
        emails.append(
            OutgoingEmail(
                "enquiry_autoresponse",
                str(event.data.enquiry.email),
                enquiry_autoresponse(event, settings.mail_from, settings.staff_emails),
            )
        )
        subject = {"enquiry_id": event.data.enquiry_id}
        await notifier.settle(NOTIFICATIONS_ENQUIRY_RECEIVED, event, subject, emails, message)

    return router
