"""Where webhook deliveries come from: casework's own case.status-changed (its own queue) and the cases its
consumers open. A delivery is in MongoDB before the message is acked; a redelivery records none twice."""

import logging
import uuid

from pymongo.errors import ConnectionFailure, PyMongoError

from agency_chassis.outcomes import Done, Outcome, RetryLater
from agency_shared.events import CaseStatusChanged, utc_now
from casework.storage import MongoCases
from casework.webhooks import events
from casework.webhooks.store import MongoWebhooks

logger = logging.getLogger(__name__)


async def announce_status_change(event: CaseStatusChanged, webhooks: MongoWebhooks) -> Outcome:
    """A delivery of ``case.status_changed`` to each endpoint that takes it."""
    message_id, event_type, body = events.case_status_changed(event)
    try:
        taken = await webhooks.record(message_id, event_type, body, str(event.data.case_id), utc_now())
    except PyMongoError as exc:
        return RetryLater(f"recording the webhooks of {event.event_id} failed: {exc!r}")
    if taken:
        logger.info("status change %s of case %s: %d webhook deliveries", event.event_id, event.data.case_id, taken)
    return Done()


async def announce_opening(outcome: Outcome, case_id: uuid.UUID, cases: MongoCases, webhooks: MongoWebhooks) -> Outcome:
    """After a consumer's attempt to open case ``case_id``: a delivery of ``case.opened`` to each endpoint that
    takes it if the case is open (now or by an earlier attempt whose webhooks may not have been recorded: the
    record is idempotent), then ``outcome``. Nothing when the case did not open (an erased subject, an application
    waiting for its verification)."""
    if not isinstance(outcome, Done):
        return outcome
    try:
        case = await cases.get(case_id)
        if case is None:
            return outcome
        message_id, event_type, body = events.case_opened(case)
        await webhooks.record(message_id, event_type, body, str(case.id), utc_now())
    except (ConnectionFailure, PyMongoError) as exc:
        return RetryLater(f"recording the case.opened webhooks of {case_id} failed: {exc!r}")
    return outcome
