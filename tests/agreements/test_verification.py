"""A verified address recorded beside the acceptance, against the real RabbitMQ and SecantusDB."""

import json
from datetime import timedelta
from typing import Any

from pymongo import AsyncMongoClient

from agency_shared.events import Event, utc_now
from agency_shared.receipt_verifier import personal_sha256
from agency_shared.topology import (
    AGREEMENTS_EMAIL_VERIFIED,
    NOTIFICATIONS_ACCEPTANCE_CONFIRMED,
    NOTIFICATIONS_AGREEMENT_RECORDED,
)
from agreements.main import create_app
from agreements.settings import AgreementsSettings
from tests.support import broker
from tests.support.apps import serving
from tests.support.events import application_submitted, email_verified
from tests.support.ledger import run_verify_command

Mongo = AsyncMongoClient[dict[str, Any]]


async def publish(amqp_url: str, event: Event) -> None:
    await broker.publish_raw(amqp_url, event.model_dump_json().encode(), event.routing_key, str(event.event_id))


async def test_the_verification_is_one_link_beside_the_acceptance_however_often_it_arrives(
    agreements_settings: AgreementsSettings, amqp_url: str, mongo: Mongo
) -> None:
    submitted = application_submitted()
    application_id = submitted.data.application_id
    clicked = utc_now()
    # A double click (one event id, two times), and a redelivery, on two replicas at once.
    clicks = [email_verified(application_id, verified_at=clicked + timedelta(seconds=n)) for n in (0, 1, 1)]
    async with serving(create_app(agreements_settings), create_app(agreements_settings)):
        await publish(amqp_url, submitted)
        await broker.take(amqp_url, NOTIFICATIONS_AGREEMENT_RECORDED.name)
        for click in clicks:
            await publish(amqp_url, click)
        confirmed = await broker.take(amqp_url, NOTIFICATIONS_ACCEPTANCE_CONFIRMED.name, count=3)
    assert len({message.message_id for message in confirmed}) == 1
    assert len({message.body for message in confirmed}) == 1  # the same event, made from what was stored
    event = json.loads(confirmed[0].body)
    db = mongo[agreements_settings.mongodb_db]
    acceptance, verification = await db["acceptance_ledger"].find({}).sort("_id").to_list()
    assert "kind" not in acceptance
    assert verification["kind"] == "email_verified"
    record = verification["record"]
    assert record["acceptance_record_hash"] == acceptance["record_hash"] == event["data"]["record_hash"]
    assert event["data"]["verification_sequence"] == verification["sequence"] == 2
    stored = await db["applications"].find_one({"application_id": str(application_id)})
    assert stored is not None
    assert stored["status"] == "verified"
    evidence = stored["email_verification"]
    assert record["verified_email_sha256"] == personal_sha256(
        stored["personal_salt"], "verified_email", evidence["email"]
    )
    assert record["verified_at"].startswith(evidence["verified_at"].strftime("%Y-%m-%dT%H:%M:%S"))
    assert event["data"]["verified_at"].startswith(evidence["verified_at"].strftime("%Y-%m-%dT%H:%M:%S"))
    command = run_verify_command(agreements_settings)
    assert command.returncode == 0, command.stdout + command.stderr


async def test_a_verification_of_another_address_is_dead_lettered_and_recorded_nowhere(
    agreements_settings: AgreementsSettings, amqp_url: str, mongo: Mongo
) -> None:
    submitted = application_submitted()
    async with serving(create_app(agreements_settings)):
        await publish(amqp_url, submitted)
        await broker.take(amqp_url, NOTIFICATIONS_AGREEMENT_RECORDED.name)
        await publish(amqp_url, email_verified(submitted.data.application_id, "eve@evil.example"))
        [dead] = await broker.take(amqp_url, AGREEMENTS_EMAIL_VERIFIED.dead_letter_queue.name)
    assert broker.death_cause(dead) == "gave-up"
    assert await mongo[agreements_settings.mongodb_db]["acceptance_ledger"].count_documents({}) == 1
    assert await broker.depth(amqp_url, NOTIFICATIONS_ACCEPTANCE_CONFIRMED.name) == 0
