"""Forgetting an applicant or an enquirer: when agreements erases their personal data, their address leaves the
notification ledger and an application or enquiry held back from the staff (``notifications.holding``) is deleted."""

import logging
from collections.abc import Collection
from datetime import datetime
from typing import Protocol

from faststream.rabbit import RabbitRouter
from pymongo.errors import ConnectionFailure

from agency_chassis.consuming import Runner
from agency_chassis.outcomes import Attempt, Done, Outcome, RetryLater
from agency_shared.events import ApplicantErased
from agency_shared.topology import NOTIFICATIONS_APPLICANT_ERASED
from notifications.handlers import CLIENT_TEMPLATES
from notifications.holding import HeldSubmissions

logger = logging.getLogger(__name__)


class ForgettingLedger(Protocol):
    async def forget_application(self, subject_id: str, erased_at: datetime) -> None: ...

    async def forget_recipients(
        self, event_ids: Collection[str], templates: Collection[str], subject_id: str | None = None
    ) -> int: ...


async def forget_applicant(event: ApplicantErased, ledger: ForgettingLedger, held: HeldSubmissions) -> Outcome:
    """Erase the submitter's address from the ledger entries of the emails sent to them; delete a held application
    or enquiry."""
    data = event.data
    kind, subject_id = ("application", data.application_id) if data.application_id else ("enquiry", data.enquiry_id)
    try:
        # First the tombstone: from then on no email about the application or enquiry goes out, whatever
        # arrives later (a confirmation still queued, a retry parked in a delay queue, the enquiry itself).
        await ledger.forget_application(str(subject_id), data.erased_at)
        await held.forget(str(subject_id))
        event_ids = [str(event_id) for event_id in data.event_ids]
        forgotten = await ledger.forget_recipients(event_ids, CLIENT_TEMPLATES, str(subject_id))
    except ConnectionFailure as exc:
        return RetryLater(f"the notification ledger is unreachable: {exc!r}")
    logger.info("%s %s erased: %d email record(s) forgot their recipient", kind, subject_id, forgotten)
    return Done()


class Ports(Protocol):
    @property
    def ledger(self) -> ForgettingLedger: ...

    @property
    def held(self) -> HeldSubmissions: ...


# Kept apart from handlers.py: this use case sends nothing.
def build_erasure_router(runner: Runner, ports: Ports) -> RabbitRouter:
    router = RabbitRouter()

    async def on_applicant_erased(event: ApplicantErased, attempt: Attempt) -> Outcome:
        """Erase the applicant's or enquirer's address from the ledger entries of the emails sent to them; delete a
        held application or enquiry."""
        return await forget_applicant(event, ports.ledger, ports.held)

    runner.consume(router, NOTIFICATIONS_APPLICANT_ERASED, on_applicant_erased)
    return router
