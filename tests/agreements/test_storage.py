"""The MongoDB adapters' own promises, against SecantusDB: what the use cases' fakes only imitate."""

import uuid
from datetime import UTC, datetime
from typing import Any

from pymongo import AsyncMongoClient

from agency_shared.application_status import Status
from agency_shared.events import NotificationSettledData
from agreements.recording import record_from_event
from agreements.storage import MongoApplications
from tests.support.events import application_submitted

Mongo = AsyncMongoClient[dict[str, Any]]


def settled(application_id: uuid.UUID) -> NotificationSettledData:
    return NotificationSettledData(
        notification_key=f"{uuid.uuid4()}/client_confirmation/li.wei@mapletea.example",
        source_event_id=uuid.uuid4(),
        source_event_type="agreement.recorded",
        application_id=application_id,
        template="client_confirmation",
        recipient="li.wei@mapletea.example",
        state="sent",
        settled_at=datetime(2026, 12, 1, 20, 0, tzinfo=UTC),
    )


async def test_an_email_outcome_noted_twice_is_on_the_timeline_once(mongo: Mongo, mongo_db: str) -> None:
    applications = MongoApplications(mongo, mongo_db)
    await applications.ensure_indexes()
    submitted = application_submitted()
    record = await applications.add(record_from_event(submitted, now=submitted.occurred_at))
    outcome = settled(record.application_id)
    await applications.note_notification(outcome)
    await applications.note_notification(outcome)
    stored = await applications.get(record.application_id)
    assert stored is not None
    emails = [moment for moment in stored["timeline"] if moment["kind"] == "email_sent"]
    assert [moment["key"] for moment in emails] == [f"{outcome.notification_key}:sent"]
    assert stored["status"] == Status.CONFIRMED
