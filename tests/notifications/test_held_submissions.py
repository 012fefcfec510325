"""The held submissions in MongoDB (SecantusDB): either half first, the earliest verification, expiry, erasure."""

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import AsyncMongoClient

from notifications.holding import KEPT_AFTER_RELEASE, MARGIN, MongoHeldSubmissions

NOW = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
LINK = timedelta(days=7)


def aware(moment: datetime | None) -> datetime:
    assert moment is not None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


async def test_when_both_halves_race_from_two_replicas_one_of_them_sees_both(mongo_url: str, mongo_db: str) -> None:
    """The submission held by one replica and its verification noted by another at the same moment:
    whichever write lands second must see both, or the staff would never hear of it."""
    clients: list[AsyncMongoClient[dict[str, Any]]] = [AsyncMongoClient(mongo_url, tz_aware=True) for _ in range(2)]
    try:
        replicas = [MongoHeldSubmissions(client, mongo_db, LINK) for client in clients]
        for number in range(40):
            subject = f"race-{number}"
            held, verified = await asyncio.gather(
                replicas[0].hold("application", subject, '{"event": 1}', NOW),
                replicas[1].verified("application", subject, NOW, NOW),
            )
            assert any(half.event and half.verified_at for half in (held, verified)), (number, held, verified)
    finally:
        for client in clients:
            await client.close()


async def test_either_half_may_come_first_and_the_second_sees_both(
    mongo: AsyncMongoClient[dict[str, Any]], mongo_db: str
) -> None:
    held = MongoHeldSubmissions(mongo, mongo_db, LINK)
    await held.ensure_indexes()
    first = await held.hold("application", "a-1", '{"event": 1}', NOW)
    assert (first.event, first.verified_at) == ('{"event": 1}', None)
    both = await held.verified("application", "a-1", NOW + timedelta(hours=1), NOW + timedelta(hours=1))
    assert both.event == '{"event": 1}'
    assert aware(both.verified_at) == NOW + timedelta(hours=1)

    early = await held.verified("enquiry", "q-1", NOW, NOW)
    assert early.event is None
    later = await held.verified("enquiry", "q-1", NOW + timedelta(minutes=5), NOW)  # the earliest click wins
    assert aware(later.verified_at) == NOW
    arrived = await held.hold("enquiry", "q-1", '{"event": 2}', NOW)
    assert (arrived.event, aware(arrived.verified_at)) == ('{"event": 2}', NOW)

    document = await mongo[mongo_db]["held_submissions"].find_one({"_id": "a-1"})
    assert document is not None
    assert aware(document["expires_at"]) == NOW + LINK + MARGIN
    indexes = await mongo[mongo_db]["held_submissions"].index_information()
    assert indexes["expires_at_ttl"]["expireAfterSeconds"] == 0


async def test_concurrent_first_writes_make_one_document(
    mongo: AsyncMongoClient[dict[str, Any]], mongo_db: str
) -> None:
    held = MongoHeldSubmissions(mongo, mongo_db, LINK)
    results = await asyncio.gather(
        *(held.hold("application", "a-2", "{}", NOW) for _ in range(3)),
        *(held.verified("application", "a-2", NOW, NOW) for _ in range(3)),
    )
    assert any(result.event and result.verified_at for result in results)
    assert await mongo[mongo_db]["held_submissions"].count_documents({"_id": "a-2"}) == 1


async def test_a_released_submission_is_kept_a_day_and_an_erased_one_is_gone(
    mongo: AsyncMongoClient[dict[str, Any]], mongo_db: str
) -> None:
    held = MongoHeldSubmissions(mongo, mongo_db, LINK)
    await held.hold("application", "a-3", "{}", NOW)
    await held.released("a-3", NOW + timedelta(days=2))
    await held.released("a-3", NOW + timedelta(days=3))  # a repeat changes nothing
    document = await mongo[mongo_db]["held_submissions"].find_one({"_id": "a-3"})
    assert document is not None
    assert aware(document["expires_at"]) == NOW + timedelta(days=2) + KEPT_AFTER_RELEASE
    await held.forget("a-3")
    await held.forget("a-3")
    assert await mongo[mongo_db]["held_submissions"].find_one({"_id": "a-3"}) is None
