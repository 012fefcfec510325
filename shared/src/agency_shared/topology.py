"""The RabbitMQ topology: one topic exchange, a quorum queue per consumer and event, each with a DLQ."""

from dataclasses import dataclass
from typing import Generic, TypeVar

from faststream.rabbit import ExchangeType, QueueType, RabbitExchange, RabbitQueue

from agency_shared.events import (
    AcceptanceConfirmed,
    AgreementReaccepted,
    AgreementRecorded,
    ApplicantErased,
    ApplicationSubmitted,
    CaseReminderDue,
    CaseStatusChanged,
    DocumentReceived,
    EmailVerified,
    EnquiryConfirmed,
    EnquiryReceived,
    EnquiryReleased,
    Event,
    LedgerCheckpointed,
    NotificationSettled,
    PortalLinkRequested,
)

E_co = TypeVar("E_co", bound=Event, covariant=True)

EVENTS_EXCHANGE = RabbitExchange("wechat_agency.events", type=ExchangeType.TOPIC, durable=True)
DEAD_LETTER_EXCHANGE = RabbitExchange("wechat_agency.dead-letter", type=ExchangeType.DIRECT, durable=True)

# The quorum queues' delivery limit (policy), a last resort: the runner counts attempts and
# redeliveries itself (x-attempt, x-redeliveries), as RabbitMQ 4.3 no longer counts every return.
DELIVERY_LIMIT = 10
# Back-pressure: a consumer queue holds at most this many messages (QUEUE_MAX_LENGTH);
# past it the broker refuses publishes (intake then answers 503) instead of growing.
DEFAULT_MAX_LENGTH = 100_000


@dataclass(frozen=True)
class ConsumerQueue(Generic[E_co]):
    """A durable quorum queue bound to one event type, with its dead-letter queue."""

    name: str
    event: type[E_co]

    def declaration(self, passive: bool = False) -> RabbitQueue:
        """The queue as declared: its type, nothing else. Its limits (length, overflow, delivery limit, where it
        dead-letters) come from a RabbitMQ policy (``agency_chassis.policies``), which can change in place; a
        queue argument cannot (a declaration with another value fails). ``passive``: only check it exists."""
        return RabbitQueue(
            self.name,
            durable=True,
            queue_type=QueueType.QUORUM,
            routing_key=self.event.routing_key,
            declare=not passive,
        )

    def retry_queue(self, delay_ms: int) -> RabbitQueue:
        """A queue nobody consumes: messages wait ``delay_ms`` (or their own shorter expiration), then
        dead-letter back into this queue. One queue per delay keeps a long wait from blocking a short one."""
        return RabbitQueue(
            f"{self.name}.retry.{delay_ms}ms",
            durable=True,
            queue_type=QueueType.QUORUM,
            arguments={
                "x-message-ttl": delay_ms,
                "x-dead-letter-exchange": "",
                "x-dead-letter-routing-key": self.name,
                # Moving back is at-least-once: the message leaves only once the target queue has it.
                "x-dead-letter-strategy": "at-least-once",
                "x-overflow": "reject-publish",
            },
        )

    @property
    def dead_letter_queue(self) -> RabbitQueue:
        return RabbitQueue(f"{self.name}.dlq", durable=True, queue_type=QueueType.QUORUM, routing_key=self.name)


@dataclass(frozen=True)
class RetiredQueue:
    """A consumer queue an earlier version declared, and the routing key it was bound by."""

    name: str
    routing_key: str


