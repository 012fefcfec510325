"""Erasing an applicant's or an enquirer's personal data on request, and telling the other services to forget it
too."""

import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, Protocol

from agency_shared.events import ApplicantErased, ApplicantErasedData, EnquiryReceived, Event, derived_id
from agreements.recording import recorded_event_id
from agreements.verification import confirmed_event_id


class ErasableApplications(Protocol):
    async def erase(self, application_id: uuid.UUID, reason: str | None, now: datetime) -> dict[str, Any] | None:
        """Remove the personal data and return the tombstone (the first one, on a repeat); None if unknown."""
        ...

    async def get(self, application_id: uuid.UUID) -> dict[str, Any] | None: ...


class ErasableEnquiries(Protocol):
    async def erase(self, enquiry_id: uuid.UUID, reason: str | None, now: datetime) -> dict[str, Any]:
        """Keep the tombstone of the enquiry's erasure (the first one, on a repeat) and return it."""
        ...


async def erase_applicant(
    application_id: uuid.UUID,
    reason: str | None,
    applications: ErasableApplications,
    publish: Callable[[Event], Awaitable[None]],
    correlation_id: str,
    now: datetime,
) -> dict[str, Any] | None:
    """Erase what agreements holds, announce applicant.erased, return the tombstone; None if unknown.

    A repeat finds the data gone and announces the same event again (same id), so asking
    again after a failed publish completes the erasure everywhere.
    """
    tombstone = await applications.erase(application_id, reason, now)
    document = await applications.get(application_id)
    if tombstone is None or document is None:
        return None
    # The client's emails come from agreement.recorded (the verification link) and acceptance.confirmed
    # (the receipt); application.submitted's go to the staff, but it is named too so that any email
    # about the application is covered.
    event_ids = (
        uuid.UUID(document["submitted_event_id"]),
        recorded_event_id(application_id),
        confirmed_event_id(application_id),
    )
    erased = ApplicantErased(
        event_id=derived_id(ApplicantErased.routing_key, str(application_id)),
        correlation_id=correlation_id,
        data=ApplicantErasedData(application_id=application_id, event_ids=event_ids, erased_at=tombstone["erased_at"]),
    )
    await publish(erased)
    return tombstone


async def erase_enquirer(
    enquiry_id: uuid.UUID,
    reason: str | None,
    enquiries: ErasableEnquiries,
    publish: Callable[[Event], Awaitable[None]],
    correlation_id: str,
    now: datetime,
) -> dict[str, Any]:
    """Keep the erasure's tombstone, announce applicant.erased for the enquiry, return the tombstone.

    Agreements holds nothing of an enquiry (notifications does: the held enquiry, its emails' records),
    so any id is erased: one nobody holds costs nothing. A repeat announces the same event again (same id).
    """
    tombstone = await enquiries.erase(enquiry_id, reason, now)
    erased = ApplicantErased(
        event_id=derived_id(ApplicantErased.routing_key, "enquiry", str(enquiry_id)),
        correlation_id=correlation_id,
        data=ApplicantErasedData(
            enquiry_id=enquiry_id,
            # Every email about an enquiry comes from its enquiry.received (the held one's staff emails too).
            event_ids=(derived_id(EnquiryReceived.routing_key, str(enquiry_id)),),
            erased_at=tombstone["erased_at"],
        ),
    )
    await publish(erased)
    return tombstone
