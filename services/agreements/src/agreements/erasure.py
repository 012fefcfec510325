"""Erasing an applicant's personal data on request, and telling the other services to forget it too."""

import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, Protocol

from agency_shared.events import ApplicantErased, ApplicantErasedData, Event, derived_id
from agreements.recording import recorded_event_id
from agreements.verification import confirmed_event_id


class ErasableApplications(Protocol):
    async def erase(self, application_id: uuid.UUID, reason: str | None, now: datetime) -> dict[str, Any] | None:
        """Remove the personal data and return the tombstone (the first one, on a repeat); None if unknown."""
        ...

    async def get(self, application_id: uuid.UUID) -> dict[str, Any] | None: ...


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
