"""The agreements service against the real RabbitMQ and SecantusDB."""

import asyncio
import json
from typing import Any

from pymongo import AsyncMongoClient

from agency_shared.topology import AGREEMENTS_APPLICATION_SUBMITTED, NOTIFICATIONS_AGREEMENT_RECORDED
from agreements.main import create_app
from agreements.settings import AgreementsSettings
from tests.support import broker
from tests.support.apps import client, serving
from tests.support.events import application_submitted

Mongo = AsyncMongoClient[dict[str, Any]]


async def wait_for_documents(mongo: Mongo, db: str, query: dict[str, Any], count: int = 1) -> list[dict[str, Any]]:
    async with asyncio.timeout(15):
        while True:
            documents = await mongo[db]["applications"].find(query).to_list()
            if len(documents) >= count:
                return documents
            await asyncio.sleep(0.05)


async def test_application_is_stored_with_its_evidence_and_agreement_recorded_follows(
    agreements_settings: AgreementsSettings, amqp_url: str, mongo: Mongo
) -> None:
    event = application_submitted()
    async with serving(create_app(agreements_settings)):
        await broker.publish_raw(amqp_url, event.model_dump_json().encode(), event.routing_key, str(event.event_id))
        [message] = await broker.take(amqp_url, NOTIFICATIONS_AGREEMENT_RECORDED.name)

    [stored] = await wait_for_documents(mongo, agreements_settings.mongodb_db, {})
    assert stored["application_id"] == str(event.data.application_id)
    assert stored["acceptance"] == event.data.acceptance.model_dump(mode="json")
    assert stored["application"]["company"]["legal_name"] == "Maple Tea Trading Ltd. 枫叶茶贸易有限公司"
    assert stored["correlation_id"] == event.correlation_id
    recorded = json.loads(message.body)
    assert recorded["event_type"] == "agreement.recorded"
    assert recorded["data"]["application_id"] == str(event.data.application_id)
    assert recorded["data"]["acceptance_id"] == stored["acceptance_id"]
    assert message.message_id == recorded["event_id"]
    assert message.correlation_id == event.correlation_id


async def test_redelivered_event_keeps_one_record_and_republishes_the_same_agreement_recorded(
    agreements_settings: AgreementsSettings, amqp_url: str, mongo: Mongo
) -> None:
    event = application_submitted()
    async with serving(create_app(agreements_settings)):
        for _ in range(3):
            await broker.publish_raw(amqp_url, event.model_dump_json().encode(), event.routing_key, str(event.event_id))
        messages = await broker.take(amqp_url, NOTIFICATIONS_AGREEMENT_RECORDED.name, count=3)

    assert len({m.message_id for m in messages}) == 1
    assert len({m.body for m in messages}) == 1
    assert await mongo[agreements_settings.mongodb_db]["applications"].count_documents({}) == 1


async def test_concurrent_copies_of_one_event_on_two_replicas_still_make_one_record(
    agreements_settings: AgreementsSettings, amqp_url: str, mongo: Mongo
) -> None:
    event = application_submitted()
    body = event.model_dump_json().encode()
    async with serving(create_app(agreements_settings), create_app(agreements_settings)):
        await asyncio.gather(
            *(broker.publish_raw(amqp_url, body, event.routing_key, str(event.event_id)) for _ in range(6))
        )
        messages = await broker.take(amqp_url, NOTIFICATIONS_AGREEMENT_RECORDED.name, count=6)
    assert len({m.message_id for m in messages}) == 1
    assert await mongo[agreements_settings.mongodb_db]["applications"].count_documents({}) == 1


async def test_unreadable_messages_go_to_the_dead_letter_queue_and_good_ones_still_flow(
    agreements_settings: AgreementsSettings, amqp_url: str, mongo: Mongo
) -> None:
    good = application_submitted()
    async with serving(create_app(agreements_settings)):
        await broker.publish_raw(amqp_url, b"{not json", "application.submitted", message_id="poison-json")
        await broker.publish_raw(
            amqp_url, b'{"event_type": "application.submitted"}', "application.submitted", "poison-schema"
        )
        await broker.publish_raw(amqp_url, good.model_dump_json().encode(), good.routing_key, str(good.event_id))
        dead = await broker.take(amqp_url, AGREEMENTS_APPLICATION_SUBMITTED.dead_letter_queue.name, count=2)
        await broker.take(amqp_url, NOTIFICATIONS_AGREEMENT_RECORDED.name)

    assert {m.message_id for m in dead} == {"poison-json", "poison-schema"}
    assert [broker.death_cause(m) for m in dead] == ["unreadable", "unreadable"]
    assert await mongo[agreements_settings.mongodb_db]["applications"].count_documents({}) == 1


async def test_readiness_reports_broker_and_database(agreements_settings: AgreementsSettings) -> None:
    app = create_app(agreements_settings)
    async with serving(app), client(app) as http:
        ready = await http.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"broker": True, "publisher": True, "database": True}


async def test_readiness_fails_when_the_database_is_unreachable(agreements_settings: AgreementsSettings) -> None:
    unreachable = agreements_settings.model_copy(update={"mongodb_url": "mongodb://127.0.0.1:9/"})
    app = create_app(unreachable)
    # The lifespan would wait for the database; readiness alone must answer without it.
    async with client(app) as http:
        ready = await http.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["checks"]["database"] is False
