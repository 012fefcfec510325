"""The notification ledger's retention: entries older than NOTIFICATION_LEDGER_RETENTION_DAYS (and the margin) are
purged by the running service; younger ones, which a redelivery may still need, stay."""

import asyncio
from datetime import timedelta
from typing import Any

from pymongo import AsyncMongoClient

import notifications.main
from agency_shared.events import utc_now
from notifications.retention import LedgerRetention
from notifications.settings import NotificationsSettings
from tests.support.apps import serving

Mongo = AsyncMongoClient[dict[str, Any]]


def entry(key: str, age: timedelta) -> dict[str, Any]:
    changed = utc_now() - age
    return {"_id": key, "event_id": key, "template": "enquiry_autoresponse", "recipient": f"{key}@mapletea.example",
            "state": "sent", "attempts": 1, "created_at": changed, "updated_at": changed}  # fmt: skip


async def test_the_service_purges_entries_older_than_the_retention(
    notifications_settings: NotificationsSettings, mongo: Mongo
) -> None:
    settings = notifications_settings.model_copy(update={"notification_ledger_retention_days": 10})
    retention = LedgerRetention.of(10, settings.max_attempts, settings.retry_max_seconds)
    kept_for = retention.retention + retention.margin
    assert timedelta(days=11) < kept_for < timedelta(days=12)  # 10 days, 10 × 300 s of retries, a day of backlog
    emails = mongo[settings.mongodb_db]["notifications"]
    await emails.insert_many(
        [entry("old", kept_for + timedelta(hours=1)), entry("young", kept_for - timedelta(hours=1)),
         entry("fresh", timedelta(0))]
    )  # fmt: skip
    async with serving(notifications.main.create_app(settings)), asyncio.timeout(15):
        while await emails.count_documents({"_id": "old"}):  # noqa: ASYNC110 - the purge runs at start-up
            await asyncio.sleep(0.1)
    assert sorted(await emails.distinct("_id")) == ["fresh", "young"]


def test_the_retention_counts_from_the_last_change_plus_the_longest_retry_chain() -> None:
    now = utc_now()
    retention = LedgerRetention.of(30, max_attempts=10, retry_max_seconds=300)
    assert retention.cutoff(now) == now - timedelta(days=31, seconds=3000)
