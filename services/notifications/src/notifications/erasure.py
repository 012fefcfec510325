"""Forgetting an applicant: when agreements erases their personal data, their address leaves the notification ledger."""

import logging

from faststream.rabbit import RabbitRouter

from agency_shared.events import ApplicantErased
from agency_shared.topology import DEFAULT_MAX_LENGTH, NOTIFICATIONS_APPLICANT_ERASED, subscribe
from notifications.handlers import CLIENT_TEMPLATES
from notifications.ledger import NotificationLedger

logger = logging.getLogger(__name__)


def build_erasure_router(ledger: NotificationLedger, max_length: int = DEFAULT_MAX_LENGTH) -> RabbitRouter:
    router = RabbitRouter()

    # Kept apart from handlers.py: this handler sends nothing. A database error requeues the message.
    @subscribe(router, NOTIFICATIONS_APPLICANT_ERASED, max_length)
    async def on_applicant_erased(event: ApplicantErased) -> None:
        """Erase the applicant's address from the ledger entries of the emails sent to them."""
        # First the tombstone: from then on no email about the application goes out, whatever
        # arrives later (a confirmation still queued, a retry parked in a delay queue).
        await ledger.forget_application(str(event.data.application_id), event.data.erased_at)
        event_ids = [str(event_id) for event_id in event.data.event_ids]
        forgotten = await ledger.forget_recipients(event_ids, CLIENT_TEMPLATES)
        logger.info(
            "application %s erased: %d email record(s) forgot their recipient",
            event.data.application_id,
            forgotten,
            extra={"correlation_id": event.correlation_id},
        )

    return router
