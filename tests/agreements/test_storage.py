"""The MongoDB adapters' own promises, against SecantusDB: what the use cases' fakes only imitate."""

import asyncio
from datetime import timedelta
from typing import Any

from pymongo import AsyncMongoClient

from agency_shared.application_status import Status
from agency_shared.events import utc_now
from agreements.recording import ApplicationErased, ApplicationRecord, LedgerEntry, record_from_event
from agreements.storage import MongoAcceptanceLedger, MongoApplications
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


async def test_three_writers_appending_batches_of_every_size_keep_one_gap_free_valid_chain(
    mongo: Mongo, mongo_db: str
) -> None:
    # Group commit as three replicas do it: each appends batches of 1 to 16 (the prefetch) at once, and
    # some batches repeat applications (a redelivery, a retried POST, twice within one batch).
    records = [record_from_event(event, event.occurred_at) for event in (application_submitted() for _ in range(136))]
    batches = [records[sum(range(size)) : sum(range(size + 1))] for size in range(1, 17)]  # sizes 1, 2, ..., 16
    batches[3] = [*batches[3], batches[3][0]]  # twice in one batch
    batches[9] = [*batches[9][:5], *batches[2], *batches[9][5:]]  # another batch's, amid new ones
    writers = [MongoAcceptanceLedger(mongo, mongo_db) for _ in range(3)]
    await writers[0].ensure_indexes()

    async def write(writer: MongoAcceptanceLedger, mine: list[list[ApplicationRecord]]) -> list[list[LedgerEntry]]:
        return [await writer.append_many(batch) for batch in mine]

    written = await asyncio.gather(*(write(writer, batches[n::3]) for n, writer in enumerate(writers)))

    links = await mongo[mongo_db]["acceptance_ledger"].find({}).sort("_id", 1).to_list()
    assert [link["_id"] for link in links] == list(range(1, len(records) + 1))  # gap-free
    assert sorted(link["application_id"] for link in links) == sorted(str(r.application_id) for r in records)
    report = await writers[1].verify()
    assert report.ok, report
    assert report.checked == len(records)
    # Each append answered with the application's one link, in the order asked (repeats included).
    by_id = {link["application_id"]: link["_id"] for link in links}
    for n, mine in enumerate(batches[i::3] for i in range(3)):
        for batch, entries in zip(mine, written[n], strict=True):
            assert [entry.sequence for entry in entries] == [by_id[str(r.application_id)] for r in batch]
    head = await writers[2].head()
    assert head is not None
    assert head.sequence == len(records)


async def test_applications_stored_in_one_batch_with_repeats_and_an_erased_one(mongo: Mongo, mongo_db: str) -> None:
    applications = MongoApplications(mongo, mongo_db)
    await applications.ensure_indexes()
    first, erased, fresh = (application_submitted() for _ in range(3))
    stored_first = await applications.add(record_from_event(first, first.occurred_at))
    await applications.add(record_from_event(erased, erased.occurred_at))
    await applications.collection.update_one(
        {"application_id": str(erased.data.application_id)}, {"$set": {"erasure": {"erased_at": utc_now()}}}
    )
    again = record_from_event(fresh, fresh.occurred_at)
    later = utc_now() + timedelta(minutes=5)
    batch = [
        record_from_event(first, later),  # a redelivery: what was stored first counts
        record_from_event(erased, later),
        again,
        record_from_event(fresh, later),  # twice in this batch
    ]
    results = await applications.add_many(batch)
    assert results[0] == stored_first
    assert isinstance(results[1], ApplicationErased)
    assert results[2] == again
    assert results[3] == again
    assert await applications.collection.count_documents({}) == 3


async def test_links_an_attempt_wrote_before_failing_move_the_head_when_the_retry_finds_them(
    mongo: Mongo, mongo_db: str
) -> None:
    # An attempt inserted the links and died (or failed) before moving the head: the retry finds them,
    # and the head follows, or verify would not notice those links being removed.
    records = [record_from_event(event, event.occurred_at) for event in (application_submitted() for _ in range(3))]
    crashed = MongoAcceptanceLedger(mongo, mongo_db)
    await crashed.ensure_indexes()
    await crashed.append_many(records[:1])
    entries = await MongoAcceptanceLedger(mongo, mongo_db).append_many(records[1:])
    await mongo[mongo_db]["acceptance_ledger_head"].update_one({"_id": "head"}, {"$set": {"sequence": 1}})
    retry = MongoAcceptanceLedger(mongo, mongo_db)
    assert [entry.sequence for entry in await retry.append_many(records[1:])] == [entry.sequence for entry in entries]
    head = await retry.head()
    assert head is not None
    assert head.sequence == 3