AGREEMENTS_APPLICATION_SUBMITTED = ConsumerQueue("agreements.application-submitted", ApplicationSubmitted)
AGREEMENTS_NOTIFICATION_SETTLED = ConsumerQueue("agreements.notification-settled", NotificationSettled)
AGREEMENTS_EMAIL_VERIFIED = ConsumerQueue("agreements.email-verified", EmailVerified)
NOTIFICATIONS_AGREEMENT_RECORDED = ConsumerQueue("notifications.agreement-recorded", AgreementRecorded)
NOTIFICATIONS_ENQUIRY_RECEIVED = ConsumerQueue("notifications.enquiry-received", EnquiryReceived)
NOTIFICATIONS_APPLICANT_ERASED = ConsumerQueue("notifications.applicant-erased", ApplicantErased)
NOTIFICATIONS_ACCEPTANCE_CONFIRMED = ConsumerQueue("notifications.acceptance-confirmed", AcceptanceConfirmed)
NOTIFICATIONS_ENQUIRY_CONFIRMED = ConsumerQueue("notifications.enquiry-confirmed", EnquiryConfirmed)
NOTIFICATIONS_LEDGER_CHECKPOINTED = ConsumerQueue("notifications.ledger-checkpointed", LedgerCheckpointed)
NOTIFICATIONS_CASE_STATUS_CHANGED = ConsumerQueue("notifications.case-status-changed", CaseStatusChanged)
NOTIFICATIONS_CASE_REMINDER_DUE = ConsumerQueue("notifications.case-reminder-due", CaseReminderDue)
# casework opens a case for each application once it is in the ledger (one that passed no human check: once its
# address is verified) and for each enquiry the staff got; it keeps the emails' outcomes and forgets the erased.
CASEWORK_AGREEMENT_RECORDED = ConsumerQueue("casework.agreement-recorded", AgreementRecorded)
CASEWORK_ACCEPTANCE_CONFIRMED = ConsumerQueue("casework.acceptance-confirmed", AcceptanceConfirmed)
CASEWORK_ENQUIRY_RELEASED = ConsumerQueue("casework.enquiry-released", EnquiryReleased)
CASEWORK_NOTIFICATION_SETTLED = ConsumerQueue("casework.notification-settled", NotificationSettled)
CASEWORK_APPLICANT_ERASED = ConsumerQueue("casework.applicant-erased", ApplicantErased)
# agreements adds each document a client uploaded (its hash) to the evidence ledger.
AGREEMENTS_DOCUMENT_RECEIVED = ConsumerQueue("agreements.document-received", DocumentReceived)
# casework's own status changes, recorded as outbound webhook deliveries to the agency's CRM before the ack.
CASEWORK_CASE_STATUS_CHANGED = ConsumerQueue("casework.case-status-changed", CaseStatusChanged)
# The client portal: notifications emails a link a client asked for again; agreements records a re-acceptance.
NOTIFICATIONS_PORTAL_LINK_REQUESTED = ConsumerQueue("notifications.portal-link-requested", PortalLinkRequested)
AGREEMENTS_AGREEMENT_REACCEPTED = ConsumerQueue("agreements.agreement-reaccepted", AgreementReaccepted)

CONSUMER_QUEUES = (
    AGREEMENTS_APPLICATION_SUBMITTED,
    AGREEMENTS_NOTIFICATION_SETTLED,
    AGREEMENTS_EMAIL_VERIFIED,
    NOTIFICATIONS_AGREEMENT_RECORDED,
    NOTIFICATIONS_ENQUIRY_RECEIVED,
    NOTIFICATIONS_APPLICANT_ERASED,
    NOTIFICATIONS_ACCEPTANCE_CONFIRMED,
    NOTIFICATIONS_ENQUIRY_CONFIRMED,
    NOTIFICATIONS_LEDGER_CHECKPOINTED,
    NOTIFICATIONS_CASE_STATUS_CHANGED,
    NOTIFICATIONS_CASE_REMINDER_DUE,
    CASEWORK_AGREEMENT_RECORDED,
    CASEWORK_ACCEPTANCE_CONFIRMED,
    CASEWORK_ENQUIRY_RELEASED,
    CASEWORK_NOTIFICATION_SETTLED,
    CASEWORK_APPLICANT_ERASED,
    AGREEMENTS_DOCUMENT_RECEIVED,
    CASEWORK_CASE_STATUS_CHANGED,
    NOTIFICATIONS_PORTAL_LINK_REQUESTED,
    AGREEMENTS_AGREEMENT_REACCEPTED,
)

# The events the public edge (intake) publishes, where a refused publish is an answer to a person: 503,
# "nothing was accepted". Each has exactly one consumer queue. With two, one queue at its length limit
# nacks the publish while the other keeps its copy: a 503 for a submission one consumer acts on. The
# consumer passes on what others need (agreement.recorded, acceptance.confirmed, enquiry.confirmed);
# events published by consumers may have several queues, since a nack there is retried and every
# consumer drops repeats.
EDGE_EVENTS: tuple[type[Event], ...] = (ApplicationSubmitted, EnquiryReceived, EmailVerified)

# Queues of earlier versions, no longer consumed: unbound at start-up, so they stop taking copies (left for
# an operator to empty and delete; see the README's "Upgrading").
RETIRED_QUEUES = (
    RetiredQueue("notifications.application-submitted", ApplicationSubmitted.routing_key),
    RetiredQueue("notifications.email-verified", EmailVerified.routing_key),
)


def consumers_of(event: type[Event]) -> list[ConsumerQueue[Event]]:
    return [queue for queue in CONSUMER_QUEUES if queue.event is event]
