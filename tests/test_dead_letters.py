"""Listing and replaying dead letters with the services' `dlq` command, against the real RabbitMQ."""

import asyncio
import contextlib
import json
import os
import re
import sys
from typing import Any

import aio_pika
from pymongo import AsyncMongoClient

import agreements.main
import notifications.main
from agency_chassis.consuming import REDELIVERY_LIMIT
from agency_chassis.dead_letters import DeadLetter, list_dead_letters
from agency_chassis.retries import REDELIVERIES_HEADER
from agency_shared.topology import (
    AGREEMENTS_APPLICATION_SUBMITTED,
    AGREEMENTS_NOTIFICATION_SETTLED,
    NOTIFICATIONS_AGREEMENT_RECORDED,
)
from agreements.settings import AgreementsSettings
from notifications.settings import NotificationsSettings
from tests.support import broker
from tests.support.apps import serving
from tests.support.events import agreement_recorded_event as recorded
from tests.support.events import application_submitted
from tests.support.servers import Inbox, apply_queue_policies, set_queue_policy

CLIENT = "li.wei@mapletea.example"


async def dlq(amqp_url: str, service: str, command: str, *args: str, exit_code: int = 0) -> list[dict[str, Any]]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", service, "dlq", command, "--json", *args,
        env={**os.environ, "AMQP_URL": amqp_url}, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await process.communicate()
    assert process.returncode == exit_code, err.decode()
    return [json.loads(line) for line in out.decode().splitlines() if line.strip()]


async def test_list_then_replay_a_failed_email_and_replays_of_handled_events_change_nothing(
    notifications_settings: NotificationsSettings, amqp_url: str, inbox: Inbox
) -> None:
    inbox.reject_mailbox(CLIENT)
    settings = notifications_settings.model_copy(update={"staff_emails": []})
    event = recorded()
    async with serving(notifications.main.create_app(settings)):
        await broker.publish_events(amqp_url, [event])
        async with asyncio.timeout(15):
            while not (listed := await dlq(amqp_url, "notifications", "list")):  # noqa: ASYNC110
                await asyncio.sleep(0.2)
        [letter] = listed
        assert letter["queue"] == NOTIFICATIONS_AGREEMENT_RECORDED.name
        assert letter["event_type"] == "agreement.recorded"
        assert letter["message_id"] == str(event.event_id)
        assert letter["attempts"] == 1
        assert letter["reason"].startswith("gave-up: ")
        assert letter["dead_lettered_at"] is not None

        inbox.accept_mailbox(CLIENT)  # the operator fixed the cause
        [moved] = await dlq(amqp_url, "notifications", "replay", str(event.event_id))
        assert moved["message_id"] == str(event.event_id)
        [email] = await inbox.wait_for(lambda messages: len(messages) == 1)
        assert email["To"].addresses[0].addr_spec == CLIENT
        assert await dlq(amqp_url, "notifications", "list") == []

        # Replaying what was already handled sends nothing again.
        await broker.take(amqp_url, AGREEMENTS_NOTIFICATION_SETTLED.name, count=2)  # failed, then sent
        await broker.publish_raw(
            amqp_url, event.model_dump_json().encode(), NOTIFICATIONS_AGREEMENT_RECORDED.name,
            str(event.event_id), exchange="wechat_agency.dead-letter",
        )  # fmt: skip
        assert len(await dlq(amqp_url, "notifications", "replay", "--all")) == 1
        [again] = await broker.take(amqp_url, AGREEMENTS_NOTIFICATION_SETTLED.name)  # handled: settled as sent
        assert json.loads(again.body)["data"]["state"] == "sent"
    assert len(inbox.messages) == 1


