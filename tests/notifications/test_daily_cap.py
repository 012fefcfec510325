"""The daily cap of client emails per address, against the real RabbitMQ, SecantusDB and an SMTP server."""

import asyncio
import hashlib
import json
import uuid
from datetime import UTC, datetime
from typing import Any

from pymongo import AsyncMongoClient, monitoring

from agency_shared.events import EnquiryReceived, Event
from agency_shared.topology import AGREEMENTS_NOTIFICATION_SETTLED, NOTIFICATIONS_ENQUIRY_RECEIVED
from notifications.daily_cap import MongoDailyCap, cap_document_id
from notifications.handlers import CAPPED_TEMPLATES
from notifications.main import create_app
from notifications.settings import NotificationsSettings
from tests.support import broker
from tests.support.apps import serving
from tests.support.data import STAFF
from tests.support.events import ENQUIRY, enquiry_received
from tests.support.servers import Inbox

Mongo = AsyncMongoClient[dict[str, Any]]
ENQUIRER = str(ENQUIRY["email"])


async def publish(amqp_url: str, event: Event) -> None:
    await broker.publish_raw(amqp_url, event.model_dump_json().encode(), event.routing_key, str(event.event_id))


def enquiry(email: str = ENQUIRER) -> EnquiryReceived:
    event = enquiry_received()
    form = event.data.enquiry.model_copy(update={"email": email})
    return event.model_copy(update={"event_id": uuid.uuid4(), "data": event.data.model_copy(update={"enquiry": form})})


async def test_the_sixth_email_to_one_address_in_a_day_is_refused_recorded_and_not_retried(
    notifications_settings: NotificationsSettings, amqp_url: str, inbox: Inbox, mongo: Mongo
) -> None:
    assert notifications_settings.client_emails_per_day == 5  # the default
    events = [enquiry() for _ in range(6)]
    replicas = [create_app(notifications_settings) for _ in range(2)]  # the cap holds across replicas
    async with serving(*replicas):
        for event in events:
            await publish(amqp_url, event)
        await publish(amqp_url, events[0])  # a redelivery of an email already sent: not counted again
        await publish(amqp_url, enquiry("someone.else@example.cn"))  # another address has its own cap
        await inbox.wait_for(lambda messages: len(inbox.to(STAFF[0])) == 7 and len(inbox.to(ENQUIRER)) == 5)
        await broker.wait_settled(amqp_url, "notifications.")
    assert len(inbox.to(ENQUIRER)) == 5
    assert len(inbox.to("someone.else@example.cn")) == 1
    assert all(len(inbox.to(staff)) == 7 for staff in STAFF)  # staff emails are never capped
    db = mongo[notifications_settings.mongodb_db]
    entries = await db["notifications"].find({"template": "enquiry_autoresponse", "recipient": ENQUIRER}).to_list()
    states = sorted(entry["state"] for entry in entries)
    assert states == ["refused"] + ["sent"] * 5
    [refused] = [entry for entry in entries if entry["state"] == "refused"]
    assert "CLIENT_EMAILS_PER_DAY" in refused["last_error"]
    assert refused.get("attempts", 0) == 0  # never tried
    # Settled, not dead-lettered; announced as failed for the timeline.
    assert await broker.depth(amqp_url, NOTIFICATIONS_ENQUIRY_RECEIVED.dead_letter_queue.name) == 0
    waiting = await broker.depth(amqp_url, AGREEMENTS_NOTIFICATION_SETTLED.name)
    messages = await broker.take(amqp_url, AGREEMENTS_NOTIFICATION_SETTLED.name, waiting)
    settled = [json.loads(message.body)["data"] for message in messages]
    assert any(s["template"] == "enquiry_autoresponse" and s["state"] == "failed" for s in settled)
    # The cap keeps a hash of the address, never the address, and its documents expire.
    [day] = (
        await db["notifications_daily_cap"]
        .find({"_id": {"$regex": hashlib.sha256(ENQUIRER.encode()).hexdigest()}})
        .to_list()
    )
    assert len(day["keys"]) == 5  # the admitted ones: a refused email does not grow the day
    assert ENQUIRER not in json.dumps(day, default=str)
    indexes = await db["notifications_daily_cap"].index_information()
    assert indexes["expires_at_ttl"]["expireAfterSeconds"] == 0


async def test_a_flood_at_one_address_does_not_grow_its_day_and_a_retry_keeps_its_answer(
    mongo: Mongo, mongo_db: str
) -> None:
    cap = MongoDailyCap(mongo, mongo_db, 5, CAPPED_TEMPLATES)
    now = datetime(2026, 12, 1, 10, tzinfo=UTC)
    answers = [await cap.admit(ENQUIRER, f"key-{n}", now) for n in range(50)]
    assert answers == [True] * 5 + [False] * 45
    assert await cap.admit(ENQUIRER, "key-2", now)  # a retry of an admitted email
    assert not await cap.admit(ENQUIRER, "key-7", now)
    day = await mongo[mongo_db]["notifications_daily_cap"].find_one({"_id": cap_document_id(ENQUIRER, now)})
    assert day is not None
    assert len(day["keys"]) == 5


async def test_emails_racing_from_two_replicas_are_admitted_exactly_up_to_the_cap(
    mongo_url: str, mongo_db: str
) -> None:
    """Six emails to one address at the same moment, from two replicas: five go, and each keeps its answer."""
    clients: list[Mongo] = [AsyncMongoClient(mongo_url, tz_aware=True) for _ in range(2)]
    try:
        replicas = [MongoDailyCap(client, mongo_db, 5, CAPPED_TEMPLATES) for client in clients]
        now = datetime(2026, 12, 1, 10, tzinfo=UTC)
        for day in range(20):
            address, keys = f"racer-{day}@example.cn", [f"key-{day}-{n}" for n in range(6)]
            first = await asyncio.gather(*(replicas[n % 2].admit(address, key, now) for n, key in enumerate(keys)))
            again = await asyncio.gather(*(replicas[1 - n % 2].admit(address, key, now) for n, key in enumerate(keys)))
            assert sum(first) == 5, (day, first)
            assert again == first
    finally:
        for client in clients:
            await client.close()


async def test_concurrent_admissions_are_decided_together_by_id_alone(mongo_url: str, mongo_db: str) -> None:
    # A flood at one address and single emails to many, at once: the right answers, in a few commands, none
    # of them a findAndModify or an $or (which SecantusDB answers by scanning the whole collection).
    commands = CommandNames()
    client: Mongo = AsyncMongoClient(mongo_url, tz_aware=True, event_listeners=[commands])
    try:
        cap = MongoDailyCap(client, mongo_db, 5, CAPPED_TEMPLATES)
        now = datetime(2026, 12, 1, 10, tzinfo=UTC)
        flood = [cap.admit(ENQUIRER, f"key-{n}", now) for n in range(12)]
        singles = [cap.admit(f"client-{n}@example.cn", "only", now) for n in range(20)]
        answers = await asyncio.gather(*flood, *singles)
        assert sum(answers[:12]) == 5  # exactly up to the cap
        assert answers[12:] == [True] * 20
        assert "findAndModify" not in commands.names
        assert len(commands.names) <= 3 * 5  # rounds of: read, write, read back (the flood adds one a round)
        assert not any("$or" in json.dumps(filter_, default=str) for filter_ in commands.filters)
    finally:
        await client.close()


class CommandNames(monitoring.CommandListener):
    def __init__(self) -> None:
        self.names: list[str] = []
        self.filters: list[Any] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.names.append(event.command_name)
        self.filters += [event.command.get("filter"), *(u.get("q") for u in event.command.get("updates", []))]

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass
