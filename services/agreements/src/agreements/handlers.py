"""Message handlers of the agreements service."""

import logging
from collections.abc import Awaitable, Callable

from faststream.exceptions import RejectMessage
from faststream.rabbit import RabbitRouter
from faststream.rabbit.annotations import RabbitMessage
from pymongo.errors import ConnectionFailure

from agency_chassis.messaging import PublishFailed
from agency_chassis.retries import RetryScheduler, attempt_of
from agency_shared.events import ApplicationSubmitted, Event, NotificationSettled, utc_now
from agency_shared.topology import (
    AGREEMENTS_APPLICATION_SUBMITTED,
    AGREEMENTS_NOTIFICATION_SETTLED,
    DEFAULT_MAX_LENGTH,
    subscribe,
)
from agreements.recording import AcceptanceLedger, ApplicationErased, ApplicationStore, record_application
from agreements.storage import LedgerContention

logger = logging.getLogger(__name__)
Publish = Callable[[Event], Awaitable[None]]


# An outage of the database or the broker: worth waiting for, not worth a dead letter.
OUTAGES = (ConnectionFailure, PublishFailed, LedgerContention)


async def retry_later_on_outage(message: RabbitMessage, retries: RetryScheduler | None, work: Awaitable[None]) -> None:
    """Do ``work``; if an outage stops it, park the message for a delayed retry and ack this delivery.

    Requeueing at once would spin, and every requeue counts towards the quorum
    queue's delivery limit, so a longer outage would dead-letter good messages.
    """
    try:
        await work
    except OUTAGES as exc:
        if retries is None:
            raise
        if retries.exhausted(message):
            logger.error("giving up on %s after %d attempts: %r", message.message_id, attempt_of(message), exc)
            raise RejectMessage() from exc
        delay_ms = await retries.schedule(message)
        logger.warning("%s: %r; retrying in %d ms", message.message_id, exc, delay_ms)


def build_router(
    applications: ApplicationStore,
    ledger: AcceptanceLedger,
    publish: Publish,
    max_length: int = DEFAULT_MAX_LENGTH,
    retries: dict[str, RetryScheduler] | None = None,
) -> RabbitRouter:
    router = RabbitRouter()
    retries = retries or {}

    # Acked only when the handler returns: the record and its ledger link are
    # written and agreement.recorded is confirmed. Any failure requeues the
    # message; a redelivery finds what was stored and republishes the same event.
    @subscribe(router, AGREEMENTS_APPLICATION_SUBMITTED, max_length)
    async def on_application_submitted(event: ApplicationSubmitted, message: RabbitMessage) -> None:
        """Record the application and its acceptance as the next ledger link, then announce agreement.recorded."""

        async def record() -> None:
            try:
                recorded = await record_application(event, applications, ledger, now=utc_now())
            except ApplicationErased:
                # A replay after the applicant's data was erased: announcing it again would email them.
                logger.warning(
                    "application %s was erased: not recorded again",
                    event.data.application_id,
                    extra={"correlation_id": event.correlation_id},
                )
                return
            await publish(recorded)
            logger.info(
                "application %s recorded as link %d",
                recorded.data.application_id,
                recorded.data.sequence,
                extra={"correlation_id": event.correlation_id},
            )

        await retry_later_on_outage(message, retries.get(AGREEMENTS_APPLICATION_SUBMITTED.name), record())

    @subscribe(router, AGREEMENTS_NOTIFICATION_SETTLED, max_length)
    async def on_notification_settled(event: NotificationSettled, message: RabbitMessage) -> None:
        """Add an email's outcome to its application's timeline (enquiry emails have no application)."""
        await retry_later_on_outage(
            message, retries.get(AGREEMENTS_NOTIFICATION_SETTLED.name), applications.note_notification(event.data)
        )

    return router