async def test_replaying_an_application_already_recorded_keeps_one_record(
    agreements_settings: AgreementsSettings, amqp_url: str, mongo: AsyncMongoClient[dict[str, Any]]
) -> None:
    event = application_submitted()
    async with serving(agreements.main.create_app(agreements_settings)):
        await broker.publish_events(amqp_url, [event])
        [first] = await broker.take(amqp_url, NOTIFICATIONS_AGREEMENT_RECORDED.name)
        await broker.publish_raw(
            amqp_url, event.model_dump_json().encode(), AGREEMENTS_APPLICATION_SUBMITTED.name,
            str(event.event_id), exchange="wechat_agency.dead-letter",
        )  # fmt: skip
        listed = await dlq(amqp_url, "agreements", "list", "--queue", AGREEMENTS_APPLICATION_SUBMITTED.name)
        assert [d["message_id"] for d in listed] == [str(event.event_id)]
        await dlq(amqp_url, "agreements", "replay", "--all")
        [second] = await broker.take(amqp_url, NOTIFICATIONS_AGREEMENT_RECORDED.name)
    assert first.body == second.body  # the same agreement.recorded, same link
    db = mongo[agreements_settings.mongodb_db]
    assert await db["applications"].count_documents({}) == 1
    assert await db["acceptance_ledger"].count_documents({}) == 1


async def test_a_replay_whose_queue_is_gone_keeps_the_dead_letter_and_still_moves_the_others(
    agreements_settings: AgreementsSettings, amqp_url: str
) -> None:
    async with serving(agreements.main.create_app(agreements_settings)):
        pass  # the topology is declared
    gone, there = NOTIFICATIONS_AGREEMENT_RECORDED, AGREEMENTS_APPLICATION_SUBMITTED
    for queue, message_id in ((gone, "to-a-deleted-queue"), (there, "to-its-queue")):
        await broker.publish_raw(amqp_url, b"{}", queue.name, message_id, exchange="wechat_agency.dead-letter")
    async with broker.channel(amqp_url) as channel:
        await channel.queue_delete(gone.name, if_unused=False, if_empty=False)
    moved = await dlq(amqp_url, "agreements", "replay", "--all", exit_code=1)  # says it could not do it all
    assert [letter["message_id"] for letter in moved] == ["to-its-queue"]
    [kept] = await dlq(amqp_url, "agreements", "list")
    assert (kept["message_id"], kept["dead_letter_queue"]) == ("to-a-deleted-queue", gone.dead_letter_queue.name)
    [back] = await broker.take(amqp_url, there.name)
    assert back.message_id == "to-its-queue"


async def taken_and_never_answered(amqp_url: str, queue: str) -> None:
    """What a consumer that dies mid-way leaves: the message delivered, no ack nor nack, the channel gone."""
    async with broker.channel(amqp_url) as channel:
        declared = await channel.get_queue(queue, ensure=True)
        async with asyncio.timeout(15):
            while await declared.get(no_ack=False, fail=False) is None:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
    # Closed without an answer: RabbitMQ puts it back, marked redelivered.


async def test_a_message_its_consumer_keeps_dying_on_ends_in_the_dlq_by_our_own_count(
    agreements_settings: AgreementsSettings, amqp_url: str, mongo: AsyncMongoClient[dict[str, Any]]
) -> None:
    # Whatever the broker counts (RabbitMQ 4.3 no longer raises a quorum queue's delivery count on a
    # return), the copy counts its redeliveries itself: this one has used them all, and its consumer died
    # once more holding it. It is dead-lettered without being run.
    async with serving(agreements.main.create_app(agreements_settings)):
        pass  # the topology is declared
    event = application_submitted()
    async with broker.channel(amqp_url) as channel:
        exchange = await channel.get_exchange("wechat_agency.events")
        await exchange.publish(
            aio_pika.Message(
                event.model_dump_json().encode(),
                message_id=str(event.event_id),
                content_type="application/json",
                headers={REDELIVERIES_HEADER: REDELIVERY_LIMIT},
            ),
            routing_key=event.routing_key,
        )
    await taken_and_never_answered(amqp_url, AGREEMENTS_APPLICATION_SUBMITTED.name)
    async with serving(agreements.main.create_app(agreements_settings)):
        [dead] = await broker.take(amqp_url, AGREEMENTS_APPLICATION_SUBMITTED.dead_letter_queue.name)
    assert dead.message_id == str(event.event_id)
    assert await mongo[agreements_settings.mongodb_db]["applications"].count_documents({}) == 0


