"""Listing and replaying dead letters with the services' `dlq` command, against the real RabbitMQ."""

import asyncio
import json
import os
import sys
from typing import Any

from pymongo import AsyncMongoClient

import agreements.main
import notifications.main
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
from tests.support.servers import Inbox

CLIENT = "li.wei@mapletea.example"


async def dlq(amqp_url: str, service: str, command: str, *args: str) -> list[dict[str, Any]]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", service, "dlq", command, "--json", *args,
        env={**os.environ, "AMQP_URL": amqp_url}, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
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
        assert (letter["reason"], letter["attempts"]) == ("rejected", 1)

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
