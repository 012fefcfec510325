"""The MongoDB adapters' own promises, against SecantusDB: what the use cases' fakes only imitate."""

from typing import Any

from pymongo import AsyncMongoClient

from agency_shared.application_status import Status
from agreements.recording import record_from_event
from agreements.storage import MongoApplications
from tests.support.events import application_submitted, notification_settled

Mongo = AsyncMongoClient[dict[str, Any]]


async def test_an_email_outcome_noted_twice_is_on_the_timeline_once(mongo: Mongo, mongo_db: str) -> None:
    applications = MongoApplications(mongo, mongo_db)
    await applications.ensure_indexes()
    submitted = application_submitted()
    record = await applications.add(record_from_event(submitted, now=submitted.occurred_at))
    outcome = notification_settled(record.application_id).data
    await applications.note_notification(outcome)
    await applications.note_notification(outcome)
    stored = await applications.get(record.application_id)
    assert stored is not None
    emails = [moment for moment in stored["timeline"] if moment["kind"] == "email_sent"]
    assert [moment["key"] for moment in emails] == [f"{outcome.notification_key}:sent"]
    assert stored["status"] == Status.CONFIRMED