async def test_a_redelivered_message_is_parked_then_handled_once(
    agreements_settings: AgreementsSettings, amqp_url: str, mongo: AsyncMongoClient[dict[str, Any]]
) -> None:
    async with serving(agreements.main.create_app(agreements_settings)):
        pass
    event = application_submitted()
    await broker.publish_events(amqp_url, [event])
    await taken_and_never_answered(amqp_url, AGREEMENTS_APPLICATION_SUBMITTED.name)
    async with serving(agreements.main.create_app(agreements_settings)):
        [recorded_event] = await broker.take(amqp_url, NOTIFICATIONS_AGREEMENT_RECORDED.name)
    assert json.loads(recorded_event.body)["data"]["application_id"] == str(event.data.application_id)
    assert await mongo[agreements_settings.mongodb_db]["applications"].count_documents({}) == 1


async def test_a_dead_letter_is_kept_for_the_retention_then_dropped_by_rabbitmq(
    agreements_settings: AgreementsSettings, amqp_url: str
) -> None:
    # DEAD_LETTER_RETENTION_DAYS (default 30) is a policy's message-ttl on the DLQs: two seconds here.
    short = agreements_settings.model_copy(update={"dead_letter_retention_days": 2 / 86_400})
    apply_queue_policies(amqp_url.rsplit("/", 1)[1], dead_letter_retention_days=short.dead_letter_retention_days)
    queue = AGREEMENTS_APPLICATION_SUBMITTED
    async with serving(agreements.main.create_app(short)):
        pass  # the topology is declared (and, where the management API answers, the policies put by the service)
    await broker.publish_raw(amqp_url, b"{}", queue.name, "old-letter", exchange="wechat_agency.dead-letter")
    [kept] = await list_dead_letters(amqp_url, [queue.name])  # listing it does not count against it
    assert kept.message_id == "old-letter"
    # Listing takes the message out and puts it back, which is when a quorum queue expires what is due. A listing
    # the broker, loaded by a full run, does not answer in 10 s is given up and made again.
    async with asyncio.timeout(90):
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(10):
                    if not await list_dead_letters(amqp_url, [queue.name]):
                        break
            await asyncio.sleep(0.5)


async def test_dead_letters_reach_their_dlq_even_where_no_policy_gives_the_queue_a_dead_letter_target(
    agreements_settings: AgreementsSettings, amqp_url: str, mongo: AsyncMongoClient[dict[str, Any]]
) -> None:
    # A policy of a higher priority replaces the services' whole (here: a length limit alone, as an
    # operator might set it), so RabbitMQ has nowhere to dead-letter to. The runner sends the copies itself.
    queue = AGREEMENTS_APPLICATION_SUBMITTED
    vhost = amqp_url.rsplit("/", 1)[1]
    async with serving(agreements.main.create_app(agreements_settings)):
        pass  # the topology is declared and the services' policies put
    set_queue_policy(vhost, "operator-length-only", f"^{re.escape(queue.name)}$", '{"max-length": 1000}', priority=20)
    async with serving(agreements.main.create_app(agreements_settings)):
        await broker.publish_raw(amqp_url, b"{not json", queue.event.routing_key, "unreadable-one")
        listed = await wait_for_dead_letters(amqp_url, queue.name, 1)
    [letter] = listed
    assert (letter.message_id, letter.queue) == ("unreadable-one", queue.name)
    assert letter.reason is not None
    assert letter.reason.startswith("unreadable: ")
    assert letter.dead_lettered_at is not None
    assert await broker.depth(amqp_url, queue.name) == 0
    assert await mongo[agreements_settings.mongodb_db]["applications"].count_documents({}) == 0


async def wait_for_dead_letters(amqp_url: str, queue: str, count: int) -> list[DeadLetter]:
    async with asyncio.timeout(15):
        while len(listed := await list_dead_letters(amqp_url, [queue])) < count:  # noqa: ASYNC110
            await asyncio.sleep(0.2)
    return listed
